//! Each published object's JSON, field by field: what API clients and
//! event consumers read. A failure here is a change to the API and to the
//! events (a new schema version, or a field added on purpose).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::boot::{BootEvent, Lease, UnknownMac};
use super::deployment::{CallbackRecord, DeploymentRecord, LogEntry};
use super::inventory::*;
use super::power::PowerHealth;
use crate::model::{DeploymentState, LeaseState, LogLevel, Outcome, Phase, TokenScope};

const AT: &str = "2026-11-24T23:10:03Z";

fn at() -> OffsetDateTime {
    OffsetDateTime::parse(AT, &time::format_description::well_known::Rfc3339).unwrap()
}

fn check<T: serde::Serialize>(value: &T, expected: Value) {
    assert_eq!(serde_json::to_value(value).unwrap(), expected);
}

#[test]
fn inventory_objects() {
    let interface = Interface {
        id: 3,
        server: "n1.dc1.example.com".parse().unwrap(),
        name: "eth0".into(),
        mac: "52:54:00:00:00:01".parse().unwrap(),
        ipv4: Some("10.0.0.5".parse().unwrap()),
        network_id: Some(2),
    };
    let server = Server {
        id: 1,
        fqdn: "n1.dc1.example.com".parse().unwrap(),
        location: "dc1".parse().unwrap(),
        serial: "S1".into(),
        notes: String::new(),
        labels: vec!["rack1".parse().unwrap()],
        bmc: Bmc {
            host: Some("10.1.0.1".into()),
            port: 623,
            username: Some("ADMIN".into()),
            password_set: true,
            credential: None,
            driver: None,
        },
        interfaces: vec![interface.clone()],
        created_at: at(),
        updated_at: at(),
    };
    check(
        &server,
        json!({"id": 1, "fqdn": "n1.dc1.example.com", "location": "dc1", "serial": "S1",
            "notes": "", "labels": ["rack1"],
            "bmc": {"host": "10.1.0.1", "port": 623, "username": "ADMIN", "password_set": true,
                    "credential": null, "driver": null},
            "interfaces": [{"id": 3, "server": "n1.dc1.example.com", "name": "eth0",
                            "mac": "52:54:00:00:00:01", "ipv4": "10.0.0.5", "network_id": 2}],
            "created_at": AT, "updated_at": AT}),
    );
    check(
        &Network {
            id: 2,
            location: "dc1".parse().unwrap(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some("10.0.0.1".parse().unwrap()),
            nameservers: vec!["10.0.0.2".parse().unwrap()],
            domain: None,
            pool: Some(Pool {
                start: "10.0.0.100".parse().unwrap(),
                end: "10.0.0.199".parse().unwrap(),
            }),
            dhcp_options: vec![
                crate::dhcp::options::DhcpOptionSetting::parse("ntp-servers", "10.0.0.5").unwrap(),
            ],
            description: String::new(),
            created_at: at(),
            updated_at: at(),
        },
        json!({"id": 2, "location": "dc1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1",
            "nameservers": ["10.0.0.2"], "domain": null,
            "pool": {"start": "10.0.0.100", "end": "10.0.0.199"},
            "dhcp_options": [{"code": 42, "name": "ntp-servers", "value": "10.0.0.5"}],
            "description": "",
            "created_at": AT, "updated_at": AT}),
    );
    check(
        &Location {
            id: 1,
            name: "dc1".parse().unwrap(),
            description: "hall".into(),
            created_at: at(),
            updated_at: at(),
        },
        json!({"id": 1, "name": "dc1", "description": "hall", "created_at": AT, "updated_at": AT}),
    );
    check(
        &Label {
            id: 1,
            name: "rack1".parse().unwrap(),
            description: String::new(),
        },
        json!({"id": 1, "name": "rack1", "description": ""}),
    );
    check(
        &Credential {
            id: 1,
            name: "ipmi".parse().unwrap(),
            username: "ADMIN".into(),
            description: String::new(),
            created_at: at(),
            updated_at: at(),
        },
        json!({"id": 1, "name": "ipmi", "username": "ADMIN", "description": "",
            "created_at": AT, "updated_at": AT}),
    );
}

#[test]
fn people_and_their_keys() {
    check(
        &User {
            id: 1,
            name: "ops".parse().unwrap(),
            email: "ops@example.com".into(),
            first_name: "Ada".into(),
            last_name: String::new(),
            is_active: true,
            is_staff: true,
            created_at: at(),
        },
        json!({"id": 1, "name": "ops", "email": "ops@example.com", "first_name": "Ada",
            "last_name": "", "is_active": true, "is_staff": true, "created_at": AT}),
    );
    check(
        &ApiToken {
            id: 4,
            user: "ops".parse().unwrap(),
            prefix: "blt_abcd".into(),
            scope: TokenScope::Read,
            description: "ci".into(),
            expires_at: None,
            created_at: at(),
            last_used_at: Some(at()),
        },
        json!({"id": 4, "user": "ops", "prefix": "blt_abcd", "scope": "read", "description": "ci",
            "expires_at": null, "created_at": AT, "last_used_at": AT}),
    );
    check(
        &SshKey {
            id: 5,
            user: "ops".parse().unwrap(),
            name: "laptop".into(),
            key: "ssh-ed25519 AAAA".into(),
            created_at: at(),
        },
        json!({"id": 5, "user": "ops", "name": "laptop", "key": "ssh-ed25519 AAAA", "created_at": AT}),
    );
}

#[test]
fn deployments_and_the_boot_path() {
    check(
        &DeploymentRecord {
            id: 7,
            server: "n1.dc1.example.com".parse().unwrap(),
            profile_id: 2,
            profile: "payload==1.0".into(),
            state: DeploymentState::Installing,
            progress: 40,
            step: Some("installing".into()),
            action_index: 1,
            error: None,
            repeat_of: None,
            created_at: at(),
            updated_at: at(),
            finished_at: None,
            runner: Some("boot1-ab12".into()),
        },
        json!({"id": 7, "server": "n1.dc1.example.com", "profile_id": 2, "profile": "payload==1.0",
            "state": "installing", "progress": 40, "step": "installing", "action_index": 1,
            "error": null, "repeat_of": null, "created_at": AT, "updated_at": AT,
            "finished_at": null, "runner": "boot1-ab12"}),
    );
    check(
        &LogEntry {
            id: 9,
            at: at(),
            level: LogLevel::Warn,
            message: "cancelled by an operator".into(),
        },
        json!({"id": 9, "at": AT, "level": "warn", "message": "cancelled by an operator"}),
    );
    check(
        &CallbackRecord {
            name: "installing".into(),
            method: "POST".into(),
            body: "ok".into(),
            received_at: at(),
        },
        json!({"name": "installing", "method": "POST", "body": "ok", "received_at": AT}),
    );
    check(
        &Lease {
            network_id: 2,
            ip: "10.0.0.150".parse().unwrap(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            state: LeaseState::Bound,
            expires_at: 1_800_000_000,
            hostname: "n1".into(),
            updated_at: 1_799_996_400,
        },
        json!({"network_id": 2, "ip": "10.0.0.150", "mac": "52:54:00:00:00:01", "state": "bound",
            "expires_at": 1_800_000_000, "hostname": "n1", "updated_at": 1_799_996_400}),
    );
    check(
        &BootEvent {
            at: at(),
            mac: Some("52:54:00:00:00:01".parse().unwrap()),
            peer: "10.0.0.150:68".into(),
            phase: Phase::Dhcp,
            request: "DHCPDISCOVER arch=bios".into(),
            outcome: Outcome::Answered,
            detail: "OFFER 10.0.0.150".into(),
        },
        json!({"at": AT, "mac": "52:54:00:00:00:01", "peer": "10.0.0.150:68", "phase": "dhcp",
            "request": "DHCPDISCOVER arch=bios", "outcome": "answered", "detail": "OFFER 10.0.0.150"}),
    );
    check(
        &UnknownMac {
            mac: "52:54:00:00:00:09".parse().unwrap(),
            events: 3,
            first_seen: at(),
            last_seen: at(),
            last_request: "DHCPDISCOVER".into(),
        },
        json!({"mac": "52:54:00:00:00:09", "events": 3, "first_seen": AT, "last_seen": AT,
            "last_request": "DHCPDISCOVER"}),
    );
}

#[test]
fn bmc_health() {
    let health = PowerHealth {
        consecutive_failures: 2,
        last_error_kind: Some("timeout".into()),
        ..PowerHealth::default()
    };
    let v = serde_json::to_value(&health).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "consecutive_failures",
        "last_bootdev",
        "last_bootdev_at",
        "last_command",
        "last_error",
        "last_error_kind",
        "last_failure_at",
        "last_state",
        "last_state_at",
        "last_success_at",
    ];
    expected.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(v["consecutive_failures"], 2);
    assert_eq!(v["last_error_kind"], "timeout");
}

#[test]
fn events_without_a_whole_object() {
    use super::events::*;
    let mac = "52:54:00:00:00:01".parse().unwrap();
    let ip = "10.0.0.150".parse().unwrap();
    check(
        &LeaseLetGo {
            network_id: 2,
            ip,
            mac,
            until: None,
        },
        json!({"network_id": 2, "ip": "10.0.0.150", "mac": "52:54:00:00:00:01"}),
    );
    check(
        &LeaseLetGo {
            network_id: 2,
            ip,
            mac,
            until: Some(1_800_000_600),
        },
        json!({"network_id": 2, "ip": "10.0.0.150", "mac": "52:54:00:00:00:01", "until": 1_800_000_600}),
    );
    check(
        &CallbackReceived {
            deployment_id: 7,
            name: "installing",
            method: "POST",
            received_at: at(),
        },
        json!({"deployment_id": 7, "name": "installing", "method": "POST", "received_at": AT}),
    );
    let server = "n1.dc1.example.com".parse().unwrap();
    check(
        &PowerDone {
            server: &server,
            action: "cycle",
            command: "power cycle",
            driver: "native",
            attempts: 2,
            duration_ms: 850,
            ok: false,
            answer: None,
            error_kind: Some("timeout"),
            error: Some("no answer"),
        },
        json!({"server": "n1.dc1.example.com", "action": "cycle", "command": "power cycle",
            "driver": "native", "attempts": 2, "duration_ms": 850, "ok": false, "answer": null,
            "error_kind": "timeout", "error": "no answer"}),
    );
    check(
        &ProfileCreated {
            id: 3,
            name: "payload",
            version: "1.0",
        },
        json!({"id": 3, "name": "payload", "version": "1.0"}),
    );
    check(&ProfileDeleted { id: 3 }, json!({"id": 3}));
    let name = "ops".parse().unwrap();
    check(
        &PasswordChanged {
            id: 1,
            name: &name,
            set: true,
        },
        json!({"id": 1, "name": "ops", "set": true}),
    );
}

#[test]
fn agents() {
    use super::agents::{Agent, AgentListener, AgentState};
    check(
        &Agent {
            id: 2,
            name: "boot1-0a0b0c0d".into(),
            location: Some("dc1".into()),
            url: "http://10.0.0.1:8080".into(),
            version: "0.1.0".into(),
            started_at: at(),
            last_seen: at(),
            stopped_at: None,
            state: AgentState::Degraded,
            listeners: vec![AgentListener {
                name: "dhcp".into(),
                address: "0.0.0.0:67".into(),
                interface: Some("eth1".into()),
                up: false,
            }],
            services_down: vec!["tftp".into()],
        },
        json!({"id": 2, "name": "boot1-0a0b0c0d", "location": "dc1",
            "url": "http://10.0.0.1:8080", "version": "0.1.0", "started_at": AT,
            "last_seen": AT, "stopped_at": null, "state": "degraded",
            "listeners": [{"name": "dhcp", "address": "0.0.0.0:67", "interface": "eth1", "up": false}],
            "services_down": ["tftp"]}),
    );
}
