//! Several daemons on one PostgreSQL database: each deployment's steps run
//! in exactly one daemon (its `runner`), of the server's location; a daemon
//! that stops hands its deployments to another of the location; callbacks
//! may reach any daemon. One relay at a time publishes the shared outbox,
//! and another takes over when it stops.

use crate::common;

use std::time::{Duration, Instant};

use common::amqp::{BROKER, exchange_name, forget, listen, take};
use common::{Backend, Daemon, TestStore};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The name the daemon on `store` gave itself (written as it starts).
async fn instance(store: &TestStore) -> String {
    let path = store.dir.path().join("instance");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(name) = std::fs::read_to_string(&path)
            && !name.trim().is_empty()
        {
            return name.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no {}", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `store` with its daemon in `location`.
fn located(mut store: TestStore, location: &str) -> TestStore {
    store
        .env
        .insert("BOOTLOADER_DHCP_LOCATION".into(), location.into());
    store
}

async fn add_server(d: &Daemon, fqdn: &str, location: &str, mac: &str) {
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": fqdn, "location": location, "interfaces": [{"name": "eth0", "mac": mac}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn deploy(d: &Daemon, fqdn: &str) -> i64 {
    let (s, b) = d
        .post(
            "/deployments",
            json!({"server": fqdn, "profile": "relay-race==1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_i64().unwrap()
}

/// Waits until deployment `id`, read through `d`, satisfies `want`.
async fn wait_for(d: &Daemon, id: i64, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) = d.get(&format!("/deployments/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if want(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "never {what}: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn log(d: &Daemon, id: i64) -> Vec<String> {
    let (_, b) = d.get(&format!("/deployments/{id}/log")).await;
    b.as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deployment_runs_in_one_daemon_of_its_location() {
    let store_a = located(TestStore::new(Backend::Postgres).await, "dc1");
    let a = Daemon::start(&store_a, None).await;
    let store_b = store_a.sibling();
    let b = Daemon::start(&store_b, Some(a.token.clone())).await;
    let store_c = located(store_a.sibling(), "dc2");
    let c = Daemon::start(&store_c, Some(a.token.clone())).await;
    let (name_a, name_b, name_c) = (
        instance(&store_a).await,
        instance(&store_b).await,
        instance(&store_c).await,
    );
    assert!(
        name_a != name_b && name_b != name_c,
        "{name_a} {name_b} {name_c}"
    );

    // Each daemon registered itself as its location's agent (its first
    // report lands a moment after it starts).
    let deadline = Instant::now() + Duration::from_secs(20);
    let agents = loop {
        let (s, agents) = c.get("/agents").await;
        assert_eq!(s, StatusCode::OK, "{agents}");
        if agents["count"] == 3 || Instant::now() > deadline {
            break agents;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut seen: Vec<(String, String, String)> = agents["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["location"].as_str().unwrap_or("").to_string(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (name_a.clone(), "dc1".to_string(), "up".to_string()),
        (name_b.clone(), "dc1".to_string(), "up".to_string()),
        (name_c.clone(), "dc2".to_string(), "up".to_string()),
    ];
    want.sort();
    assert_eq!(seen, want, "{agents}");
    let (s, body) = a.delete(&format!("/agents/{name_c}")).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a running daemon is not forgotten: {body}"
    );
    // Agents are for staff: a user who only reads is refused.
    let (s, body) = a
        .post("/users", json!({"name": "viewer", "is_staff": false}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = a.post("/tokens", json!({"user": "viewer"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let viewer = body["token"].as_str().unwrap().to_string();
    let (s, body) = a
        .call_as(Some(&viewer), reqwest::Method::GET, "/agents", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    a.seed_location().await;
    let (s, body) = a.post("/locations", json!({"name": "dc2"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    add_server(&a, "r1.dc1.example.com", "dc1", "52:54:00:5d:00:01").await;
    add_server(&a, "r2.dc1.example.com", "dc1", "52:54:00:5d:00:02").await;
    let profile = common::callback_profile("relay-race");
    let (s, body) = a.post_text("/profiles", &profile, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    // Created through the dc2 daemon's API, run by a dc1 daemon.
    let first = deploy(&c, "r1.dc1.example.com").await;
    let d1 = wait_for(&c, first, "taken up by dc1", |d| {
        d["runner"] == name_a || d["runner"] == name_b
    })
    .await;
    let runner = d1["runner"].as_str().unwrap().to_string();
    // The callbacks reach the other dc1 daemon, and the runner goes on.
    let (runner_d, other) = if runner == name_a { (&a, &b) } else { (&b, &a) };
    let base = common::callback_base(&other.base, "52:54:00:5d:00:01").await;
    for step in ["preparing", "installing"] {
        let r = reqwest::get(format!("{base}{step}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{step}");
    }
    let done = wait_for(other, first, "complete", |d| d["state"] == "complete").await;
    assert_eq!(
        done["runner"],
        runner.as_str(),
        "one runner throughout: {done}"
    );
    // Each action ran once, though three daemons renewed their claims.
    // (`complete` is the state on entering the last step; its echo is
    // logged a moment later.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let lines = loop {
        let lines = log(runner_d, first).await;
        if lines.iter().any(|l| l.contains("is done")) || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let started = lines.iter().filter(|l| l.contains("started")).count();
    assert_eq!(
        started, 4,
        "serve, two callbacks, echo, each once: {lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("is done")).count(),
        1,
        "{lines:#?}"
    );

    // A daemon that stops hands its deployment to the other of dc1.
    let second = deploy(&a, "r2.dc1.example.com").await;
    let d2 = wait_for(&a, second, "taken up", |d| !d["runner"].is_null()).await;
    let (stopping, staying, staying_name) = if d2["runner"] == name_a {
        (a, b, name_b.clone())
    } else {
        (b, a, name_a.clone())
    };
    // Past the first action (serving the script) before the stop.
    let base = common::callback_base(&staying.base, "52:54:00:5d:00:02").await;
    let r = reqwest::get(format!("{base}preparing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stopping_name = if staying_name == name_a {
        name_b.clone()
    } else {
        name_a.clone()
    };
    stopping.stop().await;
    // It said it stopped, and may now be forgotten.
    let (s, agent) = staying.get(&format!("/agents/{stopping_name}")).await;
    assert_eq!(
        (s, agent["state"].as_str()),
        (StatusCode::OK, Some("stopped")),
        "{agent}"
    );
    let moved = wait_for(&staying, second, "handed over", |d| {
        d["runner"] == staying_name.as_str()
    })
    .await;
    assert!(moved["state"] != "error", "{moved}");
    let r = reqwest::get(format!("{base}installing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_for(&staying, second, "complete", |d| d["state"] == "complete").await;
    // The dc2 daemon never ran a dc1 deployment.
    for id in [first, second] {
        let (_, d) = c.get(&format!("/deployments/{id}")).await;
        assert_ne!(d["runner"], name_c.as_str(), "{d}");
    }
    let (s, body) = staying.delete(&format!("/agents/{stopping_name}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (_, agents) = staying.get("/agents").await;
    assert_eq!(agents["count"], 2, "{agents}");
    staying.stop().await;
    c.stop().await;
    store_a.drop_database().await;
}

/// Waits until exactly one of `daemons` publishes and the others stand by;
/// returns the publisher's index.
async fn publisher(daemons: &[&Daemon]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut states = Vec::new();
        for d in daemons {
            let (_, st) = d.get("/events/status").await;
            states.push(st["relay"].clone());
        }
        let active: Vec<usize> = (0..states.len())
            .filter(|&i| states[i]["connected"] == true && states[i]["standby"] == false)
            .collect();
        let standing_by = states.iter().filter(|s| s["standby"] == true).count();
        if active.len() == 1 && standing_by == daemons.len() - 1 {
            return active[0];
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Messages until one about `last_fqdn`: their (id, fqdn or "").
async fn until(consumer: &mut lapin::Consumer, last_fqdn: &str) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    loop {
        let (id, _, body) = take(consumer, 1).await.remove(0);
        let fqdn = body["data"]["fqdn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        got.push((id.parse().unwrap(), fqdn.clone()));
        if fqdn == last_fqdn {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_the_shared_outbox() {
    let exchange = exchange_name();
    let (conn, mut consumer) = listen(&exchange).await;
    let mut store_a = TestStore::new(Backend::Postgres).await;
    store_a.env.insert("BROKER_URL".into(), BROKER.into());
    store_a
        .env
        .insert("BOOTLOADER_BROKER_EXCHANGE".into(), exchange.clone());
    let a = Daemon::start(&store_a, None).await;
    let store_b = store_a.sibling();
    let b = Daemon::start(&store_b, Some(a.token.clone())).await;
    let first = publisher(&[&a, &b]).await;

    // Changes made through both daemons arrive once each, in order.
    a.seed_location().await;
    for i in 0..6 {
        let d = if i % 2 == 0 { &a } else { &b };
        let (s, body) = d
            .post(
                "/servers",
                json!({"fqdn": format!("p{i}.dc1.example.com"), "location": "dc1"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let got = until(&mut consumer, "p5.dc1.example.com").await;
    let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {got:?}"
    );
    let servers: Vec<&str> = got
        .iter()
        .map(|(_, f)| f.as_str())
        .filter(|f| f.starts_with('p'))
        .collect();
    assert_eq!(servers.len(), 6, "{got:?}");

    // The publisher stops (at once: it finishes the round under way, so
    // nothing is published twice); the other daemon takes over.
    let (publishing, other) = if first == 0 { (a, b) } else { (b, a) };
    publishing.stop().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, st) = other.get("/events/status").await;
        if st["relay"]["standby"] == false && st["relay"]["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 6..9 {
        let (s, body) = other
            .post(
                "/servers",
                json!({"fqdn": format!("p{i}.dc1.example.com"), "location": "dc1"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let more = until(&mut consumer, "p8.dc1.example.com").await;
    // (The stopped daemon's `agent.stopped` comes along, carrying no FQDN.)
    let fqdns: Vec<&str> = more
        .iter()
        .map(|(_, f)| f.as_str())
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(
        fqdns,
        [
            "p6.dc1.example.com",
            "p7.dc1.example.com",
            "p8.dc1.example.com"
        ]
    );
    assert!(more[0].0 > ids[ids.len() - 1]);
    // Nothing twice.
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
    assert!(extra.is_err(), "an extra message: {extra:?}");
    other.stop().await;
    forget(&conn, &exchange).await;
    store_a.drop_database().await;
}

/// Each daemon answers the boot path from its own memory; what another
/// daemon changes reaches it through the database's notifications (well
/// before the index's 5 s backstop, which would hide a lost notice: each
/// answer is awaited for at most 2.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_answers_follow_other_daemons() {
    use bootloader_core::model::{CallbackToken, DeploymentState, Via};
    let store_a = TestStore::new(Backend::Postgres).await;
    let a = Daemon::start(&store_a, None).await;
    let store_b = store_a.sibling();
    let b = Daemon::start(&store_b, Some(a.token.clone())).await;
    let mac = "52:54:00:5d:00:31";
    let answer = |why: &'static str| {
        let a = &a;
        async move {
            let deadline = Instant::now() + Duration::from_millis(2500);
            loop {
                let body = reqwest::get(format!("{}/ipxe/{mac}", a.base))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if body.contains(why) {
                    return;
                }
                assert!(Instant::now() < deadline, "expected {why:?}: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Asked twice: the second answer is the index's.
    answer("unknown MAC").await;
    answer("unknown MAC").await;
    b.seed_location().await;
    add_server(&b, "s1.dc1.example.com", "dc1", mac).await;
    answer("s1.dc1.example.com has no active deployment").await;
    let profile = common::callback_profile("notices");
    let (s, body) = b.post_text("/profiles", &profile, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let dep = b
        .store
        .create_deployment(
            &"s1.dc1.example.com".parse().unwrap(),
            body["id"].as_i64().unwrap(),
            &CallbackToken::generate().unwrap().hash(),
        )
        .await
        .unwrap()
        .id;
    answer("its deployment serves no iPXE script yet").await;
    b.store
        .serve_file(
            dep,
            Via::Http,
            &format!("ipxe/{mac}"),
            b"#!ipxe\necho from b\n",
        )
        .await
        .unwrap();
    answer("echo from b").await;
    b.store
        .set_deployment_state(dep, DeploymentState::Cancelled)
        .await
        .unwrap();
    answer("s1.dc1.example.com has no active deployment").await;
    b.stop().await;
    a.stop().await;
    store_a.drop_database().await;
}

/// A daemon keeps the profile versions it has read; one deleted through
/// another daemon is forgotten when the database tells (or, when a start
/// comes first, refused by the database's foreign key as not existing),
/// and the same name and version uploaded again starts deployments with
/// the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_deleted_by_another_daemon_is_not_started() {
    let store_a = TestStore::new(Backend::Postgres).await;
    let a = Daemon::start(&store_a, None).await;
    let store_b = store_a.sibling();
    let b = Daemon::start(&store_b, Some(a.token.clone())).await;
    a.seed_location().await;
    add_server(&a, "s1.dc1.example.com", "dc1", "52:54:00:5d:00:41").await;
    let profile = common::callback_profile("gone");
    let (s, body) = a.post_text("/profiles", &profile, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let first = body["id"].as_i64().unwrap();
    // Read by `a` (and so kept), deleted by `b`.
    let (s, body) = a.get(&format!("/profiles/{first}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = b.delete(&format!("/profiles/{first}")).await;
    assert!(s.is_success(), "{s} {body}");
    let start = json!({"server": "s1.dc1.example.com", "profile": "gone==1.0"});
    for attempt in ["kept", "read again"] {
        let (s, body) = a.post("/deployments", start.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{attempt}: {body}");
        assert!(body["fields"]["profile"].is_array(), "{attempt}: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, body) = a.get(&format!("/profiles/{first}")).await;
        if s == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(Instant::now() < deadline, "still found: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, body) = b.post_text("/profiles", &profile, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let second = body["id"].as_i64().unwrap();
    assert_ne!(first, second);
    let (s, body) = a.post("/deployments", start).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["profile_id"].as_i64(), Some(second), "{body}");
    b.stop().await;
    a.stop().await;
    store_a.drop_database().await;
}

/// What `token` gets for `method path` from `d`, asked until it is
/// `expected` (another daemon's change takes a notice to arrive).
async fn eventually(
    d: &Daemon,
    token: &str,
    method: reqwest::Method,
    path: &str,
    expected: StatusCode,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    loop {
        n += 1;
        let body = (method == reqwest::Method::POST)
            .then(|| common::RequestBody::Json(json!({"name": format!("dc-{}", n)})));
        let (s, answer) = d.call_as(Some(token), method.clone(), path, body).await;
        if s == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{method} {path}: still {s} ({answer}), not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each daemon keeps the API tokens it has accepted for a minute: a
/// token revoked, or its user demoted or deactivated, through another
/// daemon stops being accepted as such at once all the same.
#[tokio::test]
async fn a_token_changed_through_another_daemon_is_not_kept() {
    use reqwest::Method;
    let store_a = TestStore::new(Backend::Postgres).await;
    let a = Daemon::start(&store_a, None).await;
    let store_b = store_a.sibling();
    let b = Daemon::start(&store_b, Some(a.token.clone())).await;
    let (s, body) = a
        .post(
            "/users",
            json!({"name": "ops", "email": "ops@example.com", "is_staff": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (s, body) = a
            .post("/tokens", json!({"user": "ops", "scope": "write"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        tokens.push((
            body["id"].clone(),
            body["token"].as_str().unwrap().to_string(),
        ));
    }
    let (first, second) = (&tokens[0], &tokens[1]);
    // Accepted by `a`, and so kept there.
    for (_, token) in &tokens {
        eventually(&a, token, Method::GET, "/locations", StatusCode::OK).await;
    }
    eventually(
        &a,
        &second.1,
        Method::POST,
        "/locations",
        StatusCode::CREATED,
    )
    .await;

    let (s, body) = b.delete(&format!("/tokens/{}", first.0)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    eventually(
        &a,
        &first.1,
        Method::GET,
        "/locations",
        StatusCode::UNAUTHORIZED,
    )
    .await;
    eventually(&a, &second.1, Method::GET, "/locations", StatusCode::OK).await;

    let (s, body) = b.patch("/users/ops", json!({"is_staff": false})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    eventually(
        &a,
        &second.1,
        Method::POST,
        "/locations",
        StatusCode::FORBIDDEN,
    )
    .await;

    let (s, body) = b.patch("/users/ops", json!({"is_active": false})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    eventually(
        &a,
        &second.1,
        Method::GET,
        "/locations",
        StatusCode::UNAUTHORIZED,
    )
    .await;
    b.stop().await;
    a.stop().await;
    store_a.drop_database().await;
}
