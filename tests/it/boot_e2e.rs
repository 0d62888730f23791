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

use crate::common;

use std::time::Duration;

use common::netns::{Lab, PAYLOAD_STEPS, mac, preflight, skip};
use serde_json::Value;

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
    // iPXE asked for an IPv6 router and was told there is none.
    let log = lab.log("daemon");
    assert!(log.contains("answered a router solicitation"), "{log}");
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

/// Seconds between two timeline events' `at`.
fn seconds_between(a: &Value, b: &Value) -> f64 {
    let at = |e: &Value| {
        time::OffsetDateTime::parse(
            e["at"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|_| panic!("no time in {e}"))
    };
    (at(b) - at(a)).as_seconds_f64()
}

/// A measurement, run by hand (BENCHMARKS.md, "iPXE's wait for IPv6"):
/// a BIOS and a UEFI VM boot with router solicitations answered and not;
/// prints, from the timeline, the time from iPXE's DHCP answer to its
/// first HTTP request and from the first DHCP request to the last
/// callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand: BENCHMARKS.md"]
async fn measure_ipxe_ipv6_wait() {
    preflight();
    for (uefi, mode, n) in [
        (false, "off", 20),
        (false, "auto", 21),
        (true, "off", 22),
        (true, "auto", 23),
    ] {
        let mut lab = Lab::start_with(
            "authoritative",
            false,
            &format!("router_advertisements = \"{mode}\""),
        );
        lab.seed_network(true);
        let m = mac(n);
        let name = format!("m{n}");
        let fqdn = format!("{name}.lab.example.com");
        let dep = lab.deploy(&fqdn, &m).await;
        lab.vm(&name, &m, uefi);
        lab.wait_vm(&name);
        assert_called_back(&mut lab, dep, &name).await;
        let mut events = lab.timeline(&fqdn);
        events.reverse();
        let request = |e: &Value, phase: &str, needles: &[&str]| {
            e["phase"] == phase
                && e["request"]
                    .as_str()
                    .is_some_and(|r| needles.iter().all(|n| r.contains(n)))
        };
        let chain_at = events
            .iter()
            .position(|e| request(e, "http", &["GET /boot.ipxe"]))
            .unwrap_or_else(|| panic!("no GET /boot.ipxe: {events:#?}"));
        let chain = &events[chain_at];
        // iPXE's own DHCPREQUEST, the last before it fetches its script.
        let script = events[..chain_at]
            .iter()
            .rev()
            .find(|e| request(e, "dhcp", &["DHCPREQUEST", "ipxe"]))
            .unwrap_or_else(|| panic!("no iPXE DHCPREQUEST: {events:#?}"));
        let last = events
            .iter()
            .rev()
            .find(|e| {
                e["request"]
                    .as_str()
                    .is_some_and(|r| r.contains("/_callback/"))
            })
            .unwrap();
        println!(
            "{} router_advertisements={mode}: iPXE DHCPREQUEST -> GET /boot.ipxe {:.2} s; first DHCP -> last callback {:.2} s",
            if uefi { "UEFI" } else { "BIOS" },
            seconds_between(script, chain),
            seconds_between(&events[0], last),
        );
    }
}
