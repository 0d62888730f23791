//! `OlderImportStore`: an older system's rows written in one transaction.
//! Each row runs in a savepoint, so that a row in the way is reported and
//! the rows after it are still checked against the ones before; every row
//! written is recorded in `older_imports` with the row it became, which
//! is how a second run knows there is nothing left to do.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Acquire;

use super::helpers::*;
use super::profiles::insert_profile;
use super::users::{insert_ssh_key, insert_token, insert_user};
use super::{Backend, Conn, Db};
use crate::older::*;
use crate::types::NewApiToken;
use crate::{Result, StoreError};
use bootloader_core::model::{Fqdn, Name};

type Savepoint<'a> = sqlx::Transaction<'a, Db>;

/// What one run has seen so far: the report, and the ids here of the older
/// rows that are here (created, adopted or imported before), by kind.
struct Run<'d> {
    source: &'d str,
    rows: Vec<ImportRow>,
    ids: HashMap<(&'static str, String), i64>,
}

impl Run<'_> {
    /// The id here of an older row an earlier run brought over.
    async fn imported(&self, conn: &mut Conn, kind: &str, older_id: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT new_id FROM older_imports WHERE source = $1 AND kind = $2 AND older_id = $3",
        )
        .bind(self.source)
        .bind(kind)
        .bind(older_id)
        .fetch_optional(&mut *conn)
        .await?)
    }

    /// The id here of an older row of `kind` this run can refer to, or
    /// the conflict that says why not.
    fn id_of(&self, kind: &'static str, older_id: &str) -> Result<i64> {
        self.ids
            .get(&(kind, older_id.to_string()))
            .copied()
            .ok_or_else(|| {
                StoreError::conflict(
                    kind,
                    format!("its {kind} (#{older_id}) is not brought over"),
                )
            })
    }

    fn push(&mut self, kind: &'static str, older_id: &str, key: String, outcome: RowOutcome) {
        self.rows.push(ImportRow {
            kind,
            older_id: older_id.to_string(),
            key,
            outcome,
            note: None,
        });
    }

    /// Ends one row's savepoint: a row written or adopted is recorded
    /// (here and in `older_imports`); one in the way is rolled back and
    /// reported. A database that is gone ends the whole run.
    async fn finish(
        &mut self,
        mut sp: Savepoint<'_>,
        (kind, older_id, key): (&'static str, &str, String),
        result: Result<(RowOutcome, i64)>,
    ) -> Result<()> {
        match result {
            Ok((outcome, id)) => {
                sqlx::query(
                    "INSERT INTO older_imports (source, kind, older_id, new_id, imported_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(self.source)
                .bind(kind)
                .bind(older_id)
                .bind(id)
                .bind(now())
                .execute(&mut *sp)
                .await?;
                sp.commit().await?;
                self.ids.insert((kind, older_id.to_string()), id);
                self.push(kind, older_id, key, outcome);
            }
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                sp.rollback().await?;
                self.push(kind, older_id, key, RowOutcome::Conflict(reason(&e)));
            }
        }
        Ok(())
    }

    /// Starts a row: `None` when an earlier run brought it over (reported
    /// and remembered here), else the savepoint to write it in.
    async fn start<'t>(
        &mut self,
        tx: &'t mut Savepoint<'_>,
        kind: &'static str,
        older_id: &str,
        key: &str,
    ) -> Result<Option<Savepoint<'t>>> {
        if let Some(id) = self.imported(tx, kind, older_id).await? {
            self.ids.insert((kind, older_id.to_string()), id);
            self.push(kind, older_id, key.to_string(), RowOutcome::AlreadyImported);
            return Ok(None);
        }
        Ok(Some(tx.begin().await?))
    }
}

/// A store error as one line of a conflict.
fn reason(e: &StoreError) -> String {
    match e {
        StoreError::Conflict { message, .. } | StoreError::Invalid { message, .. } => {
            message.clone()
        }
        other => other.to_string(),
    }
}

