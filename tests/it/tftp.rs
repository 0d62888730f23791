//! The TFTP server against real clients: atftp and tftp-hpa (installed by
//! `.ci/test`), plus raw UDP for what clients cannot be made to do (the
//! PXE tsize probe and abort, write requests). Loopback only.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bootloader::tftp::server::{TftpConfig, serve};
use bootloader_core::tftp::packet::{self, ErrorCode, Mode, Packet, Request};
use bootloader_core::tftp::transfer::Limits;
use tokio::net::UdpSocket;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::fill(&mut v).expect("randomness");
    v
}

struct Root {
    dir: tempfile::TempDir,
    _outside: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("small.bin"), random_bytes(1000)).unwrap();
        std::fs::write(p.join("exact.bin"), random_bytes(512 * 20)).unwrap();
        std::fs::write(p.join("big.bin"), random_bytes(3 * 1024 * 1024 + 123)).unwrap();
        std::fs::write(p.join("empty.bin"), b"").unwrap();
        std::fs::create_dir_all(p.join("pxelinux.cfg")).unwrap();
        std::fs::write(
            p.join("pxelinux.cfg/01-52-54-00-12-34-56"),
            "DEFAULT local\n",
        )
        .unwrap();
        // A file outside the root, reachable only through a symlink.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "not for TFTP").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), p.join("escape")).unwrap();
        // Planted by another user: tests run as root, so hand the link to
        // `nobody`. (Links owned by root or the root's owner are trusted, as
        // Debian's ipxe.efi -> /boot/ipxe.efi needs.)
        std::os::unix::fs::lchown(p.join("escape"), Some(65534), Some(65534)).unwrap();
        Self {
            dir,
            _outside: outside,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Starts the server on 127.0.0.1 and returns its address.
async fn start(root: &Path) -> SocketAddr {
    start_with(root, 64).await
}

/// With `per_source` transfers allowed to one address (the tests' clients
/// all speak from 127.0.0.1).
async fn start_with(root: &Path, per_source: usize) -> SocketAddr {
    start_limited(root, per_source, 64).await
}

/// With `max_transfers` slots in all.
async fn start_limited(root: &Path, per_source: usize, max_transfers: usize) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let config = TftpConfig {
        root: root.to_path_buf(),
        extra_roots: Vec::new(),
        limits: Limits {
            max_blksize: 1468,
            ..Limits::default()
        },
        max_transfers,
        store: None,
        timeline: None,
        quirks: Default::default(),
        private_dir: None,
        per_source,
    };
    tokio::spawn(serve(socket, config, std::future::pending()));
    addr
}

/// Runs atftp (blocking, in a thread) and returns what it wrote.
async fn atftp(addr: SocketAddr, remote: &str, options: &[&str]) -> Option<Vec<u8>> {
    let out = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut cmd = Command::new("atftp");
    cmd.args(["--get", "-r", remote, "-l"]).arg(&out);
    for o in options {
        cmd.args(["--option", o]);
    }
    cmd.args(["127.0.0.1", &addr.port().to_string()]);
    let status = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("atftp runs (apt install atftp)");
    let data = std::fs::read(&out).ok();
    (status.status.success() && data.is_some()).then(|| data.unwrap_or_default())
}

