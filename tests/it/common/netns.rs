//! Network namespaces for tests that need broadcast, real firmware or
//! real DHCP clients: a bridge at 10.77.0.1/20 with the daemon on it, taps
//! for VMs, veth pairs for client namespaces. Nothing leaves them, and
//! everything a `Lab` creates is removed when it is dropped, also when the
//! test fails. Needs root; see `preflight`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bootloader_core::model::CallbackToken;
use bootloader_core::model::Via;
use bootloader_store::Store;
use serde_json::{Value, json};

pub const SERVER_IP: &str = "10.77.0.1";
pub const BASE: &str = "http://10.77.0.1:8080";
pub const PAYLOAD_STEPS: [&str; 4] = ["preparing", "installing", "configuring", "postconfiguring"];
/// A VM's whole boot under TCG takes 30-60 s; this bounds a hung one.
pub const VM_LIMIT: Duration = Duration::from_secs(360);

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn skip() -> bool {
    if std::env::var("BOOTLOADER_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!("BOOTLOADER_SKIP_E2E=1: end-to-end boot test skipped");
        return true;
    }
    false
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(args: &[&str]) -> String {
    run(Command::new(args[0]).args(&args[1..]))
}

pub fn preflight() {
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
pub fn payload() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("payload");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/build-payload.sh");
    run(Command::new("bash").arg(script).arg(&dir));
    dir
}

/// A namespace with the daemon, and the processes around it.
pub struct Lab {
    pub ns: String,
    pub extra_ns: Vec<String>,
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    store: Option<std::sync::Arc<dyn Store>>,
    pub token: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in std::iter::once(&self.ns).chain(self.extra_ns.iter()) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c
    }

    pub fn spawn(&mut self, what: &str, mut cmd: Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("{what}.log"))).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        self.children.push((what.to_string(), child));
    }

    pub fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{what}.log"))).unwrap_or_default()
    }

    /// Everything a failing test should show.
    pub fn logs(&self) -> String {
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
    pub fn start(mode: &str, proxy_beside_dnsmasq: bool) -> Self {
        Self::start_with(mode, proxy_beside_dnsmasq, "")
    }

    /// As `start`, with `extra` appended to the `[dhcp]` section.
    pub fn start_with(mode: &str, proxy_beside_dnsmasq: bool, extra: &str) -> Self {
        let mut lab = Self::network(proxy_beside_dnsmasq);
        lab.start_daemon(mode, extra, &[]);
        lab
    }

    /// The namespace with its bridge (10.77.0.1/20), and dnsmasq beside
    /// it if asked; no daemon yet.
    pub fn network(proxy_beside_dnsmasq: bool) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let ns = format!("ble2e{}x{n}", std::process::id());
        sh(&["ip", "netns", "add", &ns]);
        let mut lab = Lab {
            ns,
            extra_ns: Vec::new(),
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
            vec!["ip", "addr", "add", "10.77.0.1/20", "dev", "br0"],
            vec!["ip", "link", "set", "br0", "up"],
        ] {
            run(&mut lab.exec(&args));
        }
        if proxy_beside_dnsmasq {
            let dns = format!("{}d", lab.ns);
            sh(&["ip", "netns", "add", &dns]);
            lab.extra_ns.push(dns.clone());
            run(&mut lab.exec(&[
                "ip", "link", "add", "vsite", "type", "veth", "peer", "name", "vsite1", "netns",
                &dns,
            ]));
            run(&mut lab.exec(&["ip", "link", "set", "vsite", "master", "br0", "up"]));
            for args in [
                vec!["ip", "link", "set", "lo", "up"],
                vec!["ip", "addr", "add", "10.77.0.2/20", "dev", "vsite1"],
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
                "--dhcp-range=10.77.0.50,10.77.0.99,255.255.240.0,1h",
                "--log-dhcp",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()));
            lab.spawn("dnsmasq", c);
        }
        // For new golden fixtures: every DHCP packet on the bridge.
        if let Ok(dir) = std::env::var("BOOTLOADER_E2E_CAPTURE") {
            let pcap = Path::new(&dir).join(format!("{}.pcap", lab.ns));
            let pcap = pcap.display().to_string();
            let c = lab.exec(&[
                "tcpdump", "-i", "br0", "-U", "-w", &pcap, "udp", "and", "(port", "67", "or",
                "port", "68", "or", "port", "4011)",
            ]);
            lab.spawn("tcpdump", c);
        }
        lab
    }

    /// Starts the daemon on the bridge in DHCP `mode`, with `extra` in its
    /// `[dhcp]` section and `env` added to its environment.
    pub fn start_daemon(&mut self, mode: &str, extra: &str, env: &[(&str, &str)]) {
        let lab = self;
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
{extra}
"#,
                data = lab.dir.path().display(),
                static_dir = static_dir.display(),
            ),
        )
        .unwrap();
        let bin = env!("CARGO_BIN_EXE_bootloader");
        let cfg = config.display().to_string();
        lab.token = run(lab
            .exec(&[bin, "--config", &cfg, "user", "add", "e2e", "--staff"])
            .envs(env.iter().copied()))
        .trim()
        .to_string();
        let mut daemon = lab.exec(&[bin, "--config", &cfg, "serve"]);
        daemon.env("RUST_LOG", "info,bootloader=debug");
        daemon.envs(env.iter().copied());
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
        // Ready: the store answers, and HTTP, DHCP on the bridge and TFTP
        // are all serving.
        let ready = run(&mut lab.exec(&["curl", "-s", &format!("{BASE}/readyz")]));
        let ready: Value = serde_json::from_str(&ready).unwrap_or(Value::String(ready));
        assert_eq!(ready["ready"], true, "{ready}");
        let names: Vec<&str> = ready["listeners"]
            .as_array()
            .map(|l| l.iter().filter_map(|l| l["name"].as_str()).collect())
            .unwrap_or_default();
        for name in ["http", "dhcp", "tftp"] {
            assert!(names.contains(&name), "{name} missing from {ready}");
        }
    }

    /// A second daemon, in a namespace of its own joined to the bridge,
    /// at `ip` (in 10.77.0.0/20) on its interface `eth0`, in DHCP `mode`,
    /// with `env` (its database, say); logged as `daemon2`. Returns its
    /// namespace.
    pub fn second_daemon(&mut self, ip: &str, mode: &str, env: &[(&str, &str)]) -> String {
        let ns = self.client_ns("d2", "52:54:00:77:00:02");
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{ip}/20"),
            "dev",
            "eth0",
        ]));
        let data = self.dir.path().join("daemon2");
        std::fs::create_dir_all(&data).unwrap();
        let config = data.join("bootloader.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
url = "http://{ip}:8080"
data_dir = "{data}"

[http]
listen = "{ip}:8080"

[tftp]
enable = false

[dhcp]
mode = "{mode}"
interfaces = ["eth0"]
lease_time = 600
"#,
                data = data.display(),
            ),
        )
        .unwrap();
        let bin = env!("CARGO_BIN_EXE_bootloader");
        let cfg = config.display().to_string();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns, bin, "--config", &cfg, "serve"])
            .env("RUST_LOG", "info,bootloader=debug")
            .envs(env.iter().copied());
        self.spawn("daemon2", c);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-sf"])
            .arg(format!("http://{ip}:8080/healthz"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "the second daemon did not start:{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ns
    }

    /// An API call made from inside the namespace, as an operator would.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>, content_type: &str) -> Value {
        let mut args = vec![
            "curl".to_string(),
            "-s".into(),
            "-X".into(),
            method.into(),
            "-H".into(),
            format!("Authorization: Token {}", self.token),
            format!("{BASE}/api/v1{path}"),
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

    pub fn post(&self, path: &str, body: Value) -> Value {
        self.api("POST", path, Some(&body.to_string()), "application/json")
    }

    /// The store the daemon uses, opened from this process (SQLite in the
    /// test's directory).
    pub async fn store(&mut self) -> std::sync::Arc<dyn Store> {
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
    pub async fn deploy(&mut self, fqdn: &str, mac: &str) -> i64 {
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
        let profile = bootloader_core::profile::parse(&yaml).unwrap();
        let ctx = json!({
            "agent_url": BASE,
            "callback_base": format!("{BASE}/_callback/{}/", token.expose()),
            "mac_address": mac,
        });
        let script = bootloader_core::profile::render_template(&profile, "ipxe", &ctx).unwrap();
        store
            .serve_file(d.id, Via::Http, &format!("ipxe/{mac}"), script.as_bytes())
            .await
            .unwrap();
        d.id
    }

    /// Location `lab` and its network 10.77.0.0/20, with a pool of
    /// 10.77.0.100-10.77.0.150, or none.
    pub fn seed_network(&self, pool: bool) {
        self.seed_network_with(pool.then_some(("10.77.0.100", "10.77.0.150")));
    }

    pub fn seed_network_with(&self, pool: Option<(&str, &str)>) {
        let r = self.post("/locations", json!({"name": "lab"}));
        assert_eq!(r["name"], "lab", "{r}");
        let mut net = json!({"location": "lab", "cidr": "10.77.0.0/20", "gateway": "10.77.0.1",
            "nameservers": ["10.77.0.1"], "domain": "lab.example.com"});
        if let Some((start, end)) = pool {
            net["pool"] = json!({"start": start, "end": end});
        }
        let r = self.post("/networks", net);
        assert_eq!(r["cidr"], "10.77.0.0/20", "{r}");
    }

    /// A namespace for a DHCP client, joined to the bridge by a veth pair
    /// whose client end is `eth0` with `mac`. Returns the namespace name.
    pub fn client_ns(&mut self, name: &str, mac: &str) -> String {
        let ns = format!("{}{name}", self.ns);
        sh(&["ip", "netns", "add", &ns]);
        self.extra_ns.push(ns.clone());
        let host_end = format!("v{name}");
        run(&mut self.exec(&[
            "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]));
        run(&mut self.exec(&["ip", "link", "set", &host_end, "master", "br0", "up"]));
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "link", "set", "eth0", "address", mac],
            vec!["ip", "link", "set", "eth0", "up"],
        ] {
            sh(&[&["ip", "netns", "exec", &ns][..], &args[..]].concat());
        }
        ns
    }

    /// Starts a long-running process in namespace `ns`, logged as `what`.
    pub fn spawn_in(&mut self, ns: &str, what: &str, args: &[&str]) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        self.spawn(what, c);
    }

    /// The process `what`, to signal or wait for.
    pub fn child(&mut self, what: &str) -> &mut Child {
        &mut self
            .children
            .iter_mut()
            .find(|(w, _)| w == what)
            .unwrap_or_else(|| panic!("no process {what}"))
            .1
    }

    /// Starts a VM on a new tap in the bridge.
    pub fn vm(&mut self, name: &str, mac: &str, uefi: bool) {
        let args = self.vm_args(name, mac, uefi, true);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.exec(&refs);
        self.spawn(&format!("qemu-{name}"), cmd);
    }

    /// A new tap in the bridge and the QEMU command line of a VM on it.
    /// `network_boot` adds `-boot n` to BIOS machines (UEFI ones boot from
    /// the network when nothing else is there).
    pub fn vm_args(&self, name: &str, mac: &str, uefi: bool, network_boot: bool) -> Vec<String> {
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
            if network_boot {
                args.extend(["-boot".into(), "n".into()]);
            }
            args.extend(["-device".into(), format!("e1000,netdev=n0,mac={mac}")]);
        }
        args
    }

    /// Waits for VM `name` to power itself off (the payload's last act).
    pub fn wait_vm(&mut self, name: &str) {
        let what = format!("qemu-{name}");
        let deadline = Instant::now() + VM_LIMIT;
        loop {
            let child = self.child(&what);
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

    pub fn failure(&self, vm: &str) -> String {
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

    pub fn timeline(&self, fqdn: &str) -> Vec<Value> {
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

pub fn mac(n: u32) -> String {
    format!("52:54:00:77:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff)
}