#[async_trait]
impl OlderImportStore for Backend {
    async fn import_older(
        &self,
        data: &OlderData,
        unusable: &[Unusable],
        mode: ImportMode,
    ) -> Result<ImportReport> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        check_current_key(&mut tx, &self.cipher).await?;
        let mut run = Run {
            source: &data.source,
            rows: Vec::new(),
            ids: HashMap::new(),
        };
        for u in unusable {
            run.push(
                u.kind,
                &u.older_id,
                u.key.clone(),
                RowOutcome::Conflict(u.reason.clone()),
            );
        }

        for o in &data.locations {
            let key = o.item.name.to_string();
            let Some(mut sp) = run.start(&mut tx, "location", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                if let Ok(here) = fetch_location(&mut sp, &o.item.name).await {
                    return Ok((RowOutcome::Adopted, here.id));
                }
                Ok((
                    RowOutcome::Created,
                    insert_location(&mut sp, &o.item).await?.id,
                ))
            }
            .await;
            run.finish(sp, ("location", &o.older_id, key), result)
                .await?;
        }

        for o in &data.labels {
            let key = o.item.to_string();
            let Some(mut sp) = run.start(&mut tx, "label", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                if let Ok(here) = fetch_label(&mut sp, &o.item).await {
                    return Ok((RowOutcome::Adopted, here.id));
                }
                Ok((
                    RowOutcome::Created,
                    insert_label(&mut sp, &o.item, "").await?.id,
                ))
            }
            .await;
            run.finish(sp, ("label", &o.older_id, key), result).await?;
        }

        for o in &data.networks {
            let key = format!("{} ({})", o.item.cidr, o.item.location);
            let Some(mut sp) = run.start(&mut tx, "network", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                let same: Option<i64> = sqlx::query_scalar(
                    "SELECT n.id FROM networks n JOIN locations l ON l.id = n.location_id \
                     WHERE l.name = $1 AND n.cidr = $2",
                )
                .bind(o.item.location.as_str())
                .bind(o.item.cidr.to_string())
                .fetch_optional(&mut *sp)
                .await?;
                if let Some(id) = same {
                    return Ok((RowOutcome::Adopted, id));
                }
                Ok((
                    RowOutcome::Created,
                    insert_network(&mut sp, &o.item).await?.id,
                ))
            }
            .await;
            run.finish(sp, ("network", &o.older_id, key), result)
                .await?;
        }

        for o in &data.servers {
            let key = o.item.fqdn.to_string();
            let Some(mut sp) = run.start(&mut tx, "server", &o.older_id, &key).await? else {
                continue;
            };
            // put_server names the FQDN's clash itself; an interface's MAC
            // taken by another server is its error too.
            let result = async {
                let id = put_server(&mut sp, &self.cipher, &o.item, None).await?;
                emit_server(&mut sp, "created", &o.item.fqdn).await?;
                Ok((RowOutcome::Created, id))
            }
            .await;
            run.finish(sp, ("server", &o.older_id, key), result).await?;
        }

