//! End to end: the shipped `payload` profile deployed through the API to a
//! VM behind a BMC. Nobody starts the VM: the engine serves its script,
//! sends `bootdev pxe` and `power cycle` through `ipmi_sim`, the VM
//! network-boots the payload, and its callbacks walk the deployment from
//! `new` to `complete`.
//!
//! Needs what `power_e2e.rs` needs.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{Lab, VM_LIMIT, mac, preflight, skip};
use common::vmbmc;
use serde_json::{Value, json};

fn wait_for(lab: &Lab, id: i64, name: &str, want: &str) -> Value {
    let deadline = Instant::now() + VM_LIMIT;
    loop {
        let d = lab.api("GET", &format!("/deployments/{id}"), None, "");
        if d["state"] == want {
            return d;
        }
        if Instant::now() > deadline || (d["state"] == "error" && want != "error") {
            let log = lab.api("GET", &format!("/deployments/{id}/log"), None, "");
            panic!(
                "deployment {id} is {} (wanted {want}): {d}\n===== log =====\n{log:#}\n===== chassis =====\n{}{}",
                d["state"],
                vmbmc::chassis_calls(lab),
                lab.failure(name)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A lab with a VM behind a BMC, registered as server `name`, and the
/// payload profile (and `extra` profiles) uploaded.
async fn lab_with_vm(name: &str, n: u32, extra: &[String]) -> (Lab, vmbmc::VmPid, String) {
    lab_with_firmware(name, n, extra, false).await
}

/// As `lab_with_vm`, the VM with OVMF when `uefi`.
async fn lab_with_firmware(
    name: &str,
    n: u32,
    extra: &[String],
    uefi: bool,
) -> (Lab, vmbmc::VmPid, String) {
    let mut lab = Lab::start_with(
        "authoritative",
        false,
        "\n[power]\nipmitool_cipher_suite = 3\n",
    );
    lab.seed_network(true);
    let m = mac(60 + n);
    let fqdn = format!("{name}.lab.example.com");
    let (port, vm) = vmbmc::start_firmware(&mut lab, name, &m, uefi);
    let r = lab.post(
        "/servers",
        json!({"fqdn": fqdn, "location": "lab", "interfaces": [{"name": "eth0", "mac": m}],
            "bmc": {"host": "127.0.0.1", "port": port, "username": "admin", "password": "secret"}}),
    );
    assert_eq!(r["fqdn"], fqdn, "{r}");
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml"),
    )
    .unwrap();
    for y in std::iter::once(&yaml).chain(extra) {
        let p = lab.api("POST", "/profiles", Some(y), "application/yaml");
        assert!(p["id"].is_i64(), "{p}");
    }
    // ipmi_sim needs a moment to listen.
    std::thread::sleep(Duration::from_secs(1));
    (lab, vm, fqdn)
}

/// Where in `events` the first of `phase` whose request holds `needle` is.
fn position(events: &[Value], phase: &str, needle: &str) -> usize {
    events
        .iter()
        .position(|e| {
            e["phase"] == phase && e["request"].as_str().is_some_and(|r| r.contains(needle))
        })
        .unwrap_or_else(|| panic!("no {phase} {needle} in {events:#?}"))
}

fn log_text(lab: &Lab, id: i64) -> String {
    let log = lab.api("GET", &format!("/deployments/{id}/log"), None, "");
    let lines: Vec<String> = log
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    lines.join("\n")
}

/// Deployed, then repeated: the VM is power-cycled and installed twice,
/// each time walking new -> complete on its callbacks alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_deployment_walks_to_complete_and_repeats() {
    if skip() {
        return;
    }
    preflight();
    let name = "dep1";
    let (lab, _vm, fqdn) = lab_with_vm(name, 0, &[]).await;
    let d = lab.post(
        "/deployments",
        json!({"server": fqdn, "profile": "payload==1.0"}),
    );
    let id = d["id"].as_i64().unwrap_or_else(|| panic!("{d}"));

    let done = wait_for(&lab, id, name, "complete");
    assert_eq!(done["progress"], 100, "{done}");
    let calls = vmbmc::chassis_calls(&lab);
    assert!(calls.contains("set boot pxe"), "{calls}");
    assert!(calls.contains("set power 1"), "{calls}");

    // The log tells the story.
    let text = log_text(&lab, id);
    for needle in [
        "preparing #1 serve_file http ipxe/{{ mac_address }}: done",
        "preparing #2 ipmi_command bootdev pxe: done",
        "preparing #3 ipmi_command power cycle: done",
        "preparing #4 expect_callback preparing: done",
        "installing #1 expect_callback installing: done",
        "configuring #1 expect_callback configuring: done",
        "postconfiguring #1 expect_callback postconfiguring: done",
        "payload: dep1 (",
        "state complete",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
    // The timeline: power commands, then the boot they caused.
    std::thread::sleep(Duration::from_millis(600));
    let mut events = lab.timeline(&fqdn);
    events.reverse();
    let cycle = events
        .iter()
        .position(|e| e["phase"] == "power" && e["request"] == "power cycle")
        .unwrap_or_else(|| panic!("{events:?}"));
    let dhcp = events
        .iter()
        .position(|e| e["phase"] == "dhcp")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(cycle < dhcp, "{events:?}");

    // Repeat: the same server, the same pinned profile, a new token; the
    // VM is booted and installed again.
    let before = calls.matches("set power 1").count();
    let again = lab.post(&format!("/deployments/{id}/repeat"), json!({}));
    assert_eq!(again["repeat_of"], id, "{again}");
    let again = again["id"].as_i64().unwrap();
    wait_for(&lab, again, name, "complete");
    let calls = vmbmc::chassis_calls(&lab);
    assert!(calls.matches("set power 1").count() > before, "{calls}");
    assert!(
        log_text(&lab, again).contains("postconfiguring #1 expect_callback postconfiguring: done")
    );
}

/// A machine that never sends the callback its profile waits for: the
/// deployment ends in error when the action's timeout runs out, with a
/// reason naming the step, the action and what the machine did last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_that_never_calls_back_times_out() {
    if skip() {
        return;
    }
    preflight();
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/payload-1.0.yaml"),
    )
    .unwrap();
    // The payload never sends `firstboot`.
    let waiting = yaml
        .replace("name: payload", "name: payload-firstboot")
        .replace(
            "    - action: expect_callback\n      name: postconfiguring\n",
            "    - action: expect_callback\n      name: firstboot\n      timeout: 30s\n",
        );
    assert!(
        waiting.contains("firstboot"),
        "the payload profile changed shape"
    );
    let name = "dep2";
    let (lab, _vm, fqdn) = lab_with_vm(name, 1, &[waiting]).await;
    let d = lab.post(
        "/deployments",
        json!({"server": fqdn, "profile": "payload-firstboot==1.0"}),
    );
    let id = d["id"].as_i64().unwrap_or_else(|| panic!("{d}"));
    let failed = wait_for(&lab, id, name, "error");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("postconfiguring #1 expect_callback firstboot")
            && error.contains("timed out in step postconfiguring")
            && error.contains("the machine's last boot event")
            && error.contains("/_callback/<token>/postconfiguring"),
        "{error}"
    );
}