async fn tftp_hpa(addr: SocketAddr, remote: &str) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = Command::new("tftp");
    cmd.args([
        "-m",
        "binary",
        "127.0.0.1",
        &addr.port().to_string(),
        "-c",
        "get",
        remote,
    ])
    .arg(&out);
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("tftp runs (apt install tftp-hpa)");
    // tftp-hpa exits 0 even on errors; it reports them on stderr/stdout.
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    if said.contains("Error") || said.contains("error") {
        return None;
    }
    std::fs::read(&out).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atftp_fetches_every_file_byte_for_byte() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    for name in [
        "small.bin",
        "exact.bin",
        "big.bin",
        "empty.bin",
        "pxelinux.cfg/01-52-54-00-12-34-56",
    ] {
        let want = std::fs::read(root.path(name)).unwrap();
        for options in [
            &[][..],
            &["tsize 0"][..],
            &["blksize 1468"][..],
            &["blksize 1468", "windowsize 16"][..],
            &["blksize 512", "windowsize 4", "tsize 0"][..],
        ] {
            let got = atftp(addr, name, options).await;
            assert_eq!(
                got.as_deref().map(<[u8]>::len),
                Some(want.len()),
                "{name} with {options:?}"
            );
            assert!(
                got.as_deref() == Some(&want[..]),
                "{name} with {options:?}: bytes differ"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_fetches_byte_for_byte() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    for name in ["small.bin", "exact.bin", "big.bin"] {
        let want = std::fs::read(root.path(name)).unwrap();
        assert!(
            tftp_hpa(addr, name).await.as_deref() == Some(&want[..]),
            "{name}"
        );
    }
    assert_eq!(tftp_hpa(addr, "missing.bin").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_all_arrive_intact() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    let want = std::fs::read(root.path("exact.bin")).unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let options: &'static [&'static str] = if i % 2 == 0 {
            &["blksize 1468", "windowsize 8"]
        } else {
            &[]
        };
        tasks.push(tokio::spawn(async move {
            atftp(addr, "exact.bin", options).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().as_deref() == Some(&want[..]));
    }
}

/// A raw client: sends one request and returns the first reply and the
/// address it came from.
async fn ask(addr: SocketAddr, packet: &Packet<'_>) -> (Vec<u8>, SocketAddr, UdpSocket) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    packet::encode(packet, &mut out);
    socket.send_to(&out, addr).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    buf.truncate(n);
    (buf, from, socket)
}

fn rrq(name: &str, options: &[(&str, &str)]) -> Packet<'static> {
    Packet::Rrq(Request {
        filename: name.to_string(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    })
}

fn error_code(reply: &[u8]) -> Option<ErrorCode> {
    match packet::decode(reply) {
        Ok(Packet::Error { code, .. }) => Some(code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_proper_tftp_errors() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    for (name, code) in [
        ("../etc/passwd", ErrorCode::AccessViolation),
        ("/etc/passwd", ErrorCode::AccessViolation),
        ("pxelinux.cfg/../../x", ErrorCode::AccessViolation),
        ("escape", ErrorCode::AccessViolation),
        ("missing.bin", ErrorCode::FileNotFound),
        ("pxelinux.cfg", ErrorCode::FileNotFound),
    ] {
        let (reply, _, _) = ask(addr, &rrq(name, &[])).await;
        assert_eq!(error_code(&reply), Some(code), "{name}");
    }
    let write = Packet::Wrq(Request {
        filename: "new.bin".into(),
        mode: Mode::Octet,
        options: vec![],
    });
    let (reply, _, _) = ask(addr, &write).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AccessViolation));
    assert!(!root.path("new.bin").exists());
    // A broken read request gets a short error, and the server keeps serving.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(b"\x00\x01no-terminator", addr)
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&buf[..n]), Some(ErrorCode::IllegalOperation));
    // ERRORs, ACKs and garbage on the server port get no answer at all: two
    // servers answering each other's errors would loop.
    let mut error = Vec::new();
    packet::encode(
        &Packet::Error {
            code: ErrorCode::NotDefined,
            message: "x".into(),
        },
        &mut error,
    );
    for junk in [
        &error[..],
        &b"\x00\x04\x00\x01"[..],
        &b"\xff\xff garbage"[..],
    ] {
        socket.send_to(junk, addr).await.unwrap();
    }
    let quiet = tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buf)).await;
    assert!(quiet.is_err(), "the server answered a non-request");
    assert!(atftp(addr, "small.bin", &[]).await.is_some());
}

