//! The store's promises, asked of the store itself (no daemon, no HTTP),
//! on SQLite and on PostgreSQL: an address is claimed by one client at a
//! time however many ask at once; a transition is refused when the state
//! it was computed from has changed, and so is an update merged from a read
//! that is no longer true; a named hold has one holder; outbox
//! rows come out in commit order, numbered, and are marked once.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bootloader_core::model::Name;
use bootloader_core::model::{CallbackToken, DeploymentState, LeaseState, MacAddr, TokenHash, Via};
use bootloader_store::boot::{
    CallbackCall, CallbackReceipt, DeploymentRecord, LeaseChange, LeaseClaim,
};
use bootloader_store::engine::{Claim, LogLevel, NewDeployment, Transition};
use bootloader_store::{
    BmcSpec, InterfaceSpec, NetworkSpec, NewLocation, Page, Pool, ServerSpec, Store, StoreError,
    UserSpec,
};

use crate::common::{self, Backend, TestStore};

pub(crate) async fn open(ts: &TestStore) -> Arc<dyn Store> {
    bootloader::app::open_store(&ts.config())
        .await
        .expect("open the store")
}

pub(crate) fn mac(last: u8) -> MacAddr {
    format!("52:54:00:5a:00:{last:02x}").parse().unwrap()
}

/// A location `dc1` with the network 10.9.0.0/24 (pool .100-.199).
async fn network(store: &dyn Store) -> i64 {
    store
        .create_location(NewLocation {
            name: "dc1".parse().unwrap(),
            description: String::new(),
        })
        .await
        .unwrap();
    store
        .create_network(NetworkSpec {
            location: "dc1".parse().unwrap(),
            cidr: "10.9.0.0/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            nameservers: vec![],
            domain: None,
            dhcp_options: Vec::new(),
            pool: Some(Pool {
                start: Ipv4Addr::new(10, 9, 0, 100),
                end: Ipv4Addr::new(10, 9, 0, 199),
            }),
            description: String::new(),
        })
        .await
        .unwrap()
        .id
}

fn claim(network_id: i64, mac: MacAddr, state: LeaseState, now: i64) -> LeaseClaim {
    LeaseClaim {
        network_id,
        ip: Ipv4Addr::new(10, 9, 0, 150),
        mac,
        state,
        expires_at: now + 60,
        hostname: String::new(),
        now,
    }
}

/// A pool slice has one holder at a time, and whoever takes it gets the
/// network's leases read in the same turn.
async fn pool_slices_have_one_holder(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let net = network(&*store).await;
    let now = 1_800_000_000;
    assert!(
        store
            .claim_lease(&claim(net, mac(1), LeaseState::Bound, now))
            .await
            .unwrap()
    );
    let name = format!("lease-slice/{net}/10.9.0.100");
    let rows = store
        .take_slice(&name, "a", (now, now + 600), net)
        .await
        .unwrap()
        .expect("a free slice is taken");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        store
            .take_slice(&name, "b", (now + 1, now + 601), net)
            .await
            .unwrap()
            .is_none()
    );
    // Its holder renews it; once lapsed, it passes on.
    assert!(
        store
            .take_slice(&name, "a", (now + 2, now + 602), net)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .take_slice(&name, "b", (now + 603, now + 1203), net)
            .await
            .unwrap()
            .is_some()
    );
    ts.drop_database().await;
}

