//! What booting machines fetch over HTTP, on SQLite and PostgreSQL:
//! `/boot.ipxe`, `/ipxe/<mac>` (deployment script or local boot), files a
//! deployment serves, `/static/` with Range, callbacks, and what of it the
//! timeline keeps.

mod common;

use std::time::Duration;

use bootloader::model::CallbackToken;
use bootloader::store::boot::{DeploymentState, Via};
use common::{Backend, Daemon, TestStore};
use reqwest::StatusCode;
use serde_json::json;

const MAC: &str = "52:54:00:12:34:56";

async fn setup(backend: Backend) -> (TestStore, Daemon, i64, CallbackToken) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "n1.dc1.example.com", "location": "dc1",
                "interfaces": [{"name": "eth0", "mac": MAC}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml"),
    )
    .unwrap();
    let (s, p) = d.post_text("/profiles", &yaml, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let token = CallbackToken::generate().unwrap();
    let dep = d
        .store
        .create_deployment(
            &"n1.dc1.example.com".parse().unwrap(),
            p["id"].as_i64().unwrap(),
            &token.hash(),
        )
        .await
        .unwrap();
    d.store
        .serve_file(
            dep.id,
            Via::Http,
            &format!("ipxe/{MAC}"),
            b"#!ipxe\necho deploying\n",
        )
        .await
        .unwrap();
    d.store
        .serve_file(dep.id, Via::Http, "preseed/n1.cfg", b"d-i preseed\n")
        .await
        .unwrap();
    (ts, d, dep.id, token)
}

async fn fetch(
    d: &Daemon,
    path: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", d.base));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn scripts_files_and_static(backend: Backend) {
    let (ts, d, dep, _) = setup(backend).await;

    let (s, _, body) = fetch(&d, "/boot.ipxe", None).await;
    assert_eq!(s, StatusCode::OK);
    let script = text(&body);
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(script.contains("/ipxe/${netX/mac}"), "{script}");

    // The deployment's script, whatever the MAC's spelling (iPXE escapes
    // the colons).
    for spelling in [MAC, "52-54-00-12-34-56", "52%3A54%3A00%3A12%3A34%3A56"] {
        let (s, _, body) = fetch(&d, &format!("/ipxe/{spelling}"), None).await;
        assert_eq!(s, StatusCode::OK, "{spelling}");
        assert_eq!(text(&body), "#!ipxe\necho deploying\n", "{spelling}");
    }
    // An unknown MAC boots its disk; garbage is a 400.
    let (s, h, body) = fetch(&d, "/ipxe/52:54:00:00:00:99", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-bootloader-decision"], "local-boot");
    assert!(text(&body).contains("exit"), "{}", text(&body));
    let (s, _, _) = fetch(&d, "/ipxe/not-a-mac", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Files a deployment serves, at their own paths.
    let (s, _, body) = fetch(&d, "/preseed/n1.cfg", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text(&body), "d-i preseed\n");

    // Static files with Range.
    let static_dir = ts.config().boot.static_dir;
    std::fs::create_dir_all(static_dir.join("payload")).unwrap();
    let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(static_dir.join("payload/vmlinuz"), &kernel).unwrap();
    let (s, _, body) = fetch(&d, "/static/payload/vmlinuz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, kernel);
    let (s, h, body) = fetch(&d, "/static/payload/vmlinuz", Some("bytes=1000-1999")).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 1000-1999/100000");
    assert_eq!(body, kernel[1000..2000]);
    let (s, _, _) = fetch(&d, "/static/../secret.key", None).await;
    assert_ne!(s, StatusCode::OK);

    // Once the deployment ends, nothing of it is served.
    d.store
        .set_deployment_state(dep, DeploymentState::Cancelled)
        .await
        .unwrap();
    let (_, h, body) = fetch(&d, &format!("/ipxe/{MAC}"), None).await;
    assert_eq!(h["x-bootloader-decision"], "local-boot");
    assert!(
        text(&body).contains("no active deployment"),
        "{}",
        text(&body)
    );
    let (s, _, _) = fetch(&d, "/preseed/n1.cfg", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The timeline has the requests under the MAC.
    let mut events = Vec::new();
    for _ in 0..50 {
        let (_, t) = d.get("/servers/n1.dc1.example.com/timeline").await;
        events = t["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests: Vec<String> = events
        .iter()
        .map(|e| e["request"].as_str().unwrap().to_string())
        .collect();
    assert!(
        requests.contains(&format!("GET /ipxe/{MAC}")),
        "{requests:?}"
    );
    d.stop().await;
    ts.drop_database().await;
}

async fn callbacks_are_recorded_once(backend: Backend) {
    let (ts, d, dep, token) = setup(backend).await;
    let base = format!("{}/_callback/{}", d.base, token.expose());
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/preparing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A replay is a no-op, not an error.
    let r = client
        .get(format!("{base}/preparing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("already"));
    let r = client
        .post(format!("{base}/installing"))
        .body("installer log excerpt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // An unknown token, a bad name.
    let r = client
        .get(format!("{}/_callback/{}/preparing", d.base, "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .get(format!("{base}/bad%20name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Too large a body is refused, not stored.
    let r = client
        .post(format!("{base}/configuring"))
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let got = d.store.callbacks(dep).await.unwrap();
    let names: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["preparing", "installing"]);
    assert_eq!(got[1].method, "POST");
    assert_eq!(got[1].body, "installer log excerpt");

    // A finished deployment's token no longer works.
    d.store
        .set_deployment_state(dep, DeploymentState::Complete)
        .await
        .unwrap();
    let r = client
        .get(format!("{base}/configuring"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    d.stop().await;
    ts.drop_database().await;
}

macro_rules! battery {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

battery!(scripts_files_and_static, callbacks_are_recorded_once);