/// What PXE ROMs do: ask with tsize, read the size from the OACK, answer
/// ERROR 8, and ask again. The first transfer must stop at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsize_probe_abort_stops_the_transfer() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    let size = std::fs::metadata(root.path("big.bin")).unwrap().len();
    let (reply, transfer_port, socket) = ask(
        addr,
        &rrq("big.bin", &[("tsize", "0"), ("blksize", "1456")]),
    )
    .await;
    assert_ne!(transfer_port, addr, "a transfer runs on its own port");
    match packet::decode(&reply) {
        Ok(Packet::Oack { options }) => {
            assert!(
                options.contains(&("tsize".to_string(), size.to_string())),
                "{options:?}"
            );
            assert!(
                options.contains(&("blksize".to_string(), "1456".to_string())),
                "{options:?}"
            );
        }
        other => panic!("expected OACK, got {other:?}"),
    }
    let mut out = Vec::new();
    packet::encode(
        &Packet::Error {
            code: ErrorCode::OptionsRefused,
            message: "tsize probe".into(),
        },
        &mut out,
    );
    socket.send_to(&out, transfer_port).await.unwrap();
    // Without the abort, the OACK would come again after the 1 s timeout.
    let mut buf = [0u8; 2048];
    let again = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await;
    assert!(
        again.is_err(),
        "the server sent more after the client's ERROR"
    );
    // A retransmitted RRQ (same client port) does not start a second transfer.
    let (_, first_port, client) = ask(addr, &rrq("exact.bin", &[("blksize", "512")])).await;
    let mut again = Vec::new();
    packet::encode(&rrq("exact.bin", &[("blksize", "512")]), &mut again);
    client.send_to(&again, addr).await.unwrap();
    let mut seen_ports = std::collections::HashSet::new();
    while let Ok(Ok((_, from))) =
        tokio::time::timeout(Duration::from_millis(1500), client.recv_from(&mut buf)).await
    {
        seen_ports.insert(from);
    }
    assert_eq!(
        seen_ports.into_iter().collect::<Vec<_>>(),
        vec![first_port],
        "one transfer, one port"
    );
    // The second request of the ROM is served.
    let want = std::fs::read(root.path("big.bin")).unwrap();
    assert!(atftp(addr, "big.bin", &["blksize 1456"]).await.as_deref() == Some(&want[..]));
}

/// A transfer hears only its client: packets from anyone else to its port
/// (an ERROR that would end it, an ACK that would skip ahead) change
/// nothing, and the client gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_ignores_strangers() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    let want = std::fs::read(root.path("exact.bin")).unwrap();
    let (first, transfer, client) = ask(addr, &rrq("exact.bin", &[])).await;
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut got = Vec::new();
    let mut reply = first;
    let mut buf = vec![0u8; 2048];
    for block in 1u16.. {
        let Ok(Packet::Data { block: b, data }) = packet::decode(&reply) else {
            panic!("expected DATA {block}, got {:?}", packet::decode(&reply));
        };
        assert_eq!(b, block);
        got.extend_from_slice(data);
        let last = data.len() < 512;
        if block == 3 {
            for p in [
                Packet::Error {
                    code: ErrorCode::NotDefined,
                    message: "stop".into(),
                },
                Packet::Ack { block: 19 },
            ] {
                let mut out = Vec::new();
                packet::encode(&p, &mut out);
                stranger.send_to(&out, transfer).await.unwrap();
            }
        }
        let mut ack = Vec::new();
        packet::encode(&Packet::Ack { block }, &mut ack);
        client.send_to(&ack, transfer).await.unwrap();
        if last {
            break;
        }
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("the next block")
            .unwrap();
        assert_eq!(from, transfer);
        reply = buf[..n].to_vec();
    }
    assert!(got == want, "{} bytes of {}", got.len(), want.len());
}

