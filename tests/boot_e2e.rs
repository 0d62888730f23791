//! End to end: QEMU VMs that know nothing but their firmware boot through
//! the daemon to the payload profile and call back.
//!
//! Each test builds its own network namespace (a bridge at 10.77.0.1/24
//! with the daemon on it and a tap per VM); nothing is sent outside it.
//! In ProxyDHCP tests a second namespace, joined to the bridge by a veth
//! pair, runs dnsmasq as the site's plain DHCP server. Namespaces and
//! processes are removed when the test ends, also when it fails.
//!
//! Needs root, `ip`, `qemu-system-x86_64`, Debian's `ipxe`, `ipxe-qemu`,
//! `ovmf` and `dnsmasq-base`, and the payload built by
//! `tests/e2e/build-payload.sh` (run here; cached). `.ci/test` installs
//! them. Without them the tests fail and say what is missing; set
//! `BOOTLOADER_SKIP_E2E=1` to skip them knowingly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bootloader::model::CallbackToken;
use bootloader::store::Store;
use bootloader::store::boot::Via;
use serde_json::{Value, json};

const SERVER_IP: &str = "10.77.0.1";
const BASE: &str = "http://10.77.0.1:8080";
const PAYLOAD_STEPS: [&str; 4] = ["preparing", "installing", "configuring", "postconfiguring"];
/// A VM's whole boot under TCG takes 30-60 s; this bounds a hung one.
const VM_LIMIT: Duration = Duration::from_secs(360);

static NEXT: AtomicU32 = AtomicU32::new(0);

fn skip() -> bool {
    if std::env::var("BOOTLOADER_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!("BOOTLOADER_SKIP_E2E=1: end-to-end boot test skipped");
        return true;
    }
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(args: &[&str]) -> String {
    run(Command::new(args[0]).args(&args[1..]))
}

fn preflight() {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "end-to-end boot tests need root (network namespaces, taps); run `sudo .ci/test`, or set BOOTLOADER_SKIP_E2E=1"
    );
    for f in [
        "/usr/bin/qemu-system-x86_64",
        "/usr/lib/ipxe/undionly.kpxe",
        "/usr/lib/ipxe/ipxe.efi",
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
        "/usr/sbin/dnsmasq",
    ] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: apt-get install qemu-system-x86 ipxe ipxe-qemu ovmf dnsmasq-base (or run .ci/test)"
        );
    }
}

/// Builds (once) the payload kernel and initramfs.
fn payload() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("payload");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/build-payload.sh");
    run(Command::new("bash").arg(script).arg(&dir));
    dir
}