async fn leases_have_one_holder(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let net = network(&*store).await;
    let now = 1_800_000_000;

    // Twenty clients ask for one address at the same moment: one gets it.
    let mut asks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        asks.push(tokio::spawn(async move {
            store
                .claim_lease(&claim(net, mac(i), LeaseState::Offered, now))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for ask in asks {
        winners += usize::from(ask.await.unwrap());
    }
    assert_eq!(winners, 1, "one address, one holder");
    let holder = store
        .lease_at(net, Ipv4Addr::new(10, 9, 0, 150))
        .await
        .unwrap()
        .expect("the lease is stored");
    assert_eq!(holder.state, LeaseState::Offered);

    // The holder binds it; another client cannot take it until it expires.
    let other = if holder.mac == mac(0) { mac(1) } else { mac(0) };
    assert!(
        store
            .claim_lease(&claim(net, holder.mac, LeaseState::Bound, now + 1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_lease(&claim(net, other, LeaseState::Offered, now + 30))
            .await
            .unwrap()
    );
    // A RELEASE from a client that does not hold it changes nothing.
    assert!(
        !store
            .release_lease(net, Ipv4Addr::new(10, 9, 0, 150), other, now + 31)
            .await
            .unwrap()
    );
    assert!(
        store
            .lease_at(net, Ipv4Addr::new(10, 9, 0, 150))
            .await
            .unwrap()
            .unwrap()
            .is_held(now + 31)
    );
    // Held, it counts toward its network's use; expired, it does not.
    assert_eq!(store.held_leases(now + 31).await.unwrap(), [(net, 1)]);
    assert!(store.held_leases(now + 61).await.unwrap().is_empty());
    // Once it has expired, the other client may have it.
    assert!(
        store
            .claim_lease(&claim(net, other, LeaseState::Offered, now + 120))
            .await
            .unwrap()
    );
    assert_eq!(
        store.lease_of(net, other).await.unwrap().unwrap().ip,
        Ipv4Addr::new(10, 9, 0, 150)
    );
    // Released, it is no longer held.
    assert!(
        store
            .release_lease(net, Ipv4Addr::new(10, 9, 0, 150), other, now + 121)
            .await
            .unwrap()
    );
    assert!(store.held_leases(now + 122).await.unwrap().is_empty());
    ts.drop_database().await;
}

/// The DHCP server's group commit: many changes in one transaction, each
/// judged as if alone and in the order given, its answer in its place.
async fn lease_changes_commit_in_groups(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let net = network(&*store).await;
    let now = 1_800_000_000;
    let at = |o: u8| Ipv4Addr::new(10, 9, 0, o);
    let claim_at = |o: u8, m: u8, state: LeaseState| {
        LeaseChange::Claim(LeaseClaim {
            ip: at(o),
            ..claim(net, mac(m), state, now)
        })
    };
    let held = store
        .apply_lease_changes(&[
            // Two clients for one address: the first in the group wins.
            claim_at(160, 1, LeaseState::Offered),
            claim_at(160, 2, LeaseState::Offered),
            // Lower addresses after higher ones keep their answers' places.
            claim_at(120, 2, LeaseState::Offered),
            claim_at(120, 2, LeaseState::Bound),
            // A release of an address the client never had.
            LeaseChange::Release {
                network_id: net,
                ip: at(170),
                mac: mac(3),
                now,
            },
            claim_at(110, 3, LeaseState::Offered),
            LeaseChange::Decline {
                network_id: net,
                ip: at(110),
                mac: mac(3),
                until: now + 600,
                now,
            },
        ])
        .await
        .unwrap();
    assert_eq!(held, [true, false, true, true, false, true, true]);
    let lease = |o| {
        let store = store.clone();
        async move { store.lease_at(net, at(o)).await.unwrap().unwrap() }
    };
    assert_eq!(lease(160).await.mac, mac(1));
    assert_eq!(lease(120).await.state, LeaseState::Bound);
    let declined = lease(110).await;
    assert_eq!(
        (declined.state, declined.expires_at),
        (LeaseState::Declined, now + 600)
    );
    assert_eq!(
        store.network_leases(net).await.unwrap().len(),
        3,
        "no row for the refused claim or the release"
    );
    // One bind published, one decline (within a group, events come in
    // address order, the order the rows were locked in).
    let mut keys: Vec<String> = store
        .pending_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.routing_key)
        .filter(|k| k.starts_with("dhcp."))
        .collect();
    keys.sort();
    assert_eq!(keys, ["dhcp.lease.bound", "dhcp.lease.declined"]);
    ts.drop_database().await;
}

/// A client holds one address per network: the bind of another address
/// lets go of the one it had, in the same group, and a bind that is
/// refused (the address is someone else's) lets go of nothing.
async fn a_client_binds_one_address_per_network(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let net = network(&*store).await;
    let now = 1_800_000_000;
    let at = |o: u8| Ipv4Addr::new(10, 9, 0, o);
    let bind = |o: u8, m: u8, now: i64| {
        LeaseChange::Claim(LeaseClaim {
            ip: at(o),
            ..claim(net, mac(m), LeaseState::Bound, now)
        })
    };
    let held = store
        .apply_lease_changes(&[bind(130, 1, now), bind(140, 2, now)])
        .await
        .unwrap();
    assert_eq!(held, [true, true]);
    // Client 1 moves to .131 and tries .140 (client 2's) in one group.
    let held = store
        .apply_lease_changes(&[bind(131, 1, now + 5), bind(140, 1, now + 5)])
        .await
        .unwrap();
    assert_eq!(held, [true, false]);
    let lease = |o| {
        let store = store.clone();
        async move { store.lease_at(net, at(o)).await.unwrap().unwrap() }
    };
    let old = lease(130).await;
    assert_eq!(
        (old.state, old.expires_at),
        (LeaseState::Released, now + 5),
        "the address client 1 left"
    );
    let new = lease(131).await;
    assert_eq!((new.mac, new.state), (mac(1), LeaseState::Bound));
    let other = lease(140).await;
    assert_eq!((other.mac, other.state), (mac(2), LeaseState::Bound));
    // A bind refused: client 2 asks for .131, still client 1's; .140 stays
    // client 2's.
    let held = store
        .apply_lease_changes(&[bind(131, 2, now + 6)])
        .await
        .unwrap();
    assert_eq!(held, [false]);
    assert_eq!(lease(140).await.state, LeaseState::Bound);
    assert_eq!(lease(131).await.mac, mac(1));
    ts.drop_database().await;
}

/// A lease group publishes a new binding and a release or decline that
/// took, and nothing for a renewal, a refused bind, an offer or a release
/// of an address the client does not hold; the payloads are the lease.
async fn lease_events_follow_what_the_group_wrote(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let net = network(&*store).await;
    let now = 1_800_000_000;
    let at = |o: u8| Ipv4Addr::new(10, 9, 0, o);
    let change = |o: u8, m: u8, state: LeaseState, now: i64| {
        LeaseChange::Claim(LeaseClaim {
            ip: at(o),
            ..claim(net, mac(m), state, now)
        })
    };
    let bind = |o, m, now| change(o, m, LeaseState::Bound, now);
    let events = || {
        let store = store.clone();
        async move {
            let events = store.pending_events(100).await.unwrap();
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            store.mark_events_sent(&ids).await.unwrap();
            events
                .into_iter()
                .filter(|e| e.routing_key.starts_with("dhcp."))
                .map(|e| {
                    let ip = e.payload["ip"].as_str().unwrap_or_default().to_owned();
                    (e.routing_key, ip)
                })
                .collect::<Vec<_>>()
        }
    };
    events().await;
    let key = |k: &str, o: u8| (k.to_owned(), at(o).to_string());
    // Two new bindings and an offer.
    let held = store
        .apply_lease_changes(&[
            bind(150, 1, now),
            bind(151, 2, now),
            change(152, 3, LeaseState::Offered, now),
        ])
        .await
        .unwrap();
    assert_eq!(held, [true, true, true]);
    assert_eq!(
        events().await,
        [key("dhcp.lease.bound", 150), key("dhcp.lease.bound", 151)]
    );
    // A renewal, a bind of another's address, the offered client binding.
    let held = store
        .apply_lease_changes(&[
            bind(150, 1, now + 10),
            bind(151, 3, now + 10),
            bind(152, 3, now + 10),
        ])
        .await
        .unwrap();
    assert_eq!(held, [true, false, true]);
    assert_eq!(events().await, [key("dhcp.lease.bound", 152)]);
    // Once client 2's lease has run out its address is free to bind.
    let held = store
        .apply_lease_changes(&[bind(151, 4, now + 100)])
        .await
        .unwrap();
    assert_eq!(held, [true]);
    assert_eq!(events().await, [key("dhcp.lease.bound", 151)]);
    // A renewal after the lease ran out is a new binding too.
    store
        .apply_lease_changes(&[bind(150, 1, now + 100)])
        .await
        .unwrap();
    assert_eq!(events().await, [key("dhcp.lease.bound", 150)]);
    // A release that takes, one of an address the client does not hold,
    // a decline of its own, one of another's; a release twice.
    let let_go = |o: u8, m: u8, until: Option<i64>| match until {
        None => LeaseChange::Release {
            network_id: net,
            ip: at(o),
            mac: mac(m),
            now: now + 101,
        },
        Some(until) => LeaseChange::Decline {
            network_id: net,
            ip: at(o),
            mac: mac(m),
            until,
            now: now + 101,
        },
    };
    let held = store
        .apply_lease_changes(&[
            let_go(150, 1, None),
            let_go(150, 1, None),
            let_go(151, 1, None),
            let_go(152, 3, Some(now + 700)),
            let_go(151, 9, Some(now + 700)),
        ])
        .await
        .unwrap();
    assert_eq!(held, [true, false, false, true, false]);
    assert_eq!(
        events().await,
        [
            key("dhcp.lease.released", 150),
            key("dhcp.lease.declined", 152)
        ]
    );
    ts.drop_database().await;
}

/// A server with one interface and a deployment of the echo profile.
async fn deployment(store: &dyn Store) -> i64 {
    deployment_and_token(store).await.0
}

/// The same, and its callback token's hash.
async fn deployment_and_token(store: &dyn Store) -> (i64, TokenHash) {
    let (record, hash) = deployment_claimed(store, None, None).await;
    (record.id, hash)
}

/// A server of location dc1 with one interface, `eth0` at `mac`.
pub(crate) fn server_spec(fqdn: &str, mac: MacAddr) -> ServerSpec {
    ServerSpec {
        fqdn: fqdn.parse().unwrap(),
        location: "dc1".parse().unwrap(),
        serial: String::new(),
        notes: String::new(),
        labels: vec![],
        bmc: BmcSpec {
            host: None,
            port: 623,
            username: None,
            password: None,
            credential: None,
            driver: None,
        },
        interfaces: Some(vec![InterfaceSpec {
            name: "eth0".into(),
            mac,
            ipv4: None,
        }]),
    }
}

/// A server in location dc1 with one interface and a deployment of the
/// echo profile, started with `claim` and the runner's first moves `then`.
pub(crate) async fn deployment_claimed(
    store: &dyn Store,
    claim: Option<Claim>,
    then: Option<Transition>,
) -> (DeploymentRecord, TokenHash) {
    network(store).await;
    let (_, source) = common::shipped_profiles()
        .into_iter()
        .find(|(name, _)| name.starts_with("echo"))
        .expect("the shipped echo profile");
    let profile = bootloader_core::profile::parse(&source).unwrap();
    let stored = store
        .create_profile(
            &profile.name,
            &profile.version,
            &source,
            profile.action_count() as u64,
        )
        .await
        .unwrap();
    store
        .create_server(server_spec("s1.dc1.example.com", mac(9)))
        .await
        .unwrap();
    let token = CallbackToken::generate().unwrap();
    let hash = token.hash();
    let record = store
        .start_deployment(&NewDeployment {
            server: "s1.dc1.example.com".parse().unwrap(),
            profile_id: stored.id,
            token,
            repeat_of: None,
            claim,
            then,
        })
        .await
        .unwrap();
    (record, hash)
}

/// A deployment started by a daemon of its server's location is held by
/// that daemon from its first commit, and written with that daemon's first
/// moves; one of another location's is left for that location's daemon,
/// as created.
/// A store whose key rotate-secret has replaced (another daemon's, or
/// the command line's) starts nothing more under the old key: each start
/// checks the key once and then requires the check value it verified
/// unchanged as it writes, so the first start after the rotation finds it
/// changed, checks again and is refused, alone or with others.
async fn a_start_under_a_replaced_key_is_refused(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let (first, _) = deployment_claimed(&*store, None, None).await;
    assert!(
        store
            .commit_transition(&transition(
                first.id,
                DeploymentState::New,
                DeploymentState::Cancelled,
                "cancelled"
            ))
            .await
            .unwrap()
    );
    for i in 2..=4 {
        store
            .create_server(server_spec(&format!("s{i}.dc1.example.com"), mac(20 + i)))
            .await
            .unwrap();
    }
    let start = |fqdn: &str| NewDeployment {
        server: fqdn.parse().unwrap(),
        profile_id: first.profile_id,
        token: CallbackToken::generate().unwrap(),
        repeat_of: None,
        claim: None,
        then: None,
    };
    // Started under the key: its check value is now known to this store.
    let second = store
        .start_deployment(&start("s2.dc1.example.com"))
        .await
        .unwrap();
    let replaced = store
        .rotate_secret(&bootloader_store::SecretCipher::from_passphrase(
            "the next key",
        ))
        .await
        .unwrap();
    assert!(replaced >= 2, "{replaced} secrets re-encrypted");
    let alone = store.start_deployment(&start("s1.dc1.example.com")).await;
    assert!(matches!(alone, Err(StoreError::Cipher(_))), "{alone:?}");
    let (s3, s4) = (start("s3.dc1.example.com"), start("s4.dc1.example.com"));
    let (a, b) = tokio::join!(store.start_deployment(&s3), store.start_deployment(&s4));
    assert!(matches!(a, Err(StoreError::Cipher(_))), "{a:?}");
    assert!(matches!(b, Err(StoreError::Cipher(_))), "{b:?}");
    for id in second.id + 1..second.id + 5 {
        assert!(
            matches!(store.deployment(id).await, Err(StoreError::NotFound { .. })),
            "deployment {id} was written under the old key"
        );
    }
}

async fn a_deployment_is_held_by_the_daemon_starting_it(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    use crate::starts::{claim, first_moves};
    let (elsewhere, _) = deployment_claimed(&*store, claim("dc2"), first_moves()).await;
    assert_eq!(elsewhere.runner, None);
    assert_eq!(
        store.deployment(elsewhere.id).await.unwrap().state,
        DeploymentState::New
    );
    assert!(
        store
            .commit_transition(&transition(
                elsewhere.id,
                DeploymentState::New,
                DeploymentState::Cancelled,
                "cancelled"
            ))
            .await
            .unwrap()
    );
    let token = CallbackToken::generate().unwrap();
    let secret = token.expose().to_string();
    let here = store
        .start_deployment(&NewDeployment {
            server: elsewhere.server.clone(),
            profile_id: elsewhere.profile_id,
            token,
            repeat_of: None,
            claim: claim("dc1"),
            then: first_moves(),
        })
        .await
        .unwrap();
    assert_eq!(here.runner.as_deref(), Some("boot-a"));
    // The record as created; the row as the first moves left it.
    assert_eq!(here.state, DeploymentState::New);
    let view = store.engine_view(here.id).await.unwrap();
    assert_eq!(view.record.state, DeploymentState::Preparing);
    assert_eq!(view.record.step.as_deref(), Some("preparing"));
    assert_eq!(view.action_deadline, Some(1_600));
    // The engine's task starts from what it knows instead of reading this
    // back: the same.
    let known = bootloader::workflow::engine::started(
        &here,
        view.profile_source.clone(),
        secret,
        first_moves().as_ref(),
    )
    .expect("a view of a deployment moved by its first moves");
    assert_eq!(known.record.id, view.record.id);
    assert_eq!(known.record.state, view.record.state);
    assert_eq!(known.record.step, view.record.step);
    assert_eq!(known.record.action_index, view.record.action_index);
    assert_eq!(known.record.error, view.record.error);
    assert_eq!(known.record.runner, view.record.runner);
    assert_eq!(known.record.server, view.record.server);
    assert_eq!(known.record.profile_id, view.record.profile_id);
    assert_eq!(known.token, view.token);
    assert_eq!(
        (
            known.actions_done,
            known.action_deadline,
            known.step_deadline
        ),
        (view.actions_done, view.action_deadline, view.step_deadline)
    );
    let log = store.deployment_log(here.id, None, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|l| l.message.as_str()).collect::<Vec<_>>()[1..],
        ["first moves"]
    );
    assert_eq!(
        store.deployment(here.id).await.unwrap().runner.as_deref(),
        Some("boot-a")
    );
    // Held: another daemon of the location does not take it meanwhile.
    let taken = store
        .claim_deployments("boot-b", Some("dc1"), 1_010, 1_040)
        .await
        .unwrap();
    assert!(!taken.contains(&here.id), "{taken:?}");
    ts.drop_database().await;
}

/// A daemon holds the deployments it runs by renewing one row of its own:
/// while it renews, no other daemon takes them, even once the hold each
/// was taken with has lapsed; when it stops renewing, or lets go, another
/// takes them.
async fn a_daemon_holds_its_deployments_by_one_row(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let (d, _) = deployment_claimed(&*store, None, None).await;
    let claim = |runner: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .claim_deployments(runner, Some("dc1"), now, now + 30)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("boot-a", 1_000).await, [d.id]);
    assert_eq!(claim("boot-b", 1_010).await, Vec::<i64>::new());
    assert_eq!(claim("boot-a", 1_020).await, [d.id]);
    // The deployment was taken until 1,030; boot-a's row holds it to 1,050.
    assert_eq!(claim("boot-b", 1_040).await, Vec::<i64>::new());
    assert_eq!(
        store.deployment(d.id).await.unwrap().runner.as_deref(),
        Some("boot-a")
    );
    // boot-a stopped renewing.
    assert_eq!(claim("boot-b", 1_051).await, [d.id]);
    assert_eq!(claim("boot-a", 1_052).await, Vec::<i64>::new());
    // Let go, it passes at once.
    store.release_deployments("boot-b").await.unwrap();
    assert_eq!(claim("boot-a", 1_053).await, [d.id]);
    ts.drop_database().await;
}

/// Callbacks stored as one group: a receipt each, in order; a replay
/// within the group is a replay; a token no active deployment holds is
/// unknown; the deployment's share holds across the group.
async fn callbacks_are_stored_in_groups(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let (id, token) = deployment_and_token(&*store).await;
    let stranger = CallbackToken::generate().unwrap().hash();
    let call = |token: &TokenHash, name: &str| CallbackCall {
        token: token.clone(),
        name: name.into(),
        method: "POST".into(),
        body: format!("{name} body"),
    };
    let receipts = store
        .record_callbacks(
            &[
                call(&token, "booted"),
                call(&stranger, "booted"),
                call(&token, "installed"),
                call(&token, "booted"),
                call(&token, "configured"),
            ],
            2,
        )
        .await
        .unwrap();
    use CallbackReceipt::*;
    assert_eq!(
        receipts,
        [
            Recorded {
                deployment_id: id,
                first: true
            },
            UnknownToken,
            Recorded {
                deployment_id: id,
                first: true
            },
            Recorded {
                deployment_id: id,
                first: false
            },
            Full { deployment_id: id },
        ]
    );
    let stored: Vec<(String, String)> = store
        .callbacks(id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.body))
        .collect();
    assert_eq!(
        stored,
        [
            ("booted".to_string(), "booted body".to_string()),
            ("installed".to_string(), "installed body".to_string()),
        ]
    );
    // One event for each callback stored, none for a replay.
    let events: Vec<String> = store
        .pending_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.routing_key)
        .filter(|k| k == "deployment.callback")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    ts.drop_database().await;
}