/// Files a deployment serves over TFTP come from the store, before the
/// root, only while the deployment is active; a quirk caps the block size
/// for the machines it matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_files_and_quirk_blksize_sqlite() {
    deployment_files_and_quirk_blksize(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_files_and_quirk_blksize_postgres() {
    deployment_files_and_quirk_blksize(common::Backend::Postgres).await;
}

async fn deployment_files_and_quirk_blksize(backend: common::Backend) {
    use bootloader_core::model::{DeploymentState, Via};
    let ts = common::TestStore::new(backend).await;
    let d = common::Daemon::start(&ts, None).await;
    d.seed_location().await;
    let mac = "52:54:00:12:00:01";
    let (s, b) = d
        .post(
            "/servers",
            serde_json::json!({"fqdn": "t1.dc1.example.com", "location": "dc1",
                "interfaces": [{"name": "eth0", "mac": mac}]}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/echo-1.0.yaml"),
    )
    .unwrap();
    let (_, p) = d.post_text("/profiles", &yaml, "application/yaml").await;
    let dep = d
        .store
        .create_deployment(
            &"t1.dc1.example.com".parse().unwrap(),
            p["id"].as_i64().unwrap(),
            &bootloader_core::model::CallbackToken::generate()
                .unwrap()
                .hash(),
        )
        .await
        .unwrap();
    let config_file = random_bytes(5000);
    d.store
        .serve_file(
            dep.id,
            Via::Tftp,
            "pxelinux.cfg/01-52-54-00-12-00-01",
            &config_file,
        )
        .await
        .unwrap();
    // A deployment file shadows the root's file of the same name.
    d.store
        .serve_file(dep.id, Via::Tftp, "small.bin", b"from the deployment")
        .await
        .unwrap();
    // A downloaded file is served from the download cache.
    let cache = tempfile::tempdir().unwrap();
    let kernel = random_bytes(300_000);
    std::fs::write(cache.path().join("k.data"), &kernel).unwrap();
    d.store
        .serve_cached_file(
            dep.id,
            Via::Tftp,
            "images/vmlinuz",
            &cache.path().join("k.data"),
        )
        .await
        .unwrap();

    let root = Root::new();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (timeline, writer) = bootloader::timeline::Timeline::new(
        d.store.clone(),
        bootloader::timeline::Retention {
            age: Duration::from_secs(86400),
            max_events: 100_000,
        },
        std::future::pending(),
    );
    tokio::spawn(writer);
    // As if DHCP had given this MAC 127.0.0.1.
    timeline.learn(std::net::Ipv4Addr::LOCALHOST, mac.parse().unwrap());
    let config = TftpConfig {
        root: root.dir.path().to_path_buf(),
        extra_roots: Vec::new(),
        limits: Limits {
            max_blksize: 1468,
            ..Limits::default()
        },
        max_transfers: 64,
        store: Some(d.store.clone()),
        timeline: Some(timeline),
        quirks: bootloader_core::dhcp::quirks::QuirkRules::new(vec![
            bootloader_core::dhcp::quirks::Quirk {
                name: "small-blocks".into(),
                mac_prefix: Some(vec![0x52, 0x54, 0x00, 0x12]),
                arch: None,
                vendor_class: None,
                set_arch: None,
                answer: None,
                tftp_blksize: Some(512),
            },
        ]),
        private_dir: None,
        per_source: 8,
    };
    tokio::spawn(serve(socket, config, std::future::pending()));

    let got = atftp(addr, "pxelinux.cfg/01-52-54-00-12-00-01", &["blksize 1468"]).await;
    assert_eq!(got.as_deref(), Some(&config_file[..]));
    assert_eq!(
        atftp(addr, "small.bin", &[]).await.as_deref(),
        Some(&b"from the deployment"[..])
    );
    for options in [&[][..], &["blksize 1468", "windowsize 8"][..]] {
        assert_eq!(
            atftp(addr, "images/vmlinuz", options).await.as_deref(),
            Some(&kernel[..]),
            "{options:?}"
        );
    }
    // The quirk: 1468 asked, 512 granted.
    let (reply, _, _) = ask(addr, &rrq("big.bin", &[("blksize", "1468")])).await;
    match packet::decode(&reply).unwrap() {
        Packet::Oack { options } => {
            assert!(
                options.contains(&("blksize".to_string(), "512".to_string())),
                "{options:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The timeline files the transfers under the MAC.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = d
            .store
            .boot_events(&[mac.parse().unwrap()], None, 100)
            .await
            .unwrap();
        if events
            .iter()
            .any(|(_, e)| e.request.contains("pxelinux.cfg"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        events
            .iter()
            .any(|(_, e)| e.request.contains("pxelinux.cfg")
                && e.detail.contains("from a deployment")),
        "{events:?}"
    );
    // Once the deployment ends its files are gone; the root's remain.
    d.store
        .set_deployment_state(dep.id, DeploymentState::Complete)
        .await
        .unwrap();
    let (reply, _, _) = ask(addr, &rrq("pxelinux.cfg/01-52-54-00-12-00-01", &[])).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::FileNotFound));
    assert_eq!(
        atftp(addr, "small.bin", &[]).await.as_deref(),
        Some(&std::fs::read(root.path("small.bin")).unwrap()[..])
    );
    d.stop().await;
    ts.drop_database().await;
}

/// Read requests that never acknowledge (spoofed sources): one address
/// gets its share of the transfers and "server busy" past it; what a
/// silent source is sent stays small; and the slots come free within a
/// few seconds, so a real client is served while a flood goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_requests_cannot_hold_the_server() {
    let root = Root::new();
    std::fs::write(root.path("large.bin"), vec![7u8; 1_000_000]).unwrap();
    let addr = start_with(root.dir.path(), 8).await;
    let mut out = Vec::new();
    packet::encode(&rrq("large.bin", &[]), &mut out);
    let mut with_options = Vec::new();
    packet::encode(
        &rrq(
            "large.bin",
            &[("blksize", "1468"), ("tsize", "0"), ("timeout", "10")],
        ),
        &mut with_options,
    );

    // One address, 20 ports: 8 transfers (the share), 12 refusals.
    let mut listening = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = UdpSocket::bind("127.0.0.7:0").await.unwrap();
        let plain = i % 2 == 0;
        s.send_to(if plain { &out } else { &with_options }, addr)
            .await
            .unwrap();
        // Everything this never-answering client is sent, for 4 s.
        listening.spawn(async move {
            let mut got = 0usize;
            let mut busy = false;
            let mut only_oack = true;
            let mut buf = vec![0u8; 65536];
            let until = tokio::time::Instant::now() + Duration::from_secs(4);
            while let Ok(Ok((n, _))) = tokio::time::timeout_at(until, s.recv_from(&mut buf)).await {
                if error_code(&buf[..n]).is_some() {
                    busy = true;
                } else {
                    got += n;
                    only_oack &= matches!(packet::decode(&buf[..n]), Ok(Packet::Oack { .. }));
                }
            }
            (plain, busy, got, only_oack)
        });
    }
    let mut refused = 0;
    let mut data_bytes = Vec::new();
    while let Some(r) = listening.join_next().await {
        let (plain, busy, got, only_oack) = r.unwrap();
        if busy {
            refused += 1;
        } else if plain {
            data_bytes.push(got);
        } else {
            assert!(only_oack, "a client that has not answered got DATA");
        }
    }
    assert_eq!(refused, 12, "8 transfers for one address");
    assert!(
        data_bytes.iter().all(|&n| n <= 2 * 516),
        "a silent client was sent {data_bytes:?} bytes"
    );

    // Many addresses at once fill the 64 slots; they come free within
    // seconds, and a real client is served.
    let mut flood = Vec::new();
    for i in 0..64u8 {
        let s = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 8, i + 1), 0))
            .await
            .unwrap();
        s.send_to(&with_options, addr).await.unwrap();
        flood.push(s);
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let got = atftp(addr, "large.bin", &["blksize 1468"]).await;
    assert_eq!(got.map(|b| b.len()), Some(1_000_000));
}

