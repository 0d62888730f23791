//! Power control against a real BMC: OpenIPMI's `ipmi_sim` on a loopback
//! port, with a chassis_control program that records what the BMC was told
//! to do (power, boot device), for both drivers. Wrong passwords, a BMC
//! that never answers, one that is not there, and refusals.

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A BMC: ipmi_sim with users `admin`/`secret` (administrator) and
/// `viewer`/`secret` (user), and a chassis program writing `power` and
/// `boot` files and a `calls` log in its directory.
struct Bmc {
    dir: tempfile::TempDir,
    port: u16,
    _child: tokio::process::Child,
}

impl Bmc {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let chassis = dir.path().join("chassis.sh");
        std::fs::write(
            &chassis,
            r#"#!/bin/sh
# chassis.sh <mc> get|set <parm> [value] ...: what ipmi_sim asks of the chassis.
dir=$(dirname "$0")
echo "$*" >> "$dir/calls"
[ "$2 $3 $4" = "set power 1" ] && date +%s.%N >> "$dir/power-on-times"
# A chassis that fails: the BMC answers with completion code 0xff.
[ -e "$dir/refuse" ] && [ "$2" = set ] && exit 1
shift
op=$1; shift
case $op in
get)
  for p in "$@"; do
    case $p in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
    esac
  done;;
set)
  while [ $# -gt 1 ]; do
    case $1 in
      power) echo "$2" > "$dir/power";;
      boot) echo "$2" > "$dir/boot";;
    esac
    shift 2
  done;;
