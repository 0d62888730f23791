//! The real `bootloader serve` binary as a child process, for tests that
//! kill it (SIGKILL) and start it again on the same data dir.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Binary {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub token: String,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    client: reqwest::Client,
}

/// A port outside the ephemeral range (32768-60999): after a SIGKILL the
/// daemon binds it again, and a client connection of a test running beside
/// this one must not have taken it meanwhile.
fn stable_port() -> u16 {
    (0..1000)
        .map(|i| 20_000 + (std::process::id() as u16 % 5_000) + i * 7 % 5_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

impl Binary {
    /// Starts the daemon on a new data dir with `env` added, and reads the
    /// staff token its first start prints.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = stable_port();
        let mut b = Self {
            dir,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            client: reqwest::Client::new(),
        };
        let mut child = b.spawn();
        b.token = {
            use std::io::BufRead;
            let out = child.stdout.take().unwrap();
            let mut lines = std::io::BufReader::new(out).lines();
            loop {
                let line = lines
                    .next()
                    .unwrap_or_else(|| panic!("no token line:\n{}", b.log()))
                    .unwrap();
                if line.contains("Its API token is in") {
                    let path = b.dir.path().join("admin-token");
                    break std::fs::read_to_string(path).unwrap().trim().to_string();
                }
            }
        };
        b.child = Some(child);
        b.wait_up().await;
        b
    }

    fn spawn(&self) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootloader"));
        cmd.arg("serve")
            .env("BOOTLOADER_DATA_DIR", self.dir.path())
            .env("BOOTLOADER_HTTP_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("BOOTLOADER_URL", &self.base)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("daemon.log"))
                    .unwrap(),
            );
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    /// What the daemon logged so far (all its starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .client
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "daemon did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: nothing is flushed, nothing is handed over.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Some(self.spawn());
        self.wait_up().await;
    }

    /// A request to the API with the staff token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/api/v1{path}", self.base))
            .header("Authorization", format!("Token {}", self.token))
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.api(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// POSTs JSON and asserts `201 Created`.
    pub async fn create(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .api(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::CREATED, "{path}: {body}");
        body
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}