/// A server whose every slot is taken answers no read request until one
/// comes free, and then serves it: six clients at once on two slots, two
/// of them behind requests that never acknowledge (each holds its slot
/// up to 3 s), all get their file. A PXE ROM gives up on "server busy"
/// (its boot fails) but sends a request again that got no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_makes_requests_wait_not_fail() {
    let root = Root::new();
    let big = std::fs::read(root.path("big.bin")).unwrap();
    let addr = start_limited(root.dir.path(), 64, 2).await;
    let mut silent = Vec::new();
    for i in 0..2u8 {
        let s = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 9, i + 1), 0))
            .await
            .unwrap();
        let mut out = Vec::new();
        packet::encode(&rrq("big.bin", &[("tsize", "0")]), &mut out);
        s.send_to(&out, addr).await.unwrap();
        silent.push(s);
    }
    // Both slots are taken before the clients ask: the silent requests'
    // OACKs have come.
    for s in &silent {
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
            .await
            .expect("an OACK")
            .unwrap();
        assert!(matches!(packet::decode(&buf[..n]), Ok(Packet::Oack { .. })));
    }
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { atftp(addr, "big.bin", &["blksize 1468"]).await }))
        .collect();
    for c in clients {
        assert_eq!(
            c.await.unwrap().as_deref(),
            Some(&big[..]),
            "a client was refused"
        );
    }
    // They waited for the silent requests' slots (given up within 3 s).
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// Starts a server with `limits` and a shutdown the test triggers; the
/// handle returns when `serve` does.
async fn start_stoppable(
    root: &Path,
    limits: Limits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let config = TftpConfig {
        root: root.to_path_buf(),
        extra_roots: Vec::new(),
        limits,
        max_transfers: 64,
        store: None,
        timeline: None,
        quirks: Default::default(),
        private_dir: None,
        per_source: 1,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(socket, config, async move {
        let _ = stopped.await;
    }));
    (addr, stop, served)
}