pub(crate) fn transition(
    id: i64,
    from: DeploymentState,
    to: DeploymentState,
    note: &str,
) -> Transition {
    Transition {
        id,
        from,
        state: to,
        step: None,
        action_index: 0,
        actions_done: 0,
        action_deadline: None,
        step_deadline: None,
        error: None,
        log: vec![(LogLevel::Info, note.to_string())],
        runner: None,
    }
}

async fn a_stale_transition_is_refused(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let id = deployment(&*store).await;
    use DeploymentState::*;
    assert!(
        store
            .commit_transition(&transition(id, New, Preparing, "walked on"))
            .await
            .unwrap()
    );
    // Computed from `new`, which it no longer is: a cancel that read the
    // old state must not win over what happened since.
    assert!(
        !store
            .commit_transition(&transition(id, New, Cancelled, "stale"))
            .await
            .unwrap()
    );
    assert_eq!(store.deployment(id).await.unwrap().state, Preparing);
    let log = store.deployment_log(id, None, 100).await.unwrap();
    let said: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
    assert!(said.contains(&"walked on"), "{said:?}");
    assert!(!said.contains(&"stale"), "{said:?}");
    // Each committed state has its event, in order.
    let kinds: Vec<String> = store
        .pending_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.routing_key)
        .filter(|k| k.starts_with("deployment."))
        .collect();
    assert_eq!(kinds, ["deployment.new", "deployment.preparing"]);
    ts.drop_database().await;
}

