//! End to end: the shipped `payload` profile deployed through the API to a
//! VM behind a BMC. Nobody starts the VM: the engine serves its script,
//! sends `bootdev pxe` and `power cycle` through `ipmi_sim`, the VM
//! network-boots the payload, and its callbacks walk the deployment from
//! `new` to `complete`.
//!
//! Needs what `power_e2e.rs` needs.

mod common;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_deployment_walks_to_complete() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start_with(
        "authoritative",
        false,
        "\n[power]\nipmitool_cipher_suite = 3\n",
    );
    lab.seed_network(true);
    let m = mac(60);
    let name = "dep1";
    let fqdn = "dep1.lab.example.com";
    let (port, _vm) = vmbmc::start(&mut lab, name, &m);
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
    let p = lab.api("POST", "/profiles", Some(&yaml), "application/yaml");
    assert_eq!(p["name"], "payload", "{p}");
    // ipmi_sim needs a moment to listen.
    std::thread::sleep(Duration::from_secs(1));
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
    let log = lab.api("GET", &format!("/deployments/{id}/log"), None, "");
    let text: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    let text = text.join("\n");
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
    let mut events = lab.timeline(fqdn);
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
}
