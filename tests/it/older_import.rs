//! `bootloader import-legacy` against a database made from the older
//! system's schema (tests/fixtures/older/schema.sql, written from its
//! models) holding rows like an installation's, hostile ones among them
//! (rows.sql says which): the dry run, all-or-nothing, leaving conflicts
//! out, a second run that changes nothing, and what operators and their
//! scripts then see: their servers, BMC logins, password, token, history.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

use bootloader::older;
use bootloader_store::older::{ImportMode, ImportReport, RowOutcome};

use crate::common::{Backend, Daemon, TestStore};

/// A fresh PostgreSQL database with the older schema and rows; the
/// `TestStore` drops it.
async fn older_database() -> (TestStore, String) {
    let ts = TestStore::new(Backend::Postgres).await;
    let url = ts.env["DATABASE_URL"].clone();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!("../fixtures/older/schema.sql"))
        .execute(&mut conn)
        .await
        .unwrap();
    // The older system kept profiles as jsonb, converted from the YAML
    // its users uploaded.
    let ubuntu: Value =
        serde_saphyr::from_str(include_str!("../fixtures/seed-profiles/ubuntu-16.04.yaml"))
            .unwrap();
    let broken = serde_json::json!({
        "kind": "Profile", "apiVersion": "v1alpha1", "name": "broken", "version": "1",
        "workflow": "never written",
    });
    for (id, doc) in [(1, &ubuntu), (2, &broken)] {
        sqlx::query(
            "INSERT INTO deployments_profile (id, created, modified, is_active, name, version, profile) \
             VALUES ($1, now(), now(), true, $2, $3, $4::jsonb)",
        )
        .bind(id)
        .bind(doc["name"].as_str())
        .bind(doc["version"].as_str())
        .bind(doc.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::raw_sql(include_str!("../fixtures/older/rows.sql"))
        .execute(&mut conn)
        .await
        .unwrap();
    (ts, url)
}

fn conflicts(report: &ImportReport) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = report
        .conflicts()
        .map(|r| (r.kind.to_string(), r.older_id.clone()))
        .collect();
    list.sort();
    list
}

fn changes(report: &ImportReport) -> usize {
    report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, RowOutcome::Created | RowOutcome::Adopted))
        .count()
}

/// What stands in the way in the fixture, by (kind, older id); the daemon's
/// own first user is `admin`, as the older one's.
const IN_THE_WAY: [(&str, &str); 13] = [
    ("credential", "3"), // sealed under another SECRET_KEY
    ("credential", "4"), // attached to a user
    ("deployment", "4"), // of the profile that does not validate
    ("interface", "3"),  // its MAC is interface 1's, in other letters
    ("location", "2"),   // "dc 2"
    ("network", "2"),    // IPv6
    ("profile", "2"),    // its workflow is a string
    ("server", "5"),     // "bad fqdn!"
    ("ssh_key", "2"),    // no key
    ("token", "1"),      // admin's, whose user is in the way
    ("token", "6"),      // _svc's
    ("user", "1"),       // admin: the daemon has one
    ("user", "6"),       // "_svc": Django's names may start with '_'
];