/// `n` deployments of the echo profile, each of its own server.
async fn deployments(store: &dyn Store, n: u8) -> Vec<i64> {
    let mut ids = vec![deployment(store).await];
    let profile = store.deployment(ids[0]).await.unwrap().profile_id;
    for i in 2..=n {
        let fqdn = format!("s{i}.dc1.example.com");
        store
            .create_server(server_spec(&fqdn, mac(100 + i)))
            .await
            .unwrap();
        let record = store
            .start_deployment(&NewDeployment {
                server: fqdn.parse().unwrap(),
                profile_id: profile,
                token: CallbackToken::generate().unwrap(),
                repeat_of: None,
                claim: None,
                then: None,
            })
            .await
            .unwrap();
        ids.push(record.id);
    }
    ids
}

/// Writes to the deployments held back from a connection of the test's
/// own (SQLite: the database's write lock; PostgreSQL: a lock on the
/// table), so that what the store writes meanwhile waits: writes made at
/// once queue behind the first however fast the machine answers (on
/// SQLite a commit can be done before the next caller is even polled).
pub(crate) enum Held {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

pub(crate) async fn hold_deployments(ts: &TestStore) -> Held {
    use sqlx::Connection;
    match ts.backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(ts.dir.path().join("bootloader.sqlite3"));
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Held::Sqlite(c)
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&ts.env["DATABASE_URL"])
                .await
                .unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE deployments IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            Held::Postgres(c)
        }
    }
}