/// Long lock-step transfers (big.bin in 512-byte blocks: 6,145 of them)
/// run on threads of their own, four at most, the rest on the runtime:
/// eight at once all arrive intact, in 512 and 1468-byte blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lockstep_transfers_arrive_intact_on_threads_and_runtime() {
    let root = Root::new();
    let addr = start(root.dir.path()).await;
    let want = std::fs::read(root.path("big.bin")).unwrap();
    let fetches: Vec<_> = (0..8)
        .map(|i| {
            let options: &'static [&'static str] = if i % 2 == 0 {
                &[]
            } else {
                &["blksize 1468", "tsize 0"]
            };
            tokio::spawn(async move { atftp(addr, "big.bin", options).await })
        })
        .collect();
    for (i, f) in fetches.into_iter().enumerate() {
        let got = f.await.unwrap();
        assert!(
            got.as_deref() == Some(&want[..]),
            "fetch {i}: {:?} bytes of {}",
            got.map(|g| g.len()),
            want.len()
        );
    }
}

/// A client that stops acknowledging a long lock-step transfer gets its
/// block again at each timeout, `max_retries` times, then nothing; its
/// address's one slot is free again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transfer_whose_client_goes_silent_is_given_up() {
    let root = Root::new();
    let limits = Limits {
        max_blksize: 1468,
        default_timeout: Duration::from_millis(400),
        max_timeout: Duration::from_millis(400),
        max_retries: 3,
        ..Limits::default()
    };
    let (addr, _stop, _served) = start_stoppable(root.dir.path(), limits).await;
    let (first, transfer, client) = ask(addr, &rrq("big.bin", &[])).await;
    assert!(matches!(
        packet::decode(&first),
        Ok(Packet::Data { block: 1, .. })
    ));
    let mut ack = Vec::new();
    packet::encode(&Packet::Ack { block: 1 }, &mut ack);
    client.send_to(&ack, transfer).await.unwrap();
    // Block 2, then silence: block 2 again at each timeout.
    let mut buf = vec![0u8; 2048];
    let mut blocks = Vec::new();
    let mut times = Vec::new();
    while let Ok(Ok((n, from))) =
        tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf)).await
    {
        assert_eq!(from, transfer);
        match packet::decode(&buf[..n]) {
            Ok(Packet::Data { block, .. }) => blocks.push(block),
            other => panic!("expected DATA, got {other:?}"),
        }
        times.push(std::time::Instant::now());
    }
    assert_eq!(
        blocks,
        vec![2, 2, 2, 2],
        "block 2 and three retransmissions"
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(300) && gap < Duration::from_millis(1500),
            "retransmitted after {gap:?}, the timeout is 400 ms"
        );
    }
    // The transfer gave up: the address may start another.
    let (reply, _, _) = ask(addr, &rrq("small.bin", &[])).await;
    assert!(
        matches!(packet::decode(&reply), Ok(Packet::Data { block: 1, .. })),
        "{:?}",
        packet::decode(&reply)
    );
}

/// When the server stops, a long transfer still under way after the drain
/// (a client acknowledging one block every 300 ms) is cut off: no DATA
/// comes a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_cuts_off_long_transfers() {
    let root = Root::new();
    let limits = Limits {
        max_blksize: 1468,
        ..Limits::default()
    };
    let (addr, stop, served) = start_stoppable(root.dir.path(), limits).await;
    let (first, transfer, client) = ask(addr, &rrq("big.bin", &[])).await;
    let Ok(Packet::Data { block: 1, .. }) = packet::decode(&first) else {
        panic!("expected DATA 1, got {:?}", packet::decode(&first));
    };
    // The slow client runs until nothing comes for two seconds.
    let slow = tokio::spawn(async move {
        let mut block = 1u16;
        let mut buf = vec![0u8; 2048];
        let mut last = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut ack = Vec::new();
            packet::encode(&Packet::Ack { block }, &mut ack);
            client.send_to(&ack, transfer).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    if let Ok(Packet::Data { block: b, .. }) = packet::decode(&buf[..n]) {
                        block = b;
                        last = std::time::Instant::now();
                    }
                }
                _ => return (block, last),
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(()).unwrap();
    // `serve` waits `DRAIN` for the transfer, then returns.
    tokio::time::timeout(
        bootloader::tftp::server::DRAIN + Duration::from_secs(10),
        served,
    )
    .await
    .expect("the server stops")
    .unwrap()
    .unwrap();
    let stopped = std::time::Instant::now();
    let (block, last) = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the transfer ended")
        .unwrap();
    assert!(
        block > 20,
        "the transfer ran during the drain: block {block}"
    );
    assert!(
        last < stopped + Duration::from_millis(1500),
        "DATA {block} came {:?} after the server stopped",
        last - stopped
    );
}
