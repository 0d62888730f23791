//! The packages as an operator installs them. `packaging/build.sh` builds
//! the .deb and the .rpm; each test works in an overlay on a fresh Debian
//! root (debootstrap, built by `packaging/test-root.sh`, which the README's
//! test command runs) and chroots into it:
//! - the .deb installs (user, data dir, conffile, service enabled),
//!   `bootloader --version` and `check-config` run there, the daemon serves
//!   as its user, an upgrade keeps the edited config and the data, remove
//!   keeps them, purge removes them;
//! - the .rpm lists its files, scriptlets and requirements, and rpm runs
//!   its scriptlets in the root on install and erase;
//! - the installed unit runs under a real systemd (the root booted with
//!   `systemd-nspawn --boot --private-network`): Type=notify start, DHCP
//!   and TFTP bound within the sandbox, ipmitool run by the daemon,
//!   `systemctl reload` and `stop`.
//!   Root is needed (chroot, mounts).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::netns::run;

const ROOT: &str = "target/tmp/debian-root";

struct Packages {
    deb: PathBuf,
    deb_upgrade: PathBuf,
    rpm: PathBuf,
}

/// Builds the packages once per test run (a release build).
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        run(Command::new(manifest.join("packaging/build.sh")).args(["--deb-revision", "2"]));
        let out = run(&mut Command::new(manifest.join("packaging/build.sh")));
        let dir = out
            .lines()
            .find_map(|l| l.strip_prefix("packages in "))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("build.sh said where: {out}"));
        let find = |suffix: &str| {
            std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
        };
        Packages {
            deb: find("-1_amd64.deb"),
            deb_upgrade: find("-2_amd64.deb"),
            rpm: find(".rpm"),
        }
    })
}

/// A writable overlay on the Debian root, unmounted and removed on drop.
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new() -> Self {
        let uid = run(Command::new("id").arg("-u"));
        assert_eq!(
            uid.trim(),
            "0",
            "the package tests need root (chroot, mounts)"
        );
        let lower = Path::new(env!("CARGO_MANIFEST_DIR")).join(ROOT);
        assert!(
            lower.join("usr/bin/dpkg").exists(),
            "{} is missing: run packaging/test-root.sh {ROOT} (the README's test command does)",
            lower.display()
        );
        let dir = tempfile::tempdir().unwrap();
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let p = |d: &str| dir.path().join(d).display().to_string();
        run(Command::new("mount").args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                p("upper"),
                p("work")
            ),
            &p("merged"),
        ]));
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    /// A path inside the root.
    fn path(&self, inside: &str) -> PathBuf {
        self.root().join(inside.trim_start_matches('/'))
    }

    /// Runs `args` in the root and returns its output; asserts success.
    fn sh(&self, script: &str) -> String {
        run(Command::new("chroot")
            .arg(self.root())
            .args(["/bin/sh", "-ec", script])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }

    /// Copies `file` into the root's /tmp; returns its path there.
    fn put(&self, file: &Path) -> String {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(file, self.path("tmp").join(&name)).unwrap();
        format!("/tmp/{name}")
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.dir.path().join("merged"))
            .status();
    }
}

fn mode_owner(c: &Chroot, path: &str) -> String {
    c.sh(&format!("stat -c '%a %U %G' {path}"))
        .trim()
        .to_string()
}