/// Runs `writes` (made at once) while the deployments are held, and lets
/// them go once every one has been asked for.
pub(crate) async fn at_once<F: std::future::Future>(
    ts: &TestStore,
    writes: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let held = hold_deployments(ts).await;
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        match held {
            Held::Sqlite(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(drop),
            Held::Postgres(mut c) => sqlx::query("COMMIT").execute(&mut c).await.map(drop),
        }
        .unwrap();
    };
    tokio::join!(futures_util::future::join_all(writes), release).0
}

/// Files removed at once (on SQLite in one transaction, `combine.rs`):
/// each removal answers for its own file, a file not served is "nothing
/// removed", and the others' files stay.
async fn files_removed_at_once_are_each_answered(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let ids = deployments(&*store, 8).await;
    for &id in &ids {
        for name in ["script", "kept"] {
            store
                .serve_file(id, Via::Http, &format!("{name}/{id}"), b"x")
                .await
                .unwrap();
        }
    }
    let removals: Vec<(i64, String)> = ids
        .iter()
        .map(|&id| (id, format!("script/{id}")))
        .chain([(ids[0], "never/served".to_string())])
        .collect();
    let done = futures_util::future::join_all(
        removals
            .iter()
            .map(|(id, path)| store.unserve_file(*id, Via::Http, path)),
    )
    .await;
    let removed: Vec<bool> = done.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        removed,
        [true, true, true, true, true, true, true, true, false]
    );
    for &id in &ids {
        let gone = store
            .served_file(Via::Http, &format!("script/{id}"))
            .await
            .unwrap();
        assert!(gone.is_none(), "script/{id} removed");
        let kept = store
            .served_file(Via::Http, &format!("kept/{id}"))
            .await
            .unwrap();
        assert_eq!(kept.map(|f| f.deployment_id), Some(id), "kept/{id} stays");
    }
    ts.drop_database().await;
}

/// Deployments' transitions committed at once (on SQLite as one group,
/// `combine.rs`): each is judged as if alone (a stale one refused, the
/// others written), each gets its own log lines and events, and one that
/// ends its deployment stops what it served.
async fn transitions_at_once_are_each_judged_alone(backend: Backend) {
    use DeploymentState::*;
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let ids = deployments(&*store, 12).await;
    // The last one serves a file; it ends in the group.
    let last = *ids.last().unwrap();
    store
        .serve_file(last, Via::Http, "ipxe/last", b"#!ipxe\n")
        .await
        .unwrap();
    let mut moves: Vec<Transition> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| match i {
            // Computed from a state it is not in.
            3 => transition(id, Preparing, Installing, &format!("stale {id}")),
            _ if id == last => transition(id, New, Cancelled, &format!("ended {id}")),
            _ => transition(id, New, Preparing, &format!("moved {id}")),
        })
        .collect();
    // An operator's cancel of the sixth, made for the state the engine's
    // move takes it to: it waits in the same group, behind the move, and
    // each is judged in its turn.
    let sixth = ids[5];
    moves.push(transition(
        sixth,
        Preparing,
        Cancelled,
        "cancelled after its move",
    ));
    let cancel = moves.len() - 1;
    let done = at_once(&ts, moves.iter().map(|t| store.commit_transition(t))).await;
    let done: Vec<bool> = done.into_iter().map(Result::unwrap).collect();
    let cancelled = done[cancel];
    assert!(cancelled, "the cancel is judged after the move");
    // The first commits alone (nobody waits yet); those that queued
    // behind it commit as one group, at one time. One by one (a group
    // that failed), each would have its own.
    let mut times = std::collections::BTreeSet::new();
    for (i, t) in moves.iter().enumerate().skip(1) {
        if i != 3 {
            times.insert(store.deployment(t.id).await.unwrap().updated_at);
        }
    }
    assert_eq!(times.len(), 1, "one group: {times:?}");
    for (i, (t, &d)) in moves.iter().zip(&done).enumerate() {
        assert_eq!(d, i != 3 && (i != cancel || cancelled), "transition {i}");
        let record = store.deployment(t.id).await.unwrap();
        let expected = match i {
            3 => New,
            _ if t.id == sixth && cancelled => Cancelled,
            _ if t.id == sixth => Preparing,
            _ => t.state,
        };
        assert_eq!(record.state, expected, "deployment {i}");
        let log = store.deployment_log(t.id, None, 100).await.unwrap();
        let said: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            said.contains(&t.log[0].1.as_str()),
            d,
            "deployment {i}: {said:?}"
        );
    }
    assert!(
        store
            .served_file(Via::Http, "ipxe/last")
            .await
            .unwrap()
            .is_none(),
        "an ended deployment serves nothing"
    );
    // One event per state entered, none for the stale one; an ended
    // one's event is its record as read.
    let events = store.pending_events(1000).await.unwrap();
    let ended = store.deployment(last).await.unwrap();
    assert!(ended.finished_at.is_some());
    assert!(
        events
            .iter()
            .any(|e| e.routing_key == "deployment.cancelled"
                && e.payload == serde_json::to_value(&ended).unwrap()),
        "{events:?}"
    );
    let kinds: Vec<String> = events
        .into_iter()
        .map(|e| e.routing_key)
        .filter(|k| k.starts_with("deployment.") && k != "deployment.new")
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "deployment.preparing")
            .count(),
        10
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "deployment.cancelled")
            .count(),
        1 + usize::from(cancelled)
    );
    assert_eq!(kinds.len(), 11 + usize::from(cancelled), "{kinds:?}");
    ts.drop_database().await;
}

