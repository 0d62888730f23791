//! End to end: a VM behind a BMC. OpenIPMI's `ipmi_sim` runs in the lab's
//! namespace with a chassis_control program that starts and stops a QEMU
//! VM (network boot when the BMC was told `bootdev pxe`, disk otherwise).
//! Nobody starts the VM by hand: the daemon's `bootdev pxe` and
//! `power cycle`, through the API, make it network-boot the payload, which
//! calls back.
//!
//! Needs what `boot_e2e.rs` needs, plus `openipmi` and `ipmitool`.

use crate::common;

use std::time::{Duration, Instant};

use common::netns::{Lab, PAYLOAD_STEPS, VM_LIMIT, mac, preflight, skip};
use common::vmbmc;
use serde_json::json;

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

    let (port, _vm) = vmbmc::start(&mut lab, &name, &m);
    let dir = lab.dir.path().to_path_buf();
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