#[test]
fn deb_installs_serves_upgrades_removes_and_purges() {
    let p = packages();
    let c = Chroot::new();
    let deb = c.put(&p.deb);
    let upgrade = c.put(&p.deb_upgrade);
    c.sh(&format!("dpkg -i {deb}"));

    let version = c.sh("bootloader --version");
    assert!(version.starts_with("bootloader "), "{version}");
    let config = c.sh("bootloader check-config");
    assert!(
        config.contains("/var/lib/bootloader")
            && config.contains("/etc/bootloader/bootloader.toml"),
        "{config}"
    );
    assert!(
        c.sh("getent passwd bootloader")
            .contains("/usr/sbin/nologin")
    );
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader"),
        "750 bootloader bootloader"
    );
    assert_eq!(
        mode_owner(&c, "/etc/bootloader/bootloader.toml"),
        "640 root bootloader"
    );
    let conffiles = c.sh("dpkg-query -W -f='${Conffiles}' bootloader");
    assert!(
        conffiles.contains("/etc/bootloader/bootloader.toml"),
        "{conffiles}"
    );
    // A symlink into the root's /lib: look at the link, not its target.
    let wants = c.path("etc/systemd/system/multi-user.target.wants/bootloader.service");
    assert!(
        std::fs::symlink_metadata(&wants).is_ok(),
        "the service is enabled"
    );
    let unit =
        std::fs::read_to_string(c.path("usr/lib/systemd/system/bootloader.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("AmbientCapabilities="));
    // systemd's own check of the unit as installed (pointing at the
    // installed binary, which the host's systemd sees through the root).
    let checked = c.path("tmp/bootloader.service");
    let bin = c.path("usr/bin/bootloader").display().to_string();
    std::fs::write(&checked, unit.replace("/usr/bin/bootloader", &bin)).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked)
        .output()
        .expect("systemd-analyze (systemd) on the host");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // It serves as its own user with the packaged config (on loopback: the
    // chroot shares this network namespace).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Command::new("chroot")
        .args(["--userspec=bootloader:bootloader"])
        .arg(c.root())
        .args([
            "/usr/bin/bootloader",
            "--config",
            "/etc/bootloader/bootloader.toml",
            "serve",
        ])
        .env("BOOTLOADER_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/readyz"))
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout) == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the packaged daemon never became ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").arg(daemon.id().to_string()).status();
    let _ = daemon.wait();
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader/bootloader.sqlite3")
            .split(' ')
            .nth(1),
        Some("bootloader")
    );
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader/secret.key"),
        "600 bootloader bootloader"
    );
    // The first token is in a file only the daemon's user (and root) read,
    // and the database is not readable by others either.
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader/admin-token"),
        "600 bootloader bootloader"
    );
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader/bootloader.sqlite3"),
        "600 bootloader bootloader"
    );
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader"),
        "750 bootloader bootloader",
        "the packaged data dir keeps its mode"
    );

    // Upgrade: the operator's edit and the data are kept.
    c.sh("echo '# edited by the operator' >> /etc/bootloader/bootloader.toml");
    c.sh(&format!("dpkg -i {upgrade}"));
    assert!(
        c.sh("cat /etc/bootloader/bootloader.toml")
            .contains("# edited by the operator")
    );
    assert!(c.path("var/lib/bootloader/bootloader.sqlite3").exists());
    assert!(
        c.sh("dpkg-query -W -f='${Version}' bootloader")
            .ends_with("-2")
    );

    // Remove: the program goes, config and data stay.
    c.sh("dpkg -r bootloader");
    assert!(!c.path("usr/bin/bootloader").exists());
    assert!(c.path("etc/bootloader/bootloader.toml").exists());
    assert!(c.path("var/lib/bootloader/secret.key").exists());

    // Purge: they go too.
    c.sh("dpkg -P bootloader");
    assert!(!c.path("etc/bootloader").exists());
    assert!(!c.path("var/lib/bootloader").exists());
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "still enabled after purge"
    );
}