/// The older system's Ubuntu profile, its shape kept (a pxelinux config
/// served over TFTP for the MAC, kernel and initrd served over HTTP from
/// downloads, `delete_file on: tftp`, `power reset`, callbacks written
/// `{{ callback_base }}/name`), with local stand-ins for the vanished
/// mirror's kernel and initrd and the payload in place of the installer.
fn older_ubuntu_profile() -> String {
    let base = common::netns::BASE;
    format!(
        r#"---
kind: profile
apiVersion: v1alpha1
name: ubuntu-16.04
version: 0.1-a
workflow:
  new: {{}}
  preparing:
    - action: serve_file
      via: http
      filename: 'images/ubuntu/16.04/kernel'
      source:
        type: url
        url: '{base}/static/payload/vmlinuz'
    - action: serve_file
      via: http
      filename: 'images/ubuntu/16.04/initrd.gz'
      source:
        type: url
        url: '{base}/static/payload/initrd.img'
    - action: serve_file
      via: tftp
      filename: 'pxelinux.cfg/01-{{{{ mac_address_dashed }}}}'
      source:
        type: template
        name: pxelinux.cfg
    - action: ipmi_command
      command: bootdev
      parameters: pxe
    - action: ipmi_command
      command: power
      parameters: reset
    - action: expect_callback
      name: preparing-callback
  installing:
    - action: delete_file
      on: tftp
      filename: 'pxelinux.cfg/01-{{{{ mac_address_dashed }}}}'
    - action: expect_callback
      name: installing-callback
    - action: ipmi_command
      command: bootdev
      parameters: hd
  configuring:
    - action: expect_callback
      name: configuring-callback
  postconfiguring:
    - action: expect_callback
      name: postconfiguring_callback
  cleanup: {{}}
  complete: {{}}
  error: {{}}
templates:
  pxelinux.cfg:
    type: template
    contents: |
      DEFAULT ubuntu1604
      LABEL ubuntu1604
        KERNEL {{{{ agent_url }}}}/images/ubuntu/16.04/kernel
        INITRD {{{{ agent_url }}}}/images/ubuntu/16.04/initrd.gz
        APPEND console=ttyS0 quiet hostname={{{{ hostname }}}} bootloader.callback={{{{ callback_base }}}}/ bootloader.steps=preparing-callback,installing-callback,configuring-callback,postconfiguring_callback
"#
    )
}