        for o in &data.secrets {
            let key = format!("{} of server #{}", o.item.name, o.item.server);
            let Some(mut sp) = run.start(&mut tx, "credential", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                let server = run.id_of("server", &o.item.server)?;
                let fqdn: String = sqlx::query_scalar("SELECT fqdn FROM servers WHERE id = $1")
                    .bind(server)
                    .fetch_one(&mut *sp)
                    .await?;
                let fqdn: Fqdn = fqdn
                    .parse()
                    .map_err(|e: bootloader_core::model::NameError| {
                        StoreError::invalid("server", e.to_string())
                    })?;
                let same: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT id, data_sealed FROM server_secrets WHERE server_id = $1 AND name = $2",
                )
                .bind(server)
                .bind(&o.item.name)
                .fetch_all(&mut *sp)
                .await?;
                // The same name and value here already is this one; the
                // same name with another value is for an operator to settle.
                for (id, sealed) in &same {
                    if self.cipher.open(sealed)? == o.item.data.expose() {
                        return Ok((RowOutcome::Adopted, *id));
                    }
                }
                if !same.is_empty() {
                    return Err(StoreError::conflict(
                        "name",
                        format!(
                            "{fqdn} already has a secret {} with another value",
                            o.item.name
                        ),
                    ));
                }
                let id = super::secrets::insert(
                    &mut sp,
                    &self.cipher,
                    server,
                    &fqdn,
                    &o.item.name,
                    &o.item.data,
                )
                .await?;
                Ok((RowOutcome::Created, id))
            }
            .await;
            run.finish(sp, ("credential", &o.older_id, key), result)
                .await?;
        }

        for o in &data.profiles {
            let p = &o.item;
            let key = format!("{}=={}", p.name, p.version);
            let Some(mut sp) = run.start(&mut tx, "profile", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                let same: Option<(i64, String)> = sqlx::query_as(
                    "SELECT id, source FROM profiles WHERE name = $1 AND version = $2",
                )
                .bind(&p.name)
                .bind(&p.version)
                .fetch_optional(&mut *sp)
                .await?;
                match same {
                    Some((id, source)) if source == p.source => Ok((RowOutcome::Adopted, id)),
                    Some((id, _)) => Err(StoreError::conflict(
                        "version",
                        format!("profile {key} is here already (id {id}) with another document"),
                    )),
                    None => {
                        let created =
                            insert_profile(&mut sp, &p.name, &p.version, &p.source, p.action_count)
                                .await?;
                        Ok((RowOutcome::Created, created.id))
                    }
                }
            }
            .await;
            run.finish(sp, ("profile", &o.older_id, key), result)
                .await?;
        }

        for o in &data.users {
            let key = o.item.spec.name.to_string();
            let Some(mut sp) = run.start(&mut tx, "user", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                if fetch_user(&mut sp, &o.item.spec.name).await.is_ok() {
                    return Err(StoreError::conflict(
                        "name",
                        format!(
                            "a user named {key} exists here already (rename or delete it, or leave the older one out)"
                        ),
                    ));
                }
                let user = insert_user(&mut sp, &o.item.spec).await?;
                if let Some(hash) = &o.item.password {
                    sqlx::query(
                        "INSERT INTO user_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3)",
                    )
                    .bind(user.id)
                    .bind(hash.as_str())
                    .bind(now())
                    .execute(&mut *sp)
                    .await?;
                }
                Ok((RowOutcome::Created, user.id))
            }
            .await;
            let written = result.is_ok();
            run.finish(sp, ("user", &o.older_id, key), result).await?;
            if written
                && o.item.password.is_none()
                && let Some(row) = run.rows.last_mut()
            {
                row.note = Some(
                    "no password it could sign in with there; set one (`bootloader user passwd`) or use a token"
                        .to_string(),
                );
            }
        }

        for o in &data.tokens {
            let key = format!("{}… of user #{}", o.item.prefix, o.item.user);
            let Some(mut sp) = run.start(&mut tx, "token", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                let user = run.id_of("user", &o.item.user)?;
                let holder: Option<i64> =
                    sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE token_hash = $1")
                        .bind(&o.item.hash.0)
                        .fetch_optional(&mut *sp)
                        .await?;
                match holder {
                    Some(h) if h == user => {
                        let id: i64 =
                            sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = $1")
                                .bind(&o.item.hash.0)
                                .fetch_one(&mut *sp)
                                .await?;
                        return Ok((RowOutcome::Adopted, id));
                    }
                    Some(_) => {
                        return Err(StoreError::conflict(
                            "key",
                            "another user here holds this token",
                        ));
                    }
                    None => {}
                }
                let name = user_name(&mut sp, user).await?;
                let token = insert_token(
                    &mut sp,
                    &NewApiToken {
                        user: name,
                        hash: o.item.hash.clone(),
                        prefix: o.item.prefix.clone(),
                        scope: o.item.scope,
                        description: "the older system's API key (import-legacy)".to_string(),
                        expires_at: None,
                    },
                )
                .await?;
                Ok((RowOutcome::Created, token.id))
            }
            .await;
            run.finish(sp, ("token", &o.older_id, key), result).await?;
        }

        for o in &data.ssh_keys {
            let key = format!("key of user #{}", o.item.user);
            let Some(mut sp) = run.start(&mut tx, "ssh_key", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                let user = run.id_of("user", &o.item.user)?;
                let same: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM ssh_authorized_keys WHERE user_id = $1 AND key = $2",
                )
                .bind(user)
                .bind(&o.item.key)
                .fetch_optional(&mut *sp)
                .await?;
                if let Some(id) = same {
                    return Ok((RowOutcome::Adopted, id));
                }
                let name = user_name(&mut sp, user).await?;
                let created =
                    insert_ssh_key(&mut sp, user, &name, &o.item.name, &o.item.key).await?;
                Ok((RowOutcome::Created, created.id))
            }
            .await;
            run.finish(sp, ("ssh_key", &o.older_id, key), result)
                .await?;
        }

        for o in &data.deployments {
            let d = &o.item;
            let key = format!("{} on server #{}", d.state.as_str(), d.server);
            let Some(mut sp) = run.start(&mut tx, "deployment", &o.older_id, &key).await? else {
                continue;
            };
            let result = async {
                let server = run.id_of("server", &d.server)?;
                let profile = run.id_of("profile", &d.profile)?;
                let id = insert_history(&mut sp, &self.cipher, server, profile, d).await?;
                Ok((RowOutcome::Created, id))
            }
            .await;
            run.finish(sp, ("deployment", &o.older_id, key), result)
                .await?;
        }

        let conflicted = run
            .rows
            .iter()
            .any(|r| matches!(r.outcome, RowOutcome::Conflict(_)));
        let written = match mode {
            ImportMode::DryRun => false,
            ImportMode::AllOrNothing => !conflicted,
            ImportMode::SkipConflicts => true,
        };
        if written {
            tx.commit().await?;
            self.boot_index.changed_all();
        } else {
            tx.rollback().await?;
        }
        Ok(ImportReport {
            rows: run.rows,
            written,
        })
    }
}