#[test]
fn rpm_lists_its_files_and_its_scriptlets_run() {
    let p = packages();
    let rpm = p.rpm.display().to_string();
    let files = run(Command::new("rpm").args(["-qlp", &rpm]));
    for f in [
        "/usr/bin/bootloader",
        "/etc/bootloader/bootloader.toml",
        "/usr/lib/systemd/system/bootloader.service",
        "/usr/lib/sysusers.d/bootloader.conf",
        "/usr/lib/tmpfiles.d/bootloader.conf",
    ] {
        assert!(files.lines().any(|l| l == f), "{f} missing from:\n{files}");
    }
    let config = run(Command::new("rpm").args(["-qcp", &rpm]));
    assert!(
        config.contains("/etc/bootloader/bootloader.toml"),
        "{config}"
    );
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts", &rpm]));
    for s in [
        "preinstall scriptlet",
        "postinstall scriptlet",
        "preuninstall scriptlet",
        "postuninstall scriptlet",
    ] {
        assert!(scripts.contains(s), "{s} missing:\n{scripts}");
    }
    let requires = run(Command::new("rpm").args(["-qp", "--requires", &rpm]));
    assert!(requires.contains("ipxe-bootimgs-x86"), "{requires}");

    // rpm runs the scriptlets chrooted into the root it installs to.
    let c = Chroot::new();
    let root = c.root().display().to_string();
    run(Command::new("rpm").args(["--root", &root, "--initdb"]));
    run(Command::new("rpm").args(["--root", &root, "-i", "--nodeps", "--nosignature", &rpm]));
    assert!(
        c.sh("getent passwd bootloader")
            .contains("/var/lib/bootloader")
    );
    assert_eq!(
        mode_owner(&c, "/var/lib/bootloader"),
        "750 bootloader bootloader"
    );
    assert_eq!(
        mode_owner(&c, "/etc/bootloader/bootloader.toml"),
        "640 root bootloader"
    );
    assert!(c.sh("bootloader --version").starts_with("bootloader "));
    c.sh("touch /var/lib/bootloader/bootloader.sqlite3");
    run(Command::new("rpm").args(["--root", &root, "-e", "--nodeps", "bootloader"]));
    assert!(!c.path("usr/bin/bootloader").exists());
    // rpm has no purge: the data stays.
    assert!(c.path("var/lib/bootloader/bootloader.sqlite3").exists());
}

