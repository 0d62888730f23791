//! Real DHCP clients against the authoritative server, in network
//! namespaces (see `common/netns.rs`): busybox udhcpc and ISC dhclient get
//! the reserved address, renew and release it; perfdhcp drives thousands of
//! clients and no address is ever given twice.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::netns::{Lab, mac, preflight, run, skip};
use common::peers::Postgres;
use serde_json::Value;

/// udhcpc's event script: log each event, configure the address.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
echo "$1 ip=$ip router=$router dns=$dns lease=$lease ntp=$ntpsrv search=$search mtu=$mtu" >> "$EVENTS"
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
"#;

/// dhclient's script, in place of dhclient-script (which would rewrite
/// the host's resolv.conf): log, configure the address. dhclient gives its
/// script a clean environment, so EVENTS is written in.
const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
EVENTS=@EVENTS@
echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers" >> "$EVENTS"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/20" dev "$interface" ;;
  RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
"#;

fn write_script(lab: &Lab, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = lab.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Waits until `file` has a line containing `needle`.
fn wait_for_line(lab: &Lab, file: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}:\n{text}{}",
            file.display(),
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lease_of(lab: &Lab, mac: &str) -> Option<Value> {
    let leases = lab.api("GET", "/leases?limit=1000", None, "");
    leases["results"]
        .as_array()?
        .iter()
        .find(|l| l["mac"] == mac)
        .cloned()
}

/// The timeline of c1 once `done` holds for its events, or after 10 s (it
/// is written asynchronously, in groups).
fn wait_timeline(lab: &Lab, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = lab.api("GET", "/servers/c1.lab.example.com/timeline", None, "");
        let events = t["events"].as_array().cloned().unwrap_or_default();
        if done(&events) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the store's lease of `mac` is in `state`.
fn wait_lease(lab: &Lab, mac: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = lease_of(lab, mac).filter(|l| l["state"] == state) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "lease of {mac} never became {state}: {:?}{}",
            lease_of(lab, mac),
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(lab: &mut Lab, what: &str, sig: &str) {
    let pid = lab.child(what).id().to_string();
    // `ip netns exec` execs the client in place, so the pid is the client's.
    run(std::process::Command::new("kill").args([sig, &pid]));
}

#[test]
fn udhcpc_gets_its_reservation_renews_and_releases() {
    udhcpc_exchange(false);
}

/// The same with `dhcp.unicast`: replies reach the client through an ARP
/// entry the daemon adds, not by broadcast.
#[test]
fn udhcpc_with_unicast_replies() {
    udhcpc_exchange(true);
}

fn udhcpc_exchange(unicast: bool) {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start_with(
        "authoritative",
        false,
        if unicast { "unicast = true" } else { "" },
    );
    lab.seed_network(true);
    let mac = "52:54:00:88:00:01";
    let r = lab.post(
        "/servers",
        serde_json::json!({"fqdn": "c1.lab.example.com", "location": "lab",
            "interfaces": [{"name": "eth0", "mac": mac, "ipv4": "10.77.0.21"}]}),
    );
    assert_eq!(r["fqdn"], "c1.lab.example.com", "{r}");
    // Options the network adds (what the older agent's DNSMASQ_OPTS
    // gave); one the server sets itself is refused at its field.
    let nets = lab.api("GET", "/networks", None, "");
    let net = nets["results"][0]["id"].as_i64().unwrap();
    let patch = |options: serde_json::Value| {
        let body = serde_json::json!({ "dhcp_options": options }).to_string();
        lab.api(
            "PATCH",
            &format!("/networks/{net}"),
            Some(&body),
            "application/json",
        )
    };
    let refused = patch(serde_json::json!([{"option": "3", "value": "10.77.0.9"}]));
    assert!(
        refused["fields"]["dhcp_options[0].option"][0]
            .as_str()
            .is_some_and(|m| m.contains("sets itself")),
        "{refused}"
    );
    let set = patch(serde_json::json!([
        {"option": "ntp-servers", "value": "10.77.0.5, 10.77.0.6"},
        {"option": "domain-search", "value": "lab.example.com example.com"},
        {"option": 26, "value": "1400"},
    ]));
    assert_eq!(set["dhcp_options"][0]["code"], 42, "{set}");
    let ns = lab.client_ns("c1", mac);
    let script = write_script(&lab, "udhcpc.sh", UDHCPC_SCRIPT);
    let events = lab.dir.path().join("udhcpc.events");
    let mut cmd = std::process::Command::new("ip");
    cmd.args([
        "netns", "exec", &ns, "udhcpc", "-f", "-i", "eth0", "-s", &script,
    ])
    .args(["-t", "10", "-T", "2"])
    .args(["-O", "ntpsrv", "-O", "search", "-O", "mtu"])
    .env("EVENTS", &events);
    lab.spawn("udhcpc", cmd);

    let bound = wait_for_line(&lab, &events, "bound");
    assert!(bound.contains("ip=10.77.0.21"), "the reservation: {bound}");
    assert!(bound.contains("router=10.77.0.1"), "{bound}");
    assert!(bound.contains("lease=600"), "{bound}");
    assert!(bound.contains("ntp=10.77.0.5 10.77.0.6"), "{bound}");
    assert!(
        bound.contains("search=lab.example.com example.com"),
        "{bound}"
    );
    assert!(bound.contains("mtu=1400"), "{bound}");
    let lease = wait_lease(&lab, mac, "bound");
    assert_eq!(lease["ip"], "10.77.0.21");
    let is_offer = |e: &Value| e["detail"].as_str().unwrap_or("").starts_with("OFFER");
    let offer = wait_timeline(&lab, |events| events.iter().any(is_offer))
        .into_iter()
        .find(is_offer)
        .unwrap_or_default();
    let sent_to = if unicast {
        "-> 10.77.0.21:68"
    } else {
        "-> 255.255.255.255:68"
    };
    assert!(
        offer["detail"].as_str().unwrap_or("").ends_with(sent_to),
        "{offer}"
    );
    if unicast {
        let neigh = run(&mut lab.exec(&["ip", "neigh", "show", "10.77.0.21"]));
        assert!(neigh.contains(mac), "{neigh}");
    }
    let first_expiry = lease["expires_at"].as_i64().unwrap();

    // SIGUSR1: renew now (unicast REQUEST with ciaddr).
    std::thread::sleep(Duration::from_millis(1100));
    signal(&mut lab, "udhcpc", "-USR1");
    let renewed = wait_for_line(&lab, &events, "renew");
    assert!(renewed.contains("ip=10.77.0.21"), "{renewed}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease_of(&lab, mac).unwrap()["expires_at"].as_i64().unwrap() <= first_expiry {
        assert!(
            Instant::now() < deadline,
            "the renewal did not extend the lease"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGUSR2: release.
    signal(&mut lab, "udhcpc", "-USR2");
    wait_lease(&lab, mac, "released");

    // The timeline shows the exchange under the server's name.
    const KINDS: [&str; 3] = ["DHCPDISCOVER", "DHCPREQUEST", "DHCPRELEASE"];
    let events = wait_timeline(&lab, |events| {
        KINDS.iter().all(|k| {
            events
                .iter()
                .any(|e| e["request"].as_str().unwrap_or("").starts_with(k))
        })
    });
    let requests: Vec<&str> = events
        .iter()
        .map(|e| e["request"].as_str().unwrap())
        .collect();
    for kind in KINDS {
        assert!(
            requests.iter().any(|r| r.starts_with(kind)),
            "{kind} missing: {requests:?}"
        );
    }
}

#[test]
fn dhclient_binds_from_the_pool_and_releases() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start("authoritative", false);
    lab.seed_network(true);
    let mac = "52:54:00:88:00:02";
    let ns = lab.client_ns("c2", mac);
    let events = lab.dir.path().join("dhclient.events");
    let script = write_script(
        &lab,
        "dhclient.sh",
        &DHCLIENT_SCRIPT.replace("@EVENTS@", &events.display().to_string()),
    );
    let leases = lab.dir.path().join("dhclient.leases");
    let pid = lab.dir.path().join("dhclient.pid");
    let dhclient = |extra: &[&str]| {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns, "dhclient", "-v", "-1", "-sf", &script])
            .arg("-lf")
            .arg(&leases)
            .arg("-pf")
            .arg(&pid)
            .args(extra)
            .arg("eth0")
            .env("EVENTS", &events);
        c
    };
    // An unknown MAC: an address from the pool, no boot information.
    run(&mut dhclient(&[]));
    let bound = wait_for_line(&lab, &events, "BOUND");
    let ip = bound
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))
        .unwrap()
        .to_string();
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with("10.77.0.") && (100..=150).contains(&last),
        "{bound}"
    );
    assert!(bound.contains("mask=255.255.240.0"), "{bound}");
    assert_eq!(wait_lease(&lab, mac, "bound")["ip"], ip.as_str());

    // A second run from the lease file: INIT-REBOOT, the same address.
    run(&mut dhclient(&[]));
    let reboot = wait_for_line(&lab, &events, "REBOOT");
    assert!(reboot.contains(&format!("ip={ip}")), "{reboot}");

    // -r releases it.
    run(&mut dhclient(&["-r"]));
    wait_lease(&lab, mac, "released");
    let _ = std::fs::remove_file(&pid);
}

