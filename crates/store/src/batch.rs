//! Write transactions whose statements go to the database in batches.
//!
//! sqlx sends each statement to SQLite's connection thread and waits for
//! it to come back, and `BEGIN` and `COMMIT` are trips of their own: a
//! lease group (the transaction every DHCP ACK once waited for) was six trips,
//! each a wake-up of a thread on either side. Each backend's `Batch`
//! (`sqlite.rs`, `postgres.rs`) takes the statements of a step at once:
//! SQLite's runs them in one trip, the first batch with its `BEGIN` and the
//! last with its `COMMIT`; PostgreSQL's runs them one after another in its
//! transaction, as any other write does. Both give back each statement's
//! rows and how many rows it changed, split here.
//!
//! A batch's statements take `?` placeholders only (`push_bind`): SQLite
//! numbers them across the whole batch, which `$n` would not follow.
//!
//! sqlx runs every statement of a query string on SQLite (its migrations
//! need it) and calls doing so with bound values a deprecated behaviour
//! of that driver (launchbadge/sqlx#3108). The tests of `Batch` in
//! `sqlite.rs` fail if a release of sqlx stops running them; the way back
//! is one statement per trip, as every other write does.

use futures_util::{Stream, TryStreamExt};
use sqlx::Either;

/// What one statement of a batch gave.
pub(crate) struct Done<R> {
    pub rows: Vec<R>,
    pub affected: u64,
}

/// Splits the results of statements run one after another (each one's
/// rows, then its count) into each statement's, leaving out the first
/// `skip` statements' (a `BEGIN` the batch added).
pub(crate) async fn split<Q, R>(
    results: impl Stream<Item = Result<Either<Q, R>, sqlx::Error>>,
    affected: impl Fn(&Q) -> u64,
    skip: usize,
) -> Result<Vec<Done<R>>, sqlx::Error> {
    let mut results = std::pin::pin!(results);
    let mut done = Vec::new();
    let mut rows = Vec::new();
    let mut seen = 0;
    while let Some(item) = results.try_next().await? {
        match item {
            Either::Right(row) => rows.push(row),
            Either::Left(count) => {
                seen += 1;
                let rows = std::mem::take(&mut rows);
                if seen > skip {
                    done.push(Done {
                        rows,
                        affected: affected(&count),
                    });
                }
            }
        }
    }
    Ok(done)
}