/// What runs inside the booted root once the service is up: it writes what
/// it saw to /var/tmp/bl-check.out and powers the container off.
const CHECK: &str = r#"#!/bin/bash
out=/var/tmp/bl-check.out
exec >"$out" 2>&1
say() { echo "$*"; }
http() { # METHOD PATH [BODY]: the response body
  local body=${3:-}
  exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
  printf '%s %s HTTP/1.0\r\nHost: x\r\nAuthorization: Token %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$1" "$2" "$token" "${#body}" "$body" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
for _ in $(seq 1 60); do
  [ "$(systemctl is-active bootloader)" = active ] && break
  sleep 1
done
say "active=$(systemctl is-active bootloader)"
say "$(systemctl show -p Type -p NRestarts -p StatusText bootloader | tr '\n' ' ')"
say "user=$(stat -c %U "/proc/$(systemctl show -p MainPID --value bootloader)")"
ss -lunp | grep -E ':(67|69) ' | sed 's/^/udp /'
token=$(cat /var/lib/bootloader/admin-token)
say "readyz=$(http GET /readyz | tr -d '\n')"
http POST /api/v1/locations '{"name": "dc1"}' >/dev/null
http POST /api/v1/servers '{"fqdn": "n1.dc1.example.com", "location": "dc1", "bmc": {"host": "127.0.0.1", "port": 6230, "username": "ADMIN", "password": "pw", "driver": "ipmitool"}}' >/dev/null
say "power=$(http GET /api/v1/servers/n1.dc1.example.com/power | tr -d '\n')"
systemctl reload bootloader
sleep 2
say "after-reload=$(systemctl is-active bootloader)"
journalctl -u bootloader --no-pager -o cat | grep -m1 'configuration reloaded' | sed 's/^/journal /'
journalctl -u bootloader --no-pager -o cat | grep -c 'bl_' | sed 's/^/token-lines-in-journal /'
systemctl stop bootloader
say "after-stop=$(systemctl is-active bootloader) $(systemctl show -p Result bootloader)"
journalctl -u bootloader --no-pager -o cat | tail -n 25 | sed 's/^/journal-tail /'
say done
systemctl poweroff
"#;

#[test]
fn deb_service_runs_under_systemd() {
    let p = packages();
    let c = Chroot::new();
    let deb = c.put(&p.deb);
    c.sh(&format!("dpkg -i {deb}"));
    // The boot network inside the container's own network namespace: a
    // veth pair with no other end anywhere (--private-network).
    std::fs::write(
        c.path("etc/systemd/system/bl-net.service"),
        "[Unit]\nBefore=bootloader.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/usr/sbin/ip link add bl0 type veth peer name bl0p\n\
         ExecStart=/usr/sbin/ip addr add 10.250.0.1/24 dev bl0\n\
         ExecStart=/usr/sbin/ip link set bl0p up\n\
         ExecStart=/usr/sbin/ip link set bl0 up\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    std::fs::write(
        c.path("etc/systemd/system/bl-check.service"),
        "[Unit]\nAfter=bootloader.service\n[Service]\nType=oneshot\n\
         ExecStart=/usr/local/bin/bl-check\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let script = c.path("usr/local/bin/bl-check");
    std::fs::write(&script, CHECK).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = std::fs::read_to_string(c.path("etc/bootloader/bootloader.toml")).unwrap();
    config.push_str("\n# package test: serve on the container's own boot interface\n");
    let config = config
        .replace("\n[http]\n", "\n[http]\nlisten = \"127.0.0.1:8080\"\n")
        .replace("\n[tftp]\n", "\n[tftp]\nenable = true\n")
        .replace(
            "\n[dhcp]\n",
            "\n[dhcp]\nmode = \"authoritative\"\ninterfaces = [\"bl0\"]\n",
        );
    std::fs::write(c.path("etc/bootloader/bootloader.toml"), config).unwrap();
    c.sh("systemctl enable bl-net.service bl-check.service bootloader.service");

    let started = Instant::now();
    let mut nspawn = Command::new("systemd-nspawn")
        .arg("-D")
        .arg(c.root())
        .args([
            "--boot",
            "--private-network",
            "--register=no",
            "--keep-unit",
            "-q",
        ])
        .stdout(std::fs::File::create(c.dir.path().join("console.log")).unwrap())
        .stderr(std::fs::File::create(c.dir.path().join("nspawn.log")).unwrap())
        .spawn()
        .expect("systemd-nspawn (systemd-container)");
    let status = loop {
        if let Some(s) = nspawn.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = nspawn.kill();
            let _ = nspawn.wait();
            panic!(
                "the container did not power off: {}",
                std::fs::read_to_string(c.path("var/tmp/bl-check.out")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let out = std::fs::read_to_string(c.path("var/tmp/bl-check.out")).unwrap_or_default();
    let console = |name: &str| std::fs::read_to_string(c.dir.path().join(name)).unwrap_or_default();
    assert!(
        status.success() && out.contains("\ndone"),
        "{status}: {out}\n--- nspawn:\n{}\n--- console (tail):\n{}",
        console("nspawn.log"),
        console("console.log")
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.contains("active=active"), "{out}");
    assert!(
        out.contains("Type=notify") && out.contains("NRestarts=0"),
        "{out}"
    );
    assert!(out.contains("user=bootloader"), "{out}");
    // DHCP on the boot interface and TFTP, bound by the sandboxed daemon.
    assert!(
        out.lines()
            .any(|l| l.starts_with("udp ") && l.contains(":67 ") && l.contains("bootloader")),
        "DHCP not bound: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("udp ") && l.contains(":69 ") && l.contains("bootloader")),
        "TFTP not bound: {out}"
    );
    assert!(out.contains("\"ready\":true"), "not ready: {out}");
    // ipmitool ran inside the sandbox and reached (no) BMC: the error is
    // the BMC's silence, not a refusal to run it.
    let power = out
        .lines()
        .find(|l| l.starts_with("power="))
        .unwrap_or_default();
    assert!(
        power.contains("\"driver\":\"ipmitool\"")
            && (power.contains("\"error_kind\":\"timeout\"")
                || power.contains("\"error_kind\":\"unreachable\"")),
        "{power}"
    );
    assert!(!power.contains("cannot run"), "{power}");
    assert!(out.contains("after-reload=active"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("journal ") && l.contains("configuration reloaded")),
        "{out}"
    );
    assert!(
        out.contains("token-lines-in-journal 0"),
        "the token reached the journal: {out}"
    );
    assert!(
        out.contains("after-stop=inactive") && out.contains("Result=success"),
        "{out}"
    );
}
