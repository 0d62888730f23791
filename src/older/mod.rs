//! `bootloader import-legacy`: an older system's (bootloader-web's)
//! PostgreSQL database brought over. `read` reads its tables, `plan`
//! validates every row by the API's own rules and opens its credentials,
//! and the store writes the lot in one transaction
//! (`OlderImportStore::import_older`): all or nothing, a dry run that is
//! the same transaction rolled back, and a second run that finds every
//! row already here.

pub mod plan;
pub mod read;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use bootloader_store::Store;
use bootloader_store::older::{ImportMode, ImportReport, RowOutcome};

use crate::config::Config;

/// The older system's default `SECRET_KEY`, accepted for this import
/// only (its settings fell back to it when none was set).
pub const OLDER_DEFAULT_SECRET_KEY: &str = "secret";

/// Reads, plans and writes; returns the report.
pub async fn run(
    store: &dyn Store,
    rows: &read::OlderRows,
    secret_key: &str,
    mode: ImportMode,
) -> anyhow::Result<ImportReport> {
    let (data, unusable) = plan::plan(rows, secret_key);
    Ok(store.import_older(&data, &unusable, mode).await?)
}

/// The command: where the older database and its key come from (`--from`,
/// else the older settings' `DB_*`; `--secret-key-file`, else
/// `$OLDER_SECRET_KEY`, else the older default), the run, and the report
/// on stdout. `false` when conflicts kept (or, in a dry run, would keep)
/// the import from being written.
pub async fn command(
    config: &Config,
    from: Option<String>,
    secret_key_file: Option<&Path>,
    mode: ImportMode,
) -> anyhow::Result<bool> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let url = from.unwrap_or_else(|| {
        format!(
            "postgres://{}@{}/{}",
            env("DB_USER", "postgres"),
            env("DB_HOST", "postgresql"),
            env("DB_NAME", "postgres")
        )
    });
    let password = std::env::var("DB_PASSWORD").ok();
    let secret_key = match secret_key_file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        // Not $SECRET_KEY: that is this daemon's own key.
        None => std::env::var("OLDER_SECRET_KEY").unwrap_or_else(|_| {
            eprintln!(
                "No --secret-key-file and no $OLDER_SECRET_KEY: opening the older credentials with the older default key `{OLDER_DEFAULT_SECRET_KEY}`."
            );
            OLDER_DEFAULT_SECRET_KEY.to_string()
        }),
    };
    let rows = read::read(&url, password.as_deref()).await?;
    println!("Older database: {}", rows.source);
    let store = crate::app::open_store(config).await?;
    let report = run(store.as_ref(), &rows, &secret_key, mode).await?;
    print!("{}", describe(&report, mode));
    Ok(report.conflicts().next().is_none() || (report.written && mode != ImportMode::DryRun))
}

/// The kinds in the order they are written, with their plural for tables.
const KINDS: [(&str, &str); 11] = [
    ("location", "locations"),
    ("label", "labels"),
    ("network", "networks"),
    ("server", "servers"),
    ("interface", "interfaces"),
    ("credential", "credentials"),
    ("profile", "profiles"),
    ("user", "users"),
    ("token", "API tokens"),
    ("ssh_key", "SSH keys"),
    ("deployment", "deployments"),
];

/// The report as an operator reads it: a table of what each kind became,
/// every conflict with its reason, the notes, and what was written.
pub fn describe(report: &ImportReport, mode: ImportMode) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>8} {:>8} {:>9}",
        "", "new", "adopted", "already", "conflict"
    );
    for (kind, plural) in KINDS {
        let n = |o: &RowOutcome| report.count(kind, o);
        let counts = [
            n(&RowOutcome::Created),
            n(&RowOutcome::Adopted),
            n(&RowOutcome::AlreadyImported),
            n(&RowOutcome::Conflict(String::new())),
        ];
        if counts.iter().all(|c| *c == 0) {
            continue;
        }
        let _ = writeln!(
            out,
            "{plural:<14} {:>8} {:>8} {:>8} {:>9}",
            counts[0], counts[1], counts[2], counts[3]
        );
    }
    let conflicts: Vec<_> = report.conflicts().collect();
    if !conflicts.is_empty() {
        let _ = writeln!(out, "\nConflicts ({}):", conflicts.len());
        for row in &conflicts {
            if let RowOutcome::Conflict(why) = &row.outcome {
                let _ = writeln!(out, "  {} #{} {}: {why}", row.kind, row.older_id, row.key);
            }
        }
    }
    let notes: Vec<_> = report.rows.iter().filter(|r| r.note.is_some()).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for row in notes {
            let _ = writeln!(
                out,
                "  {} #{} {}: {}",
                row.kind,
                row.older_id,
                row.key,
                row.note.as_deref().unwrap_or_default()
            );
        }
    }
    let changes = report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, RowOutcome::Created | RowOutcome::Adopted))
        .count();
    let _ = writeln!(
        out,
        "\n{}",
        match (mode, report.written, conflicts.len()) {
            (ImportMode::DryRun, _, 0) => format!(
                "Dry run: nothing written. A real run would write {changes} rows and refuse none."
            ),
            (ImportMode::DryRun, _, n) => format!(
                "Dry run: nothing written. A real run would refuse the import for these {n} conflicts \
                 (or, with --skip-conflicts, leave those rows out and write {changes})."
            ),
            (_, true, 0) if changes == 0 => {
                "Nothing to do: every row was brought over before.".to_string()
            }
            (_, true, 0) => format!("Written: {changes} rows, in one transaction."),
            (_, true, n) => format!(
                "Written: {changes} rows, in one transaction; the {n} conflicting rows were left out."
            ),
            (_, false, n) => format!(
                "Nothing written: {n} conflicts. Resolve them, or run with --skip-conflicts to leave those rows out."
            ),
        }
    );
    out
}