/// perfdhcp's per-exchange counters, from its report.
fn counters(report: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let mut section = String::new();
    for line in report.lines() {
        let l = line.trim();
        if l.starts_with("***") {
            section = l.trim_matches('*').trim().to_string();
        } else if let Some((k, v)) = l.split_once(':')
            && let Ok(n) = v.trim().parse::<u64>()
        {
            out.insert(format!("{section}/{}", k.trim()), n);
        }
    }
    out
}

/// Runs perfdhcp from a client namespace on the bridge (2,000 clients, 100
/// exchanges a second for 15 s) and checks what it saw: offers and acks,
/// and no address given to two of its clients. Returns its counters.
fn perfdhcp_load(lab: &mut Lab) -> HashMap<String, u64> {
    assert!(
        std::path::Path::new("/usr/sbin/perfdhcp").exists(),
        "perfdhcp is missing: apt-get install kea-admin"
    );
    let ns = lab.client_ns("load", "52:54:00:99:00:01");
    // perfdhcp sends from port 68 with giaddr unset, broadcast, like
    // clients; it needs an address on its interface to do so.
    run(std::process::Command::new("ip").args([
        "netns",
        "exec",
        &ns,
        "ip",
        "addr",
        "add",
        "10.77.0.9/20",
        "dev",
        "eth0",
    ]));
    // Exit status 3 means some exchanges went unanswered in time, which a
    // loaded machine may cause; speed is the benchmarks' business. What
    // must hold is below: every answer unique, the store matching.
    let perf = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns, "timeout", "120", "perfdhcp", "-4", "-l", "eth0", "-r", "100",
            "-R", "2000", "-p", "15", "-W", "3000000",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&perf.stdout).into_owned();
    assert!(
        matches!(perf.status.code(), Some(0 | 3)),
        "perfdhcp failed ({:?}): {out}{}{}",
        perf.status,
        String::from_utf8_lossy(&perf.stderr),
        lab.logs()
    );
    let c = counters(&out);
    let received = |exchange: &str| {
        c.iter()
            .find(|(k, _)| k.contains(exchange) && k.ends_with("received packets"))
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    let offers = received("DISCOVER-OFFER");
    assert!(
        offers > 100,
        "perfdhcp got {offers} offers:\n{out}{}",
        lab.logs()
    );
    // perfdhcp's own check: no address offered to two of its clients.
    let non_unique = c
        .iter()
        .filter(|(k, _)| k.ends_with("non unique addresses"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    assert_eq!(non_unique, 0, "{out}");
    let acks = received("REQUEST-ACK");
    assert!(acks > 100, "perfdhcp got {acks} acks:\n{out}");
    c
}

/// In the store: every bound address has one holder, no client holds
/// two, and no offer was written (offers are kept in the daemons' books,
/// from pool slices of their own when they share a database). Returns how
/// many are bound.
fn assert_leases_unique(lab: &Lab) -> usize {
    let store_leases = lab.api("GET", "/leases?limit=1000&offset=0", None, "");
    let total = store_leases["count"].as_u64().unwrap();
    let mut all = Vec::new();
    let mut offset = 0;
    while offset < total {
        let page = lab.api(
            "GET",
            &format!("/leases?limit=1000&offset={offset}"),
            None,
            "",
        );
        all.extend(page["results"].as_array().unwrap().iter().cloned());
        offset += 1000;
    }
    let bound: Vec<&Value> = all.iter().filter(|l| l["state"] == "bound").collect();
    let ips: HashSet<&str> = bound.iter().map(|l| l["ip"].as_str().unwrap()).collect();
    let macs: HashSet<&str> = bound.iter().map(|l| l["mac"].as_str().unwrap()).collect();
    assert_eq!(ips.len(), bound.len(), "an address bound twice");
    assert_eq!(macs.len(), bound.len(), "a client bound twice");
    let offered = all.iter().filter(|l| l["state"] == "offered").count();
    assert_eq!(offered, 0, "offers written to the store");
    // perfdhcp draws its clients at random from 2,000 MACs, so the number
    // of distinct clients acknowledged is not known, only bounded.
    assert!(
        bound.len() > 100 && bound.len() <= 2000,
        "{} bound leases",
        bound.len()
    );
    bound.len()
}

#[test]
fn perfdhcp_never_gets_one_address_twice() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start("authoritative", false);
    // 3,838 addresses for 2,000 clients.
    lab.seed_network_with(Some(("10.77.1.1", "10.77.15.254")));
    perfdhcp_load(&mut lab);
    assert_leases_unique(&lab);
}

/// Two authoritative daemons on one bridge and one PostgreSQL (in the
/// lab's namespace): both answer, each offering from pool slices of its
/// own, the clients take the first offer, and the store's conditional
/// claims keep every address with one client.
#[test]
fn two_daemons_one_database_never_give_one_address_twice() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::network(false);
    let pg = Postgres::start_in(Some(&lab.ns), "10.77.0.1");
    let url = pg.url("postgres");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("SECRET_KEY", "two daemons share this test key"),
    ];
    lab.start_daemon("authoritative", "", &env);
    lab.seed_network_with(Some(("10.77.1.1", "10.77.15.254")));
    lab.second_daemon("10.77.0.3", "authoritative", &env);
    perfdhcp_load(&mut lab);
    let bound = assert_leases_unique(&lab);
    // Both daemons answered.
    for daemon in ["daemon", "daemon2"] {
        let replies = lab
            .log(daemon)
            .lines()
            .filter(|l| l.contains("DHCP reply") && l.contains("ACK"))
            .count();
        eprintln!("{daemon}: {replies} ACKs");
        assert!(
            replies > 0,
            "{daemon} sent no ACK ({bound} bound):{}",
            lab.logs()
        );
    }
    drop(pg);
}