/// A namespace with the daemon, and the processes around it.
struct Lab {
    ns: String,
    dhcp_ns: Option<String>,
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    store: Option<std::sync::Arc<dyn Store>>,
    token: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in std::iter::once(&self.ns).chain(self.dhcp_ns.iter()) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c
    }

    fn spawn(&mut self, what: &str, mut cmd: Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("{what}.log"))).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        self.children.push((what.to_string(), child));
    }

    fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{what}.log"))).unwrap_or_default()
    }

    /// Everything a failing test should show.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (what, _) in &self.children {
            let text = self.log(what);
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            out.push_str(&format!("\n===== {what} (last lines) =====\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Sets up the namespace and starts the daemon in `mode`.
    fn start(mode: &str, proxy_beside_dnsmasq: bool) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let ns = format!("ble2e{}x{n}", std::process::id());
        sh(&["ip", "netns", "add", &ns]);
        let mut lab = Lab {
            ns,
            dhcp_ns: None,
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
            store: None,
            token: String::new(),
        };
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec![
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "forward_delay",
                "0",
            ],
            vec!["ip", "addr", "add", "10.77.0.1/24", "dev", "br0"],
            vec!["ip", "link", "set", "br0", "up"],
        ] {
            run(&mut lab.exec(&args));
        }
        if proxy_beside_dnsmasq {
            let dns = format!("{}d", lab.ns);
            sh(&["ip", "netns", "add", &dns]);
            lab.dhcp_ns = Some(dns.clone());
            run(&mut lab.exec(&[
                "ip", "link", "add", "vsite", "type", "veth", "peer", "name", "vsite1", "netns",
                &dns,
            ]));
            run(&mut lab.exec(&["ip", "link", "set", "vsite", "master", "br0", "up"]));
            for args in [
                vec!["ip", "link", "set", "lo", "up"],
                vec!["ip", "addr", "add", "10.77.0.2/24", "dev", "vsite1"],
                vec!["ip", "link", "set", "vsite1", "up"],
            ] {
                sh(&[&["ip", "netns", "exec", &dns][..], &args[..]].concat());
            }
            let leases = lab.dir.path().join("dnsmasq.leases");
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                &dns,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
            ])
            .args(["--port=0", "--interface=vsite1", "--bind-interfaces"])
            .args([
                "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
                "--log-dhcp",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()));
            lab.spawn("dnsmasq", c);
        }
        let static_dir = lab.dir.path().join("static");
        std::fs::create_dir_all(static_dir.join("payload")).unwrap();
        let payload = payload();
        for f in ["vmlinuz", "initrd.img"] {
            std::fs::copy(payload.join(f), static_dir.join("payload").join(f)).unwrap();
        }
        let config = lab.dir.path().join("bootloader.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
url = "{BASE}"
data_dir = "{data}"

[http]
listen = "{SERVER_IP}:8080"
static_dir = "{static_dir}"

[tftp]
enable = true
listen = "{SERVER_IP}:69"
root = "/usr/lib/ipxe"

[dhcp]
mode = "{mode}"
interfaces = ["br0"]
lease_time = 600
"#,
                data = lab.dir.path().display(),
                static_dir = static_dir.display(),
            ),
        )
        .unwrap();
        let bin = env!("CARGO_BIN_EXE_bootloader");
        let cfg = config.display().to_string();
        lab.token =
            run(Command::new(bin).args(["--config", &cfg, "user", "add", "e2e", "--staff"]))
                .trim()
                .to_string();
        let mut daemon = lab.exec(&[bin, "--config", &cfg, "serve"]);
        daemon.env("RUST_LOG", "info,bootloader=debug");
        lab.spawn("daemon", daemon);
        let deadline = Instant::now() + Duration::from_secs(30);
        while lab
            .exec(&["curl", "-sf", &format!("{BASE}/healthz")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "daemon did not start:{}",
                lab.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        lab
    }

    /// An API call made from inside the namespace, as an operator would.
    fn api(&self, method: &str, path: &str, body: Option<&str>, content_type: &str) -> Value {
        let mut args = vec![
            "curl".to_string(),
            "-s".into(),
            "-X".into(),
            method.into(),
            "-H".into(),
            format!("Authorization: Token {}", self.token),
            format!("{BASE}/api/v1alpha2{path}"),
        ];
        if let Some(b) = body {
            args.extend([
                "-H".into(),
                format!("Content-Type: {content_type}"),
                "--data-binary".into(),
                b.into(),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&mut self.exec(&refs));
        serde_json::from_str(&out).unwrap_or(Value::String(out))
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.api("POST", path, Some(&body.to_string()), "application/json")
    }

    /// The store the daemon uses, opened from this process (SQLite in the
    /// test's directory).
    async fn store(&mut self) -> std::sync::Arc<dyn Store> {
        if let Some(s) = &self.store {
            return s.clone();
        }
        let path = self.dir.path().join("bootloader.toml");
        let config = bootloader::config::load(Some(&path), &|_| None, &Default::default()).unwrap();
        let store = bootloader::app::open_store(&config).await.unwrap();
        self.store = Some(store.clone());
        store
    }

    /// Registers a server with one NIC and starts a payload deployment for
    /// it: the iPXE script served at `ipxe/<mac>` is rendered from the
    /// shipped profile, as the engine's `serve_file` will. Returns the
    /// deployment id.
    async fn deploy(&mut self, fqdn: &str, mac: &str) -> i64 {
        let r = self.post(
            "/servers",
            json!({"fqdn": fqdn, "location": "lab", "interfaces": [{"name": "eth0", "mac": mac}]}),
        );
        assert_eq!(r["fqdn"], fqdn, "{r}");
        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml"),
        )
        .unwrap();
        let p = self.api("POST", "/profiles", Some(&yaml), "application/yaml");
        let profile_id = match p["id"].as_i64() {
            Some(id) => id,
            None => self.api("GET", "/profiles/payload==1.0", None, "")["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("payload profile: {p}")),
        };
        let store = self.store().await;
        let token = CallbackToken::generate().unwrap();
        let d = store
            .create_deployment(&fqdn.parse().unwrap(), profile_id, &token.hash())
            .await
            .unwrap();
        let profile = bootloader::profile::parse(&yaml).unwrap();
        let ctx = json!({
            "agent_url": BASE,
            "callback_base": format!("{BASE}/_callback/{}/", token.expose()),
            "mac_address": mac,
        });
        let script = bootloader::profile::render_template(&profile, "ipxe", &ctx).unwrap();
        store
            .serve_file(d.id, Via::Http, &format!("ipxe/{mac}"), script.as_bytes())
            .await
            .unwrap();
        d.id
    }

    fn seed_network(&self, pool: bool) {
        let r = self.post("/locations", json!({"name": "lab"}));
        assert_eq!(r["name"], "lab", "{r}");
        let mut net =
            json!({"location": "lab", "cidr": "10.77.0.0/24", "domain": "lab.example.com"});
        if pool {
            net["pool"] = json!({"start": "10.77.0.100", "end": "10.77.0.150"});
        }
        let r = self.post("/networks", net);
        assert_eq!(r["cidr"], "10.77.0.0/24", "{r}");
    }

    /// Starts a VM on a new tap in the bridge.
    fn vm(&mut self, name: &str, mac: &str, uefi: bool) {
        let tap = format!("tap{name}");
        run(&mut self.exec(&["ip", "tuntap", "add", &tap, "mode", "tap"]));
        run(&mut self.exec(&["ip", "link", "set", &tap, "master", "br0", "up"]));
        let serial = self.dir.path().join(format!("{name}.serial"));
        let mut args: Vec<String> = [
            "qemu-system-x86_64",
            "-machine",
            "q35",
            "-m",
            "512",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["-serial".into(), format!("file:{}", serial.display())]);
        args.extend([
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
        ]);
        if uefi {
            let vars = self.dir.path().join(format!("{name}-vars.fd"));
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
            args.extend([
                "-drive".into(),
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                "-drive".into(),
                format!("if=pflash,format=raw,file={}", vars.display()),
                // No option ROM: the firmware's own PXE, then TFTP ipxe.efi.
                "-device".into(),
                format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
            ]);
        } else {
            // SeaBIOS with Debian's iPXE ROM: DHCP with user class iPXE.
            args.extend([
                "-boot".into(),
                "n".into(),
                "-device".into(),
                format!("e1000,netdev=n0,mac={mac}"),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.exec(&refs);
        self.spawn(&format!("qemu-{name}"), cmd);
    }

    /// Waits for VM `name` to power itself off (the payload's last act).
    fn wait_vm(&mut self, name: &str) {
        let what = format!("qemu-{name}");
        let deadline = Instant::now() + VM_LIMIT;
        loop {
            let child = &mut self
                .children
                .iter_mut()
                .find(|(w, _)| *w == what)
                .expect("vm")
                .1;
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{what} exited with {status}{}",
                    self.failure(name)
                );
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what} still running after {VM_LIMIT:?}{}",
                    self.failure(name)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn failure(&self, vm: &str) -> String {
        let mut serial = std::fs::read_to_string(self.dir.path().join(format!("{vm}.serial")))
            .unwrap_or_default();
        // Firmware progress counters drown everything else.
        for pct in (0..=100).rev() {
            serial = serial.replace(&format!("Downloading...{pct}%  "), "");
        }
        if let Ok(dir) = std::env::var("BOOTLOADER_E2E_KEEP") {
            let to = Path::new(&dir).join(&self.ns);
            let _ = std::fs::create_dir_all(&to);
            for e in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::copy(e.path(), to.join(e.file_name()));
            }
        }
        let tail: String = serial
            .chars()
            .rev()
            .take(6000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("\n===== {vm} serial =====\n{tail}{}", self.logs())
    }

    fn timeline(&self, fqdn: &str) -> Vec<Value> {
        let t = self.api(
            "GET",
            &format!("/servers/{fqdn}/timeline?limit=2000"),
            None,
            "",
        );
        t["events"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("timeline: {t}"))
    }
}

/// The payload's four callbacks reached the deployment, in order.
async fn assert_called_back(lab: &mut Lab, deployment: i64, vm: &str) {
    let store = lab.store().await;
    let names: Vec<String> = store
        .callbacks(deployment)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, PAYLOAD_STEPS, "callbacks{}", lab.failure(vm));
}

/// The timeline holds each phase of the boot, oldest first.
fn assert_timeline(lab: &Lab, fqdn: &str, vm: &str, expect: &[(&str, &str)]) {
    // Events are written in batches; give the writer a moment.
    std::thread::sleep(Duration::from_millis(600));
    let mut events = lab.timeline(fqdn);
    events.reverse();
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} -> {}",
                e["phase"], e["outcome"], e["request"], e["detail"]
            )
        })
        .collect();
    let mut at = 0;
    for (phase, needle) in expect {
        match lines[at..]
            .iter()
            .position(|l| l.contains(&format!("\"{phase}\"")) && l.contains(needle))
        {
            Some(i) => at += i + 1,
            None => panic!(
                "timeline of {fqdn} lacks {phase} {needle:?} (in order):\n{}\n{}",
                lines.join("\n"),
                lab.failure(vm)
            ),
        }
    }
}

