//! A clean import of many servers in a few statements. Line by line
//! (`create_one_server` under a savepoint each), a server was about ten
//! statements: its location, name and MAC checks, its row, its interfaces,
//! its read-back and its event, each a round trip to the database. Here
//! the whole import is checked in one batch of reads, written and read
//! back in one, and its events go with the commit: three trips on SQLite,
//! about fifteen statements on PostgreSQL, whatever the number of lines.
//!
//! Only a clean import takes this way. Anything a line-by-line import
//! would refuse (a missing location, label or credential, a name, MAC or
//! address taken, twice in the import or in the store, an address outside
//! the location's networks or inside a pool, a secret key replaced) makes
//! it give up before writing, and `import_servers` writes the lines one by
//! one, which names every bad line.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::helpers::{
    DetailRow, NetworkBounds, check_key_row, details_sql, event, network_for, now,
    push_current_key, push_events, push_json_rows, servers_with,
};
use super::{Backend, HEX_BYTES, Statements};
use crate::sql::SERVER_SELECT;
use crate::sql::rows::ServerRow;
use crate::{Lane, Result, SecretCipher, Server, ServerSpec};

/// Reads a batch's rows as `T`.
fn rows_as<T>(
    done: Option<crate::batch::Done<<super::Db as sqlx::Database>::Row>>,
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, <super::Db as sqlx::Database>::Row>,
{
    done.map(|d| d.rows)
        .unwrap_or_default()
        .iter()
        .map(|row| T::from_row(row).map_err(Into::into))
        .collect()
}

/// A batch's `(id, name)` rows as ids by name.
fn by_name(
    done: Option<crate::batch::Done<<super::Db as sqlx::Database>::Row>>,
) -> Result<HashMap<String, i64>> {
    Ok(rows_as::<(i64, String)>(done)?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect())
}

/// Each of `values` as a one-value row of `push_json_rows`.
fn single(values: impl IntoIterator<Item = String>) -> Vec<Value> {
    values.into_iter().map(|v| json!([v])).collect()
}

/// `statements`' next one: `head`, the rows of `values`' names, `tail`.
fn push_named(statements: &mut Statements, head: &str, values: Vec<Value>, tail: &str) {
    let q = statements.next(head);
    push_json_rows(q, values);
    q.push(tail);
}

impl Backend {
    /// `import_servers`' first way: every server of `specs` written at
    /// once, in their order, with a `server.created` event each. `None`
    /// when a line would be refused (nothing written then).
    pub(super) async fn import_at_once(&self, specs: &[ServerSpec]) -> Result<Option<Vec<Server>>> {
        if specs.is_empty() || !distinct(specs) {
            return Ok(None);
        }
        let names = |of: &dyn Fn(&ServerSpec) -> Vec<String>| {
            let set: HashSet<String> = specs.iter().flat_map(of).collect();
            single(set)
        };
        let locations = names(&|s| vec![s.location.to_string()]);
        let labels = names(&|s| s.labels.iter().map(ToString::to_string).collect());
        let credentials = names(&|s| s.bmc.credential.iter().map(ToString::to_string).collect());
        let fqdns = single(specs.iter().map(|s| s.fqdn.to_string()));
        let interfaces = || specs.iter().flat_map(|s| s.interfaces.iter().flatten());
        let macs = single(interfaces().map(|i| i.mac.to_string()));
        let addresses = single(
            interfaces()
                .filter_map(|i| i.ipv4)
                .map(|ip| ip.to_string())
                .collect::<HashSet<_>>(),
        );
        let sealing = specs.iter().any(|s| {
            s.bmc
                .password
                .as_ref()
                .is_some_and(|p| !p.expose().is_empty())
        });

        let mut batch = self.begin_batch(Lane::Ordinary).await?;
        let mut statements = batch.statements();
        let in_rows = "SELECT value ->> 0 FROM ";
        push_named(
            &mut statements,
            &format!("SELECT id, name FROM locations WHERE name IN ({in_rows}"),
            locations.clone(),
            ")",
        );
        push_named(
            &mut statements,
            &format!("SELECT id, name FROM labels WHERE name IN ({in_rows}"),
            labels,
            ")",
        );
        push_named(
            &mut statements,
            &format!("SELECT id, name FROM credentials WHERE name IN ({in_rows}"),
            credentials,
            ")",
        );
        push_named(
            &mut statements,
            &format!("SELECT fqdn FROM servers WHERE fqdn IN ({in_rows}"),
            fqdns.clone(),
            ")",
        );
        push_named(
            &mut statements,
            &format!("SELECT mac FROM interfaces WHERE mac IN ({in_rows}"),
            macs,
            ")",
        );
        let networks = format!(
            "SELECT id FROM networks WHERE location_id IN \
             (SELECT id FROM locations WHERE name IN ({in_rows}"
        );
        push_named(
            &mut statements,
            &format!(
                "SELECT location_id, id, cidr, gateway, pool_start, pool_end FROM networks \
                 WHERE id IN ({networks}"
            ),
            locations.clone(),
            "))) ORDER BY id",
        );
        let q = statements.next(&format!(
            "SELECT network_id, ipv4 FROM interfaces WHERE network_id IN ({networks}"
        ));
        push_json_rows(q, locations);
        q.push("))) AND ipv4 IN (").push(in_rows);
        push_json_rows(q, addresses);
        q.push(")");
        if sealing {
            push_current_key(&mut statements);
        }
        let mut done = batch.run(statements).await?.into_iter();
        let locations = by_name(done.next())?;
        let labels = by_name(done.next())?;
        let credentials = by_name(done.next())?;
        let taken_names = rows_as::<(String,)>(done.next())?;
        let taken_macs = rows_as::<(String,)>(done.next())?;
        // Each location's networks, in id order, as `place_address` reads them.
        let mut nets: HashMap<i64, Vec<NetworkBounds>> = HashMap::new();
        for (location, id, cidr, gateway, start, end) in rows_as::<NetworkRow>(done.next())? {
            nets.entry(location)
                .or_default()
                .push((id, cidr, gateway, start, end));
        }
        let held: HashSet<(i64, String)> = rows_as::<(Option<i64>, Option<String>)>(done.next())?
            .into_iter()
            .filter_map(|(net, ip)| Some((net?, ip?)))
            .collect();
        let key = done.next().and_then(|d| d.rows.into_iter().next());
        if !taken_names.is_empty()
            || !taken_macs.is_empty()
            || (sealing && check_key_row(key, &self.cipher).is_err())
        {
            batch.rollback().await?;
            return Ok(None);
        }

        let placed = Placed {
            locations: &locations,
            nets: &nets,
            held: &held,
        };
        let Some(rows) = placed.rows(specs, &labels, &credentials, &self.cipher)? else {
            batch.rollback().await?;
            return Ok(None);
        };
        let at = now();
        let mut statements = batch.statements();
        let q = statements.next(
            "INSERT INTO servers (fqdn, location_id, serial, notes, bmc_host, bmc_port, \
             bmc_username, bmc_password_encrypted, bmc_credential_id, bmc_driver, created_at, \
             updated_at) SELECT value ->> 0, CAST(value ->> 1 AS BIGINT), value ->> 2, \
             value ->> 3, value ->> 4, CAST(value ->> 5 AS INTEGER), value ->> 6, ",
        );
        q.push(HEX_BYTES.0)
            .push("value ->> 7")
            .push(HEX_BYTES.1)
            .push(", CAST(value ->> 8 AS BIGINT), value ->> 9, ")
            .push_bind(at)
            .push(", ")
            .push_bind(at)
            .push(" FROM ");
        push_json_rows(q, rows.servers);
        q.push(" ORDER BY key");
        if !rows.labels.is_empty() {
            let q = statements.next(
                "INSERT INTO server_labels (server_id, label_id) \
                 SELECT s.id, CAST(value ->> 1 AS BIGINT) FROM ",
            );
            push_json_rows(q, rows.labels);
            q.push(" JOIN servers s ON s.fqdn = value ->> 0");
        }
        if !rows.interfaces.is_empty() {
            let q = statements.next(
                "INSERT INTO interfaces (server_id, name, mac, ipv4, network_id, created_at, \
                 updated_at) SELECT s.id, value ->> 1, value ->> 2, value ->> 3, \
                 CAST(value ->> 4 AS BIGINT), ",
            );
            q.push_bind(at).push(", ").push_bind(at).push(" FROM ");
            push_json_rows(q, rows.interfaces);
            q.push(" JOIN servers s ON s.fqdn = value ->> 0 ORDER BY key");
        }
        let which = format!("fqdn IN ({in_rows}");
        push_named(
            &mut statements,
            &format!("{SERVER_SELECT} WHERE s.{which}"),
            fqdns.clone(),
            ") ORDER BY s.id",
        );
        let details = details_sql(&format!("IN (SELECT id FROM servers WHERE {which}\u{1}))"));
        let mut parts = details.split('\u{1}');
        let q = statements.next(parts.next().unwrap_or_default());
        push_json_rows(q, fqdns.clone());
        q.push(parts.next().unwrap_or_default());
        push_json_rows(q, fqdns);
        q.push(parts.next().unwrap_or_default());
        let mut done = match batch.run(statements).await {
            Ok(done) => done,
            Err(e) => {
                tracing::debug!(error = %e, "import: written line by line after");
                batch.rollback().await?;
                return Ok(None);
            }
        };
        let details: Vec<DetailRow> = rows_as(done.pop())?;
        let servers: Vec<ServerRow> = rows_as(done.pop())?;
        let mut servers: HashMap<String, Server> = servers_with(servers, details)?
            .into_iter()
            .map(|s| (s.fqdn.to_string(), s))
            .collect();
        let servers: Vec<Server> = specs
            .iter()
            .filter_map(|s| servers.remove(s.fqdn.as_str()))
            .collect();
        if servers.len() != specs.len() {
            batch.rollback().await?;
            return Err(crate::StoreError::Corrupt(
                "an imported server was not read back".into(),
            ));
        }
        let events: Vec<(&str, Value)> = servers
            .iter()
            .map(|s| ("server.created", event(s)))
            .collect();
        let mut statements = batch.statements();
        push_events(&mut statements, &events);
        batch.commit(statements).await?;
        self.boot_index.changed_all();
        Ok(Some(servers))
    }
}

/// A network's location, then its `NetworkBounds`.
type NetworkRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// No two servers of `specs` share a name, and no two interfaces a MAC.
fn distinct(specs: &[ServerSpec]) -> bool {
    let mut names = HashSet::new();
    let mut macs = HashSet::new();
    specs.iter().all(|s| {
        names.insert(s.fqdn.as_str())
            && s.interfaces
                .iter()
                .flatten()
                .all(|i| macs.insert(i.mac.to_string()))
    })
}

/// What the checks read: the locations by name, their networks (id,
/// location, cidr, gateway, pool) and the addresses held in them.
struct Placed<'a> {
    locations: &'a HashMap<String, i64>,
    nets: &'a HashMap<i64, Vec<NetworkBounds>>,
    held: &'a HashSet<(i64, String)>,
}

