//! Test harness: a real daemon (the same start-up as `bootloader serve`) on
//! 127.0.0.1:0, backed by a fresh SQLite file or a fresh PostgreSQL
//! database, driven over HTTP.

pub mod amqp;
pub mod binary;
pub mod netns;
pub mod peers;
pub mod vmbmc;
pub mod webdriver;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bootloader::config::{self, CliOverrides, Config};
use bootloader_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL tests create their databases. CI starts a server
/// on 127.0.0.1:5432 with trust auth for local users.
pub fn pg_admin_url() -> String {
    std::env::var("BOOTLOADER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("randomness");
    hex::encode(b)
}

/// A database (or data dir) that outlives daemon restarts.
pub struct TestStore {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub pg_database: Option<String>,
    pub env: HashMap<String, String>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = HashMap::new();
        env.insert(
            "BOOTLOADER_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        );
        let mut pg_database = None;
        if backend == Backend::Postgres {
            let name = format!("bl_test_{}", random_suffix());
            let admin = pg_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is needed for these tests ({admin}): {e}. The README's test command starts it.")
            });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            env.insert("DATABASE_URL".to_string(), format!("{base}/{name}"));
            pg_database = Some(name);
        }
        Self {
            backend,
            dir,
            pg_database,
            env,
        }
    }

    /// A data dir for a daemon on the PostgreSQL database at `url` (a
    /// private server the test manages; not dropped).
    pub fn on_postgres(url: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = HashMap::new();
        env.insert(
            "BOOTLOADER_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        );
        env.insert("DATABASE_URL".to_string(), url.to_string());
        Self {
            backend: Backend::Postgres,
            dir,
            pg_database: None,
            env,
        }
    }

    /// Another daemon's data dir on the same database, with the same
    /// secret key (the first daemon must have started): a second daemon
    /// sharing the PostgreSQL database. It does not drop the database.
    pub fn sibling(&self) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            self.dir.path().join("secret.key"),
            dir.path().join("secret.key"),
        )
        .expect("the first daemon's secret key");
        let mut env = self.env.clone();
        env.insert(
            "BOOTLOADER_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        );
        Self {
            backend: self.backend,
            dir,
            pg_database: None,
            env,
        }
    }

    pub fn config(&self) -> Config {
        let path: PathBuf = self.dir.path().join("bootloader.toml");
        if !path.exists() {
            std::fs::write(&path, "").expect("write config");
        }
        let env = self.env.clone();
        let lookup = move |k: &str| env.get(k).cloned();
        config::load(Some(&path), &lookup, &CliOverrides::default()).expect("config")
    }

    pub async fn drop_database(&self) {
        if let Some(name) = &self.pg_database
            && let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// A running daemon.
pub struct Daemon {
    pub base: String,
    pub token: String,
    pub store: Arc<dyn Store>,
    client: reqwest::Client,
    /// A configuration sent here is applied as on SIGHUP.
    pub reload: tokio::sync::mpsc::Sender<Config>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Starts a daemon on `store`. On an empty store the first staff
    /// token is created; otherwise `token` is reused.
    pub async fn start(test_store: &TestStore, token: Option<String>) -> Self {
        let config = test_store.config();
        let store = bootloader::app::open_store(&config)
            .await
            .expect("open store");
        let first = bootloader::app::bootstrap_first_user(store.as_ref())
            .await
            .expect("bootstrap");
        let token = first
            .or(token)
            .expect("a token: either first start or passed in");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listeners = bootloader::app::Listeners {
            http: listener,
            tftp: None,
            dhcp: bootloader::dhcp::sockets::bind(&config.boot.dhcp).expect("bind DHCP"),
            ndp: Vec::new(),
            https: None,
        };
        let (tx, rx) = oneshot::channel();
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        let run_store = store.clone();
        let handle = tokio::spawn(async move {
            bootloader::app::run_with_reloads(
                &config,
                run_store,
                listeners,
                async {
                    let _ = rx.await;
                },
                Some(reloads),
            )
            .await
            .expect("daemon run");
        });
        Self {
            base: format!("http://{addr}"),
            token,
            store,
            client: reqwest::Client::new(),
            reload,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) -> String {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("daemon task");
        }
        self.token.clone()
    }

    /// A request with an explicit token (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<RequestBody>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("/api") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1{path}", self.base)
        };
        let mut req = self.client.request(method, url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        req = match body {
            Some(RequestBody::Json(v)) => req.json(&v),
            Some(RequestBody::Text(t, ct)) => req.header("Content-Type", ct).body(t),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call_as(Some(&self.token.clone()), Method::GET, path, None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(
            Some(&self.token.clone()),
            Method::POST,
            path,
            Some(RequestBody::Json(body)),
        )
        .await
    }

    pub async fn post_text(
        &self,
        path: &str,
        text: &str,
        content_type: &'static str,
    ) -> (StatusCode, Value) {
        self.call_as(
            Some(&self.token.clone()),
            Method::POST,
            path,
            Some(RequestBody::Text(text.to_string(), content_type)),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(
            Some(&self.token.clone()),
            Method::PATCH,
            path,
            Some(RequestBody::Json(body)),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call_as(Some(&self.token.clone()), Method::DELETE, path, None)
            .await
    }

    /// The name under which this daemon reported itself as an agent,
    /// once its first report (a moment after it starts) has landed; the
    /// only one on its database.
    pub async fn registered(&self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, agents) = self.get("/agents").await;
            if let Some(name) = agents["results"][0]["name"].as_str() {
                return name.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never registered: {agents}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Creates location `dc1` with network 10.0.0.0/24.
    pub async fn seed_location(&self) {
        let (s, b) = self
            .post("/locations", serde_json::json!({"name": "dc1"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = self
            .post(
                "/networks",
                serde_json::json!({"location": "dc1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1",
                    "nameservers": ["10.0.0.2", "10.0.0.3"], "domain": "dc1.example.com",
                    "pool": {"start": "10.0.0.100", "end": "10.0.0.200"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
}

pub enum RequestBody {
    Json(Value),
    Text(String, &'static str),
}

/// Every shipped profile: (file name, text).
pub fn shipped_profiles() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("profiles dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .map(|p| {
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read_to_string(&p).expect("read profile"),
            )
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 3,
        "profiles/ should ship at least three profiles"
    );
    out
}

/// A profile named `name` (version 1.0) that serves `ipxe/<mac>` over HTTP
/// (a script naming the callback base) and then waits for the callbacks
/// `preparing` and `installing`; `complete` echoes.
pub fn callback_profile(name: &str) -> String {
    format!(
        r#"kind: Profile
apiVersion: v1alpha1
name: {name}
version: 1.0
timeout: 2m
workflow:
  new: {{}}
  preparing:
    - action: serve_file
      via: http
      filename: 'ipxe/{{{{ mac_address }}}}'
      source:
        type: template
        name: script
    - action: expect_callback
      name: preparing
  installing:
    - action: expect_callback
      name: installing
  configuring: []
  postconfiguring: []
  complete:
    - action: echo
      message: '{{{{ fqdn }}}} is done'
templates:
  script:
    type: template
    contents: |
      #!ipxe
      echo calls back at {{{{ callback_base }}}}
"#
    )
}

/// The callback base in the script that an active deployment of
/// `callback_profile` serves at `base`/ipxe/`mac`, pointed at `base`.
pub async fn callback_base(base: &str, mac: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/ipxe/{mac}")).await {
            let local = r.headers().contains_key("x-bootloader-decision");
            let text = r.text().await.unwrap_or_default();
            if !local
                && let Some(found) = text.split_whitespace().find(|w| w.contains("/_callback/"))
            {
                let (_, path) = found.split_once("/_callback/").unwrap();
                return format!("{base}/_callback/{path}");
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the script was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Bytes a SQLite store holds on disk in `dir` (database and its journal).
pub fn store_bytes(dir: &std::path::Path) -> u64 {
    ["bootloader.sqlite3", "bootloader.sqlite3-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}