esac
"#,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&chassis, std::fs::Permissions::from_mode(0o755)).unwrap();
        common::vmbmc::sim_config(dir.path(), port, &chassis);
        let conf = dir.path().join("lan.conf");
        let emu = dir.path().join("sim.emu");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let child = tokio::process::Command::new("ipmi_sim")
            .arg("-c")
            .arg(&conf)
            .arg("-f")
            .arg(&emu)
            .arg("-s")
            .arg(&state)
            .args(["-n", "-p"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ipmi_sim runs (apt install openipmi)");
        let bmc = Self {
            dir,
            port,
            _child: child,
        };
        bmc.wait_ready().await;
        bmc
    }

    /// `ipmitool raw NETFN CMD DATA...` as `admin`, once, quickly.
    async fn raw(&self, request: &[&str]) -> std::process::Output {
        tokio::process::Command::new("ipmitool")
            .env("IPMI_PASSWORD", "secret")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "admin", "-E", "-C", "3", "-N", "1", "-R", "1", "raw"])
            .args(request)
            .output()
            .await
            .expect("ipmitool runs (apt install ipmitool)")
    }

    /// Until ipmitool gets an answer (Get Device ID).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.raw(&["0x06", "0x01"]).await.status.success() {
            assert!(Instant::now() < deadline, "ipmi_sim did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sessions open at the BMC now (ipmitool's own included), from Get
    /// Session Info.
    async fn active_sessions(&self) -> u8 {
        let out = self.raw(&["0x06", "0x3d", "0x00"]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        let bytes: Vec<u8> = text
            .split_whitespace()
            .map(|t| u8::from_str_radix(t, 16).unwrap())
            .collect();
        assert!(bytes.len() >= 3, "Get Session Info: {text:?}");
        bytes[2] & 0x3f
    }

    /// ipmitool through a wrapper that records its command line (the
    /// bytes it sends) and whether the password came through the
    /// environment, in the `argv` file; returns the wrapper's path.
    fn ipmitool_wrapper(&self) -> String {
        use std::os::unix::fs::PermissionsExt;
        let wrapper = self.dir.path().join("ipmitool-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$* env=${{IPMI_PASSWORD:+set}}\" >> {}\nexec ipmitool \"$@\"\n",
                self.dir.path().join("argv").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        wrapper.display().to_string()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn calls(&self) -> Vec<String> {
        self.file("calls").lines().map(str::to_string).collect()
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn daemon(backend: Backend, env: &[(&str, &str)]) -> (TestStore, Daemon) {
    let mut store = TestStore::new(backend).await;
    for (k, v) in env {
        store.env.insert(k.to_string(), v.to_string());
    }
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    (store, d)
}

async fn add_server(d: &Daemon, fqdn: &str, port: u16, user: &str, password: &str, driver: &str) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mac = format!("52:54:00:aa:{:02x}:{:02x}", n >> 8, n & 0xff);
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": fqdn, "location": "dc1",
                "bmc": {"host": "127.0.0.1", "port": port, "username": user, "password": password, "driver": driver},
                "interfaces": [{"name": "eth0", "mac": mac}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn power(d: &Daemon, fqdn: &str, action: &str) -> (StatusCode, Value) {
    d.post(&format!("/servers/{fqdn}/power"), json!({"action": action}))
        .await
}

/// Every power and boot-device command, observed at the BMC, through one
/// driver.
async fn commands_reach_the_bmc(driver: &str, backend: Backend) {
    let bmc = Bmc::start().await;
    let wrapper = bmc.ipmitool_wrapper();
    // ipmi_sim answers cipher suite 3 only.
    let (store, d) = daemon(
        backend,
        &[
            ("BOOTLOADER_POWER_IPMITOOL_CIPHER_SUITE", "3"),
            ("BOOTLOADER_POWER_IPMITOOL", &wrapper),
        ],
    )
    .await;
    add_server(
        &d,
        "n1.dc1.example.com",
        bmc.port,
        "admin",
        "secret",
        driver,
    )
    .await;
    let fqdn = "n1.dc1.example.com";

    let (s, b) = power(&d, fqdn, "on").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["ok"], true);
    assert_eq!(b["driver"], driver);
    assert_eq!(bmc.file("power"), "1", "the chassis was told to power on");
    let (s, b) = d.get(&format!("/servers/{fqdn}/power")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["answer"]["state"], "on");

    let (s, b) = power(&d, fqdn, "off").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(bmc.file("power"), "0");
    let (_, b) = d.get(&format!("/servers/{fqdn}/power")).await;
    assert_eq!(b["answer"]["state"], "off");

    power(&d, fqdn, "on").await;
    let before = bmc.calls().len();
    let (s, b) = power(&d, fqdn, "cycle").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let cycle: Vec<String> = bmc.calls()[before..].to_vec();
    assert!(
        cycle.iter().any(|c| c.contains("set power 0")),
        "a cycle powers off first: {cycle:?}"
    );

    let (s, b) = d
        .post(
            &format!("/servers/{fqdn}/bootdev"),
            json!({"device": "pxe", "efi": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        bmc.file("boot"),
        "pxe",
        "the chassis was told to boot from the network"
    );
    let (s, b) = d.get(&format!("/servers/{fqdn}/bootdev")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["answer"]["boot"]["device"], "pxe");

    let (s, b) = d
        .post(
            &format!("/servers/{fqdn}/bootdev"),
            json!({"device": "disk"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        bmc.file("boot"),
        "default",
        "disk is the chassis' default boot"
    );

    // A reader does not open a BMC session: it gets the last answer and
    // its age. Credentials are staff's to see.
    let (s, b) = d.post("/users", json!({"name": "viewer"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = d.post("/tokens", json!({"user": "viewer"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let viewer = b["token"].as_str().unwrap().to_string();
    let (s, b) = d
        .post("/tokens", json!({"user": "admin", "scope": "read"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let staff_read = b["token"].as_str().unwrap().to_string();
    let calls = bmc.calls().len();
    for token in [&viewer, &staff_read] {
        let (s, b) = d
            .call_as(
                Some(token),
                reqwest::Method::GET,
                &format!("/servers/{fqdn}/power"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["live"], false, "{b}");
        assert_eq!(b["known"]["state"], "off", "{b}");
        assert!(b["age_seconds"].as_i64().unwrap() < 600, "{b}");
        let (s, b) = d
            .call_as(
                Some(token),
                reqwest::Method::GET,
                &format!("/servers/{fqdn}/bootdev"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["known"]["boot"]["device"], "pxe", "{b}");
    }
    assert_eq!(bmc.calls().len(), calls, "a reader's query reached the BMC");
    let (s, _) = d
        .call_as(Some(&viewer), reqwest::Method::GET, "/credentials", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d
        .call_as(
            Some(&staff_read),
            reqwest::Method::GET,
            "/credentials",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Sessions are closed: far more commands than the BMC has session
    // slots all work.
    for _ in 0..40 {
        let (s, b) = d.get(&format!("/servers/{fqdn}/power")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let active = bmc.active_sessions().await;
    assert!(active <= 2, "{active} sessions left open at the BMC");
    if driver == "ipmitool" {
        let argv = bmc.file("argv");
        assert!(argv.lines().count() >= 40, "{argv}");
        assert!(
            !argv.contains("secret"),
            "the password is on the command line: {argv}"
        );
        assert!(
            argv.lines()
                .all(|l| l.contains(" -E ") && l.ends_with("env=set")),
            "{argv}"
        );
    }

    // Health and the timeline.
    let (s, h) = d.get(&format!("/servers/{fqdn}/power/health")).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["consecutive_failures"], 0);
    assert!(h["last_success_at"].is_string(), "{h}");
    // The timeline is written asynchronously, in groups.
    let mut t = Value::Null;
    for _ in 0..100 {
        t = d.get(&format!("/servers/{fqdn}/timeline")).await.1;
        let powers = t["events"]
            .as_array()
            .map_or(0, |e| e.iter().filter(|e| e["phase"] == "power").count());
        if powers >= 9 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let power_events: Vec<&Value> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["phase"] == "power")
        .collect();
    assert!(power_events.len() >= 9, "{t}");
    assert!(
        power_events
            .iter()
            .any(|e| e["request"] == "power cycle" && e["outcome"] == "answered"),
        "{t}"
    );
    // And an outbox event per command.
    let outbox = outbox_keys(&store).await;
    for key in [
        "power.on",
        "power.off",
        "power.cycle",
        "power.status",
        "power.bootdev",
    ] {
        assert!(outbox.iter().any(|k| k == key), "{key} in {outbox:?}");
    }
    d.stop().await;
    store.drop_database().await;
}

/// A profile's boot device request reaches the BMC with the flags it
/// asks for; without `efi` it follows how the machine last PXE-booted (its
/// DHCP requests in the timeline), so a UEFI machine is not sent to a
/// legacy boot. The older agent's spellings (`net`) are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_boot_devices_follow_the_firmware() {
    use bootloader_core::model::{Outcome, Phase};
    use bootloader_core::published::boot::BootEvent;

    let bmc = Bmc::start().await;
    // Through ipmitool, whose command line shows the bytes the BMC gets
    // (ipmi_sim hands only the device to its chassis program).
    let wrapper = bmc.ipmitool_wrapper();
    let (store, d) = daemon(
        Backend::Sqlite,
        &[
            ("BOOTLOADER_POWER_IPMITOOL_CIPHER_SUITE", "3"),
            ("BOOTLOADER_POWER_IPMITOOL", &wrapper),
        ],
    )
    .await;
    let fqdn = "uefi1.dc1.example.com";
    add_server(&d, fqdn, bmc.port, "admin", "secret", "ipmitool").await;
    // The boot flags each `set boot options` carried (parameter 5's first
    // byte: 0x80 valid, 0x40 persistent, 0x20 EFI) and the device.
    let sent_flags = || -> Vec<String> {
        bmc.file("argv")
            .lines()
            .filter_map(|l| l.split(" raw 0x00 0x08 0x05 ").nth(1))
            .map(|rest| rest.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let (_, server) = d.get(&format!("/servers/{fqdn}")).await;
    let mac = server["interfaces"][0]["mac"].as_str().unwrap().to_string();
    let profile = |name: &str, flags: &str| {
        format!(
            "kind: profile\napiVersion: v1alpha1\nname: {name}\nversion: '1'\nworkflow:\n  new: []\n  preparing:\n    - action: ipmi_command\n      command: bootdev\n      parameters: net\n{flags}templates: {{}}\n"
        )
    };
    let run = async |name: &str| -> Value {
        let (s, b) = d
            .post(
                "/deployments",
                json!({"server": fqdn, "profile": format!("{name}==1")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["id"].as_i64().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, dep) = d.get(&format!("/deployments/{id}")).await;
            if dep["state"] == "complete" || dep["state"] == "error" {
                assert_eq!(dep["state"], "complete", "{dep}");
                let (_, log) = d.get(&format!("/deployments/{id}/log")).await;
                return log;
            }
            assert!(std::time::Instant::now() < deadline, "{dep}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    for (name, extra) in [
        ("auto", ""),
        ("pinned", "      persistent: true\n      efi: false\n"),
    ] {
        let (s, b) = d
            .post_text("/profiles", &profile(name, extra), "application/yaml")
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    // Never seen booting: legacy, as before.
    let log = run("auto").await;
    assert!(log.to_string().contains("not seen PXE-booting"), "{log}");
    assert_eq!(sent_flags(), ["0x80 0x04"], "legacy, next boot, PXE");
    assert_eq!(bmc.file("boot"), "pxe");

    // Its firmware asked for an address as UEFI: the flags say EFI.
    d.store
        .record_boot_events(&[BootEvent {
            at: time::OffsetDateTime::now_utc(),
            mac: Some(mac.parse().unwrap()),
            peer: "10.0.0.50:68".into(),
            phase: Phase::Dhcp,
            request: "DHCPDISCOVER arch=efi-x64 vendor=PXEClient".into(),
            outcome: Outcome::Answered,
            detail: "DHCPOFFER 10.0.0.50".into(),
        }])
        .await
        .unwrap();
    let log = run("auto").await;
    assert!(
        log.to_string()
            .contains("EFI: the machine last PXE-booted so"),
        "{log}"
    );
    assert_eq!(sent_flags()[1], "0xa0 0x04", "EFI, next boot, PXE");

    // What the profile says wins.
    run("pinned").await;
    assert_eq!(sent_flags()[2], "0xc0 0x04", "legacy, persistent, PXE");
    d.stop().await;
    store.drop_database().await;
}

async fn outbox_keys(store: &TestStore) -> Vec<String> {
    // The outbox is read through SQL: no API lists it.
    match store.backend {
        Backend::Sqlite => {
            let path = store.dir.path().join("bootloader.sqlite3");
            let url = format!("sqlite://{}", path.display());
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_scalar("SELECT routing_key FROM outbox ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let url = store.env["DATABASE_URL"].clone();
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_scalar("SELECT routing_key FROM outbox ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_driver_commands_reach_the_bmc() {
    commands_reach_the_bmc("native", Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_driver_commands_reach_the_bmc() {
    commands_reach_the_bmc("ipmitool", Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_driver_on_postgres() {
    commands_reach_the_bmc("native", Backend::Postgres).await;
}

/// Failures, each with its kind, in bounded time, counted in the health.
async fn failures(driver: &str) {
    let bmc = Bmc::start().await;
    let (store, d) = daemon(
        Backend::Sqlite,
        &[
            ("BOOTLOADER_POWER_IPMITOOL_CIPHER_SUITE", "3"),
            ("BOOTLOADER_POWER_TIMEOUT_SECONDS", "2"),
            ("BOOTLOADER_POWER_RETRIES", "1"),
            ("BOOTLOADER_POWER_BACKOFF_MS", "100"),
        ],
    )
    .await;

    // Wrong password: an authentication error, not retried.
    add_server(
        &d,
        "wrong.dc1.example.com",
        bmc.port,
        "admin",
        "not-it",
        driver,
    )
    .await;
    let (s, b) = power(&d, "wrong.dc1.example.com", "on").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(b["error_kind"], "auth", "{b}");
    assert_eq!(b["attempts"], 1, "{b}");
    assert_eq!(bmc.file("power"), "", "nothing reached the chassis");
    let (_, b) = power(&d, "wrong.dc1.example.com", "off").await;
    assert_eq!(b["error_kind"], "auth");
    let (_, h) = d.get("/servers/wrong.dc1.example.com/power/health").await;
    assert_eq!(h["consecutive_failures"], 2, "{h}");
    assert_eq!(h["last_error_kind"], "auth", "{h}");

    // Unknown user.
    add_server(
        &d,
        "nobody.dc1.example.com",
        bmc.port,
        "nobody",
        "secret",
        driver,
    )
    .await;
    let (_, b) = power(&d, "nobody.dc1.example.com", "on").await;
    assert_eq!(b["error_kind"], "auth", "{b}");

    // A BMC that never answers (a socket that reads nothing): a timeout,
    // retried once, within the bound (2 attempts of 2 s and a backoff).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    add_server(
        &d,
        "silent.dc1.example.com",
        silent_port,
        "admin",
        "secret",
        driver,
    )
    .await;
    let started = Instant::now();
    let (s, b) = d.get("/servers/silent.dc1.example.com/power").await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
    assert_eq!(b["error_kind"], "timeout", "{b}");
    assert_eq!(b["attempts"], 2, "{b}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // A cycle that timed out is not sent again: it may have happened.
    let (_, b) = power(&d, "silent.dc1.example.com", "cycle").await;
    assert_eq!(b["error_kind"], "timeout", "{b}");
    assert_eq!(b["attempts"], 1, "{b}");
    drop(silent);

    // Nothing listening at all.
    let closed = free_udp_port();
    add_server(
        &d,
        "gone.dc1.example.com",
        closed,
        "admin",
        "secret",
        driver,
    )
    .await;
    let started = Instant::now();
    let (_, b) = d.get("/servers/gone.dc1.example.com/power").await;
    assert!(
        b["error_kind"] == "unreachable" || b["error_kind"] == "timeout",
        "{b}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A server without BMC settings.
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "bare.dc1.example.com", "location": "dc1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = power(&d, "bare.dc1.example.com", "on").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error_kind"], "not_configured", "{b}");

    // A BMC that refuses: its completion code comes back, not retried.
    add_server(
        &d,
        "good.dc1.example.com",
        bmc.port,
        "admin",
        "secret",
        driver,
    )
    .await;
    std::fs::write(bmc.dir.path().join("refuse"), "").unwrap();
    let (s, b) = power(&d, "good.dc1.example.com", "on").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(b["error_kind"], "refused", "{b}");
    assert_eq!(b["completion_code"], 0xff, "{b}");
    assert_eq!(b["attempts"], 1, "{b}");
    std::fs::remove_file(bmc.dir.path().join("refuse")).unwrap();

    // The daemon still serves the good BMC.
    let (s, b) = power(&d, "good.dc1.example.com", "on").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(bmc.file("power"), "1");

    d.stop().await;
    store.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_driver_failures() {
    failures("native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_driver_failures() {
    failures("ipmitool").await;
}

/// A burst of power-ons across servers is paced: at most `storm_rate`
/// started per second, the rest wait in a queue the API shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_storm_is_paced() {
    const SERVERS: usize = 6;
    let mut bmcs = Vec::new();
    for _ in 0..SERVERS {
        bmcs.push(Bmc::start().await);
    }
    let (store, d) = daemon(
        Backend::Sqlite,
        &[
            ("BOOTLOADER_POWER_STORM_RATE", "2"),
            ("BOOTLOADER_POWER_STORM_IN_FLIGHT", "2"),
        ],
    )
    .await;
    for (i, bmc) in bmcs.iter().enumerate() {
        add_server(
            &d,
            &format!("s{i}.dc1.example.com"),
            bmc.port,
            "admin",
            "secret",
            "native",
        )
        .await;
    }
    let d = std::sync::Arc::new(d);
    let mut tasks = Vec::new();
    for i in 0..SERVERS {
        let d = std::sync::Arc::clone(&d);
        tasks.push(tokio::spawn(async move {
            power(&d, &format!("s{i}.dc1.example.com"), "on").await
        }));
    }
    // While the burst drains, the queue shows who waits.
    let mut most_waiting = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tasks.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        let (_, q) = d.get("/power/queue").await;
        most_waiting = most_waiting.max(q["waiting"].as_u64().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    assert!(
        most_waiting >= 2,
        "the queue never showed a backlog ({most_waiting})"
    );
    // Six starts at two per second span at least 2.5 s.
    let mut times: Vec<f64> = bmcs
        .iter()
        .map(|b| b.file("power-on-times").parse::<f64>().unwrap())
        .collect();
    times.sort_by(f64::total_cmp);
    let span = times[SERVERS - 1] - times[0];
    assert!(span >= 2.3, "power-ons spanned only {span:.2} s: {times:?}");
    let (_, q) = d.get("/power/queue").await;
    assert_eq!(q["waiting"], 0, "{q}");
    assert_eq!(q["in_flight"], 0, "{q}");
    if let Ok(d) = std::sync::Arc::try_unwrap(d) {
        d.stop().await;
    }
    store.drop_database().await;
}

/// Bad requests are refused before any BMC is contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests() {
    let (store, d) = daemon(Backend::Sqlite, &[]).await;
    add_server(&d, "n1.dc1.example.com", 9, "admin", "secret", "native").await;
    let (s, b) = power(&d, "n1.dc1.example.com", "explode").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["fields"]["action"].is_array(), "{b}");
    let (s, b) = d
        .post(
            "/servers/n1.dc1.example.com/bootdev",
            json!({"device": "tape"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _) = power(&d, "missing.dc1.example.com", "on").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, q) = d.get("/power/queue").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(q["waiting"], 0);
    assert_eq!(q["rate_per_second"], 2.0);
    d.stop().await;
    store.drop_database().await;
}