/// The rows the import writes, for `push_json_rows`.
struct Rows {
    servers: Vec<Value>,
    labels: Vec<Value>,
    interfaces: Vec<Value>,
}

impl Placed<'_> {
    /// The rows of `specs`; `None` if a line would be refused.
    fn rows(
        &self,
        specs: &[ServerSpec],
        labels: &HashMap<String, i64>,
        credentials: &HashMap<String, i64>,
        cipher: &SecretCipher,
    ) -> Result<Option<Rows>> {
        let mut rows = Rows {
            servers: Vec::with_capacity(specs.len()),
            labels: Vec::new(),
            interfaces: Vec::with_capacity(specs.len()),
        };
        let mut placed: HashSet<(i64, Ipv4Addr)> = HashSet::new();
        for spec in specs {
            let Some(&location) = self.locations.get(spec.location.as_str()) else {
                return Ok(None);
            };
            let credential = match &spec.bmc.credential {
                Some(name) => match credentials.get(name.as_str()) {
                    Some(&id) => Some(id),
                    None => return Ok(None),
                },
                None => None,
            };
            let sealed = match spec.bmc.password.as_ref().map(|p| p.expose()) {
                Some(p) if !p.is_empty() => Some(hex::encode(cipher.seal(p)?)),
                _ => None,
            };
            let fqdn = spec.fqdn.as_str();
            rows.servers.push(json!([
                fqdn,
                location,
                spec.serial,
                spec.notes,
                spec.bmc.host,
                spec.bmc.port,
                spec.bmc.username,
                sealed,
                credential,
                spec.bmc.driver,
            ]));
            for label in &spec.labels {
                let Some(&id) = labels.get(label.as_str()) else {
                    return Ok(None);
                };
                rows.labels.push(json!([fqdn, id]));
            }
            let mut names = HashSet::new();
            for iface in spec.interfaces.iter().flatten() {
                if !names.insert(iface.name.as_str()) {
                    return Ok(None);
                }
                let network = match iface.ipv4 {
                    Some(ip) => match self.network(location, ip) {
                        Some(id) if placed.insert((id, ip)) => Some(id),
                        _ => return Ok(None),
                    },
                    None => None,
                };
                rows.interfaces.push(json!([
                    fqdn,
                    iface.name,
                    iface.mac.to_string(),
                    iface.ipv4.map(|ip| ip.to_string()),
                    network,
                ]));
            }
        }
        Ok(Some(rows))
    }

    /// The network of `location` where a host may have `ip` and no
    /// interface has it yet, as `place_address` would find it.
    fn network(&self, location: i64, ip: Ipv4Addr) -> Option<i64> {
        let nets = self.nets.get(&location)?;
        let id = network_for(nets, ip, "").ok()?;
        (!self.held.contains(&(id, ip.to_string()))).then_some(id)
    }
}
