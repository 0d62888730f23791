//! Notifications against local receivers on 127.0.0.1: a Slack-like
//! webhook (an HTTP server that fails its first requests with 503, so the
//! daemon must retry) and a real SMTP server (aiosmtpd writing a maildir).
//! A deployment that completes and one that fails are each announced when
//! created and when finished, once per channel; a webhook that refuses for
//! good (404) does not hold the email back.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use common::{Backend, Daemon, TestStore};
use serde_json::{Value, json};

/// A webhook receiver: answers `fail_first` requests with 503 (or every
/// request with `always`), then 200; keeps what it was sent.
struct Hook {
    port: u16,
    got: Arc<Mutex<Vec<Value>>>,
}

#[derive(Clone)]
struct HookState {
    got: Arc<Mutex<Vec<Value>>>,
    calls: Arc<Mutex<u32>>,
    fail_first: u32,
    always: Option<StatusCode>,
}

async fn hook(State(s): State<HookState>, body: String) -> StatusCode {
    let n = {
        let mut calls = s.calls.lock().unwrap();
        *calls += 1;
        *calls
    };
    if let Some(status) = s.always {
        return status;
    }
    if n <= s.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    s.got
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    StatusCode::OK
}

impl Hook {
    async fn start(fail_first: u32, always: Option<StatusCode>) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let state = HookState {
            got: Arc::clone(&got),
            calls: Arc::new(Mutex::new(0)),
            fail_first,
            always,
        };
        let app = axum::Router::new()
            .route("/services/T0/B0/secret", axum::routing::post(hook))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/services/T0/B0/secret", self.port)
    }

    fn texts(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// aiosmtpd, from Debian's python3-aiosmtpd, delivering to a maildir.
struct Smtp {
    port: u16,
    maildir: tempfile::TempDir,
    child: std::process::Child,
}

impl Smtp {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("/usr/bin/python3 -m aiosmtpd (the README's test command installs python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            port,
            maildir,
            child,
        }
    }

    /// Every message delivered, as text.
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail").join("new");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const QUICK: &str = "kind: Profile\napiVersion: v1alpha1\nname: quick\nversion: 1.0\nworkflow:\n  new: {}\n  preparing:\n    - action: echo\n      message: hello\n  installing: {}\n  configuring: {}\n  postconfiguring: {}\n  complete: {}\n";

const SILENT: &str = "kind: Profile\napiVersion: v1alpha1\nname: silent\nversion: 1.0\nworkflow:\n  new: {}\n  preparing:\n    - action: expect_callback\n      name: never\n      timeout: 1s\n  installing: {}\n  configuring: {}\n  postconfiguring: {}\n  complete: {}\n";

async fn daemon(hook: &Hook, smtp: &Smtp) -> (TestStore, Daemon) {
    let mut store = TestStore::new(Backend::Sqlite).await;
    for (k, v) in [
        ("SLACK_HOOK_URL", hook.url()),
        ("SLACK_CHANNEL", "#deploys".to_string()),
        (
            "BOOTLOADER_EMAIL_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        ),
        ("BOOTLOADER_EMAIL_FROM", "bootloader@example.com".into()),
        (
            "BOOTLOADER_EMAIL_TO",
            "ops@example.com, oncall@example.com".into(),
        ),
    ] {
        store.env.insert(k.into(), v);
    }
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    for (fqdn, profile) in [
        ("n1.dc1.example.com", QUICK),
        ("n2.dc1.example.com", SILENT),
    ] {
        let (s, b) = d
            .post("/servers", json!({"fqdn": fqdn, "location": "dc1"}))
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        let (s, b) = d.post_text("/profiles", profile, "application/yaml").await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
    }
    (store, d)
}

async fn deploy(d: &Daemon, fqdn: &str, profile: &str) {
    let (s, b) = d
        .post("/deployments", json!({"server": fqdn, "profile": profile}))
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
}

fn wait_until(what: &str, done: impl Fn() -> bool, show: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never {what}: {}", show());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_are_announced_on_slack_and_by_email() {
    let hook = Hook::start(2, None).await;
    let smtp = Smtp::start();
    let (_store, d) = daemon(&hook, &smtp).await;
    deploy(&d, "n1.dc1.example.com", "quick==1.0").await;
    deploy(&d, "n2.dc1.example.com", "silent==1.0").await;

    // Four events: two created, one completed, one failed; the webhook's
    // first two 503s were retried.
    tokio::task::block_in_place(|| {
        wait_until(
            "four on Slack",
            || hook.texts().len() >= 4,
            || format!("{:?}", hook.texts()),
        );
        wait_until(
            "four emails",
            || smtp.messages().len() >= 4,
            || format!("{:?}", smtp.messages()),
        );
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts = hook.texts();
    assert_eq!(texts.len(), 4, "once each: {texts:#?}");
    let has = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(
        has("n1.dc1.example.com: deployment 1 (quick==1.0) started"),
        1,
        "{texts:#?}"
    );
    assert_eq!(
        has("n1.dc1.example.com: deployment 1 (quick==1.0) completed"),
        1,
        "{texts:#?}"
    );
    assert_eq!(
        has("n2.dc1.example.com: deployment 2 (silent==1.0) failed"),
        1,
        "{texts:#?}"
    );
    let failed = texts.iter().find(|t| t.contains("failed")).unwrap();
    assert!(
        failed.contains("Why: ") && failed.contains("timed out"),
        "{failed}"
    );
    assert!(failed.contains("/api/v1/deployments/2/log"), "{failed}");
    assert_eq!(hook.got.lock().unwrap()[0]["channel"], "#deploys");

    let mails = smtp.messages();
    assert_eq!(mails.len(), 4, "{mails:#?}");
    let failed = mails
        .iter()
        .find(|m| {
            m.contains(
                "Subject: [bootloader] n2.dc1.example.com: deployment 2 (silent==1.0) failed",
            )
        })
        .unwrap_or_else(|| panic!("{mails:#?}"));
    assert!(failed.contains("From: bootloader@example.com"), "{failed}");
    assert!(
        failed.contains("ops@example.com") && failed.contains("oncall@example.com"),
        "{failed}"
    );
    let (_, st) = d.get("/events/status").await;
    assert_eq!(st["notifications"]["sent"], 8, "{st}");
    assert_eq!(st["notifications"]["refused"], 0, "{st}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_refuses_does_not_hold_the_email_back() {
    let hook = Hook::start(0, Some(StatusCode::NOT_FOUND)).await;
    let smtp = Smtp::start();
    let (_store, d) = daemon(&hook, &smtp).await;
    deploy(&d, "n1.dc1.example.com", "quick==1.0").await;
    tokio::task::block_in_place(|| {
        wait_until(
            "two emails",
            || smtp.messages().len() >= 2,
            || format!("{:?}", smtp.messages()),
        );
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = d.get("/events/status").await;
        if st["notifications"]["refused"] == 2 {
            let error = st["notifications"]["last_error"].as_str().unwrap();
            assert!(error.contains("404"), "{st}");
            // The webhook's secret path is not in what the daemon reports.
            assert!(!error.contains("secret"), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(hook.texts().is_empty());
    d.stop().await;
}
