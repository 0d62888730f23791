//! Private instances of the real RabbitMQ and PostgreSQL, on ports of their
//! own, for tests that stop and start them: the shared ones on 5672 and
//! 5432 keep serving every other test meanwhile. Both run as their
//! distribution's system users, from Debian's packages.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, up: bool, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() != up {
        assert!(
            Instant::now() < deadline,
            "{what} did not {} on {port}:\n{}",
            if up { "start" } else { "stop" },
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A directory that `user` owns, removed on drop.
fn owned_dir(user: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("bl-peer-")
        .tempdir_in("/tmp")
        .unwrap();
    let ok = Command::new("chown")
        .args([user, &dir.path().display().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {user} (the tests run as root)");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A RabbitMQ node of its own.
pub struct Broker {
    pub port: u16,
    node: String,
    dir: tempfile::TempDir,
    server: std::sync::Mutex<Option<std::process::Child>>,
}

impl Broker {
    pub fn start() -> Self {
        let dir = owned_dir("rabbitmq");
        let port = free_port();
        let node = format!(
            "bltest{}@localhost",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        );
        let b = Self {
            port,
            node,
            dir,
            server: std::sync::Mutex::new(None),
        };
        b.up();
        b
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn rabbit(&self, program: &str) -> Command {
        let d = self.dir.path().display().to_string();
        let mut cmd = Command::new("runuser");
        cmd.current_dir("/tmp")
            .args(["-u", "rabbitmq", "--", "env", "HOME=/var/lib/rabbitmq"])
            .arg(format!("RABBITMQ_NODENAME={}", self.node))
            .arg(format!("RABBITMQ_NODE_PORT={}", self.port))
            // Distribution port: its own, so nodes do not collide.
            .arg(format!("RABBITMQ_DIST_PORT={}", free_port()))
            .arg(format!("RABBITMQ_MNESIA_BASE={d}/mnesia"))
            .arg(format!("RABBITMQ_LOG_BASE={d}/log"))
            .arg(format!("RABBITMQ_ENABLED_PLUGINS_FILE={d}/plugins"))
            .arg(format!("RABBITMQ_PID_FILE={d}/pid"))
            .arg(format!("RABBITMQ_CONFIG_FILE={d}/none"))
            .arg(format!("/usr/lib/rabbitmq/bin/{program}"));
        cmd
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Starts the node (again: durable exchanges, queues and persistent
    /// messages are still there).
    pub fn up(&self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = self
            .rabbit("rabbitmq-server")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("rabbitmq-server (the README's test command installs it)");
        *self.server.lock().unwrap() = Some(child);
        wait_port(self.port, true, "RabbitMQ", &self.log());
    }

    /// Stops the node.
    pub fn down(&self) {
        self.stop();
        wait_port(self.port, false, "RabbitMQ", &self.log());
    }

    fn stop(&self) {
        let _ = self
            .rabbit("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of its own (trust authentication).
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The network namespace it runs in, and the address it listens on.
    ns: Option<String>,
    host: String,
}

impl Postgres {
    /// On 127.0.0.1.
    pub fn start() -> Self {
        Self::start_in(None, "127.0.0.1")
    }

    /// In network namespace `ns` (the host's for `None`), listening on
    /// `host`.
    pub fn start_in(ns: Option<&str>, host: &str) -> Self {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL (the README's test command installs it)")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .expect("a PostgreSQL version");
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        let dir = owned_dir("postgres");
        let pg = Self {
            port: free_port(),
            bin,
            dir,
            ns: ns.map(str::to_string),
            host: host.to_string(),
        };
        let ok = pg
            .as_postgres("initdb")
            .args(["-D", &pg.data(), "-A", "trust", "-U", "postgres"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "initdb");
        // A private cluster for tests: anyone who reaches it may connect
        // (in a namespace, that is the daemons on the test's bridge).
        let hba = pg.dir.path().join("data").join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("host all all 0.0.0.0/0 trust\n");
        std::fs::write(&hba, rules).unwrap();
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "runuser"]);
                c
            }
            None => Command::new("runuser"),
        };
        cmd.current_dir("/tmp")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        cmd
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@{}:{}/{database}", self.host, self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses={} -k {}",
            self.port,
            self.host,
            self.dir.path().display()
        );
        let ok = self
            .as_postgres("pg_ctl")
            .args(["-D", &self.data(), "-l", &self.log().display().to_string()])
            .args(["-o", &options, "-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "pg_ctl start:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
        // `-w` waited on the socket; in a namespace, that is all one sees.
        if self.ns.is_none() {
            wait_port(self.port, true, "PostgreSQL", &self.log());
        }
    }

    /// Stops the server at once (`-m immediate`: connections are cut, as
    /// when it crashes).
    pub fn down(&self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
        if self.ns.is_none() {
            wait_port(self.port, false, "PostgreSQL", &self.log());
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stops it if it runs (pg_ctl finds it by its pid file).
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
