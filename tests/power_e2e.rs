//! End to end: a VM behind a BMC. OpenIPMI's `ipmi_sim` runs in the lab's
//! namespace with a chassis_control program that starts and stops a QEMU
//! VM (network boot when the BMC was told `bootdev pxe`, disk otherwise).
//! Nobody starts the VM by hand: the daemon's `bootdev pxe` and
//! `power cycle`, through the API, make it network-boot the payload, which
//! calls back.
//!
//! Needs what `boot_e2e.rs` needs, plus `openipmi` and `ipmitool`.

mod common;

use std::time::{Duration, Instant};

use common::netns::{Lab, PAYLOAD_STEPS, VM_LIMIT, mac, preflight, skip};
use serde_json::json;

/// Kills the VM the chassis program started, whatever happens to the test.
struct VmPid(std::path::PathBuf);

impl Drop for VmPid {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill")
                .arg(pid.trim())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Writes the chassis program and ipmi_sim's configuration into the lab
/// directory; returns the BMC's port.
fn bmc_files(lab: &Lab, qemu: &[String]) -> u16 {
    let dir = lab.dir.path();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // QEMU's arguments, one per line, read back by the shell script.
    std::fs::write(dir.join("qemu.args"), qemu.join("\n") + "\n").unwrap();
    let chassis = dir.join("chassis.sh");
    std::fs::write(
        &chassis,
        r#"#!/bin/bash
# ipmi_sim's chassis_control: <mc> get|set <parm> [value] ...
dir=$(dirname "$0")
echo "$*" >> "$dir/chassis.calls"
running() { [ -e "$dir/qemu.pid" ] && kill -0 "$(cat "$dir/qemu.pid")" 2>/dev/null; }
start_vm() {
  running && return
  mapfile -t args < "$dir/qemu.args"
  if [ "$(cat "$dir/bootdev" 2>/dev/null)" = pxe ]; then boot=n; else boot=c; fi
  setsid "${args[@]}" -boot "$boot" </dev/null >>"$dir/qemu-bmc.log" 2>&1 &
  echo $! > "$dir/qemu.pid"
}
stop_vm() {
  running && kill "$(cat "$dir/qemu.pid")"
  for _ in $(seq 50); do running || break; sleep 0.1; done
}
shift
op=$1; shift
case $op in
get)
  for p in "$@"; do
    case $p in
      power) if running; then echo power:1; else echo power:0; fi;;
      boot) echo "boot:$(cat "$dir/bootdev" 2>/dev/null || echo default)";;
    esac
  done;;
set)
  while [ $# -gt 1 ]; do
    case $1 in
      power) if [ "$2" = 1 ]; then start_vm; else stop_vm; fi;;
      reset) stop_vm; start_vm;;
      boot) echo "$2" > "$dir/bootdev";;
    esac
    shift 2
  done;;
esac
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chassis, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("lan.conf"),
        format!(
            r#"name "e2ebmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{} 0x20"
user 2 true  "admin"  "secret" admin 10 none md2 md5 straight
"#,
            chassis.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("sim.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("bmc-state")).unwrap();
    port
}

async fn boot_through_the_bmc(driver: &str, n: u32) {
    if skip() {
        return;
    }
    preflight();
    // ipmi_sim offers cipher suite 3, not ipmitool's default 17.
    let mut lab = Lab::start_with(
        "authoritative",
        false,
        "\n[power]\nipmitool_cipher_suite = 3\n",
    );
    lab.seed_network(true);
    let m = mac(40 + n);
    let name = format!("bmc{n}");
    let fqdn = format!("{name}.lab.example.com");
    let dep = lab.deploy(&fqdn, &m).await;

    // The VM's command line, without a boot order: the chassis adds it.
    // (The chassis program runs in the lab's namespace, as ipmi_sim does.)
    let qemu = lab.vm_args(&name, &m, false, false);
    let port = bmc_files(&lab, &qemu);
    let _vm = VmPid(lab.dir.path().join("qemu.pid"));
    let dir = lab.dir.path().to_path_buf();
    let conf = dir.join("lan.conf").display().to_string();
    let emu = dir.join("sim.emu").display().to_string();
    let state = dir.join("bmc-state").display().to_string();
    let ns = lab.ns.clone();
    lab.spawn_in(
        &ns,
        "ipmi_sim",
        &[
            "ipmi_sim", "-c", &conf, "-f", &emu, "-s", &state, "-n", "-p",
        ],
    );
    // Give the BMC to the server.
    let r = lab.api(
        "PATCH",
        &format!("/servers/{fqdn}"),
        Some(
            &json!({"bmc": {"host": "127.0.0.1", "port": port, "username": "admin",
                "password": "secret", "driver": driver}})
            .to_string(),
        ),
        "application/json",
    );
    assert_eq!(r["bmc"]["password_set"], true, "{r}");

    // What the profile's preparing step does: bootdev pxe, power cycle.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = lab.post(
            &format!("/servers/{fqdn}/bootdev"),
            json!({"device": "pxe"}),
        );
        // ipmi_sim may still be starting.
        if r["ok"] == true || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(r["ok"], true, "bootdev: {r}{}", lab.logs());
    let r = lab.post(
        &format!("/servers/{fqdn}/power"),
        json!({"action": "cycle"}),
    );
    assert_eq!(r["ok"], true, "cycle: {r}{}", lab.logs());

    // The VM boots the payload, calls back and powers itself off.
    let store = lab.store().await;
    let deadline = Instant::now() + VM_LIMIT;
    loop {
        let names: Vec<String> = store
            .callbacks(dep)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        if names == PAYLOAD_STEPS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "callbacks so far {names:?}\n===== chassis =====\n{}\n{}",
            std::fs::read_to_string(dir.join("chassis.calls")).unwrap_or_default(),
            lab.failure(&name)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let calls = std::fs::read_to_string(dir.join("chassis.calls")).unwrap();
    assert!(calls.contains("set boot pxe"), "{calls}");
    assert!(calls.contains("set power 1"), "{calls}");

    // The BMC sees the VM off once the payload has powered it down.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = lab.api("GET", &format!("/servers/{fqdn}/power"), None, "");
        if r["answer"]["state"] == "off" {
            break;
        }
        assert!(Instant::now() < deadline, "still on: {r}");
        std::thread::sleep(Duration::from_secs(1));
    }

    // The timeline shows the power commands before the boot they caused.
    std::thread::sleep(Duration::from_millis(600));
    let mut events = lab.timeline(&fqdn);
    events.reverse();
    let first_cycle = events
        .iter()
        .position(|e| e["phase"] == "power" && e["request"] == "power cycle")
        .unwrap_or_else(|| panic!("no power cycle in the timeline: {events:?}"));
    let first_dhcp = events
        .iter()
        .position(|e| e["phase"] == "dhcp")
        .unwrap_or_else(|| panic!("no DHCP in the timeline: {events:?}"));
    assert!(first_cycle < first_dhcp, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootdev_pxe_and_cycle_boot_the_vm_native() {
    boot_through_the_bmc("native", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootdev_pxe_and_cycle_boot_the_vm_ipmitool() {
    boot_through_the_bmc("ipmitool", 2).await;
}