async fn a_hold_has_one_holder(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let now = 1_800_000_000;
    assert!(store.hold_lock("relay", "a", now, now + 30).await.unwrap());
    assert!(
        !store
            .hold_lock("relay", "b", now + 1, now + 31)
            .await
            .unwrap()
    );
    // The holder renews it.
    assert!(
        store
            .hold_lock("relay", "a", now + 10, now + 40)
            .await
            .unwrap()
    );
    assert!(
        !store
            .hold_lock("relay", "b", now + 35, now + 65)
            .await
            .unwrap()
    );
    // Not renewed, it passes to the next who asks.
    assert!(
        store
            .hold_lock("relay", "b", now + 41, now + 71)
            .await
            .unwrap()
    );
    assert!(
        !store
            .hold_lock("relay", "a", now + 42, now + 72)
            .await
            .unwrap()
    );
    // Letting go is the holder's alone.
    store.release_lock("relay", "a").await.unwrap();
    assert!(
        !store
            .hold_lock("relay", "a", now + 43, now + 73)
            .await
            .unwrap()
    );
    store.release_lock("relay", "b").await.unwrap();
    assert!(
        store
            .hold_lock("relay", "a", now + 44, now + 74)
            .await
            .unwrap()
    );
    ts.drop_database().await;
}