/// The older profile installs a machine the way the older system booted
/// it: the BIOS firmware (QEMU's iPXE ROM) gets `lpxelinux.0` over TFTP
/// because the deployment serves a `pxelinux.cfg/` file, pxelinux fetches
/// its module and the config for its MAC over TFTP, then the kernel and
/// initrd over HTTP; the payload's callbacks (`callback_base` with the
/// older doubled slash) walk the deployment to `complete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_ubuntu_profile_boots_through_pxelinux() {
    if skip() {
        return;
    }
    preflight();
    let name = "dep3";
    let (lab, _vm, fqdn) = lab_with_vm(name, 2, &[older_ubuntu_profile()]).await;
    let d = lab.post(
        "/deployments",
        json!({"server": fqdn, "profile": "ubuntu-16.04==0.1-a"}),
    );
    let id = d["id"].as_i64().unwrap_or_else(|| panic!("{d}"));
    let done = wait_for(&lab, id, name, "complete");
    assert_eq!(done["progress"], 100, "{done}");
    let calls = vmbmc::chassis_calls(&lab);
    assert!(calls.contains("set boot pxe"), "{calls}");

    // What the machine fetched, in order: pxelinux, its module and its
    // config over TFTP, then the kernel and initrd over HTTP.
    std::thread::sleep(Duration::from_millis(600));
    let mut events = lab.timeline(&fqdn);
    events.reverse();
    let at = |phase: &str, needle: &str| position(&events, phase, needle);
    let dashed = common::netns::mac(62).replace(':', "-");
    let order = [
        at("tftp", "RRQ lpxelinux.0"),
        at("tftp", "RRQ ldlinux.c32"),
        at("tftp", &format!("RRQ pxelinux.cfg/01-{dashed}")),
        at("http", "/images/ubuntu/16.04/kernel"),
        at("http", "/images/ubuntu/16.04/initrd.gz"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?} {events:#?}"
    );
    let text = log_text(&lab, id);
    for needle in [
        "preparing #3 serve_file tftp pxelinux.cfg/01-{{ mac_address_dashed }}: done",
        "installing #1 delete_file tftp pxelinux.cfg/01-{{ mac_address_dashed }}: done",
        "postconfiguring #1 expect_callback postconfiguring_callback: done",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
}

/// The older profile as sites without an HTTP-capable pxelinux ran it:
/// the `pxelinux.cfg` entry names the kernel and initrd by relative paths,
/// which pxelinux fetches over TFTP through the firmware's PXE stack, each
/// block acknowledged before the next: long lock-step transfers, which the
/// daemon serves on threads of their own (`tftp/transfer.rs`).
fn older_ubuntu_profile_over_tftp() -> String {
    let http = older_ubuntu_profile();
    let tftp = http
        .replace("version: 0.1-a", "version: 0.1-tftp")
        .replace(
            "via: http\n      filename: 'images/",
            "via: tftp\n      filename: 'images/",
        )
        .replace("{{ agent_url }}/images/", "images/");
    assert_eq!(
        (
            tftp.matches("via: tftp").count(),
            tftp.matches("agent_url").count()
        ),
        (3, 0),
        "{tftp}"
    );
    tftp
}

/// A BIOS machine boots the older profile with its kernel and initrd over
/// TFTP: the firmware's TFTP client (QEMU's iPXE ROM under lpxelinux)
/// fetches both in lock-step, the kernel on a thread of its own, and the
/// payload's callbacks walk the deployment to `complete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_profile_boots_with_its_kernel_over_tftp() {
    if skip() {
        return;
    }
    preflight();
    let name = "dep5";
    let (lab, _vm, fqdn) = lab_with_vm(name, 4, &[older_ubuntu_profile_over_tftp()]).await;
    let d = lab.post(
        "/deployments",
        json!({"server": fqdn, "profile": "ubuntu-16.04==0.1-tftp"}),
    );
    let id = d["id"].as_i64().unwrap_or_else(|| panic!("{d}"));
    let done = wait_for(&lab, id, name, "complete");
    assert_eq!(done["progress"], 100, "{done}");

    std::thread::sleep(Duration::from_millis(600));
    let mut events = lab.timeline(&fqdn);
    events.reverse();
    let at = |phase: &str, needle: &str| position(&events, phase, needle);
    let dashed = common::netns::mac(64).replace(':', "-");
    let order = [
        at("tftp", "RRQ lpxelinux.0"),
        at("tftp", &format!("RRQ pxelinux.cfg/01-{dashed}")),
        at("tftp", "RRQ images/ubuntu/16.04/kernel"),
        at("tftp", "RRQ images/ubuntu/16.04/initrd.gz"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?} {events:#?}"
    );
    // Whole, in lock-step; nothing of the two over HTTP.
    let payload = common::netns::payload();
    for (file, local) in [("kernel", "vmlinuz"), ("initrd.gz", "initrd.img")] {
        let size = std::fs::metadata(payload.join(local)).unwrap().len();
        let sent = events
            .iter()
            .filter(|e| {
                e["phase"] == "tftp"
                    && e["request"]
                        .as_str()
                        .is_some_and(|r| r.contains(&format!("16.04/{file}")))
            })
            .filter_map(|e| e["detail"].as_str())
            .find(|d| d.starts_with("sent "))
            .unwrap_or_else(|| panic!("no whole transfer of {file}: {events:#?}"));
        assert!(
            sent.starts_with(&format!("sent {size} bytes")) && sent.contains("windowsize 1,"),
            "{file}: {sent}"
        );
    }
    assert!(
        !events.iter().any(|e| e["phase"] == "http"
            && e["request"]
                .as_str()
                .is_some_and(|r| r.contains("/images/"))),
        "{events:#?}"
    );
    // The kernel (8 MB, about 5,860 blocks of 1408) on a thread of its own; the
    // initrd (1.4 MB) is under the 1,024 blocks that take one.
    let log = lab.log("daemon");
    assert!(
        log.lines().any(|l| l.contains("16.04/kernel")
            && l.contains("a long lock-step transfer: on a thread of its own")),
        "the kernel was not served on a thread:{}",
        lab.logs()
    );
}

/// The same older profile on a UEFI machine: OVMF's PXE gets iPXE (no
/// pxelinux for UEFI here), iPXE asks for its script, and the daemon
/// answers with the entry of the `pxelinux.cfg` file the deployment
/// serves for its MAC, so the kernel and initrd it names boot through
/// iPXE and the payload's callbacks walk the deployment to `complete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_ubuntu_profile_boots_uefi_through_ipxe() {
    if skip() {
        return;
    }
    preflight();
    let name = "dep4";
    let (lab, _vm, fqdn) = lab_with_firmware(name, 3, &[older_ubuntu_profile()], true).await;
    let d = lab.post(
        "/deployments",
        json!({"server": fqdn, "profile": "ubuntu-16.04==0.1-a"}),
    );
    let id = d["id"].as_i64().unwrap_or_else(|| panic!("{d}"));
    let done = wait_for(&lab, id, name, "complete");
    assert_eq!(done["progress"], 100, "{done}");

    std::thread::sleep(Duration::from_millis(600));
    let mut events = lab.timeline(&fqdn);
    events.reverse();
    let at = |phase: &str, needle: &str| position(&events, phase, needle);
    let m = mac(63);
    let order = [
        at("tftp", "RRQ ipxe.efi"),
        at("http", &format!("GET /ipxe/{m}")),
        at("http", "/images/ubuntu/16.04/kernel"),
        at("http", "/images/ubuntu/16.04/initrd.gz"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?} {events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["request"]
            .as_str()
            .is_some_and(|r| r.contains("lpxelinux"))),
        "UEFI firmware is not given pxelinux: {events:#?}"
    );
}
