//! The `bootloader` binary as an operator runs it.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bootloader");

fn bootloader(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args);
    // A clean environment: only what the test gives.
    for var in [
        "DATABASE_URL",
        "DB_HOST",
        "SECRET_KEY",
        "BOOTLOADER_URL",
        "RUST_LOG",
        "SSL_ENABLE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run<C: std::borrow::BorrowMut<Command>>(mut cmd: C) -> Output {
    cmd.borrow_mut().output().expect("run bootloader")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `bootloader serve` process whose stdout is collected as it goes.
struct Served {
    child: Child,
    dir: std::path::PathBuf,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    base: String,
}

impl Served {
    fn start(dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with(dir, port, &[], extra_env)
    }

    /// With `args` after `serve`.
    fn start_with(dir: &Path, port: u16, args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["serve", "--http-listen", &listen];
        all.extend_from_slice(args);
        let mut cmd = bootloader(dir, &all);
        cmd.env("RUST_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = sink.lock().expect("lock");
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let served = Self {
            child,
            dir: dir.to_path_buf(),
            stdout,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !served.output().contains("bootloader is serving") {
            assert!(
                Instant::now() < deadline,
                "daemon did not start:\n{}",
                served.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    fn output(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    /// The first staff user's token, from the file the first start names
    /// (stdout is a pipe here, not a terminal, so the token itself is never
    /// printed).
    fn token(&self) -> Option<String> {
        let output = self.output();
        assert!(
            !output
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| w.starts_with("bl_") && w.len() == 67),
            "a token was printed to a pipe: {output}"
        );
        let (_, rest) = output.split_once("Its API token is in ")?;
        let path = rest.split_whitespace().next()?;
        let path = self.dir.join(path);
        let text = std::fs::read_to_string(&path).expect("the token file");
        Some(text.trim().to_string())
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.output()
    }
}

/// A test that fails before `stop` leaves no daemon behind.
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn api(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let client = reqwest::Client::new();
        // The project's API unless the path names another (the older one).
        let url = if path.starts_with("/api/") {
            format!("{base}{path}")
        } else {
            format!("{base}/api/v1{path}")
        };
        let mut req = client
            .request(method.parse().expect("method"), url)
            .header("Authorization", format!("Token {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    })
}

const PASSWORD: &str = "Zer0-Config-BMC-Secret";

#[test]
fn zero_config_serve_restart_and_secrecy() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let served = Served::start(dir.path(), port, &[]);
    let token = served.token().expect("first start names its token file");
    assert!(token.starts_with("bl_") && token.len() == 67, "{token}");
    // The data dir, the database and the token file are the daemon's
    // user's alone: they hold live callback and export tokens.
    let data = dir.path().join("bootloader-data");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&data), 0o700);
    for file in ["bootloader.sqlite3", "admin-token", "secret.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let (s, _) = api(
        &served.base,
        &token,
        "POST",
        "/locations",
        Some(serde_json::json!({"name": "dc1"})),
    );
    assert_eq!(s, 201);
    let (s, b) = api(
        &served.base,
        &token,
        "POST",
        "/servers",
        Some(
            serde_json::json!({"fqdn": "z.example.com", "location": "dc1",
            "bmc": {"host": "10.9.9.9", "username": "ADMIN", "password": PASSWORD},
            "interfaces": [{"mac": "52:54:00:12:34:56"}]}),
        ),
    );
    assert_eq!(s, 201, "{b}");
    let log = served.stop();
    assert!(!log.contains(PASSWORD), "the BMC password reached the log");
    assert!(
        log.contains("z.example.com") || log.contains("/api/v1/servers"),
        "trace logging was on"
    );

    // A restart keeps everything and prints no new token.
    let served = Served::start(dir.path(), port, &[]);
    assert_eq!(
        served.token(),
        None,
        "the token is shown only on first start"
    );
    let (s, b) = api(&served.base, &token, "GET", "/servers/z.example.com", None);
    assert_eq!(s, 200);
    assert_eq!(b["bmc"]["password_set"], true);
    assert!(!served.stop().contains(PASSWORD));
}

#[test]
fn check_config_shows_sources_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:9999\"\n[database]\nhost = \"db.example.com\"\n",
    )
    .unwrap();
    let out = run(bootloader(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "check-config"],
    )
    .env("DB_PASSWORD", "pg-pass-123")
    .env("SECRET_KEY", "a-long-secret-key-value")
    .env("BOOTLOADER_URL", "http://192.0.2.1:9999"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for needle in ["pg-pass-123", "a-long-secret-key-value"] {
        assert!(!stdout.contains(needle), "secret shown: {stdout}");
    }
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("http.listen").contains("127.0.0.1:9999") && line("http.listen").contains("file"),
        "{stdout}"
    );
    assert!(
        line("database.password").contains("<redacted>")
            && line("database.password").contains("env DB_PASSWORD")
    );
    assert!(
        line("server.url").contains("env BOOTLOADER_URL"),
        "{stdout}"
    );
    assert!(line("log.format").contains("default"), "{stdout}");
    assert!(
        stdout.contains("postgres bootloader@db.example.com:5432/bootloader"),
        "{stdout}"
    );

    // --explain says what each setting does, what sets it and its
    // default, still without a secret.
    let out = run(bootloader(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "check-config",
            "--explain",
        ],
    )
    .env("DB_PASSWORD", "pg-pass-123"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("pg-pass-123"), "{stdout}");
    assert!(
        stdout.contains("# set by: env SECRET_KEY, env BOOTLOADER_SECRET_KEY")
            && stdout.contains("# set by: env DB_PORT; default \"5432\""),
        "{stdout}"
    );

    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:9999\"\nlisten_port = 3\n",
    )
    .unwrap();
    let out = run(bootloader(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "check-config"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("listen_port"),
        "{}",
        text(&out.stderr)
    );
    let out = run(bootloader(
        dir.path(),
        &["--config", "/nonexistent/b.toml", "check-config"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/b.toml"));
}

#[test]
fn users_tokens_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&mut bootloader(dir.path(), &["migrate"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("applied 1_inventory"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&mut bootloader(dir.path(), &["migrate"]));
    assert!(text(&out.stdout).contains("up to date"));

    let out = run(&mut bootloader(
        dir.path(),
        &["user", "add", "ops", "--staff"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "only the token: {stdout:?}");
    let token = stdout.trim().to_string();
    assert!(token.starts_with("bl_"));
    let out = run(&mut bootloader(dir.path(), &["user", "add", "ops"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));

    let out = run(&mut bootloader(
        dir.path(),
        &["token", "create", "ops", "--scope", "read"],
    ));
    assert!(out.status.success());
    let read_token = text(&out.stdout).trim().to_string();
    let out = run(&mut bootloader(dir.path(), &["token", "list"]));
    let listing = text(&out.stdout);
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(!listing.contains(&token[10..]), "no secrets in the list");

    // The tokens work against a daemon on the same data dir.
    let served = Served::start(dir.path(), free_port(), &[]);
    assert_eq!(served.token(), None, "users exist, so no first token");
    assert_eq!(
        api(
            &served.base,
            &token,
            "POST",
            "/labels",
            Some(serde_json::json!({"name": "x"}))
        )
        .0,
        201
    );
    assert_eq!(
        api(
            &served.base,
            &read_token,
            "POST",
            "/labels",
            Some(serde_json::json!({"name": "y"}))
        )
        .0,
        403
    );
    let out = run(&mut bootloader(
        dir.path(),
        &["token", "revoke", &read_token[..10]],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        api(&served.base, &read_token, "GET", "/labels", None).0,
        401
    );
    served.stop();
}

/// Runs `bootloader user passwd` with `input` on its standard input.
fn passwd(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = bootloader(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bootloader");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Whether `password` is `name`'s console password, asked of the store
/// the CLI wrote (as the console's sign-in will ask it).
fn password_is(dir: &Path, name: &str, password: &str) -> bool {
    let config = bootloader::config::load(
        None,
        &|_| None,
        &bootloader::config::CliOverrides {
            data_dir: Some(dir.join("bootloader-data")),
            ..Default::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = bootloader::app::open_store(&config).await.unwrap();
        let name = name.parse().unwrap();
        bootloader::ops::users::check_password(store.as_ref(), &name, password)
            .await
            .unwrap()
            .is_some()
    })
}

#[test]
fn user_passwd_sets_checks_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&mut bootloader(dir.path(), &["user", "add", "ops"]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Piped: the first line, its line break dropped.
    let out = passwd(
        dir.path(),
        &["user", "passwd", "ops"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Set the console password of ops"));
    assert!(text(&out.stdout).is_empty(), "nothing on stdout");
    assert!(password_is(dir.path(), "ops", "correct horse battery"));
    assert!(!password_is(dir.path(), "ops", "correct horse"));
    assert!(!password_is(dir.path(), "nobody", "correct horse battery"));

    // Refused as the API would refuse it, naming the field; nothing changes.
    let out = passwd(dir.path(), &["user", "passwd", "ops"], "short\n");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("password") && err.contains("at least 10"),
        "{err}"
    );
    assert!(password_is(dir.path(), "ops", "correct horse battery"));
    let out = passwd(
        dir.path(),
        &["user", "passwd", "nobody"],
        "correct horse battery\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    let out = passwd(dir.path(), &["user", "passwd", "ops", "--clear"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!password_is(dir.path(), "ops", "correct horse battery"));
}

#[test]
fn profile_validate_offline() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<String> = std::fs::read_dir(format!("{root}/profiles"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.push(format!(
        "{root}/tests/fixtures/seed-profiles/ubuntu-16.04.yaml"
    ));
    let mut args = vec!["profile", "validate"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&mut bootloader(dir.path(), &args));
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout).matches(": ok").count(), files.len());

    let bad = dir.path().join("bad.yaml");
    let good = std::fs::read_to_string(format!("{root}/profiles/echo-1.0.yaml")).unwrap();
    std::fs::write(&bad, good.replacen("action: echo", "action: echoo", 1)).unwrap();
    let out = run(&mut bootloader(
        dir.path(),
        &["profile", "validate", &files[0], bad.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("bad.yaml: invalid") && stdout.contains("workflow.new[0].action"),
        "{stdout}"
    );
    // No data dir was touched: validation is offline.
    assert!(!dir.path().join("bootloader-data").exists());
}

#[test]
fn rotate_secret_reencrypts_and_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let served = Served::start(dir.path(), port, &[]);
    let token = served.token().unwrap();
    api(
        &served.base,
        &token,
        "POST",
        "/locations",
        Some(serde_json::json!({"name": "dc1"})),
    );
    let (s, _) = api(
        &served.base,
        &token,
        "POST",
        "/servers",
        Some(serde_json::json!({
        "fqdn": "r.example.com", "location": "dc1", "bmc": {"username": "ADMIN", "password": PASSWORD}})),
    );
    assert_eq!(s, 201);
    // A server whose BMC login the older API attached to it as credentials.
    let (s, b) = api(
        &served.base,
        &token,
        "POST",
        "/api/v1alpha2/servers/",
        Some(serde_json::json!({"fqdn": "s.example.com", "location": "dc1"})),
    );
    assert_eq!(s, 201, "{b}");
    for (name, data) in [("ipmi_username", "root"), ("ipmi_password", PASSWORD)] {
        let object = format!("/api/v1alpha2/servers/{}/", b["id"]);
        let (s, c) = api(
            &served.base,
            &token,
            "POST",
            "/api/v1alpha2/credentials/",
            Some(serde_json::json!({"name": name, "data": data, "content_object": object})),
        );
        assert_eq!(s, 201, "{c}");
    }
    // A deployment, whose callback token is sealed too.
    let profile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/echo-1.0.yaml"),
    )
    .unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Token {token}")])
        .args([
            "-H",
            "Content-Type: application/yaml",
            "--data-binary",
            &profile,
        ])
        .arg(format!("{}/api/v1/profiles", served.base))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "201");
    let (s, dep) = api(
        &served.base,
        &token,
        "POST",
        "/deployments",
        Some(serde_json::json!({"server": "r.example.com", "profile": "echo==1.0"})),
    );
    assert_eq!(s, 201, "{dep}");
    served.stop();
    let key_file = dir.path().join("bootloader-data/secret.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();

    let out = run(&mut bootloader(dir.path(), &["rotate-secret"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("re-encrypted 4 secret"),
        "{}",
        text(&out.stderr)
    );
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_key, new_key);

    // The daemon's store opens the password with the new key.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = dir.path().join("bootloader-data");
    let env = move |k: &str| (k == "BOOTLOADER_DATA_DIR").then(|| data.display().to_string());
    let cfg_path = dir.path().join("empty.toml");
    std::fs::write(&cfg_path, "").unwrap();
    let config = bootloader::config::load(Some(&cfg_path), &env, &Default::default()).unwrap();
    rt.block_on(async {
        let store = bootloader::app::open_store(&config).await.unwrap();
        let login = store
            .bmc_login(&"r.example.com".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(login, Some(("ADMIN".to_string(), PASSWORD.to_string())));
        let login = store
            .bmc_login(&"s.example.com".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(login, Some(("root".to_string(), PASSWORD.to_string())));
        // And the deployment's token.
        let view = store.engine_view(1).await.unwrap();
        assert_eq!(view.token.map(|t| t.len()), Some(64));
    });

    // With the old key back, start-up fails with a clear message.
    std::fs::write(&key_file, &old_key).unwrap();
    let out = run(bootloader(
        dir.path(),
        &[
            "serve",
            "--http-listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
    ));
    assert!(!out.status.success());
    // It says how to fix it, for a daemon sharing another's database too.
    let err = text(&out.stderr);
    for needle in [
        "secret key",
        "Every daemon sharing a database needs the same key",
        "secret.key",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn serve_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        bootloader(dir.path(), &["serve", "--http-listen", "127.0.0.1:0"])
            .env("SSL_ENABLE", "true"),
    );
    assert!(!out.status.success());
    // SSL_ENABLE without a certificate and key names what is missing.
    let err = text(&out.stderr);
    assert!(
        err.contains("SSL_CERTIFICATE_CONTENTS") && err.contains("SSL_KEY_CONTENTS"),
        "{err}"
    );
    // A port in use is a clear start-up error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&mut bootloader(
        dir.path(),
        &["serve", "--http-listen", &addr],
    ));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&addr), "{}", text(&out.stderr));
    // A boot interface that does not exist, and DHCP on without one, are
    // refused before anything serves (nothing is bound on a real
    // interface: the first fails looking the interface up, the second in
    // validation).
    let out = run(
        bootloader(dir.path(), &["serve", "--http-listen", "127.0.0.1:0"])
            .env("BOOTLOADER_DHCP_MODE", "authoritative")
            .env("BOOTLOADER_DHCP_INTERFACES", "nosuchif0"),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("nosuchif0") && err.contains("does not exist"),
        "{err}"
    );
    let out = run(
        bootloader(dir.path(), &["serve", "--http-listen", "127.0.0.1:0"])
            .env("BOOTLOADER_DHCP_MODE", "proxy"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("dhcp.interfaces"),
        "{}",
        text(&out.stderr)
    );
    // A DHCP port in use names the setting and the likely culprit.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        bootloader(dir.path(), &["serve", "--http-listen", "127.0.0.1:0"])
            .env("BOOTLOADER_DHCP_MODE", "authoritative")
            .env("BOOTLOADER_DHCP_LISTEN", "127.0.0.1")
            .env("BOOTLOADER_DHCP_PORT", &port),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("dhcp.port") && err.contains("another DHCP server"),
        "{err}"
    );
}

#[test]
fn migrate_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ts = rt.block_on(common::TestStore::new(common::Backend::Postgres));
    let url = ts.env["DATABASE_URL"].clone();
    let out = run(bootloader(ts.dir.path(), &["migrate"]).env("DATABASE_URL", &url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("applied 1_inventory"));
    let out = run(bootloader(ts.dir.path(), &["migrate"]).env("DATABASE_URL", &url));
    assert!(
        text(&out.stdout).contains("up to date"),
        "{}",
        text(&out.stdout)
    );
    rt.block_on(ts.drop_database());
}

#[test]
fn serve_runs_tftp_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftproot");
    std::fs::create_dir_all(&root).unwrap();
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("undionly.kpxe"), &payload).unwrap();
    // A free UDP port on loopback.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("BOOTLOADER_TFTP_ENABLE", "true"),
        ("BOOTLOADER_TFTP_LISTEN", listen.as_str()),
        ("BOOTLOADER_TFTP_ROOT", root.to_str().unwrap()),
    ];
    let served = Served::start(dir.path(), free_port(), &env);
    assert!(
        served.output().contains(&format!("TFTP:     {listen}")),
        "{}",
        served.output()
    );
    let out = dir.path().join("got.kpxe");
    let status = Command::new("atftp")
        .args(["--get", "-r", "undionly.kpxe", "-l"])
        .arg(&out)
        .args(["--option", "blksize 1468", "127.0.0.1", &port.to_string()])
        .status()
        .expect("atftp runs");
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), payload);

    // SIGTERM during a transfer: it finishes, then the daemon exits.
    let big: Vec<u8> = (0..24_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("big.img"), &big).unwrap();
    let got = dir.path().join("got.img");
    // Lock-step 512-byte blocks: tens of thousands of round trips.
    let mut slow = Command::new("atftp")
        .args(["--get", "-r", "big.img", "-l"])
        .arg(&got)
        .args(["--option", "blksize 512", "127.0.0.1", &port.to_string()])
        .spawn()
        .expect("atftp runs");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(slow.try_wait(), Ok(None)),
        "the transfer ended before the stop; make the file bigger"
    );
    let log = served.stop();
    assert!(slow.wait().unwrap().success(), "{log}");
    assert_eq!(
        std::fs::read(&got).unwrap(),
        big,
        "the whole file, after SIGTERM"
    );
    assert!(
        log.contains("TFTP: waiting for the transfers under way"),
        "{log}"
    );
    assert!(log.contains("TFTP: every transfer finished"), "{log}");

    // A root that does not exist is a start-up error naming the setting.
    let mut cmd = bootloader(
        dir.path(),
        &[
            "serve",
            "--http-listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
    );
    cmd.env("BOOTLOADER_TFTP_ENABLE", "true")
        .env("BOOTLOADER_TFTP_LISTEN", "127.0.0.1:0")
        .env("BOOTLOADER_TFTP_ROOT", "/nonexistent/ipxe");
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tftp.root"),
        "{}",
        text(&out.stderr)
    );
}

/// Under a service manager: `READY=1` once serving, `RELOADING=1` and
/// `READY=1` around a SIGHUP, which applies quirk rules, names what needs a
/// restart and keeps the running configuration when the file is broken;
/// `STOPPING=1` on SIGTERM, then a clean exit.
#[test]
fn systemd_notify_reload_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a notification");
        text(&buf[..n])
    };
    let config = dir.path().join("bootloader.toml");
    std::fs::write(&config, "[dhcp]\nlease_time = 600\n").unwrap();
    let cfg = config.display().to_string();
    let data = dir.path().join("data").display().to_string();
    let socket = socket_path.display().to_string();
    let served = Served::start_with(
        dir.path(),
        free_port(),
        &["--config", &cfg, "--data-dir", &data],
        &[("NOTIFY_SOCKET", &socket)],
    );
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving on 127.0.0.1:"),
        "{ready}"
    );

    std::fs::write(
        &config,
        "[dhcp]\nlease_time = 900\n\n[[dhcp.quirk]]\nname = \"old-rom\"\nmac_prefix = \"52:54:00\"\ntftp_blksize = 512\n",
    )
    .unwrap();
    let pid = served.child.id().to_string();
    run(Command::new("kill").args(["-HUP", &pid]));
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    // The log reaches the test through a pipe: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = |out: &str| {
        out.contains("dhcp.quirk rules applied")
            && out.contains("take effect only after a restart")
            && out.contains("dhcp.lease_time")
    };
    while !said(&served.output()) {
        assert!(Instant::now() < deadline, "{}", served.output());
        std::thread::sleep(Duration::from_millis(50));
    }

    // A broken file: reported, the running configuration stays.
    std::fs::write(&config, "[dhcp\n").unwrap();
    run(Command::new("kill").args(["-HUP", &pid]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served.output().contains("the running one stays") {
        assert!(Instant::now() < deadline, "{}", served.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = run(Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/readyz", served.base),
    ]));
    assert_eq!(text(&health.stdout), "200");

    let out = served.stop();
    assert!(next().starts_with("STOPPING=1"), "{out}");
}

/// `--log-format json`: one JSON object per line; each HTTP request's
/// lines carry its span with the MAC (and the deployment when known), and
/// a callback's token never appears.
#[test]
fn json_logs_carry_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let served = Served::start_with(
        dir.path(),
        free_port(),
        &["--log-format", "json", "--data-dir", &data],
        &[("RUST_LOG", "info,tower_http=debug")],
    );
    let get = |path: &str| {
        run(Command::new("curl").args(["-s", "-o", "/dev/null", &format!("{}{path}", served.base)]))
    };
    get("/ipxe/52:54:00:1a:0b:0c");
    let secret = "secret-callback-token-5f3a";
    get(&format!("/_callback/{secret}/installing"));
    std::thread::sleep(Duration::from_millis(300));
    let out = served.stop();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "{out}");
    // Everything, the start banner too, is a JSON record; no colour codes
    // (stderr is a pipe) and no Rust `Option` spellings.
    assert!(
        out.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('{')),
        "a line that is not JSON:\n{out}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("bootloader is serving"))),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "ANSI escapes in the log:\n{out}");
    assert!(
        !out.contains("Some(") && !out.contains("=None"),
        "an Option was logged as Rust spells it:\n{out}"
    );
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "http"
            && l["span"]["mac"] == "52:54:00:1a:0b:0c"
            && l["span"]["path"] == "/ipxe/52:54:00:1a:0b:0c"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["path"] == "/_callback/<token>/installing"),
        "{out}"
    );
    assert!(
        !out.contains(secret),
        "the callback token was logged:\n{out}"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, from openssl.
fn self_signed(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=bootloader-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = run(Command::new("curl").args(["-s", "-S"]).args(args));
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

/// SSL_ENABLE: the API over HTTPS with the configured certificate (curl
/// verifies it), plain HTTP redirecting the API there with
/// SSL_SET_REDIRECT, while what firmware fetches stays on plain HTTP. A key
/// that does not match the certificate stops the start with a message.
#[test]
fn tls_serves_the_api_and_keeps_boot_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server");
    let cert_file = dir.path().join("server.crt").display().to_string();
    let tls_port = free_port();
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let data = dir.path().join("data").display().to_string();
    let served = Served::start_with(
        dir.path(),
        free_port(),
        &["--data-dir", &data],
        &[
            ("SSL_ENABLE", "true"),
            ("SSL_CERTIFICATE_CONTENTS", &cert),
            ("SSL_KEY_CONTENTS", &key),
            ("SSL_SET_REDIRECT", "true"),
            ("BOOTLOADER_TLS_LISTEN", &tls_listen),
        ],
    );
    let token = served.token().expect("first token");
    let auth = format!("Authorization: Token {token}");
    assert!(
        served
            .output()
            .contains(&format!("HTTPS:    https://{tls_listen}"))
    );

    let https = format!("https://{tls_listen}/api/v1/servers");
    let (ok, body) = curl(&["--cacert", &cert_file, "-H", &auth, &https]);
    assert!(ok && body.contains("\"results\""), "{body}");
    // Without our CA, curl refuses the certificate: it is really TLS.
    let (ok, body) = curl(&["-H", &auth, &https]);
    assert!(!ok, "{body}");

    // Plain HTTP: the API is redirected (308 keeps the method), boot is not.
    let (_, head) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{}/api/v1/servers?limit=5", served.base),
    ]);
    assert_eq!(head, format!("308 {https}?limit=5"));
    let (_, boot) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/boot.ipxe", served.base),
    ]);
    assert_eq!(boot, "200");
    let (_, ready) = curl(&[&format!("{}/readyz", served.base)]);
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert!(
        ready["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "https" && l["up"] == true),
        "{ready}"
    );
    // The console over HTTPS: its session cookie is Secure; on plain HTTP
    // it is sent to HTTPS like the API.
    let out = passwd(
        dir.path(),
        &["user", "passwd", "admin", "--data-dir", &data],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (ok, head) = curl(&[
        "--cacert",
        &cert_file,
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--data",
        "name=admin&password=correct+horse+battery&next=/ui/",
        &format!("https://{tls_listen}/ui/sign-in"),
    ]);
    assert!(ok, "{head}");
    let cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: bl_session=")
        })
        .unwrap_or_else(|| panic!("a session cookie: {head}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let (_, head) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{}/ui/servers", served.base),
    ]);
    assert_eq!(head, format!("308 https://{tls_listen}/ui/servers"));
    served.stop();

    // Another key: the start fails and says why.
    let (_, other_key) = self_signed(dir.path(), "other");
    let out = run(bootloader(
        dir.path(),
        &[
            "serve",
            "--http-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            &data,
        ],
    )
    .env("SSL_ENABLE", "true")
    .env("SSL_CERTIFICATE_CONTENTS", &cert)
    .env("SSL_KEY_CONTENTS", &other_key)
    .env("BOOTLOADER_TLS_LISTEN", "127.0.0.1:0"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("do not go together"),
        "{}",
        text(&out.stderr)
    );
}