async fn the_outbox_keeps_commit_order(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    for name in ["l1", "l2", "l3"] {
        store
            .create_location(NewLocation {
                name: name.parse().unwrap(),
                description: String::new(),
            })
            .await
            .unwrap();
    }
    let first = store.pending_events(2).await.unwrap();
    let all = store.pending_events(100).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(first.len(), 2);
    let names: Vec<&str> = all
        .iter()
        .map(|e| e.payload["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["l1", "l2", "l3"]);
    // Numbered once, growing; reading again gives the same numbers.
    let seqs: Vec<i64> = all.iter().map(|e| e.seq.expect("numbered")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(first[0].seq, all[0].seq);
    let (backlog, _) = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog, 3);
    store
        .mark_events_sent(&[all[0].id, all[1].id])
        .await
        .unwrap();
    let left = store.pending_events(100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, all[2].id);
    assert_eq!(store.outbox_backlog().await.unwrap().0, 1);
    ts.drop_database().await;
}

/// Two operators read the same interface (and user) and both write: the
/// second write, merged from a read that is no longer true, is refused and
/// changes nothing.
async fn an_update_from_a_stale_read_is_refused(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    deployment(&*store).await;
    let fqdn = "s1.dc1.example.com".parse().unwrap();
    let read = store
        .list_interfaces(
            Some(&fqdn),
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap()
        .items
        .remove(0);
    let spec = |name: &str| InterfaceSpec {
        name: name.into(),
        mac: read.mac,
        ipv4: None,
    };
    let first = store
        .update_interface(read.id, spec("lan0"), &read)
        .await
        .unwrap();
    assert_eq!(first.name, "lan0");
    let second = store.update_interface(read.id, spec("lan1"), &read).await;
    assert!(
        matches!(second, Err(StoreError::Stale { .. })),
        "{second:?}"
    );
    assert_eq!(store.interface(read.id).await.unwrap().name, "lan0");

    let name: Name = "ops1".parse().unwrap();
    let user = |email: &str| UserSpec {
        name: name.clone(),
        email: email.into(),
        first_name: String::new(),
        last_name: String::new(),
        is_active: true,
        is_staff: false,
    };
    let read = store.create_user(user("a@example.com")).await.unwrap();
    store
        .update_user(&name, user("b@example.com"), &read)
        .await
        .unwrap();
    let second = store.update_user(&name, user("c@example.com"), &read).await;
    assert!(
        matches!(second, Err(StoreError::Stale { .. })),
        "{second:?}"
    );
    assert_eq!(store.user(&name).await.unwrap().email, "b@example.com");
    ts.drop_database().await;
}

/// A console session is found by its secret while it is open, and not
/// after it expires, idles out, is ended, or its user goes; a theme sticks
/// to its user.
async fn sessions_end_as_they_should(backend: Backend) {
    use bootloader_core::model::{SessionSecret, Theme, TokenScope};
    use bootloader_store::{NewSession, SignedInBy};
    use time::{Duration, OffsetDateTime};

    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let name: Name = "ops2".parse().unwrap();
    store
        .create_user(UserSpec {
            name: name.clone(),
            email: "ops2@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            is_active: true,
            is_staff: false,
        })
        .await
        .unwrap();
    let t0 = OffsetDateTime::now_utc();
    let idle = Duration::hours(1);
    let open_one = |secret: &SessionSecret, expires_at| NewSession {
        user: name.clone(),
        hash: secret.hash(),
        source: "192.0.2.7".into(),
        expires_at,
    };
    let a = SessionSecret::generate().unwrap();
    let id = store
        .create_session(open_one(&a, t0 + Duration::days(1)))
        .await
        .unwrap();
    let found = store.session(&a.hash(), t0, idle).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.principal.user, name);
    assert_eq!(found.principal.by, SignedInBy::Session(id));
    assert_eq!(found.principal.scope, TokenScope::Read, "not staff: reads");
    assert_eq!(found.source, "192.0.2.7");
    assert_eq!(found.theme, None);
    let stranger = SessionSecret::generate().unwrap();
    assert!(
        store
            .session(&stranger.hash(), t0, idle)
            .await
            .unwrap()
            .is_none()
    );

    // Seen within the idle time, it stays open, and the visit is recorded.
    let later = t0 + Duration::minutes(50);
    assert!(
        store
            .session(&a.hash(), later, idle)
            .await
            .unwrap()
            .is_some()
    );
    let still = store
        .session(&a.hash(), later + Duration::minutes(50), idle)
        .await
        .unwrap();
    assert!(still.is_some(), "the visit at 50 min moved the idle clock");
    // Idle for longer than allowed, it is gone.
    assert!(
        store
            .session(&a.hash(), later + Duration::hours(3), idle)
            .await
            .unwrap()
            .is_none()
    );
    // Past its end, whatever its visits.
    let b = SessionSecret::generate().unwrap();
    store
        .create_session(open_one(&b, t0 + Duration::minutes(5)))
        .await
        .unwrap();
    assert!(store.session(&b.hash(), t0, idle).await.unwrap().is_some());
    assert!(
        store
            .session(&b.hash(), t0 + Duration::minutes(6), idle)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .purge_sessions(t0 + Duration::minutes(6), idle)
            .await
            .unwrap(),
        1,
        "the expired one is purged, the open one kept"
    );

    // Signing out ends one; ending it twice is fine.
    store.end_session(&a.hash()).await.unwrap();
    store.end_session(&a.hash()).await.unwrap();
    assert!(store.session(&a.hash(), t0, idle).await.unwrap().is_none());

    // A theme sticks to its user and comes with their sessions.
    store
        .set_theme(&name, Some(Theme::HighContrast))
        .await
        .unwrap();
    let c = SessionSecret::generate().unwrap();
    let d = SessionSecret::generate().unwrap();
    for s in [&c, &d] {
        store
            .create_session(open_one(s, t0 + Duration::days(1)))
            .await
            .unwrap();
    }
    let found = store.session(&c.hash(), t0, idle).await.unwrap().unwrap();
    assert_eq!(found.theme, Some(Theme::HighContrast));
    assert!(matches!(
        store.set_theme(&"nobody".parse().unwrap(), None).await,
        Err(StoreError::NotFound { .. })
    ));
    // A new password ends the user's other sessions; then every one ends
    // together, and with the user.
    let kept = store
        .session(&c.hash(), t0, idle)
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_eq!(store.end_sessions_of(&name, Some(kept)).await.unwrap(), 1);
    assert!(store.session(&d.hash(), t0, idle).await.unwrap().is_none());
    assert!(store.session(&c.hash(), t0, idle).await.unwrap().is_some());
    assert_eq!(store.end_sessions_of(&name, None).await.unwrap(), 1);
    assert!(store.session(&c.hash(), t0, idle).await.unwrap().is_none());
    let e = SessionSecret::generate().unwrap();
    store
        .create_session(open_one(&e, t0 + Duration::days(1)))
        .await
        .unwrap();
    store.delete_user(&name).await.unwrap();
    assert!(store.session(&e.hash(), t0, idle).await.unwrap().is_none());
    ts.drop_database().await;
}

/// A daemon's reports: the first creates its agent and publishes its
/// start, later ones only refresh it; its state follows its last report
/// (gone after 90 s of silence, stopped when it said so); a new start is
/// published again; a forgotten agent is gone from the list.
async fn agents_follow_their_reports(backend: Backend) {
    use bootloader_store::{AgentListener, AgentReport, AgentState};
    use time::{Duration, OffsetDateTime};

    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let report = |at: OffsetDateTime, started_at: OffsetDateTime, http_up: bool| AgentReport {
        name: "boot1-0a0b0c0d".into(),
        location: Some("dc1".into()),
        url: "http://10.0.0.1:8080".into(),
        version: "9.9.9".into(),
        started_at,
        listeners: vec![
            AgentListener {
                name: "http".into(),
                address: "10.0.0.1:8080".into(),
                interface: None,
                up: http_up,
            },
            AgentListener {
                name: "dhcp".into(),
                address: "0.0.0.0:67".into(),
                interface: Some("eth1".into()),
                up: true,
            },
        ],
        services_down: vec![],
        at,
    };
    let started = || async {
        store
            .pending_events(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.routing_key.starts_with("agent."))
            .map(|e| e.routing_key)
            .collect::<Vec<_>>()
    };

    let a = store.report_agent(&report(t0, t0, true)).await.unwrap();
    assert_eq!(a.state, AgentState::Up);
    assert_eq!(a.location.as_deref(), Some("dc1"));
    assert_eq!(a.listeners[1].interface.as_deref(), Some("eth1"));
    store
        .report_agent(&report(t0 + Duration::seconds(30), t0, false))
        .await
        .unwrap();
    assert_eq!(
        started().await,
        ["agent.started"],
        "a refresh publishes nothing"
    );
    let now = t0 + Duration::seconds(60);
    let listed = store.list_agents(now).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].state,
        AgentState::Degraded,
        "its http listener is down"
    );
    assert_eq!(listed[0].last_seen, t0 + Duration::seconds(30));
    let later = t0 + Duration::seconds(30 + 91);
    assert_eq!(
        store.agent("boot1-0a0b0c0d", later).await.unwrap().state,
        AgentState::Gone
    );

    // Restarted: a new start; then stopped.
    let t1 = t0 + Duration::minutes(10);
    let again = store.report_agent(&report(t1, t1, true)).await.unwrap();
    assert_eq!((again.state, again.started_at), (AgentState::Up, t1));
    store.agent_stopped("boot1-0a0b0c0d", t1).await.unwrap();
    let stopped = store.agent("boot1-0a0b0c0d", t1).await.unwrap();
    assert_eq!(stopped.state, AgentState::Stopped);
    assert_eq!(stopped.stopped_at, Some(t1));
    assert_eq!(
        started().await,
        ["agent.started", "agent.started", "agent.stopped"]
    );
    // A report after a stop is a running daemon again.
    let back = store
        .report_agent(&report(t1 + Duration::seconds(1), t1, true))
        .await
        .unwrap();
    assert_eq!((back.state, back.stopped_at), (AgentState::Up, None));

    store.delete_agent("boot1-0a0b0c0d", t1).await.unwrap();
    assert!(store.list_agents(t1).await.unwrap().is_empty());
    assert!(matches!(
        store.agent("boot1-0a0b0c0d", t1).await,
        Err(bootloader_store::StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.agent_stopped("nobody", t1).await,
        Err(bootloader_store::StoreError::NotFound { .. })
    ));
    ts.drop_database().await;
}

/// What a database refuses for a while (SQLite busy, a PostgreSQL
/// statement cut by its timeout or a lock not granted in time) is
/// `Unavailable`, which the engine and the API wait out (503); what it
/// refuses for good stays a database error.
#[tokio::test]
async fn a_busy_database_is_unavailable_not_failed() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .busy_timeout(std::time::Duration::ZERO);
    let mut holder = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let mut other = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let busy = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut other)
        .await
        .unwrap_err();
    assert!(matches!(StoreError::from(busy), StoreError::Unavailable(_)));
    let bad = sqlx::query("INSERT INTO nowhere VALUES (1)")
        .execute(&mut holder)
        .await
        .unwrap_err();
    assert!(matches!(StoreError::from(bad), StoreError::Database(_)));

    let mut pg = sqlx::PgConnection::connect(&common::pg_admin_url())
        .await
        .unwrap();
    let mut other = sqlx::PgConnection::connect(&common::pg_admin_url())
        .await
        .unwrap();
    sqlx::query("SET statement_timeout = 50")
        .execute(&mut pg)
        .await
        .unwrap();
    let cut = sqlx::query("SELECT pg_sleep(5)")
        .execute(&mut pg)
        .await
        .unwrap_err();
    assert!(matches!(StoreError::from(cut), StoreError::Unavailable(_)));
    let mut held = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(424242)")
        .execute(&mut *held)
        .await
        .unwrap();
    sqlx::query("SET lock_timeout = 50")
        .execute(&mut pg)
        .await
        .unwrap();
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut pg)
        .await
        .unwrap();
    let waited = sqlx::query("SELECT pg_advisory_lock(424242)")
        .execute(&mut pg)
        .await
        .unwrap_err();
    assert!(matches!(
        StoreError::from(waited),
        StoreError::Unavailable(_)
    ));
    held.rollback().await.unwrap();
    let bad = sqlx::query("SELECT * FROM nowhere")
        .execute(&mut pg)
        .await
        .unwrap_err();
    assert!(matches!(StoreError::from(bad), StoreError::Database(_)));
}

