//! The API battery, run against SQLite and against PostgreSQL.

use crate::common;

use common::{Backend, Daemon, TestStore, shipped_profiles};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const BMC_PASSWORD: &str = "Sup3r-S3cret-BMC-pw";

fn server_body(fqdn: &str, macs: &[&str]) -> Value {
    let interfaces: Vec<Value> = macs
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"name": format!("eth{i}"), "mac": m}))
        .collect();
    json!({"fqdn": fqdn, "location": "dc1", "interfaces": interfaces})
}

/// The README's tour: location, network, server with two interfaces and
/// BMC credentials, every shipped profile; a restart keeps it all.
async fn tour_and_restart(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let (s, server) = d
        .post(
            "/servers",
            json!({"fqdn": "node01.dc1.example.com", "location": "dc1", "serial": "SN123",
                "bmc": {"host": "10.1.0.11", "username": "ADMIN", "password": BMC_PASSWORD},
                "interfaces": [
                    {"name": "eth0", "mac": "52-54-00-AA-00-01", "ipv4": "10.0.0.11"},
                    {"name": "eth1", "mac": "5254.00aa.0002"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{server}");
    assert_eq!(
        server["interfaces"][0]["mac"], "52:54:00:aa:00:01",
        "MACs are normalised"
    );
    assert_eq!(server["interfaces"][1]["mac"], "52:54:00:aa:00:02");
    assert_eq!(server["interfaces"][0]["network_id"], 1);
    assert_eq!(server["bmc"]["password_set"], true);
    for (file, text) in shipped_profiles() {
        let (s, b) = d.post_text("/profiles", &text, "application/yaml").await;
        assert_eq!(s, StatusCode::CREATED, "{file}: {b}");
        assert_eq!(
            b["source"],
            Value::String(text.clone()),
            "source kept verbatim"
        );
    }
    let (_, list) = d.get("/profiles").await;
    assert_eq!(list["count"], shipped_profiles().len());
    let (_, servers) = d.get("/servers").await;
    assert_eq!(servers["count"], 1);

    let token = d.stop().await;
    let d = Daemon::start(&ts, Some(token)).await;
    let (s, again) = d.get("/servers/node01.dc1.example.com").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["interfaces"], server["interfaces"]);
    assert_eq!(again["serial"], "SN123");
    let (_, list) = d.get("/profiles").await;
    assert_eq!(list["count"], shipped_profiles().len());
    let (_, nets) = d.get("/networks?location=dc1").await;
    assert_eq!(nets["results"][0]["pool"]["start"], "10.0.0.100");
    // The login is still readable by the daemon after the restart.
    let fqdn = "node01.dc1.example.com".parse().unwrap();
    assert_eq!(
        d.store.bmc_login(&fqdn).await.unwrap(),
        Some(("ADMIN".to_string(), BMC_PASSWORD.to_string()))
    );
    d.stop().await;
    ts.drop_database().await;
}

async fn authentication_and_scopes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let loc = json!({"name": "dc9"});
    // No token, a wrong token, a wrong scheme.
    let (s, b) = d.call_as(None, Method::GET, "/locations", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"], "unauthenticated");
    let (s, _) = d
        .call_as(Some("bl_0000"), Method::GET, "/locations", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Bearer works as well as Token.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/locations", d.base))
        .header("Authorization", format!("Bearer {}", d.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A read-scoped token of a staff user may read but not write.
    let (s, read) = d
        .post("/tokens", json!({"user": "admin", "scope": "read"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{read}");
    let read = read["token"].as_str().unwrap().to_string();
    let (s, _) = d
        .call_as(Some(&read), Method::GET, "/locations", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = d
        .call_as(
            Some(&read),
            Method::POST,
            "/locations",
            Some(common::RequestBody::Json(loc.clone())),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    // A non-staff user reads only, and cannot get a write token.
    let (s, _) = d
        .post(
            "/users",
            json!({"name": "viewer", "email": "v@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = d
        .post("/tokens", json!({"user": "viewer", "scope": "write"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["fields"]["scope"].is_array(), "{b}");
    let (s, viewer) = d.post("/tokens", json!({"user": "viewer"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(viewer["scope"], "read");
    let viewer_token = viewer["token"].as_str().unwrap().to_string();
    let (s, _) = d
        .call_as(
            Some(&viewer_token),
            Method::POST,
            "/locations",
            Some(common::RequestBody::Json(loc.clone())),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A non-staff user sees only their own tokens; never a secret.
    let (s, toks) = d
        .call_as(Some(&viewer_token), Method::GET, "/tokens", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(toks["count"], 1);
    assert!(!toks.to_string().contains(&viewer_token));

    // A user who may only read manages their own tokens and SSH keys (as
    // the older system allowed), nobody else's, and makes no write token.
    let as_viewer = |method: Method, path: &'static str, body: Option<Value>| {
        let token = viewer_token.clone();
        let d = &d;
        async move {
            d.call_as(
                Some(&token),
                method,
                path,
                body.map(common::RequestBody::Json),
            )
            .await
        }
    };
    let (s, own) = as_viewer(
        Method::POST,
        "/tokens",
        Some(json!({"user": "viewer", "description": "laptop"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{own}");
    assert_eq!(own["scope"], "read");
    let (s, _) = as_viewer(Method::POST, "/tokens", Some(json!({"user": "admin"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not for someone else");
    let (s, b) = as_viewer(
        Method::POST,
        "/tokens",
        Some(json!({"user": "viewer", "scope": "write"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let revoke_own = format!("/tokens/{}", own["id"]);
    let (s, _) = d
        .call_as(Some(&viewer_token), Method::DELETE, &revoke_own, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "their own token");
    let (_, admins) = d.get("/tokens?user=admin").await;
    let admin_token = format!("/tokens/{}", admins["results"][0]["id"]);
    let (s, _) = d
        .call_as(Some(&viewer_token), Method::DELETE, &admin_token, None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another's token is not theirs to see"
    );
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMqy0rTqL0y7kZ3mN4o5p6q7r8s9t0u1v2w3x4y5z6A7 viewer@laptop";
    let (s, k) = as_viewer(
        Method::POST,
        "/ssh_authorized_keys",
        Some(json!({"user": "viewer", "key": key})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let (s, _) = as_viewer(
        Method::POST,
        "/ssh_authorized_keys",
        Some(json!({"user": "admin", "key": key})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, a) = d
        .post("/ssh_authorized_keys", json!({"user": "admin", "key": key}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, _) = d
        .call_as(
            Some(&viewer_token),
            Method::DELETE,
            &format!("/ssh_authorized_keys/{}", a["id"]),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not another's key");
    let (s, _) = d
        .call_as(
            Some(&viewer_token),
            Method::DELETE,
            &format!("/ssh_authorized_keys/{}", k["id"]),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "their own key");
    let (s, _) = d.delete(&format!("/ssh_authorized_keys/{}", a["id"])).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Revoked and expired tokens stop working.
    let (s, _) = d.delete(&format!("/tokens/{}", viewer["id"])).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = d
        .call_as(Some(&viewer_token), Method::GET, "/locations", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, short) = d
        .post("/tokens", json!({"user": "admin", "expires_in": 1}))
        .await;
    let short = short["token"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _) = d
        .call_as(Some(&short), Method::GET, "/locations", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "an expired token is refused");
    d.stop().await;
    ts.drop_database().await;
}

async fn conflicts_and_validation(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let (s, _) = d
        .post(
            "/servers",
            server_body("a.dc1.example.com", &["52:54:00:00:00:01"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Duplicate MAC on another server: 409 naming the field.
    let (s, b) = d
        .post(
            "/servers",
            server_body(
                "b.dc1.example.com",
                &["52:54:00:00:00:02", "52:54:00:00:00:01"],
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["fields"]["interfaces[1].mac"][0]
            .as_str()
            .unwrap()
            .contains("a.dc1.example.com"),
        "{b}"
    );
    // Nothing of the refused server was written.
    let (s, _) = d.get("/servers/b.dc1.example.com").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Addresses no NIC can have, and a name that is an IP address.
    let (s, b) = d
        .post(
            "/servers",
            server_body(
                "c.dc1.example.com",
                &[
                    "ff:ff:ff:ff:ff:ff",
                    "01:00:5e:00:00:01",
                    "00:00:00:00:00:00",
                ],
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    for i in 0..3 {
        assert!(
            b["fields"][format!("interfaces[{i}].mac")][0]
                .as_str()
                .unwrap()
                .contains("no network card"),
            "{b}"
        );
    }
    let (s, b) = d
        .post("/servers", server_body("10.0.0.5", &["52:54:00:00:00:09"]))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["fields"]["fqdn"][0]
            .as_str()
            .unwrap()
            .contains("IP address"),
        "{b}"
    );
    let (s, b) = d
        .post(
            "/interfaces",
            json!({"server": "a.dc1.example.com", "mac": "52:54:00:00:00:01"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b["fields"]["mac"].is_array(), "{b}");

    // Duplicate FQDN, differently written.
    let (s, b) = d
        .post("/servers", server_body("A.DC1.example.com.", &[]))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(b["fields"]["fqdn"].is_array(), "{b}");

    // Many bad fields at once, each named.
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "nodot", "location": "nowhere!", "bmc": {"port": 0, "driver": "redfish"},
                "interfaces": [{"mac": "zz"}, {"mac": "52:54:00:00:00:09", "ipv4": "10.0.0.300"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let fields: Vec<&str> = b["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "bmc.driver",
            "bmc.port",
            "fqdn",
            "interfaces[0].mac",
            "interfaces[1].ipv4",
            "location"
        ]
    );
    // A wrong JSON type names its path; an unknown field is refused.
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "x.example.com", "bmc": {"port": "six"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["fields"]["bmc.port"].is_array(), "{b}");
    let (s, b) = d
        .post("/locations", json!({"name": "dc2", "colour": "red"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b.to_string().contains("colour"), "{b}");
    let (s, _) = d
        .post_text("/locations", "{not json", "application/json")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Addresses: outside every network, taken, the gateway.
    let mut body = server_body("c.dc1.example.com", &["52:54:00:00:00:03"]);
    body["interfaces"][0]["ipv4"] = json!("192.168.77.5");
    let (s, b) = d.post("/servers", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["fields"]["interfaces[0].ipv4"].is_array());
    body["interfaces"][0]["ipv4"] = json!("10.0.0.1");
    let (s, _) = d.post("/servers", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    body["interfaces"][0]["ipv4"] = json!("10.0.0.20");
    let (s, _) = d.post("/servers", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let mut other = server_body("d.dc1.example.com", &["52:54:00:00:00:04"]);
    other["interfaces"][0]["ipv4"] = json!("10.0.0.20");
    let (s, b) = d.post("/servers", other).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["fields"]["interfaces[0].ipv4"][0]
            .as_str()
            .unwrap()
            .contains("c.dc1.example.com")
    );

    // Overlapping networks in one location; in-use deletes refused.
    let (s, b) = d
        .post(
            "/networks",
            json!({"location": "dc1", "cidr": "10.0.0.128/25"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, _) = d.delete("/locations/dc1").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = d.delete("/networks/1").await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Labels must exist; a label in use cannot go.
    let mut labelled = server_body("e.dc1.example.com", &[]);
    labelled["labels"] = json!(["gpu"]);
    let (s, b) = d.post("/servers", labelled.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["fields"]["labels[0]"].is_array(), "{b}");
    let (s, _) = d.post("/labels", json!({"name": "gpu"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = d.post("/servers", labelled).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, gpu) = d.get("/servers?label=gpu").await;
    assert_eq!(gpu["count"], 1);
    let (s, _) = d.delete("/labels/gpu").await;
    assert_eq!(s, StatusCode::CONFLICT);
    d.stop().await;
    ts.drop_database().await;
}

async fn profiles_lookups_and_errors(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let echo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/echo-1.0.yaml"
    ))
    .unwrap();
    let (s, created) = d.post_text("/profiles", &echo, "application/yaml").await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    // Same name and version again: immutable, 409.
    let (s, b) = d.post_text("/profiles", &echo, "application/yaml").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // The older system's files load unchanged.
    for seed in ["echo-0.1.yaml", "ubuntu-16.04.yaml"] {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/seed-profiles/{seed}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let (s, b) = d.post_text("/profiles", &text, "text/yaml").await;
        assert_eq!(s, StatusCode::CREATED, "{seed}: {b}");
    }
    // By id, by name==version, by filters.
    let (s, by_id) = d.get(&format!("/profiles/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_id["name"], "echo");
    let (s, by_key) = d.get("/profiles/echo==1.0").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_key["id"], id);
    assert_eq!(
        by_key["profile"]["workflow"]["new"]["actions"][0]["action"],
        "echo"
    );
    let (_, filtered) = d.get("/profiles?name=echo").await;
    assert_eq!(filtered["count"], 2);
    let (_, filtered) = d.get("/profiles?name=echo&version=0.1").await;
    assert_eq!(filtered["count"], 1);
    let (s, _) = d.get("/profiles/echo==9.9").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A typo'd action: 422 naming the YAML path.
    let bad = echo
        .replace("version: \"1.0\"", "version: \"1.1\"")
        .replacen("action: echo", "action: ecoh", 1);
    assert_ne!(bad, echo);
    let (s, b) = d.post_text("/profiles", &bad, "application/yaml").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["fields"]["workflow.new[0].action"][0]
            .as_str()
            .unwrap()
            .contains("ecoh"),
        "{b}"
    );
    // A missing field and an unknown template.
    let bad = "kind: Profile\napiVersion: v1alpha1\nname: t\nversion: '1'\nworkflow:\n  new: {}\n  preparing:\n    - action: serve_file\n      via: http\n      filename: a\n      source: {type: url}\n    - action: serve_file\n      via: tftp\n      filename: b\n      source: {type: template, name: nope}\n  installing: []\n  configuring: []\n  postconfiguring: []\n  complete: []\n";
    let (s, b) = d.post_text("/profiles", bad, "application/yaml").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["fields"]["workflow.preparing[0].source.url"].is_array(),
        "{b}"
    );
    assert!(
        b["fields"]["workflow.preparing[1].source.name"].is_array(),
        "{b}"
    );
    let (_, all) = d.get("/profiles").await;
    assert_eq!(all["count"], 3, "nothing invalid was stored");
    d.stop().await;
    ts.drop_database().await;
}

/// The BMC password is in no response and not in clear in the database.
async fn bmc_password_stays_secret(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let (s, c) = d
        .post(
            "/credentials",
            json!({"name": "rack-a", "username": "root", "password": "Cr3d-Pass-Shared"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(!c.to_string().contains("Cr3d-Pass-Shared"));
    let mut body = server_body("s.dc1.example.com", &["52:54:00:00:01:01"]);
    body["bmc"] = json!({"host": "10.1.0.5", "username": "ADMIN", "password": BMC_PASSWORD});
    let mut responses = Vec::new();
    responses.push(d.post("/servers", body).await.1);
    responses.push(d.get("/servers/s.dc1.example.com").await.1);
    responses.push(d.get("/servers").await.1);
    responses.push(d.get("/interfaces").await.1);
    // An update without a password keeps it; with the credential it is used.
    responses.push(
        d.patch("/servers/s.dc1.example.com", json!({"notes": "rack A"}))
            .await
            .1,
    );
    responses.push(d.get("/credentials").await.1);
    for r in &responses {
        assert!(
            !r.to_string().contains(BMC_PASSWORD),
            "password leaked in {r}"
        );
    }
    assert_eq!(responses[4]["bmc"]["password_set"], true);
    let fqdn = "s.dc1.example.com".parse().unwrap();
    assert_eq!(
        d.store.bmc_login(&fqdn).await.unwrap().unwrap().1,
        BMC_PASSWORD
    );
    // Clearing the own password falls back to the shared credential.
    let (s, b) = d
        .patch(
            "/servers/s.dc1.example.com",
            json!({"bmc": {"password": "", "username": "", "credential": "rack-a"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["bmc"]["password_set"], false);
    assert_eq!(
        d.store.bmc_login(&fqdn).await.unwrap(),
        Some(("root".to_string(), "Cr3d-Pass-Shared".to_string()))
    );
    let (s, _) = d.delete("/credentials/rack-a").await;
    assert_eq!(s, StatusCode::CONFLICT, "a credential in use cannot go");
    d.stop().await;

    // Not in clear anywhere in the database.
    match backend {
        Backend::Sqlite => {
            // Every file of the data dir, the lease journal's included.
            let mut files = Vec::new();
            let mut dirs = vec![ts.dir.path().to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        files.push(path);
                    }
                }
            }
            for path in files {
                // SQLite removes its -wal/-shm files as the last connection
                // closes, which may be just now: their content is in the
                // main file by then.
                let bytes = match std::fs::read(path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("{e}"),
                };
                for secret in [BMC_PASSWORD, "Cr3d-Pass-Shared"] {
                    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
                }
            }
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let url = ts.env["DATABASE_URL"].clone();
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let dump: String = sqlx::query_scalar(
                "SELECT string_agg(t::text, '|') FROM (SELECT s::text AS t FROM servers s UNION ALL \
                 SELECT c::text FROM credentials c UNION ALL SELECT o::text FROM outbox o) x",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert!(
                dump.contains("s.dc1.example.com"),
                "the query sees the rows"
            );
            assert!(!dump.contains(BMC_PASSWORD) && !dump.contains("Cr3d-Pass-Shared"));
            let hex_pw = hex::encode(BMC_PASSWORD);
            assert!(!dump.contains(&hex_pw));
        }
    }
    ts.drop_database().await;
}

async fn csv_import_is_all_or_nothing(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let (s, _) = d
        .post(
            "/servers",
            server_body("old.dc1.example.com", &["52:54:00:00:09:09"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Line 3 reuses an existing MAC, line 4 has a bad MAC: nothing lands.
    let bad = "n1.dc1.example.com;10.1.0.1;ADMIN;pw1;eth0;52:54:00:00:02:01;10.0.0.31\n\
               n1.dc1.example.com;;;;eth1;52:54:00:00:02:02\n\
               n2.dc1.example.com;10.1.0.2;ADMIN;pw2;eth0;52:54:00:00:09:09\n\
               n3.dc1.example.com;10.1.0.3;ADMIN;pw3;eth0;not-a-mac\n";
    let (s, b) = d
        .post_text("/servers/import?location=dc1", bad, "text/csv")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let lines: Vec<i64> = b["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4], "validation errors come first: {b}");
    let bad = bad.replace("not-a-mac", "52:54:00:00:02:03");
    let (s, b) = d
        .post_text("/servers/import?location=dc1", &bad, "text/csv")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["lines"][0]["line"], 3, "{b}");
    assert_eq!(b["lines"][0]["field"], "interfaces[0].mac", "{b}");
    let (_, all) = d.get("/servers").await;
    assert_eq!(all["count"], 1, "all or nothing");

    let good = bad.replace("52:54:00:00:09:09", "52:54:00:00:02:09");
    let (s, b) = d
        .post_text("/servers/import?location=dc1", &good, "text/csv")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["created"], 3);
    let (_, n1) = d.get("/servers/n1.dc1.example.com").await;
    assert_eq!(n1["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(n1["bmc"]["password_set"], true);
    // What a clean import wrote (at once, `import.rs`) reads back as
    // written: the address placed in its network, the password sealed
    // and opened again, an event for each server.
    let (_, n1) = d.get("/servers/n1.dc1.example.com").await;
    let eth0 = n1["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap()
        .clone();
    assert_eq!(eth0["ipv4"], "10.0.0.31", "{n1}");
    assert!(eth0["network_id"].is_number(), "{n1}");
    assert_eq!(
        d.store
            .bmc_login(&"n2.dc1.example.com".parse().unwrap())
            .await
            .unwrap(),
        Some(("ADMIN".to_string(), "pw2".to_string()))
    );
    let created = |events: &[bootloader_store::OutboxEvent]| {
        events
            .iter()
            .filter(|e| e.routing_key == "server.created")
            .map(|e| e.payload["fqdn"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let events = d.store.pending_events(1000).await.unwrap();
    assert_eq!(
        created(&events),
        [
            "old.dc1.example.com",
            "n1.dc1.example.com",
            "n2.dc1.example.com",
            "n3.dc1.example.com"
        ]
    );
    let n1_event = events
        .iter()
        .find(|e| e.routing_key == "server.created" && e.payload["fqdn"] == "n1.dc1.example.com")
        .unwrap();
    assert_eq!(n1_event.payload["interfaces"], n1["interfaces"]);

    // With a header, columns by name.
    let (s, b) = d.post("/labels", json!({"name": "rack7"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let headed = "fqdn;location;mac;labels;serial;bmc_port;ipv4\n\
                  h1.dc1.example.com;dc1;52:54:00:00:03:01;rack7;SN-1;6230;10.0.0.32\n\
                  h2.dc1.example.com;dc1;52:54:00:00:03:02;;;;\n";
    let (s, b) = d.post_text("/servers/import", headed, "text/csv").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, h1) = d.get("/servers/h1.dc1.example.com").await;
    assert_eq!(h1["labels"], json!(["rack7"]), "{h1}");
    assert_eq!(h1["serial"], "SN-1", "{h1}");
    assert_eq!(h1["bmc"]["port"], 6230, "{h1}");
    assert_eq!(h1["bmc"]["password_set"], false, "{h1}");
    assert_eq!(h1["interfaces"][0]["ipv4"], "10.0.0.32", "{h1}");

    // What only the store can see is still named line by line: an
    // address held already, one taken twice in the import, one in the
    // DHCP pool, a label that does not exist.
    for (csv, line, field) in [
        (
            "fqdn;mac;ipv4\nx1.dc1.example.com;52:54:00:00:07:01;10.0.0.31\n",
            2,
            "interfaces[0].ipv4",
        ),
        (
            "fqdn;mac;ipv4\nx1.dc1.example.com;52:54:00:00:07:01;10.0.0.40\n\
             x2.dc1.example.com;52:54:00:00:07:02;10.0.0.40\n",
            3,
            "interfaces[0].ipv4",
        ),
        (
            "fqdn;mac;ipv4\nx1.dc1.example.com;52:54:00:00:07:01;10.0.0.150\n",
            2,
            "interfaces[0].ipv4",
        ),
        (
            "fqdn;mac;labels\nx1.dc1.example.com;52:54:00:00:07:01;nowhere\n",
            2,
            "labels[0]",
        ),
    ] {
        let (s, b) = d
            .post_text("/servers/import?location=dc1", csv, "text/csv")
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{csv}: {b}");
        assert_eq!(b["lines"][0]["line"], line, "{csv}: {b}");
        assert_eq!(b["lines"][0]["field"], field, "{csv}: {b}");
    }
    let (_, all) = d.get("/servers").await;
    assert_eq!(all["count"], 6, "all or nothing: {all}");
    d.stop().await;
    ts.drop_database().await;
}

async fn updates_pagination_and_deletes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    for i in 0..5 {
        let (s, _) = d
            .post(
                "/servers",
                server_body(
                    &format!("p{i}.dc1.example.com"),
                    &[&format!("52:54:00:00:04:0{i}")],
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (_, page) = d.get("/servers?limit=2&offset=2").await;
    assert_eq!(page["count"], 5);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["results"][0]["fqdn"], "p2.dc1.example.com");
    assert_eq!(page["next"], "/api/v1/servers?limit=2&offset=4");
    assert_eq!(page["previous"], "/api/v1/servers?limit=2&offset=0");
    // Following `next` keeps the filters.
    let (_, filtered) = d.get("/servers?location=dc1&limit=3").await;
    assert_eq!(
        filtered["next"],
        "/api/v1/servers?location=dc1&limit=3&offset=3"
    );
    let next = filtered["next"].as_str().unwrap().to_string();
    let (_, second) = d.get(&next).await;
    assert_eq!(second["results"].as_array().unwrap().len(), 2);
    // Bad query and path values are JSON errors too.
    let (s, b) = d.get("/servers?limit=-1").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"], "validation_failed");
    let (s, b) = d.get("/networks/abc").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["error"], "not_found");
    let (s, _) = d.get("/servers?limit=0").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Replace interfaces: swap names, drop one, add one, keep ids by MAC.
    let (_, before) = d
        .patch(
            "/servers/p0.dc1.example.com",
            json!({"interfaces": [{"name": "eth0", "mac": "52:54:00:00:04:00"}, {"name": "eth1", "mac": "52:54:00:00:05:00"}]}),
        )
        .await;
    let kept_id = before["interfaces"][0]["id"].clone();
    let (s, after) = d
        .patch(
            "/servers/p0.dc1.example.com",
            json!({"fqdn": "q0.dc1.example.com", "interfaces": [
                {"name": "eth1", "mac": "52:54:00:00:04:00", "ipv4": "10.0.0.50"},
                {"name": "eth0", "mac": "52:54:00:00:06:00"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["fqdn"], "q0.dc1.example.com");
    let ifaces = after["interfaces"].as_array().unwrap();
    let kept = ifaces
        .iter()
        .find(|i| i["mac"] == "52:54:00:00:04:00")
        .unwrap();
    assert_eq!(kept["id"], kept_id);
    assert_eq!(kept["name"], "eth1");
    assert!(!ifaces.iter().any(|i| i["mac"] == "52:54:00:00:05:00"));
    let (s, _) = d.get("/servers/p0.dc1.example.com").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The freed MAC can go elsewhere; interfaces are reachable directly.
    let (s, iface) = d.post("/interfaces", json!({"server": "p1.dc1.example.com", "mac": "52:54:00:00:05:00", "ipv4": "10.0.0.51"})).await;
    assert_eq!(s, StatusCode::CREATED, "{iface}");
    assert_eq!(iface["name"], "eth1");
    let (s, b) = d
        .patch(
            &format!("/interfaces/{}", iface["id"]),
            json!({"ipv4": "10.0.0.50"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b["fields"]["ipv4"].is_array(), "{b}");
    let (s, _) = d.delete(&format!("/interfaces/{}", iface["id"])).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Renaming a location follows through to servers.
    let (s, _) = d.patch("/locations/dc1", json!({"name": "dc-one"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, q0) = d.get("/servers/q0.dc1.example.com").await;
    assert_eq!(q0["location"], "dc-one");
    // Delete a server; its interfaces go with it and its MACs are free.
    let (s, _) = d.delete("/servers/q0.dc1.example.com").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, ifs) = d.get("/interfaces?server=q0.dc1.example.com").await;
    assert_eq!(ifs["count"], 0);
    // A query parameter an endpoint does not take is refused, naming it
    // and what it takes, whether or not the handler reads a query.
    for (path, key, says) in [
        (
            "/servers?serach=q0",
            "serach",
            "takes: label, limit, location, offset, search, state",
        ),
        (
            "/locations/dc1?verbose=1",
            "verbose",
            "takes no query parameters",
        ),
        ("/events/status?x=1", "x", "takes no query parameters"),
        ("/servers?fqdn=q0.dc1.example.com", "fqdn", "search"),
    ] {
        let (s, b) = d.get(path).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        let message = b["fields"][key][0].as_str().unwrap_or_default();
        assert!(message.contains(says), "{path}: {b}");
    }
    // Unknown paths are JSON 404s.
    let (s, b) = d.get("/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"], "not_found");
    // Every change left an event in the outbox, in order.
    let events = d.store.pending_events(1000).await.unwrap();
    let keys: Vec<&str> = events.iter().map(|e| e.routing_key.as_str()).collect();
    assert_eq!(keys.iter().filter(|k| **k == "server.created").count(), 5);
    assert!(
        keys.ends_with(&["location.updated", "server.deleted"]),
        "{keys:?}"
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    d.stop().await;
    ts.drop_database().await;
}

async fn users_and_ssh_keys(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let (s, _) = d
        .post(
            "/users",
            json!({"name": "alice", "email": "alice@example.com", "is_staff": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = d.post("/users", json!({"name": "alice"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = d
        .post("/users", json!({"name": "bob", "email": "not an email"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["fields"]["email"].is_array());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMqy0rTqL0y7kZ3mN4o5p6q7r8s9t0u1v2w3x4y5z6A7 alice@laptop";
    let (s, k) = d
        .post("/ssh_authorized_keys", json!({"user": "alice", "key": key}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    assert_eq!(k["name"], "alice@laptop");
    let (s, _) = d
        .post("/ssh_authorized_keys", json!({"user": "alice", "key": key}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = d
        .post(
            "/ssh_authorized_keys",
            json!({"user": "alice", "key": "ssh-dss AAAA"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = d
        .post(
            "/ssh_authorized_keys",
            json!({"user": "nobody", "key": key}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (_, keys) = d.get("/ssh_authorized_keys?user=alice").await;
    assert_eq!(keys["count"], 1);
    // Staff cannot demote or delete themselves.
    let (s, _) = d.patch("/users/admin", json!({"is_staff": false})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d.delete("/users/admin").await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Deleting a user removes their keys and tokens.
    let (_, t) = d.post("/tokens", json!({"user": "alice"})).await;
    let (s, _) = d.delete("/users/alice").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = d
        .call_as(t["token"].as_str(), Method::GET, "/users", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, keys) = d.get("/ssh_authorized_keys").await;
    assert_eq!(keys["count"], 0);
    d.stop().await;
    ts.drop_database().await;
}

async fn openapi_document(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let (s, doc) = d.call_as(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/servers",
        "/servers/{fqdn}",
        "/servers/import",
        "/interfaces",
        "/networks",
        "/locations",
        "/labels",
        "/credentials",
        "/profiles",
        "/profiles/{key}",
        "/users",
        "/tokens",
        "/ssh_authorized_keys",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Server"].is_object());
    let (s, index) = d.call_as(None, Method::GET, "/api/v1/", None).await;
    assert_eq!(s, StatusCode::OK, "{index}");
    for r in index["resources"].as_array().unwrap() {
        let path = format!("/{}", r.as_str().unwrap());
        assert!(
            paths.contains_key(&path),
            "{path} is listed but not documented"
        );
        assert_eq!(d.get(&path).await.0, StatusCode::OK, "{path}");
    }
    d.stop().await;
    ts.drop_database().await;
}

/// Concurrent writers: every distinct server lands; of several servers
/// claiming one MAC exactly one wins and the others get 409, never 500.
async fn concurrent_writes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = std::sync::Arc::new(Daemon::start(&ts, None).await);
    d.seed_location().await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let mac = if i < 16 {
                format!("52:54:00:00:07:{i:02x}")
            } else {
                "52:54:00:00:08:00".to_string()
            };
            d.post(
                "/servers",
                server_body(&format!("c{i}.dc1.example.com"), &[&mac]),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses[..16].iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    let shared = &statuses[16..];
    assert_eq!(
        shared.iter().filter(|s| **s == StatusCode::CREATED).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        shared
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let (_, all) = d.get("/servers?limit=100").await;
    assert_eq!(all["count"], 17);
    let d = std::sync::Arc::into_inner(d).expect("no other owners");
    d.stop().await;
    ts.drop_database().await;
}

/// Re-cabling and re-racking: a NIC swap keeps its address, two
/// interfaces swap addresses, a server moves location, a pool is removed.
async fn addresses_follow_the_hardware(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let mut body = server_body(
        "m.dc1.example.com",
        &["52:54:00:00:0a:01", "52:54:00:00:0a:02"],
    );
    body["interfaces"][0]["ipv4"] = json!("10.0.0.10");
    body["interfaces"][1]["ipv4"] = json!("10.0.0.11");
    let (s, server) = d.post("/servers", body).await;
    assert_eq!(s, StatusCode::CREATED, "{server}");
    // A new NIC (new MAC) in place of the old, same address.
    let id = server["interfaces"][0]["id"].clone();
    let (s, b) = d
        .patch(
            &format!("/interfaces/{id}"),
            json!({"mac": "52:54:00:00:0a:09"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["ipv4"], "10.0.0.10");
    // The two interfaces swap addresses in one update.
    let (s, b) = d
        .patch(
            "/servers/m.dc1.example.com",
            json!({"interfaces": [
                {"name": "eth0", "mac": "52:54:00:00:0a:09", "ipv4": "10.0.0.11"},
                {"name": "eth1", "mac": "52:54:00:00:0a:02", "ipv4": "10.0.0.10"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // An address inside the DHCP pool is refused.
    let (s, b) = d.post("/interfaces", json!({"server": "m.dc1.example.com", "mac": "52:54:00:00:0a:03", "ipv4": "10.0.0.150"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["fields"]["ipv4"][0].as_str().unwrap().contains("pool"),
        "{b}"
    );
    // Growing the pool over a fixed address is refused; removing it works.
    let (s, b) = d
        .patch(
            "/networks/1",
            json!({"pool": {"start": "10.0.0.5", "end": "10.0.0.200"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = d.patch("/networks/1", json!({"pool": null})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["pool"], Value::Null);
    // Moving to a location without such a network fails naming the address;
    // with a matching network the addresses are placed there.
    let (s, _) = d.post("/locations", json!({"name": "dc2"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = d
        .patch("/servers/m.dc1.example.com", json!({"location": "dc2"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["fields"]["interfaces[0].ipv4"].is_array(), "{b}");
    let (s, net2) = d
        .post(
            "/networks",
            json!({"location": "dc2", "cidr": "10.0.0.0/24"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{net2}");
    let (s, b) = d
        .patch("/servers/m.dc1.example.com", json!({"location": "dc2"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["network_id"] == net2["id"]),
        "{b}"
    );
    // Text with a NUL byte and a password without a user are 422, not 500.
    let (s, b) = d
        .patch("/servers/m.dc1.example.com", json!({"notes": "a\u{0}b"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = d
        .patch(
            "/servers/m.dc1.example.com",
            json!({"bmc": {"password": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["fields"]["bmc.username"].is_array(), "{b}");
    d.stop().await;
    ts.drop_database().await;
}

/// Two PATCHes of different fields of one server at once: both land.
async fn concurrent_patches_keep_both_changes(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = std::sync::Arc::new(Daemon::start(&ts, None).await);
    d.seed_location().await;
    let (s, _) = d
        .post(
            "/servers",
            server_body("cp.dc1.example.com", &["52:54:00:00:0b:01"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for round in 0..15 {
        let (a, b) = (d.clone(), d.clone());
        let serial = tokio::spawn(async move {
            a.patch(
                "/servers/cp.dc1.example.com",
                json!({"serial": format!("S{round}")}),
            )
            .await
        });
        let notes = tokio::spawn(async move {
            b.patch(
                "/servers/cp.dc1.example.com",
                json!({"notes": format!("N{round}")}),
            )
            .await
        });
        let (sa, ba) = serial.await.unwrap();
        let (sb, bb) = notes.await.unwrap();
        assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{ba} {bb}");
        let (_, now) = d.get("/servers/cp.dc1.example.com").await;
        assert_eq!(
            (now["serial"].as_str(), now["notes"].as_str()),
            (
                Some(format!("S{round}").as_str()),
                Some(format!("N{round}").as_str())
            ),
            "round {round}"
        );
    }
    let d = std::sync::Arc::into_inner(d).expect("no other owners");
    d.stop().await;
    ts.drop_database().await;
}

/// A filter a list does not know is refused, naming it: a client written
/// for another API (the older `?fqdn=`, say) must not get every object
/// back as if it had filtered.
async fn unknown_filters_are_refused(backend: Backend) {
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            server_body("q1.dc1.example.com", &["52:54:00:00:07:01"]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, deployment) = d.get("/deployments").await;
    assert!(deployment["results"].as_array().is_some());
    for list in [
        "/credentials",
        "/deployments",
        "/interfaces",
        "/labels",
        "/leases",
        "/locations",
        "/networks",
        "/profiles",
        "/servers",
        "/ssh_authorized_keys",
        "/timeline",
        "/timeline/unknown",
        "/tokens",
        "/users",
        "/servers/q1.dc1.example.com/timeline",
    ] {
        let (s, b) = d.get(&format!("{list}?fqdn=q1.dc1.example.com")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{list}: {b}");
        assert!(b.to_string().contains("fqdn"), "{list}: {b}");
        // What it knows still works.
        let (s, b) = d.get(&format!("{list}?limit=1")).await;
        assert_eq!(s, StatusCode::OK, "{list}?limit=1: {b}");
    }
    ts.drop_database().await;
}

on_both_backends!(
    unknown_filters_are_refused,
    tour_and_restart,
    authentication_and_scopes,
    conflicts_and_validation,
    profiles_lookups_and_errors,
    bmc_password_stays_secret,
    csv_import_is_all_or_nothing,
    updates_pagination_and_deletes,
    users_and_ssh_keys,
    openapi_document,
    concurrent_writes,
    addresses_follow_the_hardware,
    concurrent_patches_keep_both_changes,
);
