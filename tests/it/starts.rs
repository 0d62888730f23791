//! Deployments started at once (`backend/starts.rs`): those that wait
//! together are written together, each judged as if alone, on SQLite and
//! on PostgreSQL.

use std::collections::BTreeSet;

use bootloader_core::model::{CallbackToken, DeploymentState};
use bootloader_store::StoreError;
use bootloader_store::engine::{Claim, NewDeployment, Transition};

use crate::common::{Backend, TestStore};
use crate::store::{at_once, deployment_claimed, mac, open, server_spec, transition};

pub(crate) fn claim(location: &str) -> Option<Claim> {
    Some(Claim {
        runner: "boot-a".into(),
        location: Some(location.into()),
        now: 1_000,
        until: 1_030,
    })
}

/// The runner's first moves: into `preparing`, its first action's
/// deadline armed.
pub(crate) fn first_moves() -> Option<Transition> {
    Some(Transition {
        runner: Some("boot-a".into()),
        step: Some("preparing".into()),
        action_deadline: Some(1_600),
        ..transition(
            0,
            DeploymentState::New,
            DeploymentState::Preparing,
            "first moves",
        )
    })
}

fn start(fqdn: &str, profile_id: i64, claim: Option<Claim>) -> NewDeployment {
    NewDeployment {
        server: fqdn.parse().unwrap(),
        profile_id,
        token: CallbackToken::generate().unwrap(),
        repeat_of: None,
        claim,
        then: first_moves(),
    }
}

/// Starts made at once: the first is written alone (nobody waits yet),
/// those queued behind it as one group, at one time. Each is what it
/// would be alone: taken up with its first moves in this daemon's
/// location, left as created in another's or without a claim; each
/// answered as created, with its own log and events in order. A group
/// holding a bad start (a server with an active deployment) is started
/// one by one: only that start fails, and one whose server does not
/// exist fails alone in any case.
async fn starts_at_once_are_each_judged_alone(backend: Backend) {
    use DeploymentState::*;
    let ts = TestStore::new(backend).await;
    let store = open(&ts).await;
    let (first, _) = deployment_claimed(&*store, None, None).await;
    let profile = first.profile_id;
    for i in 2..=12u8 {
        store
            .create_server(server_spec(&format!("s{i}.dc1.example.com"), mac(100 + i)))
            .await
            .unwrap();
    }
    let fqdn = |i: u8| format!("s{i}.dc1.example.com");
    // s2-s7 in this daemon's location, s8 in another's, s9 unclaimed,
    // and a server that does not exist.
    let mut news: Vec<NewDeployment> = (2..=7)
        .map(|i| start(&fqdn(i), profile, claim("dc1")))
        .collect();
    news.push(start(&fqdn(8), profile, claim("dc2")));
    news.push(start(&fqdn(9), profile, None));
    news.push(start("nowhere.dc1.example.com", profile, claim("dc1")));
    let done = at_once(&ts, news.iter().map(|n| store.start_deployment(n))).await;
    let mut started = Vec::new();
    for (i, d) in done.into_iter().enumerate() {
        match (i, d) {
            (8, Err(StoreError::Invalid { message, .. })) => {
                assert!(message.contains("does not exist"), "{message}");
            }
            (8, other) => panic!("a start of no server: {other:?}"),
            (_, d) => started.push(d.unwrap()),
        }
    }
    // The first is written alone (nobody waits yet), those queued behind
    // it as one group, at one time.
    let times: BTreeSet<_> = started[1..].iter().map(|r| r.created_at).collect();
    assert_eq!(times.len(), 1, "one group: {times:?}");
    for (i, record) in started.iter().enumerate() {
        assert_eq!(record.server.as_str(), fqdn(i as u8 + 2));
        // Answered as created, whatever its first moves.
        assert_eq!((record.state, record.step.as_deref()), (New, Some("new")));
        let taken = i < 6;
        assert_eq!(
            record.runner.as_deref(),
            taken.then_some("boot-a"),
            "start {i}"
        );
        let view = store.engine_view(record.id).await.unwrap();
        let (state, deadline) = match taken {
            true => (Preparing, Some(1_600)),
            false => (New, None),
        };
        assert_eq!(view.record.state, state, "start {i}");
        assert_eq!(view.action_deadline, deadline, "start {i}");
        assert!(view.token.is_some(), "start {i}: its token opens");
        let log = store.deployment_log(record.id, None, 10).await.unwrap();
        let said: Vec<&str> = log.iter().map(|l| l.message.as_str()).collect();
        let created = format!(
            "deployment of {} with {} created",
            record.server, record.profile
        );
        let mut expected = vec![created.as_str()];
        if taken {
            expected.push("first moves");
        }
        assert_eq!(said, expected, "start {i}");
    }
    // Each start's events in order: its record as created, then the
    // state its first moves entered.
    let events = store.pending_events(1000).await.unwrap();
    for (i, record) in started.iter().enumerate() {
        let of: Vec<(&str, &serde_json::Value)> = events
            .iter()
            .filter(|e| e.routing_key.starts_with("deployment.") && e.payload["id"] == record.id)
            .map(|e| (e.routing_key.as_str(), &e.payload))
            .collect();
        let kinds: Vec<&str> = of.iter().map(|(k, _)| *k).collect();
        match i < 6 {
            true => assert_eq!(
                kinds,
                ["deployment.new", "deployment.preparing"],
                "start {i}"
            ),
            false => assert_eq!(kinds, ["deployment.new"], "start {i}"),
        }
        assert_eq!(*of[0].1, serde_json::to_value(record).unwrap(), "start {i}");
    }

    // s1 has an active deployment: its group is started one by one.
    let news = [
        start(&fqdn(10), profile, claim("dc1")),
        start(&fqdn(11), profile, claim("dc1")),
        start(first.server.as_str(), profile, claim("dc1")),
        start(&fqdn(12), profile, claim("dc1")),
    ];
    let done = at_once(&ts, news.iter().map(|n| store.start_deployment(n))).await;
    let mut done = done.into_iter();
    for i in [10, 11] {
        assert_eq!(done.next().unwrap().unwrap().server.as_str(), fqdn(i));
    }
    match done.next().unwrap() {
        Err(StoreError::Conflict { message, .. }) => {
            assert!(
                message.contains("already has an active deployment"),
                "{message}"
            );
        }
        other => panic!("a second active deployment of s1: {other:?}"),
    }
    let last = done.next().unwrap().unwrap();
    assert_eq!(last.server.as_str(), fqdn(12));
    assert_eq!(
        store.engine_view(last.id).await.unwrap().record.state,
        Preparing
    );
    ts.drop_database().await;
}

on_both_backends!(starts_at_once_are_each_judged_alone);