fn mac(n: u32) -> String {
    format!("52:54:00:77:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bios_ipxe_rom_authoritative() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start("authoritative", false);
    lab.seed_network(true);
    let m = mac(1);
    let fqdn = "bios1.lab.example.com";
    let dep = lab.deploy(fqdn, &m).await;
    lab.vm("bios1", &m, false);
    lab.wait_vm("bios1");
    assert_called_back(&mut lab, dep, "bios1").await;
    assert_timeline(
        &lab,
        fqdn,
        "bios1",
        &[
            ("dhcp", "ipxe script http://10.77.0.1:8080/boot.ipxe"),
            ("http", "GET /boot.ipxe"),
            ("http", &format!("GET /ipxe/{m}")),
            ("http", "GET /static/payload/vmlinuz"),
            ("http", "GET /static/payload/initrd.img"),
            ("dhcp", "no boot information"),
            ("http", "/_callback/<token>/preparing"),
            ("http", "/_callback/<token>/postconfiguring"),
        ],
    );
    let leases = lab.api("GET", "/leases", None, "");
    assert!(
        leases["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["mac"] == m.as_str() && l["state"] == "bound"),
        "{leases}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uefi_pxe_authoritative() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start("authoritative", false);
    lab.seed_network(true);
    let m = mac(2);
    let fqdn = "uefi1.lab.example.com";
    let dep = lab.deploy(fqdn, &m).await;
    lab.vm("uefi1", &m, true);
    lab.wait_vm("uefi1");
    assert_called_back(&mut lab, dep, "uefi1").await;
    assert_timeline(
        &lab,
        fqdn,
        "uefi1",
        &[
            ("dhcp", "tftp ipxe.efi"),
            ("tftp", "RRQ ipxe.efi"),
            ("dhcp", "ipxe script"),
            ("http", "GET /boot.ipxe"),
            ("http", &format!("GET /ipxe/{m}")),
            ("http", "/_callback/<token>/postconfiguring"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bios_and_uefi_proxy_beside_dnsmasq() {
    if skip() {
        return;
    }
    preflight();
    // dnsmasq hands out the addresses; the daemon only says how to boot.
    let mut lab = Lab::start("proxy", true);
    lab.seed_network(false);
    let (mb, mu) = (mac(3), mac(4));
    let (fb, fu) = ("pbios.lab.example.com", "puefi.lab.example.com");
    let db = lab.deploy(fb, &mb).await;
    let du = lab.deploy(fu, &mu).await;
    // Both at once: two machines booting side by side.
    lab.vm("pbios", &mb, false);
    lab.vm("puefi", &mu, true);
    lab.wait_vm("pbios");
    lab.wait_vm("puefi");
    assert_called_back(&mut lab, db, "pbios").await;
    assert_called_back(&mut lab, du, "puefi").await;
    assert_timeline(
        &lab,
        fb,
        "pbios",
        &[
            ("dhcp", "OFFER ipxe script http://10.77.0.1:8080/boot.ipxe"),
            ("http", "GET /boot.ipxe"),
            ("http", &format!("GET /ipxe/{mb}")),
            ("http", "/_callback/<token>/postconfiguring"),
        ],
    );
    assert_timeline(
        &lab,
        fu,
        "puefi",
        &[
            ("dhcp", "OFFER tftp ipxe.efi"),
            ("tftp", "RRQ ipxe.efi"),
            ("http", "GET /boot.ipxe"),
            ("http", &format!("GET /ipxe/{mu}")),
            ("http", "/_callback/<token>/postconfiguring"),
        ],
    );
    // The addresses came from dnsmasq, and the daemon holds no leases.
    let leases = std::fs::read_to_string(lab.dir.path().join("dnsmasq.leases")).unwrap();
    assert!(leases.contains(&mb) && leases.contains(&mu), "{leases}");
    assert_eq!(lab.api("GET", "/leases", None, "")["count"], 0);
}