async fn an_older_database_comes_over(backend: Backend) {
    let (older_db, url) = older_database().await;
    let rows = older::read::read(&url, None).await.unwrap();
    let ts = TestStore::new(backend).await;
    let d = Daemon::start(&ts, None).await;
    let store = &*d.store;
    let mut expected: Vec<(String, String)> = IN_THE_WAY
        .iter()
        .map(|(k, i)| (k.to_string(), i.to_string()))
        .collect();
    expected.sort();

    // The dry run says all that a real run would meet, and writes nothing.
    let dry = older::run(store, &rows, "secret", ImportMode::DryRun)
        .await
        .unwrap();
    assert!(!dry.written);
    assert_eq!(conflicts(&dry), expected, "{:#?}", dry.rows);
    let text = older::describe(&dry, ImportMode::DryRun);
    assert!(text.contains("Dry run: nothing written"), "{text}");
    assert!(
        text.contains("does not open under this SECRET_KEY"),
        "{text}"
    );
    let (_, servers) = d.get("/servers").await;
    assert_eq!(servers["count"], 0, "a dry run writes nothing");

    // All or nothing: conflicts keep everything out.
    let strict = older::run(store, &rows, "secret", ImportMode::AllOrNothing)
        .await
        .unwrap();
    assert!(!strict.written);
    let (_, servers) = d.get("/servers").await;
    assert_eq!(servers["count"], 0);

    // Leaving the conflicts out writes the rest, as the dry run said.
    let done = older::run(store, &rows, "secret", ImportMode::SkipConflicts)
        .await
        .unwrap();
    assert!(done.written);
    assert_eq!(conflicts(&done), expected);
    assert_eq!(changes(&done), changes(&dry), "the dry run was exact");
    for (kind, created) in [
        ("location", 2), // dc1, and `unassigned` for the server without one
        ("label", 2),
        ("network", 1),
        ("server", 3),
        ("credential", 2),
        ("profile", 1),
        ("user", 4), // olga, viewer, j.doe@example.com, retired
        ("token", 3),
        ("ssh_key", 1),
        ("deployment", 3),
    ] {
        assert_eq!(
            done.count(kind, &RowOutcome::Created),
            created,
            "{kind}: {:#?}",
            done.rows
        );
    }
    let viewer = done.rows.iter().find(|r| r.key == "viewer").unwrap();
    assert!(viewer.note.as_deref().unwrap_or("").contains("no password"));

    // The servers, as the older scripts and the API see them.
    let (s, r1) = d.get("/servers/r1.dc1.example.com").await;
    assert_eq!(s, StatusCode::OK, "{r1}");
    assert_eq!(r1["location"], "dc1");
    assert_eq!(r1["serial"], "SN0001");
    assert_eq!(r1["notes"], "left rack, top");
    assert_eq!(r1["labels"], serde_json::json!(["gpu", "rack1"]));
    assert_eq!(r1["bmc"]["host"], "10.0.1.11");
    assert_eq!(r1["interfaces"][0]["mac"], "aa:bb:cc:00:00:01");
    let (_, r3) = d.get("/servers/r3.example.com").await;
    assert_eq!(r3["location"], "unassigned");
    let macs: Vec<&str> = r3["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["mac"].as_str())
        .collect();
    assert_eq!(macs, ["52:54:00:00:00:03"], "the duplicate stayed with r1");
    // Its credentials, opened with the older key and sealed under ours,
    // are r1's BMC login.
    let login = store
        .bmc_login(&"r1.dc1.example.com".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        login,
        Some((
            "ADMIN".to_string(),
            "s3cr\u{e9}t-password-longer-than-a-block".to_string()
        ))
    );

    // Olga signs in with her older password and her older token works,
    // with staff rights; the viewer's token reads only.
    let client = reqwest::Client::new();
    let older_api = |path: &str| format!("{}/api/v1alpha2/{path}", d.base);
    let r = client
        .get(older_api("servers/"))
        .basic_auth("olga", Some("old-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    let olga = "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";
    let r = client
        .post(older_api("labels/"))
        .header("Authorization", olga)
        .json(&serde_json::json!({"name": "rack2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let viewer = "Token b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    let r = client
        .get(older_api("servers/"))
        .header("Authorization", viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .post(older_api("labels/"))
        .header("Authorization", viewer)
        .json(&serde_json::json!({"name": "rack3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A Django user name that is an e-mail address is kept as it was.
    let r = client
        .get(older_api("servers/"))
        .basic_auth("j.doe@example.com", Some("short"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The inactive user came over inactive.
    let r = client
        .get(older_api("servers/"))
        .basic_auth("retired", Some("short"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // History: ended, with the older token and log; no engine runs it.
    let r = client
        .get(older_api("deployments/"))
        .header("Authorization", olga)
        .send()
        .await
        .unwrap();
    let deployments: Value = r.json().await.unwrap();
    let list = deployments.as_array().unwrap();
    assert_eq!(list.len(), 3, "{deployments}");
    let complete = list.iter().find(|x| x["status"] == "complete").unwrap();
    assert_eq!(
        complete["token"],
        "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988"
    );
    let mut states: Vec<&str> = list.iter().filter_map(|x| x["status"].as_str()).collect();
    states.sort();
    assert_eq!(states, ["cancelled", "complete", "error"]);
    let failed = list.iter().find(|x| x["status"] == "error").unwrap();
    let progress = failed["progress"].as_f64().unwrap_or(0.0);
    assert!(
        (20.0..50.0).contains(&progress),
        "the older 33.2% kept as actions done: {failed}"
    );
    let (_, log) = d.get(&format!("/deployments/{}/log", failed["id"])).await;
    let text = log.to_string();
    assert!(text.contains("IPMI: session timed out"), "{text}");
    assert!(text.contains("imported from the older system"), "{text}");

    // A second run changes nothing, and says so.
    let (_, before) = d.get("/servers").await;
    let again = older::run(store, &rows, "secret", ImportMode::SkipConflicts)
        .await
        .unwrap();
    assert_eq!(changes(&again), 0, "{:#?}", again.rows);
    assert_eq!(
        again.count("server", &RowOutcome::AlreadyImported),
        3,
        "{:#?}",
        again.rows
    );
    let (_, after) = d.get("/servers").await;
    assert_eq!(before, after);
    assert!(older::describe(&again, ImportMode::SkipConflicts).contains("Written: 0 rows"));

    d.stop().await;
    ts.drop_database().await;
    older_db.drop_database().await;
}

on_both_backends!(an_older_database_comes_over);

fn import_legacy(data_dir: &std::path::Path, url: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bootloader"))
        .arg("import-legacy")
        .args(["--from", url])
        .args(args)
        .env("BOOTLOADER_DATA_DIR", data_dir)
        .env("OLDER_SECRET_KEY", "secret")
        .env_remove("SECRET_KEY")
        .env_remove("DATABASE_URL")
        .env_remove("DB_PASSWORD")
        .output()
        .expect("run bootloader");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The command as an operator runs it: the dry run's table and conflicts
/// (exit 1: a real run would refuse), the run that leaves them out, and
/// the second run with nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_legacy_from_the_command_line() {
    let (older_db, url) = older_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = import_legacy(dir.path(), &url, &["--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Dry run: nothing written"), "{out}");
    assert!(out.contains("server #5 bad fqdn!: fqdn:"), "{out}");
    assert!(out.contains("servers"), "{out}");
    let (code, out) = import_legacy(dir.path(), &url, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Nothing written"), "{out}");
    let (code, out) = import_legacy(dir.path(), &url, &["--skip-conflicts"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Written:"), "{out}");
    let (code, out) = import_legacy(dir.path(), &url, &["--skip-conflicts"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Written: 0 rows"), "{out}");
    // An older database that is not one says which table it lacks.
    let (code, out) = import_legacy(dir.path(), &crate::common::pg_admin_url(), &["--dry-run"]);
    assert_ne!(code, 0);
    assert!(out.contains("servers_location"), "{out}");
    older_db.drop_database().await;
}

/// A daemon serving the SQLite file the command line imports into sees
/// the imported machines within seconds (the command line leaves word
/// beside the file), though it answered their MACs from memory before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_daemon_sees_what_the_command_line_imported() {
    let (older_db, url) = older_database().await;
    let ts = TestStore::new(Backend::Sqlite).await;
    let d = Daemon::start(&ts, None).await;
    let script = || async {
        let r = reqwest::get(format!("{}/ipxe/52:54:00:00:00:02", d.base))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    };
    // Asked twice: the second answer is the index's.
    for _ in 0..2 {
        let s = script().await;
        assert!(s.contains("unknown MAC"), "{s}");
    }
    let (code, out) = import_legacy(ts.dir.path(), &url, &["--skip-conflicts"]);
    assert_eq!(code, 0, "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = script().await;
        if s.contains("r2.dc1.example.com") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon still answers as before the import: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    d.stop().await;
    older_db.drop_database().await;
}
