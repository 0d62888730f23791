//! What booting machines fetch over HTTP, on SQLite and PostgreSQL:
//! `/boot.ipxe`, `/ipxe/<mac>` (deployment script or local boot), files a
//! deployment serves, `/static/` with Range, callbacks, and what of it the
//! timeline keeps.

use crate::common;

use std::time::Duration;

use bootloader_core::model::CallbackToken;
use bootloader_core::model::{DeploymentState, Via};
use common::{Backend, Daemon, TestStore};
use reqwest::StatusCode;
use serde_json::json;

const MAC: &str = "52:54:00:12:34:56";

/// The floods and the memory measurement run one at a time: each would
/// disturb what another measures.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The location and the server whose interface is `MAC`.
async fn add_node(d: &Daemon) {
    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "n1.dc1.example.com", "location": "dc1",
                "interfaces": [{"name": "eth0", "mac": MAC}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// The node, the payload profile, and a deployment of it made through the
/// store (no engine walks it): its id and callback token.
async fn node_deployment(d: &Daemon) -> (i64, CallbackToken) {
    add_node(d).await;
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
    (dep.id, token)
}

async fn setup(backend: Backend) -> (TestStore, Daemon, i64, CallbackToken) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let (id, token) = node_deployment(&d).await;
    d.store
        .serve_file(
            id,
            Via::Http,
            &format!("ipxe/{MAC}"),
            b"#!ipxe\necho deploying\n",
        )
        .await
        .unwrap();
    d.store
        .serve_file(id, Via::Http, "preseed/n1.cfg", b"d-i preseed\n")
        .await
        .unwrap();
    (ts, d, id, token)
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
    // A range across chunks of a larger file, the whole of it, HEAD, and
    // a conditional GET of a file that has not changed.
    let initrd: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(static_dir.join("payload/initrd.img"), &initrd).unwrap();
    let (s, _, body) = fetch(&d, "/static/payload/initrd.img", None).await;
    assert_eq!((s, body == initrd), (StatusCode::OK, true));
    let (s, h, body) = fetch(
        &d,
        "/static/payload/initrd.img",
        Some("bytes=65000-1400000"),
    )
    .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 65000-1400000/3000000");
    assert!(body == initrd[65000..=1_400_000]);
    let url = format!("{}/static/payload/vmlinuz", d.base);
    let client = reqwest::Client::new();
    let r = client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "100000");
    let etag = r.headers()["etag"].clone();
    let r = client
        .get(&url)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let (s, _, _) = fetch(&d, "/static/../secret.key", None).await;
    assert_ne!(s, StatusCode::OK);

    // A link planted in the directory that leads into the data dir (the
    // database, the secret key) serves nothing, even one placed by root;
    // a link that stays inside serves its file.
    let data_dir = ts.config().data_dir;
    std::fs::write(data_dir.join("private.txt"), "not for machines").unwrap();
    std::os::unix::fs::symlink(data_dir.join("private.txt"), static_dir.join("leak")).unwrap();
    std::os::unix::fs::symlink("payload/vmlinuz", static_dir.join("kernel")).unwrap();
    let (s, _, body) = fetch(&d, "/static/leak", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{}", text(&body));
    assert!(!text(&body).contains("not for machines"));
    let (s, _, body) = fetch(&d, "/static/kernel", None).await;
    assert_eq!((s, body.len()), (StatusCode::OK, kernel.len()));
    // A FIFO is not a file: a GET answers at once instead of parking a
    // thread on its open.
    let fifo = static_dir.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (s, _, _) = tokio::time::timeout(Duration::from_secs(10), fetch(&d, "/static/pipe", None))
        .await
        .expect("a FIFO must not block the request");
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = fetch(&d, "/static/payload", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a directory is not served");

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
    // A name the profile does not expect is refused and not stored, as are
    // 2,000 made-up ones with large bodies.
    let r = client
        .post(format!("{base}/made-up"))
        .body(vec![b'x'; 60 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("expects no callback"));
    for i in 0..200 {
        let r = client
            .post(format!("{base}/made-up-{i}"))
            .body(vec![b'x'; 60 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
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

/// The boot path answers from memory on SQLite (`boot_index.rs`): every
/// write that changes an answer is seen by the very next request, with no
/// wait, and so are the answers that were "unknown" or "nothing" before.
async fn boot_answers_follow_every_write(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    add_node(&d).await;
    let other = "52:54:00:00:00:77";
    let decision = |why: &'static str| {
        let d = &d;
        async move {
            let (s, h, body) = fetch(d, &format!("/ipxe/{other}"), None).await;
            assert_eq!(s, StatusCode::OK);
            let body = text(&body);
            assert!(body.contains(why), "expected {why:?}: {body}");
            h.get("x-bootloader-decision")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    // Asked twice, so that the second answer comes from memory.
    for _ in 0..2 {
        decision("unknown MAC").await;
    }
    // The MAC becomes an interface of n1.
    let (s, b) = d
        .post(
            "/interfaces",
            json!({"server": "n1.dc1.example.com", "name": "eth1", "mac": other}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let interface = b["id"].as_i64().unwrap();
    // Read ahead again as at start (the index is on: SQLite's since the
    // daemon serves, PostgreSQL's once it listens), the answers are the
    // same.
    let warmed = d.store.warm_boot_index().await.unwrap();
    if matches!(backend, Backend::Sqlite) {
        assert_eq!(warmed, 2, "n1's two interfaces");
    }
    for _ in 0..2 {
        decision("n1.dc1.example.com has no active deployment").await;
    }
    // A deployment starts: it serves nothing yet, then a script.
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml"),
    )
    .unwrap();
    let (s, p) = d.post_text("/profiles", &yaml, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let dep = d
        .store
        .create_deployment(
            &"n1.dc1.example.com".parse().unwrap(),
            p["id"].as_i64().unwrap(),
            &CallbackToken::generate().unwrap().hash(),
        )
        .await
        .unwrap()
        .id;
    for _ in 0..2 {
        decision("its deployment serves no iPXE script yet").await;
    }
    d.store
        .serve_file(
            dep,
            Via::Http,
            &format!("ipxe/{other}"),
            b"#!ipxe
echo one
",
        )
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(decision("echo one").await, None);
    }
    // Served again with other bytes, then taken away.
    d.store
        .serve_file(
            dep,
            Via::Http,
            &format!("ipxe/{other}"),
            b"#!ipxe
echo two
",
        )
        .await
        .unwrap();
    decision("echo two").await;
    d.store
        .unserve_file(dep, Via::Http, &format!("ipxe/{other}"))
        .await
        .unwrap();
    decision("its deployment serves no iPXE script yet").await;
    // The deployment ends; then the interface goes.
    d.store
        .set_deployment_state(dep, DeploymentState::Complete)
        .await
        .unwrap();
    decision("n1.dc1.example.com has no active deployment").await;
    let (s, b) = d.delete(&format!("/interfaces/{interface}")).await;
    assert!(s.is_success(), "{s} {b}");
    decision("unknown MAC").await;
    d.stop().await;
    ts.drop_database().await;
}

/// The daemon's `/metrics` text.
async fn metrics(d: &Daemon) -> String {
    reqwest::get(format!("{}/metrics", d.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `bootloader_http_requests_total` for each (route, method, status, _).
async fn requests_counted(d: &Daemon, keys: &[(&str, &str, u16, u64)]) -> Vec<u64> {
    let metrics = metrics(d).await;
    keys.iter()
        .map(|(route, method, status, _)| {
            let name = format!(
                "bootloader_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} "
            );
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name.as_str()))
                .map_or(0, |n| n.parse().unwrap())
        })
        .collect()
}

/// The two scripts every boot fetches are answered before the router
/// (`http::Front`): to every method, escape and shape of path they answer
/// as their routes do, and are counted and recorded alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_answer_as_their_routes() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    add_node(&d).await;
    let client = reqwest::Client::new();
    let escaped = MAC.replace(':', "%3A");
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "GET",
            "/boot.ipxe?from=dhcp".into(),
            StatusCode::OK,
            "/ipxe/${netX/mac} || goto failed",
        ),
        ("HEAD", "/boot.ipxe".into(), StatusCode::OK, ""),
        (
            "DELETE",
            "/boot.ipxe".into(),
            StatusCode::METHOD_NOT_ALLOWED,
            "",
        ),
        (
            "GET",
            format!("/ipxe/{escaped}"),
            StatusCode::OK,
            "n1.dc1.example.com has no active deployment",
        ),
        ("HEAD", format!("/ipxe/{MAC}"), StatusCode::OK, ""),
        (
            "POST",
            format!("/ipxe/{MAC}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "",
        ),
        (
            "GET",
            "/ipxe/bad".into(),
            StatusCode::BAD_REQUEST,
            "\"bad\" is not a MAC address",
        ),
        (
            "GET",
            "/ipxe/%FF".into(),
            StatusCode::BAD_REQUEST,
            "Invalid UTF-8",
        ),
        (
            "GET",
            "/ipxe/".into(),
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            "GET",
            "/ipxe/a/b".into(),
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            "GET",
            format!("/ipxe/{MAC}/"),
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
    ];
    let counted = [
        ("/boot.ipxe", "GET", 200, 1),
        ("/boot.ipxe", "HEAD", 200, 1),
        ("/boot.ipxe", "DELETE", 405, 1),
        ("/ipxe/{mac}", "GET", 200, 1),
        ("/ipxe/{mac}", "HEAD", 200, 1),
        ("/ipxe/{mac}", "POST", 405, 1),
        ("/ipxe/{mac}", "GET", 400, 2),
        ("(not found)", "GET", 404, 3),
    ];
    // The tests' daemons share one process's recorder: what this test
    // adds is what the counters grew by (other tests may add too).
    let before = requests_counted(&d, &counted).await;
    let mut script_length = None;
    for (method, path, status, says) in &cases {
        let r = client
            .request(method.parse().unwrap(), format!("{}{path}", d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), *status, "{method} {path}");
        let headers = r.headers().clone();
        let body = text(&r.bytes().await.unwrap());
        assert!(body.contains(says), "{method} {path}: {body}");
        if *status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(headers["allow"], "GET,HEAD", "{method} {path}");
        }
        if path.starts_with("/ipxe/") && *status == StatusCode::OK {
            assert_eq!(
                headers["x-bootloader-decision"], "local-boot",
                "{method} {path}"
            );
            let length = headers["content-length"].to_str().unwrap().to_string();
            if *method == "GET" {
                assert_eq!(length, body.len().to_string());
                script_length = Some(length);
            } else {
                assert!(body.is_empty(), "HEAD has no body: {body}");
                assert_eq!(Some(length), script_length, "HEAD tells GET's length");
            }
        }
    }

    // Counted by route pattern, method and status.
    let after = requests_counted(&d, &counted).await;
    for (key, (b, a)) in counted.iter().zip(before.iter().zip(&after)) {
        assert!(a - b >= key.3, "{key:?}: {b} -> {a}");
    }

    // The timeline keeps the machine's requests under its MAC, the
    // escaped path shown as meant.
    let want = [
        format!("GET /ipxe/{MAC}"),
        format!("HEAD /ipxe/{MAC}"),
        format!("POST /ipxe/{MAC}"),
    ];
    let mut requests = Vec::new();
    for _ in 0..50 {
        let (_, t) = d.get("/servers/n1.dc1.example.com/timeline").await;
        requests = t["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| format!("{} {}", e["request"].as_str().unwrap(), e["outcome"]))
            .collect::<Vec<_>>();
        if want
            .iter()
            .all(|w| requests.iter().any(|r| r.starts_with(w.as_str())))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (asked, outcome) in want.iter().zip(["answered", "answered", "refused"]) {
        let line = format!("{asked} \"{outcome}\"");
        assert!(requests.contains(&line), "{line} in {requests:?}");
    }
    d.stop().await;
    ts.drop_database().await;
}

on_both_backends!(
    scripts_files_and_static,
    callbacks_are_recorded_once,
    boot_answers_follow_every_write
);

/// Opens `n` TCP connections to `addr`, `per_source` from each of the
/// loopback addresses 127.0.`net`.1, .2, ... (so that each source stays
/// within its share and the daemon's global cap is what is tested).
async fn open_many(
    addr: std::net::SocketAddr,
    n: usize,
    net: u8,
    per_source: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let mut opening = tokio::task::JoinSet::new();
        for &i in chunk {
            let host = (i / per_source) as u16 + 1;
            let source = std::net::Ipv4Addr::new(127, net, (host >> 8) as u8, host as u8);
            opening.spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind((source, 0).into()).unwrap();
                socket.connect(addr).await
            });
        }
        while let Some(r) = opening.join_next().await {
            if let Ok(Ok(c)) = r {
                conns.push(c);
            }
        }
    }
    conns
}

/// A client of the boot path from an address of its own.
fn machine(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(source))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Whether the daemon has closed `conn` (EOF or reset) within `wait`.
async fn closed(conn: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a 408 or 400): read on to the close.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// 10,000 idle connections from many addresses (past the global cap) and
/// 1,500 slowloris connections held at once: machines still get their
/// scripts, kernels and API answers; a source's connections past its share
/// are closed at accept; slowloris connections are closed when their head
/// does not arrive in time.
///
/// The header timeout (20 s) is long enough that the idle connections pile
/// up past the global cap (2,000) even when the accept loop runs slowly
/// beside other suites; the slowloris check waits for it to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_do_not_stop_booting() {
    let _alone = HEAVY.lock().await;
    let mut ts = TestStore::new(Backend::Sqlite).await;
    for (k, v) in [
        ("BOOTLOADER_LIMITS_HTTP_CONNECTIONS", "2000"),
        ("BOOTLOADER_LIMITS_HTTP_CONNECTIONS_PER_SOURCE", "64"),
        ("BOOTLOADER_LIMITS_HTTP_HEADER_TIMEOUT_SECS", "20"),
    ] {
        ts.env.insert(k.into(), v.into());
    }
    let d = Daemon::start(&ts, None).await;
    add_node(&d).await;
    let static_dir = ts.config().boot.static_dir;
    std::fs::create_dir_all(&static_dir).unwrap();
    let kernel: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(static_dir.join("vmlinuz"), &kernel).unwrap();
    let addr: std::net::SocketAddr = d.base.trim_start_matches("http://").parse().unwrap();

    // One source past its share: the extra connections are closed at once.
    let mut greedy = open_many(addr, 80, 3, 80).await;
    assert_eq!(greedy.len(), 80);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = greedy
        .iter_mut()
        .filter(|c| {
            let mut buf = [0u8; 16];
            !matches!(c.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(refused, 16, "80 connections from one source, 64 allowed");
    drop(greedy);

    let idle = open_many(addr, 10_000, 1, 50).await;
    assert!(idle.len() >= 9_900, "opened {}", idle.len());
    let mut slow = open_many(addr, 1_500, 2, 50).await;
    assert!(slow.len() >= 1_450, "opened {}", slow.len());
    let slow_since = tokio::time::Instant::now();
    {
        use tokio::io::AsyncWriteExt;
        for c in slow.iter_mut() {
            let _ = c.write_all(b"GET /api/v1/ HTTP/1.1\r\nHost: x\r\n").await;
        }
    }
    // A slowloris keeps adding a header byte a second.
    let slow = std::sync::Arc::new(tokio::sync::Mutex::new(slow));
    let dripping = {
        let slow = slow.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..30 {
                for c in slow.lock().await.iter_mut() {
                    let _ = tokio::time::timeout(Duration::from_millis(5), c.write_all(b"X")).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // Meanwhile, machines boot.
    for round in 0..5u8 {
        let m = machine([127, 0, 9, round + 1]);
        let r = m
            .get(format!("{}/ipxe/{MAC}", d.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: /ipxe: {e}"));
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.text().await.unwrap().starts_with("#!ipxe"));
        let r = m
            .get(format!("{}/static/vmlinuz", d.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: /static: {e}"));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().len(), kernel.len());
        let r = m
            .get(format!("{}/api/v1/servers", d.base))
            .header("Authorization", format!("Token {}", d.token))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: API: {e}"));
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The slowloris connections were closed by the header timeout, though
    // bytes kept coming.
    tokio::time::sleep_until(slow_since + Duration::from_secs(25)).await;
    dripping.abort();
    let mut slow = slow.lock().await;
    let mut cut = 0;
    for c in slow.iter_mut().take(100) {
        if closed(c, Duration::from_secs(1)).await {
            cut += 1;
        }
    }
    assert!(
        cut >= 95,
        "only {cut} of 100 slowloris connections were closed"
    );
    drop(idle);
    // Each bound did its part.
    let metrics = metrics(&d).await;
    for reason in ["per_source", "evicted", "header_timeout"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("bootloader_http_connections_closed_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no {reason} closes counted:\n{metrics}"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0.0, "{line}");
    }
    d.stop().await;
}

/// 20,000 junk boot requests and 500 with a 30 KB Range header from one
/// address: the timeline keeps a few rows, texts cut short, and the store
/// grows by less than 1 MB. A 300 KB header is refused before anything
/// reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_requests_write_little() {
    let _alone = HEAVY.lock().await;
    let (ts, d, _, _) = setup(Backend::Sqlite).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = common::store_bytes(ts.dir.path());
    let client = reqwest::Client::new();
    let huge = format!("bytes=0-1,{}", "2-3,".repeat(75_000));
    let r = client
        .get(format!("{}/ipxe/{MAC}", d.base))
        .header("Range", &huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let long = &huge[..30_000];
    let mut work = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let client = client.clone();
        let base = d.base.clone();
        let long = long.to_string();
        work.spawn(async move {
            for i in 0..5_000 {
                let path = match i % 3 {
                    0 => format!("/ipxe/junk-{worker}-{i}"),
                    1 => format!("/static/nope-{worker}-{i}"),
                    _ => format!("/_callback/{}/x{i}", "0".repeat(64)),
                };
                let r = client.get(format!("{base}{path}")).send().await.unwrap();
                assert!(r.status().is_client_error(), "{path}: {}", r.status());
                if i < 125 {
                    let r = client
                        .get(format!("{base}/ipxe/{MAC}"))
                        .header("Range", &long)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            }
        });
    }
    while let Some(r) = work.join_next().await {
        r.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let store = d.store.clone();
    d.stop().await;
    let grown = common::store_bytes(ts.dir.path()).saturating_sub(before);
    assert!(grown < 1024 * 1024, "the store grew by {grown} bytes");
    let events = store.boot_events(&[], None, 100_000).await.unwrap();
    assert!(events.len() < 200, "{} rows stored", events.len());
    assert!(
        events.iter().all(|(_, e)| e.request.len() < 400),
        "a request text was kept whole"
    );
    assert!(
        events
            .iter()
            .any(|(_, e)| e.detail.contains("more like this")),
        "no count of the flood"
    );
}

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// 20 machines fetching one 20 MB rendered file at once share one copy of
/// it: the daemon's memory grows by far less than 20 copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rendered_file_is_shared_by_its_readers() {
    let _alone = HEAVY.lock().await;
    let (_ts, d, dep, _) = setup(Backend::Sqlite).await;
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    d.store
        .serve_file(dep, Via::Http, "images/big.img", &big)
        .await
        .unwrap();
    drop(big);
    let base = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let sampling = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            for _ in 0..3000 {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
                if peak.load(std::sync::atomic::Ordering::Relaxed) == u64::MAX {
                    return;
                }
            }
        })
    };
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = format!("{}/images/big.img", d.base);
        readers.spawn(async move {
            // Read as it streams, keeping nothing.
            let mut r = reqwest::get(url).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let mut n = 0usize;
            let mut sum = 0u64;
            while let Some(chunk) = r.chunk().await.unwrap() {
                n += chunk.len();
                sum += chunk.iter().map(|&b| u64::from(b)).sum::<u64>();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            (n, sum)
        });
    }
    let expected: u64 = (0..20 * 1024 * 1024u32)
        .map(|i| u64::from((i % 241) as u8))
        .sum();
    while let Some(r) = readers.join_next().await {
        assert_eq!(r.unwrap(), (20 * 1024 * 1024, expected));
    }
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(base);
    peak.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    sampling.join().unwrap();
    assert!(
        grown < 200 * 1024 * 1024,
        "memory grew by {} MB for 20 readers of a 20 MB file",
        grown / (1024 * 1024)
    );
    d.stop().await;
}

/// A deployment written for pxelinux (it serves `pxelinux.cfg/01-<mac>`
/// over TFTP and no iPXE script): a machine that reaches iPXE (UEFI
/// firmware; BIOS firmware gets pxelinux itself) is given the config's
/// default entry as an iPXE script; one without a config for its MAC, or
/// with one iPXE cannot boot, is sent to its disk with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pxelinux_deployment_boots_uefi_through_ipxe() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    let (id, _) = node_deployment(&d).await;
    let path = format!("pxelinux.cfg/01-{}", MAC.replace(':', "-"));
    let serve = |content: &'static str| {
        let (store, path) = (d.store.clone(), path.clone());
        async move {
            store
                .serve_file(id, Via::Tftp, &path, content.as_bytes())
                .await
                .unwrap();
        }
    };
    serve(
        "DEFAULT ubuntu1604\nLABEL ubuntu1604\n  MENU LABEL ^Ubuntu 16.04\n  \
         KERNEL http://10.0.0.5:8080/images/ubuntu/16.04/kernel\n  \
         INITRD http://10.0.0.5:8080/images/ubuntu/16.04/initrd.gz\n  \
         APPEND auto=true hostname=n1\n",
    )
    .await;
    let (s, h, body) = fetch(&d, &format!("/ipxe/{MAC}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-bootloader-decision"], "pxelinux-through-ipxe");
    assert_eq!(
        text(&body),
        format!(
            "#!ipxe\necho bootloader: {path} label ubuntu1604, booted through iPXE\n\
             kernel http://10.0.0.5:8080/images/ubuntu/16.04/kernel initrd=initrd0 auto=true hostname=n1\n\
             initrd --name initrd0 http://10.0.0.5:8080/images/ubuntu/16.04/initrd.gz\n\
             boot\n"
        )
    );
    // Relative paths come over TFTP from this host.
    serve("DEFAULT x\nLABEL x\nKERNEL images/vmlinuz\nAPPEND initrd=images/initrd.img quiet\n")
        .await;
    let (_, _, body) = fetch(&d, &format!("/ipxe/{MAC}"), None).await;
    assert!(
        text(&body).contains("kernel tftp://127.0.0.1/images/vmlinuz initrd=initrd0 quiet\n"),
        "{}",
        text(&body)
    );
    // A config iPXE cannot boot: the disk, and why.
    serve("DEFAULT missing\nLABEL x\nKERNEL k\n").await;
    let (_, h, body) = fetch(&d, &format!("/ipxe/{MAC}"), None).await;
    assert_eq!(h["x-bootloader-decision"], "local-boot");
    assert!(text(&body).contains("names no LABEL"), "{}", text(&body));
    d.stop().await;
}
