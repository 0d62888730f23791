//! The deployment engine over loopback: a profile walked from `new` to
//! `complete` by callbacks made as an installer would make them (to the
//! URL the served script carries), a callback that arrives before its step,
//! a machine that never calls back (error by timeout, with a reason), cancel
//! and repeat, and a daemon killed with SIGKILL mid-deployment that finishes
//! the deployment after it restarts. On SQLite and PostgreSQL.

use crate::common;

use std::time::{Duration, Instant};

use common::binary::Binary;
use common::{Backend, Daemon, TestStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAC: &str = "52:54:00:de:00:01";

fn walk_profile(timeout: &str) -> String {
    format!(
        r#"kind: Profile
apiVersion: v1alpha1
name: walk
version: 1.0
timeout: {timeout}
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
  postconfiguring:
    - action: delete_file
      on: http
      filename: 'ipxe/{{{{ mac_address }}}}'
  complete:
    - action: echo
      message: 'walk: {{{{ fqdn }}}} is done'
  error:
    - action: echo
      message: 'walk: {{{{ fqdn }}}} failed'
  cleanup:
    - action: echo
      message: 'walk: cleaning up after {{{{ fqdn }}}}'
    - action: expect_callback
      name: never
      timeout: 3s
templates:
  script:
    type: template
    contents: |
      #!ipxe
      echo {{{{ hostname }}}} calls back at {{{{ callback_base }}}}
"#
    )
}

/// Registers `fqdn` in location dc1 with one interface, `mac`, and the
/// reserved address `ipv4` if given.
async fn add_server(d: &Daemon, fqdn: &str, mac: &str, ipv4: Option<&str>) {
    let mut nic = json!({"name": "eth0", "mac": mac});
    if let Some(ip) = ipv4 {
        nic["ipv4"] = json!(ip);
    }
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": fqdn, "location": "dc1", "interfaces": [nic]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn setup(backend: Backend, timeout: &str) -> (TestStore, Daemon) {
    let store = TestStore::new(backend).await;
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    add_server(&d, "w1.dc1.example.com", MAC, Some("10.0.0.21")).await;
    let (s, b) = d
        .post_text("/profiles", &walk_profile(timeout), "application/yaml")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (store, d)
}

async fn deploy(d: &Daemon) -> Value {
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "w1.dc1.example.com", "profile": "walk==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

/// The machine's script, once the engine serves it; returns its callback
/// base.
async fn callback_base(d: &Daemon) -> String {
    let url = format!("{}/ipxe/{MAC}", d.base);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(&url).await.unwrap();
        let local = r.headers().contains_key("x-bootloader-decision");
        let text = r.text().await.unwrap();
        if !local {
            let base = text
                .split_whitespace()
                .find(|w| w.contains("/_callback/"))
                .unwrap_or_else(|| panic!("no callback base in {text:?}"));
            assert!(text.contains("w1 calls back"), "{text}");
            // BOOTLOADER_URL is the default; the test daemon listens on
            // another port.
            let (_, path) = base.split_once("/_callback/").unwrap();
            return format!("{}/_callback/{path}", d.base);
        }
        assert!(Instant::now() < deadline, "the script was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_state(d: &Daemon, id: i64, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) = d.get(&format!("/deployments/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["state"] == want {
            return b;
        }
        assert!(Instant::now() < deadline, "never reached {want}: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log(d: &Daemon, id: i64) -> Vec<String> {
    let (s, b) = d.get(&format!("/deployments/{id}/log")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["level"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect()
}

async fn walks_to_complete(backend: Backend) {
    let (store, d) = setup(backend, "30s").await;
    let dep = deploy(&d).await;
    let id = dep["id"].as_i64().unwrap();
    assert_eq!(dep["profile"], "walk==1.0");
    // One active deployment per server.
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "w1.dc1.example.com", "profile": "walk==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    let base = callback_base(&d).await;
    // Export URLs: the profile's templates rendered for this deployment,
    // and a user's SSH keys, for the holder of the deployment's token.
    let token = base
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMqy0rTqL0y7kZ3mN4o5p6q7r8s9t0u1v2w3x4y5z6A7 ops@desk";
    let (s, b) = d
        .post("/ssh_authorized_keys", json!({"user": "admin", "key": key}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let base_url = d.base.clone();
    let export = |path: String| {
        let url = format!("{base_url}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (s, text) = export(format!("/export/file/{id}/{token}/walk/1.0/script")).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.starts_with("#!ipxe\necho w1 calls back at "), "{text}");
    let (s, text) = export(format!("/export/sshkeys/{id}/{token}/admin")).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(text, format!("{key}\n"));
    for bad in [
        format!("/export/file/{id}/{}/walk/1.0/script", "0".repeat(64)),
        format!("/export/file/{id}/{token}/walk/2.0/script"),
        format!("/export/file/{id}/{token}/walk/1.0/nope"),
        format!("/export/file/999999/{token}/walk/1.0/script"),
        format!("/export/sshkeys/{id}/{}/admin", "0".repeat(64)),
    ] {
        let (s, _) = export(bad.clone()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}");
    }
    // The installer is fast: `installing` arrives before its step starts,
    // and is remembered. It comes as the older system's templates write
    // it, `{{ callback_base }}/installing`: the doubled slash is merged.
    // A name the profile never expects is refused.
    let r = reqwest::get(format!("{base}/installing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::get(format!("{base}made-up")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let b = wait_state(&d, id, "preparing").await;
    assert_eq!(b["step"], "preparing");
    // The installer reports with a POST; its body goes into the log (a
    // NUL as a bad byte is, which PostgreSQL's text could not hold).
    let r = reqwest::Client::new()
        .post(format!("{base}preparing"))
        .body("disks: sda 480G\0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let done = wait_state(&d, id, "complete").await;
    assert_eq!(done["progress"], 100, "{done}");
    // The callbacks' rows went with the deployment (the log keeps them).
    assert!(d.store.callbacks(id).await.unwrap().is_empty());
    // The last event of the deployment is its final record, as the API
    // shows it once the step is cleared (the `complete` step's own actions
    // run after the state is `complete`).
    let mut last = None;
    let mut shown = Value::Null;
    for _ in 0..50 {
        shown = d.get(&format!("/deployments/{id}")).await.1;
        let events = d.store.pending_events(10_000).await.unwrap();
        last = events
            .into_iter()
            .rfind(|e| e.routing_key.starts_with("deployment.") && e.payload["id"] == id);
        if shown["step"].is_null() && last.as_ref().is_some_and(|e| e.payload["step"].is_null()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = last.expect("deployment events");
    assert_eq!(last.routing_key, "deployment.complete");
    for field in ["state", "step", "progress", "finished_at", "error"] {
        assert_eq!(
            last.payload[field], shown[field],
            "{field}: {} vs {shown}",
            last.payload
        );
    }
    assert!(done["finished_at"].is_string(), "{done}");
    // After the end, the export URLs are gone too.
    let (s, _) = export(format!("/export/file/{id}/{token}/walk/1.0/script")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A replay after the end: the token is finished.
    let r = reqwest::get(format!("{base}preparing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The script is not served any more.
    let r = reqwest::get(format!("{}/ipxe/{MAC}", d.base))
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-bootloader-decision"));

    let lines = log(&d, id).await;
    let text = lines.join("\n");
    for needle in [
        "state preparing",
        "preparing #1 serve_file http ipxe/{{ mac_address }}: done",
        "serving http ipxe/52:54:00:de:00:01",
        "preparing #2 expect_callback preparing: done",
        "callback preparing received (POST): disks: sda 480G\u{FFFD}",
        "installing #1 expect_callback installing: done",
        "state configuring",
        "state postconfiguring",
        "stopped serving http ipxe/52:54:00:de:00:01",
        "walk: w1.dc1.example.com is done",
        "state complete",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
    let (_, list) = d
        .get("/deployments?server=w1.dc1.example.com&state=complete")
        .await;
    assert_eq!(list["count"], 1, "{list}");
    d.stop().await;
    store.drop_database().await;
}

async fn silent_machine_times_out(backend: Backend) {
    let (store, d) = setup(backend, "3s").await;
    let id = deploy(&d).await["id"].as_i64().unwrap();
    // The machine fetched its script once, then went quiet.
    callback_base(&d).await;
    let b = wait_state(&d, id, "error").await;
    let error = b["error"].as_str().unwrap();
    // The profile's error step runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log(&d, id)
        .await
        .join("\n")
        .contains("walk: w1.dc1.example.com failed")
    {
        assert!(Instant::now() < deadline, "the error step did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        error.contains("preparing #2 expect_callback preparing")
            && error.contains("timed out in step preparing")
            && error.contains("GET /ipxe/52:54:00:de:00:01"),
        "{error}"
    );
    // The error's files are not served, and the server may deploy again.
    let r = reqwest::get(format!("{}/ipxe/{MAC}", d.base))
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-bootloader-decision"));
    let (s, b) = d
        .post(&format!("/deployments/{id}/repeat"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    d.stop().await;
    store.drop_database().await;
}

async fn cancel_and_repeat(backend: Backend) {
    let (store, d) = setup(backend, "5m").await;
    let id = deploy(&d).await["id"].as_i64().unwrap();
    let first_base = callback_base(&d).await;
    let (s, b) = d
        .post(&format!("/deployments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "cancelled");
    // The profile's cleanup step runs to its end, once: its echo, then a
    // wait that times out; then nothing is left to run.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = d.get(&format!("/deployments/{id}")).await;
        if b["step"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cleanup step never ended: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = log(&d, id).await.join("\n");
    assert_eq!(
        text.matches("walk: cleaning up after w1.dc1.example.com")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("cleanup #2 expect_callback never: timed out"),
        "{text}"
    );
    // Its files stop being served at once; its token is finished.
    let r = reqwest::get(format!("{}/ipxe/{MAC}", d.base))
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-bootloader-decision"));
    let r = reqwest::get(format!("{first_base}preparing"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Cancelling twice is a conflict, not a crash.
    let (s, b) = d
        .post(&format!("/deployments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    let (s, again) = d
        .post(&format!("/deployments/{id}/repeat"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["repeat_of"], id);
    assert_eq!(again["profile"], "walk==1.0");
    let second_base = callback_base(&d).await;
    assert_ne!(first_base, second_base, "a repeat gets a new token");
    let second = again["id"].as_i64().unwrap();
    for step in ["preparing", "installing"] {
        let r = reqwest::get(format!("{second_base}{step}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    wait_state(&d, second, "complete").await;

    // Bad requests.
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "nope.dc1.example.com", "profile": "walk==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["fields"]["server"].is_array(), "{b}");
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "w1.dc1.example.com", "profile": "walk==9"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["fields"]["profile"].is_array(), "{b}");
    let (s, _) = d.get("/deployments/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    d.stop().await;
    store.drop_database().await;
}

on_both_backends!(
    deployments_share_identical_files,
    walks_to_complete,
    silent_machine_times_out,
    cancel_and_repeat
);

/// The real binary, killed with SIGKILL while a deployment waits for its
/// second callback, restarted: the deployment goes on where it stood and
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_deployment_then_resume() {
    let mut daemon = Binary::start(&[]).await;
    daemon.create("/locations", json!({"name": "dc1"})).await;
    daemon
        .create(
            "/servers",
            json!({"fqdn": "w1.dc1.example.com", "location": "dc1", "interfaces": [{"name": "eth0", "mac": MAC}]}),
        )
        .await;
    let r = daemon
        .api(reqwest::Method::POST, "/profiles")
        .header("Content-Type", "application/yaml")
        .body(walk_profile("2m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = daemon
        .create(
            "/deployments",
            json!({"server": "w1.dc1.example.com", "profile": "walk==1.0"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let client = reqwest::Client::new();
    let script_url = format!("{}/ipxe/{MAC}", daemon.base);
    let cb = loop {
        let text = client
            .get(&script_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(w) = text.split_whitespace().find(|w| w.contains("/_callback/")) {
            break w.to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        client
            .get(format!("{cb}preparing"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Wait until the engine has moved on to `installing`, then kill it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = daemon.get(&format!("/deployments/{id}")).await;
        if b["state"] == "installing" {
            break;
        }
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill();
    daemon.restart().await;
    // The machine's next callback reaches the restarted daemon.
    assert_eq!(
        client
            .get(format!("{cb}installing"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let b = loop {
        let b = daemon.get(&format!("/deployments/{id}")).await;
        if b["state"] == "complete" {
            break b;
        }
        assert!(Instant::now() < deadline, "not complete after restart: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(b["progress"], 100);
}

/// A real HTTP server for url sources that cuts the first download off
/// halfway, then answers the Range request that resumes it. Counts what it
/// was asked.
struct Mirror {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Mirror {
    async fn start(body: Vec<u8>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut first = true;
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let range = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("range: bytes=")
                            .map(str::to_string)
                    })
                    .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
                seen.lock().unwrap().push(
                    head.lines().next().unwrap_or("").to_string()
                        + &range.map(|r| format!(" range={r}")).unwrap_or_default(),
                );
                if !head.starts_with("GET /vmlinuz ") {
                    let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                    continue;
                }
                match range {
                    Some(from) if from < body.len() => {
                        let rest = &body[from..];
                        let _ = conn
                            .write_all(format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                                rest.len(), body.len() - 1, body.len()
                            ).as_bytes())
                            .await;
                        let _ = conn.write_all(rest).await;
                    }
                    _ => {
                        let _ = conn
                            .write_all(format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                                body.len()
                            ).as_bytes())
                            .await;
                        if first {
                            // Half, then the connection drops.
                            first = false;
                            let _ = conn.write_all(&body[..body.len() / 2]).await;
                            let _ = conn.flush().await;
                            continue;
                        }
                        let _ = conn.write_all(&body).await;
                    }
                }
                let _ = conn.shutdown().await;
            }
        });
        Self {
            port,
            requests,
            _task: task,
        }
    }
}

fn fetch_profile(port: u16, sha256: &str) -> String {
    format!(
        r#"kind: Profile
apiVersion: v1alpha1
name: fetch
version: 1.0
timeout: 1m
workflow:
  new: {{}}
  preparing:
    - action: serve_file
      via: http
      filename: 'images/{{{{ hostname }}}}/vmlinuz'
      source:
        type: url
        url: 'http://127.0.0.1:{port}/vmlinuz'
        sha256: '{sha256}'
      retries: 2
    - action: expect_callback
      name: done
  installing: []
  configuring: []
  postconfiguring: []
  complete: []
templates: {{}}
"#
    )
}

/// serve_file from a url: downloaded once (an interrupted download resumes
/// with a Range request), checked against the profile's SHA-256, served
/// with Range from the cache; a repeat uses the cache; a wrong digest fails
/// the deployment with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sources_download_resume_and_serve() {
    use sha2::{Digest, Sha256};
    let body: Vec<u8> = (0..(1024 * 1024 + 17))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = hex::encode(Sha256::digest(&body));
    let mirror = Mirror::start(body.clone()).await;
    let store = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    add_server(&d, "w1.dc1.example.com", MAC, None).await;
    let (s, b) = d
        .post_text(
            "/profiles",
            &fetch_profile(mirror.port, &digest),
            "application/yaml",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, dep) = d
        .post(
            "/deployments",
            json!({"server": "w1.dc1.example.com", "profile": "fetch==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let id = dep["id"].as_i64().unwrap();

    // Served once downloaded.
    let url = format!("{}/images/w1/vmlinuz", d.base);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let r = reqwest::get(&url).await.unwrap();
        if r.status() == StatusCode::OK {
            break r.bytes().await.unwrap();
        }
        let (_, b) = d.get(&format!("/deployments/{id}")).await;
        assert!(Instant::now() < deadline && b["state"] != "error", "{b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), body.len());
    assert!(got[..] == body[..], "served bytes differ");
    let asked = mirror.requests.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(
        asked[1],
        format!("GET /vmlinuz HTTP/1.1 range={}", body.len() / 2),
        "{asked:?}"
    );
    let text = log(&d, id).await.join("\n");
    assert!(
        text.contains("attempt 1 of 3 failed") && text.contains("interrupted after"),
        "{text}"
    );
    // Range from the cache.
    let r = reqwest::Client::new()
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.unwrap()[..] == body[100..200]);
    // Nothing was copied into the database.
    let db = std::fs::metadata(store.dir.path().join("bootloader.sqlite3"))
        .unwrap()
        .len();
    assert!(
        db < body.len() as u64,
        "the database holds the file ({db} bytes)"
    );

    // Cancel, repeat: the cache serves it again without a download.
    let (s, _) = d
        .post(&format!("/deployments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, again) = d
        .post(&format!("/deployments/{id}/repeat"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    let again = again["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = log(&d, again).await.join("\n");
        if text.contains("from the cache)") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mirror.requests.lock().unwrap().len(), 2);
    let (s, _) = d
        .post(&format!("/deployments/{again}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);

    // A profile whose digest is wrong fails, naming both digests.
    let wrong = "0".repeat(64);
    let yaml = fetch_profile(mirror.port, &wrong).replace("version: 1.0", "version: 2.0");
    let (s, b) = d.post_text("/profiles", &yaml, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, dep) = d
        .post(
            "/deployments",
            json!({"server": "w1.dc1.example.com", "profile": "fetch==2.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let b = wait_state(&d, dep["id"].as_i64().unwrap(), "error").await;
    let error = b["error"].as_str().unwrap();
    assert!(error.contains(&digest) && error.contains(&wrong), "{error}");
    d.stop().await;
}

/// A line in /etc/hosts for the length of a test (a name under `.invalid`,
/// which no DNS answers), removed on drop.
struct HostsEntry {
    line: String,
}

impl HostsEntry {
    fn add(ip: &str, name: &str) -> Self {
        use std::io::Write;
        let line = format!("{ip} {name} # bootloader test {}", std::process::id());
        let mut hosts = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .expect("the resolver test writes /etc/hosts (root)");
        writeln!(hosts, "{line}").unwrap();
        Self { line }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string("/etc/hosts") {
            let kept: String = text
                .lines()
                .filter(|l| *l != self.line)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write("/etc/hosts", kept);
        }
    }
}

/// An interface without a reserved address gets its server's name resolved
/// by the resolver (through /etc/hosts here: a test machine has no DNS
/// server) as `ipaddress`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipaddress_falls_back_to_dns() {
    let fqdn = format!("node-{}.bootloader-test.invalid", std::process::id());
    let _hosts = HostsEntry::add("127.0.0.1", &fqdn);
    let store = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    add_server(&d, &fqdn, MAC, None).await;
    let yaml = r#"kind: Profile
apiVersion: v1alpha1
name: say
version: 1.0
workflow:
  new:
    - action: echo
      message: 'address {{ ipaddress }} on {{ interface }}'
  preparing: []
  installing: []
  configuring: []
  postconfiguring: []
  complete: []
templates: {}
"#;
    let (s, b) = d.post_text("/profiles", yaml, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, dep) = d
        .post(
            "/deployments",
            json!({"server": fqdn, "profile": "say==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{dep}");
    let id = dep["id"].as_i64().unwrap();
    wait_state(&d, id, "complete").await;
    let text = log(&d, id).await.join("\n");
    assert!(text.contains("address 127.0.0.1 on eth0"), "{text}");
    d.stop().await;
}

fn shared_profile(name: &str, contents: &str) -> String {
    format!(
        r#"kind: Profile
apiVersion: v1alpha1
name: {name}
version: 1.0
timeout: 1m
workflow:
  new: {{}}
  preparing:
    - action: serve_file
      via: http
      filename: images/common.txt
      source:
        type: template
        name: common
    - action: expect_callback
      name: done
  installing: []
  configuring: []
  postconfiguring: []
  complete: []
templates:
  common:
    type: template
    contents: '{contents}'
"#
    )
}

/// Servers deploying at once may serve one path with the same bytes (a rack
/// installing from one kernel); other bytes at that path are refused, and a
/// finished deployment's files are dropped while the others' stay.
async fn deployments_share_identical_files(backend: Backend) {
    let store = TestStore::new(backend).await;
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    for (i, mac) in [
        "52:54:00:de:01:01",
        "52:54:00:de:01:02",
        "52:54:00:de:01:03",
    ]
    .iter()
    .enumerate()
    {
        add_server(&d, &format!("s{i}.dc1.example.com"), mac, None).await;
    }
    for (name, contents) in [
        ("same", "one kernel line"),
        ("other", "{{ hostname }} line"),
    ] {
        let (s, b) = d
            .post_text(
                "/profiles",
                &shared_profile(name, contents),
                "application/yaml",
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let mut ids = Vec::new();
    for i in 0..2 {
        let (s, b) = d
            .post(
                "/deployments",
                json!({"server": format!("s{i}.dc1.example.com"), "profile": "same==1.0"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["id"].as_i64().unwrap();
        // Both reach their callback: both serve the file.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, b) = d.get(&format!("/deployments/{id}")).await;
            assert_ne!(b["state"], "error", "{b}");
            if b["action_index"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{b}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids.push(id);
    }
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": "s2.dc1.example.com", "profile": "other==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let failed = wait_state(&d, b["id"].as_i64().unwrap(), "error").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("served with other contents"),
        "{failed}"
    );
    // One finishes; the other still serves the file.
    let (s, _) = d
        .post(&format!("/deployments/{}/cancel", ids[0]), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = reqwest::get(format!("{}/images/common.txt", d.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "one kernel line");
    let (s, _) = d
        .post(&format!("/deployments/{}/cancel", ids[1]), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = reqwest::get(format!("{}/images/common.txt", d.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    d.stop().await;
}

/// A daemon stopped gracefully mid-deployment: its tasks end, and the next
/// start resumes the deployment where it stood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_resumes() {
    let (store, d) = setup(Backend::Sqlite, "2m").await;
    let id = deploy(&d).await["id"].as_i64().unwrap();
    let base = callback_base(&d).await;
    let token = d.token.clone();
    d.stop().await;

    let d = Daemon::start(&store, Some(token)).await;
    // The callback URL names the old port; the token is what matters.
    let (_, path) = base.split_once("/_callback/").unwrap();
    let base = format!("{}/_callback/{path}", d.base);
    for step in ["preparing", "installing"] {
        let r = reqwest::get(format!("{base}{step}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let b = wait_state(&d, id, "complete").await;
    assert_eq!(b["progress"], 100);
    d.stop().await;
}