async fn user_name(conn: &mut Conn, id: i64) -> Result<Name> {
    let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    name.parse()
        .map_err(|e: bootloader_core::model::NameError| StoreError::invalid("user", e.to_string()))
}

/// A past deployment written ended (no engine claims it), with its
/// older token (hashed for lookup, sealed for the older API's `token`),
/// its times and its log.
async fn insert_history(
    conn: &mut Conn,
    cipher: &crate::SecretCipher,
    server: i64,
    profile: i64,
    d: &OlderDeployment,
) -> Result<i64> {
    if !d.state.is_final() {
        return Err(StoreError::invalid(
            "state",
            "history is written ended (complete, error or cancelled)",
        ));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deployments (server_id, profile_id, state, token_hash, token_sealed, step, \
         action_index, actions_done, error, created_at, updated_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, 0, $9, $6, $7, $8, $8) RETURNING id",
    )
    .bind(server)
    .bind(profile)
    .bind(d.state.as_str())
    .bind(&d.token.hash().0)
    .bind(cipher.seal(d.token.expose())?)
    .bind(&d.error)
    .bind(d.created)
    .bind(d.modified)
    .bind(i64::from(d.actions_done))
    .fetch_one(&mut *conn)
    .await?;
    for line in &d.log {
        sqlx::query(
            "INSERT INTO deployment_log (deployment_id, at, level, message) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(line.at)
        .bind(line.level.as_str())
        .bind(&line.message)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}