/// IPv6 router solicitations on the boot link (`src/ndp.rs`): a machine
/// that asks is answered with an advertisement that says nothing (not a
/// router, no flags, no prefix), sent to it alone; once a real router has
/// advertised on the link, the daemon (`auto`) stays silent. The peer is
/// `tests/ndp/peer.py`, raw ICMPv6 from a namespace of its own.
#[test]
fn router_solicitations_are_answered_until_a_router_speaks() {
    if skip() {
        return;
    }
    preflight();
    let mut lab = Lab::start("authoritative", false);
    let ns = lab.client_ns("ra", &mac(90));
    let peer = format!("{}/tests/ndp/peer.py", env!("CARGO_MANIFEST_DIR"));
    // The peer's link-local address needs a moment (duplicate address
    // detection) before it can send from it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let solicit = || {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns, "python3", &peer, "solicit", "eth0"]);
        run(&mut c)
    };
    let heard = solicit();
    assert!(
        heard.contains("advertisement fe80::") && heard.contains("lifetime=0 flags=00 length=16"),
        "{heard}\n{}",
        lab.logs()
    );
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", &ns, "python3", &peer, "advertise", "eth0"]);
    run(&mut c);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let heard = solicit();
    assert!(
        !heard.contains("lifetime=0"),
        "the daemon answered after a router spoke: {heard}"
    );
    let log = lab.log("daemon");
    assert!(log.contains("an IPv6 router advertises here"), "{log}");
}