on_both_backends!(
    callbacks_are_stored_in_groups,
    a_deployment_is_held_by_the_daemon_starting_it,
    a_start_under_a_replaced_key_is_refused,
    a_daemon_holds_its_deployments_by_one_row,
    agents_follow_their_reports,
    sessions_end_as_they_should,
    leases_have_one_holder,
    pool_slices_have_one_holder,
    lease_changes_commit_in_groups,
    a_client_binds_one_address_per_network,
    lease_events_follow_what_the_group_wrote,
    a_stale_transition_is_refused,
    transitions_at_once_are_each_judged_alone,
    files_removed_at_once_are_each_answered,
    an_update_from_a_stale_read_is_refused,
    a_hold_has_one_holder,
    the_outbox_keeps_commit_order,
);

/// The DHCP server's lease journal against a real SQLite store: what a
/// run that died left in it (a torn last line included) is in the store
/// once the journal is opened, and its segments are gone; changes appended
/// are read back through the journal at once (a read commits them first),
/// and a flush leaves one empty segment.
#[tokio::test]
async fn the_lease_journal_applies_what_a_dead_run_left() {
    use bootloader::dhcp::journal::Journal;
    use bootloader_store::LeaseStore;
    let ts = TestStore::new(Backend::Sqlite).await;
    let store = open(&ts).await;
    let net = network(&*store).await;
    let now = 1_800_000_000;
    let dir = ts.dir.path().join("lease-journal");
    std::fs::create_dir_all(&dir).unwrap();
    let line = |ip: &str, m: u8, op: &str| {
        format!(
            "{{\"op\":\"{op}\",\"network\":{net},\"ip\":\"{ip}\",\"mac\":\"{}\",\"state\":\"bound\",\"expires_at\":{},\"now\":{now}}}\n",
            mac(m),
            now + 600
        )
    };
    // Two segments of a dead run: a bind and its move, and one in a
    // network deleted since (the database refuses it: left out, the others
    // applied); then a bind and a write cut short.
    let gone = line("10.9.0.122", 5, "claim").replace(
        &format!("\"network\":{net},"),
        &format!("\"network\":{},", net + 1000),
    );
    std::fs::write(
        dir.join("000000000007.log"),
        line("10.9.0.120", 1, "claim") + &gone + &line("10.9.0.121", 1, "claim"),
    )
    .unwrap();
    let torn = line("10.9.0.131", 3, "claim");
    std::fs::write(
        dir.join("000000000008.log"),
        line("10.9.0.130", 2, "claim") + &torn[..torn.len() / 2],
    )
    .unwrap();
    let leases: Arc<dyn LeaseStore> = store.clone();
    let journal = Journal::open(&dir, leases).await.unwrap();
    let lease = |o: u8| {
        let store = store.clone();
        async move {
            store
                .lease_at(net, Ipv4Addr::new(10, 9, 0, o))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        lease(120).await.unwrap().state,
        LeaseState::Released,
        "moved"
    );
    let bound = lease(121).await.unwrap();
    assert_eq!((bound.mac, bound.state), (mac(1), LeaseState::Bound));
    assert_eq!(lease(130).await.unwrap().mac, mac(2));
    assert!(store.lease_of(net + 1000, mac(5)).await.unwrap().is_none());
    assert!(lease(131).await.is_none(), "the torn line is left out");
    let files = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(&dir), ["000000000009.log"]);
    // Appended: durable in the file, read through the journal at once.
    journal
        .append(&[LeaseChange::Claim(LeaseClaim {
            ip: Ipv4Addr::new(10, 9, 0, 140),
            ..claim(net, mac(4), LeaseState::Bound, now)
        })])
        .unwrap();
    assert!(
        std::fs::read_to_string(dir.join("000000000009.log"))
            .unwrap()
            .contains(&mac(4).to_string())
    );
    let read = journal
        .lease_at(net, Ipv4Addr::new(10, 9, 0, 140))
        .await
        .unwrap()
        .expect("the appended lease, through the journal");
    assert_eq!(read.mac, mac(4));
    assert_eq!(files(&dir), ["000000000010.log"]);
    assert!(journal.flush().await);
    assert_eq!(files(&dir), ["000000000010.log"]);
    assert_eq!(
        std::fs::metadata(dir.join("000000000010.log"))
            .unwrap()
            .len(),
        0
    );
}

/// SQLite: what was committed reaches the database file itself within
/// seconds, copied from the WAL in the background, though far less was
/// written than SQLite's own checkpoint waits for (1,000 pages). Writers
/// no longer copy it themselves (a lease commit waited for the disk).
#[tokio::test]
async fn sqlite_copies_its_wal_into_the_file_in_the_background() {
    let ts = TestStore::new(Backend::Sqlite).await;
    let store = open(&ts).await;
    let file = ts.dir.path().join("bootloader.sqlite3");
    let before = std::fs::metadata(&file).unwrap().len();
    let net = network(&*store).await;
    let now = 1_800_000_000;
    // A hundred commits: a few hundred WAL pages.
    for i in 0..100u8 {
        let mut c = claim(net, mac(i), LeaseState::Offered, now);
        c.ip = Ipv4Addr::new(10, 9, 0, 100 + i);
        c.hostname = format!("{}-{i}", "x".repeat(200));
        store
            .apply_lease_changes(&[LeaseChange::Claim(c)])
            .await
            .unwrap();
    }
    let wal = ts.dir.path().join("bootloader.sqlite3-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "no WAL was written"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let size = std::fs::metadata(&file).unwrap().len();
        if size > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes: the WAL was not copied back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
