//! The read-only role for readers of the PostgreSQL database
//! (`packaging/postgres-readonly-role.sql`, docs/schema.md), applied to a
//! migrated database: it reads the inventory and deployments, not the
//! secrets, and writes nothing.

use crate::common;

use common::{Backend, Daemon, TestStore};
use reqwest::StatusCode;
use serde_json::json;

/// Runs SQL as the cluster's superuser on `db`; returns (ok, output).
fn psql(db: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
        ])
        .args(args)
        .output()
        .expect("psql runs (the README's test command installs PostgreSQL)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_role_reads_everything_but_secrets() {
    let store = TestStore::new(Backend::Postgres).await;
    let d = Daemon::start(&store, None).await;
    d.seed_location().await;
    let (s, b) = d
        .post(
            "/servers",
            json!({"fqdn": "r1.dc1.example.com", "location": "dc1",
                "bmc": {"host": "10.0.1.1", "username": "ADMIN", "password": "hunter2"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    d.stop().await;

    let db = store.pg_database.clone().unwrap();
    let reader = format!("{db}_reader");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/postgres-readonly-role.sql"
    );
    let (ok, out) = psql(&db, &["-v", &format!("reader={reader}"), "-f", script]);
    assert!(ok, "{out}");
    // Applying it twice is harmless.
    let (ok, out) = psql(&db, &["-v", &format!("reader={reader}"), "-f", script]);
    assert!(ok, "{out}");

    let as_reader = |sql: &str| psql(&db, &["-c", &format!("SET ROLE {reader}"), "-c", sql]);
    let (ok, out) = as_reader("SELECT fqdn, bmc_username FROM servers");
    assert!(ok && out.contains("r1.dc1.example.com|ADMIN"), "{out}");
    for sql in [
        "SELECT cidr FROM networks",
        "SELECT id, state, step FROM deployments",
        "SELECT routing_key FROM outbox",
        "SELECT phase FROM boot_events",
        "SELECT server_id, name FROM server_secrets",
        "SELECT first_name, is_active FROM users",
    ] {
        let (ok, out) = as_reader(sql);
        assert!(ok, "{sql}: {out}");
    }
    for sql in [
        "SELECT bmc_password_encrypted FROM servers",
        "SELECT token_hash FROM deployments",
        "SELECT token_sealed FROM deployments",
        "SELECT token_hash FROM api_tokens",
        "SELECT hash FROM user_passwords",
        "SELECT data_sealed FROM server_secrets",
        "SELECT secret_hash FROM console_sessions",
        "SELECT value FROM settings",
        "INSERT INTO labels (name, created_at) VALUES ('x', now())",
        "DELETE FROM servers",
    ] {
        let (ok, out) = as_reader(sql);
        assert!(
            !ok && out.contains("permission denied"),
            "{sql} was allowed: {out}"
        );
    }
    store.drop_database().await;
    let _ = psql(
        "postgres",
        &["-c", &format!("DROP ROLE IF EXISTS {reader}")],
    );
}
