//! `InventoryStore`: locations, networks, labels, credentials, servers and interfaces, each change written with its outbox event.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use sqlx::Acquire;
use time::OffsetDateTime;

use super::Backend;
use crate::sql::rows::*;
use crate::sql::*;
use crate::types::*;
use crate::{InventoryStore, Result, StoreError};
use bootloader_core::model::{Fqdn, Name, Secret};

use super::helpers::*;

#[async_trait]
impl InventoryStore for Backend {
    async fn create_location(&self, new: NewLocation) -> Result<Location> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let location = insert_location(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(location)
    }

    async fn location(&self, name: &Name) -> Result<Location> {
        let mut conn = self.pool.acquire().await?;
        fetch_location(&mut conn, name).await
    }

    async fn list_locations(&self, page: Page) -> Result<Listing<Location>> {
        let mut conn = self.pool.acquire().await?;
        let total = count(&mut conn, "SELECT COUNT(*) FROM locations").await?;
        let (limit, offset) = limit(page);
        let rows: Vec<LocationRow> = sqlx::query_as(
            "SELECT id, name, description, created_at, updated_at FROM locations ORDER BY name LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::location)
            .collect::<Result<_>>()?;
        Ok(Listing { total, items })
    }

    async fn update_location(&self, name: &Name, patch: LocationPatch) -> Result<Location> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let current = fetch_location(&mut tx, name).await?;
        let new_name = patch.name.unwrap_or(current.name);
        if &new_name != name {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT id FROM locations WHERE name = $1")
                    .bind(new_name.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_some() {
                return Err(StoreError::conflict(
                    "name",
                    format!("location {new_name} already exists"),
                ));
            }
        }
        sqlx::query(
            "UPDATE locations SET name = $1, description = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(new_name.as_str())
        .bind(patch.description.unwrap_or(current.description))
        .bind(now())
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
        let location = fetch_location(&mut tx, &new_name).await?;
        emit(&mut tx, "location.updated", event(&location)).await?;
        tx.commit().await?;
        Ok(location)
    }

    async fn delete_location(&self, name: &Name) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let location = fetch_location(&mut tx, name).await?;
        let servers = count_where(
            &mut tx,
            "SELECT COUNT(*) FROM servers WHERE location_id = $1",
            location.id,
        )
        .await?;
        let networks = count_where(
            &mut tx,
            "SELECT COUNT(*) FROM networks WHERE location_id = $1",
            location.id,
        )
        .await?;
        if servers + networks > 0 {
            return Err(StoreError::InUse(format!(
                "location {name} still has {servers} server(s) and {networks} network(s)"
            )));
        }
        sqlx::query("DELETE FROM locations WHERE id = $1")
            .bind(location.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "location.deleted", event(&location)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(())
    }

    async fn create_network(&self, spec: NetworkSpec) -> Result<Network> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let network = insert_network(&mut tx, &spec).await?;
        tx.commit().await?;
        Ok(network)
    }

    async fn network(&self, id: i64) -> Result<Network> {
        let mut conn = self.pool.acquire().await?;
        fetch_network(&mut conn, id).await
    }

    async fn list_networks(&self, location: Option<&Name>, page: Page) -> Result<Listing<Network>> {
        let mut conn = self.pool.acquire().await?;
        let loc = location.map(|l| l.as_str().to_string());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM networks n JOIN locations l ON l.id = n.location_id \
             WHERE ($1 IS NULL OR l.name = $1)",
        )
        .bind(&loc)
        .fetch_one(&mut *conn)
        .await?;
        let (limit, offset) = limit(page);
        let rows: Vec<NetworkRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{NETWORK_SELECT} WHERE ($1 IS NULL OR l.name = $1) ORDER BY n.id LIMIT $2 OFFSET $3"
        )))
        .bind(&loc)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::network)
            .collect::<Result<_>>()?;
        Ok(Listing {
            total: total.max(0) as u64,
            items,
        })
    }

    async fn update_network(
        &self,
        id: i64,
        spec: NetworkSpec,
        read_at: OffsetDateTime,
    ) -> Result<Network> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let before = fetch_network(&mut tx, id).await?;
        // Lock the row (PostgreSQL) so that the check holds until commit.
        let locked: OffsetDateTime =
            sqlx::query_scalar(locked!("SELECT updated_at FROM networks WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if locked != read_at || before.updated_at != read_at {
            return Err(StoreError::Stale {
                what: "network",
                key: id.to_string(),
            });
        }
        let location = check_network(&mut tx, &spec, Some(id)).await?;
        // Fixed addresses already placed in this network must stay inside it.
        let placed: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.ipv4, s.fqdn FROM interfaces i JOIN servers s ON s.id = i.server_id \
             WHERE i.network_id = $1 AND i.ipv4 IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for (ip, fqdn) in placed {
            let ip: Ipv4Addr = stored(&ip, "ipv4")?;
            if !spec.cidr.contains(&ip) || before.location != spec.location {
                return Err(StoreError::conflict(
                    "cidr",
                    format!("{fqdn} has the fixed address {ip} in this network; move it first"),
                ));
            }
            if let Some(pool) = spec.pool
                && pool.start <= ip
                && ip <= pool.end
            {
                return Err(StoreError::conflict(
                    "pool",
                    format!("the pool would cover {fqdn}'s fixed address {ip}"),
                ));
            }
        }
        sqlx::query(
            "UPDATE networks SET location_id = $1, cidr = $2, gateway = $3, nameservers = $4, domain = $5, \
             pool_start = $6, pool_end = $7, description = $8, updated_at = $9, dhcp_options = $11 \
             WHERE id = $10",
        )
        .bind(location)
        .bind(spec.cidr.to_string())
        .bind(spec.gateway.map(|g| g.to_string()))
        .bind(join_addrs(&spec.nameservers))
        .bind(&spec.domain)
        .bind(spec.pool.map(|p| p.start.to_string()))
        .bind(spec.pool.map(|p| p.end.to_string()))
        .bind(&spec.description)
        .bind(now())
        .bind(id)
        .bind(options_text(&spec.dhcp_options))
        .execute(&mut *tx)
        .await?;
        let network = fetch_network(&mut tx, id).await?;
        emit(&mut tx, "network.updated", event(&network)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(network)
    }

    async fn delete_network(&self, id: i64) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let network = fetch_network(&mut tx, id).await?;
        let used = count_where(
            &mut tx,
            "SELECT COUNT(*) FROM interfaces WHERE network_id = $1",
            id,
        )
        .await?;
        if used > 0 {
            return Err(StoreError::InUse(format!(
                "network {id} ({}) still holds {used} interface address(es)",
                network.cidr
            )));
        }
        sqlx::query("DELETE FROM networks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "network.deleted", event(&network)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(())
    }

    async fn create_label(&self, name: &Name, description: &str) -> Result<Label> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let label = insert_label(&mut tx, name, description).await?;
        tx.commit().await?;
        Ok(label)
    }

    async fn label(&self, name: &Name) -> Result<Label> {
        let mut conn = self.pool.acquire().await?;
        fetch_label(&mut conn, name).await
    }

    async fn list_labels(&self, page: Page) -> Result<Listing<Label>> {
        let mut conn = self.pool.acquire().await?;
        let total = count(&mut conn, "SELECT COUNT(*) FROM labels").await?;
        let (limit, offset) = limit(page);
        let rows: Vec<LabelRow> = sqlx::query_as(
            "SELECT id, name, description FROM labels ORDER BY name LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::label)
            .collect::<Result<_>>()?;
        Ok(Listing { total, items })
    }

    async fn update_label(&self, name: &Name, new_name: &Name, description: &str) -> Result<Label> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let current = fetch_label(&mut tx, name).await?;
        if new_name != name && fetch_label(&mut tx, new_name).await.is_ok() {
            return Err(StoreError::conflict(
                "name",
                format!("label {new_name} already exists"),
            ));
        }
        sqlx::query("UPDATE labels SET name = $1, description = $2 WHERE id = $3")
            .bind(new_name.as_str())
            .bind(description)
            .bind(current.id)
            .execute(&mut *tx)
            .await?;
        let label = fetch_label(&mut tx, new_name).await?;
        emit(&mut tx, "label.updated", event(&label)).await?;
        tx.commit().await?;
        Ok(label)
    }

    async fn delete_label(&self, name: &Name) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let label = fetch_label(&mut tx, name).await?;
        let used = count_where(
            &mut tx,
            "SELECT COUNT(*) FROM server_labels WHERE label_id = $1",
            label.id,
        )
        .await?;
        if used > 0 {
            return Err(StoreError::InUse(format!(
                "label {name} is still on {used} server(s)"
            )));
        }
        sqlx::query("DELETE FROM labels WHERE id = $1")
            .bind(label.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "label.deleted", event(&label)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_credential(&self, spec: CredentialSpec) -> Result<Credential> {
        let Some(password) = spec.password.as_ref().map(Secret::expose) else {
            return Err(StoreError::invalid("password", "is required"));
        };
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        if fetch_credential(&mut tx, &spec.name).await.is_ok() {
            return Err(StoreError::conflict(
                "name",
                format!("credential {} already exists", spec.name),
            ));
        }
        check_current_key(&mut tx, &self.cipher).await?;
        let ts = now();
        sqlx::query(
            "INSERT INTO credentials (name, username, password_encrypted, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(spec.name.as_str())
        .bind(&spec.username)
        .bind(self.cipher.seal(password)?)
        .bind(&spec.description)
        .bind(ts)
        .execute(&mut *tx)
        .await?;
        let credential = fetch_credential(&mut tx, &spec.name).await?;
        emit(&mut tx, "credential.created", event(&credential)).await?;
        tx.commit().await?;
        Ok(credential)
    }

    async fn credential(&self, name: &Name) -> Result<Credential> {
        let mut conn = self.pool.acquire().await?;
        fetch_credential(&mut conn, name).await
    }

    async fn list_credentials(&self, page: Page) -> Result<Listing<Credential>> {
        let mut conn = self.pool.acquire().await?;
        let total = count(&mut conn, "SELECT COUNT(*) FROM credentials").await?;
        let (limit, offset) = limit(page);
        let rows: Vec<CredentialRow> = sqlx::query_as(
            "SELECT id, name, username, description, created_at, updated_at FROM credentials \
             ORDER BY name LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::credential)
            .collect::<Result<_>>()?;
        Ok(Listing { total, items })
    }

    async fn update_credential(
        &self,
        name: &Name,
        spec: CredentialSpec,
        read_at: OffsetDateTime,
    ) -> Result<Credential> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let current = fetch_credential(&mut tx, name).await?;
        // Lock the row (PostgreSQL) so that the check holds until commit.
        let locked: OffsetDateTime = sqlx::query_scalar(locked!(
            "SELECT updated_at FROM credentials WHERE name = $1"
        ))
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if locked != read_at || current.updated_at != read_at {
            return Err(StoreError::Stale {
                what: "credential",
                key: name.to_string(),
            });
        }
        if &spec.name != name && fetch_credential(&mut tx, &spec.name).await.is_ok() {
            return Err(StoreError::conflict(
                "name",
                format!("credential {} already exists", spec.name),
            ));
        }
        sqlx::query("UPDATE credentials SET name = $1, username = $2, description = $3, updated_at = $4 WHERE id = $5")
            .bind(spec.name.as_str())
            .bind(&spec.username)
            .bind(&spec.description)
            .bind(now())
            .bind(current.id)
            .execute(&mut *tx)
            .await?;
        if let Some(password) = spec.password.as_ref().map(Secret::expose) {
            check_current_key(&mut tx, &self.cipher).await?;
            sqlx::query("UPDATE credentials SET password_encrypted = $1 WHERE id = $2")
                .bind(self.cipher.seal(password)?)
                .bind(current.id)
                .execute(&mut *tx)
                .await?;
        }
        let credential = fetch_credential(&mut tx, &spec.name).await?;
        emit(&mut tx, "credential.updated", event(&credential)).await?;
        tx.commit().await?;
        Ok(credential)
    }

    async fn delete_credential(&self, name: &Name) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let credential = fetch_credential(&mut tx, name).await?;
        let used = count_where(
            &mut tx,
            "SELECT COUNT(*) FROM servers WHERE bmc_credential_id = $1",
            credential.id,
        )
        .await?;
        if used > 0 {
            return Err(StoreError::InUse(format!(
                "credential {name} is used by {used} server(s)"
            )));
        }
        sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(credential.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "credential.deleted", event(&credential)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_server(&self, spec: ServerSpec) -> Result<Server> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let server = create_one_server(&mut tx, &self.cipher, &spec).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(server)
    }

    async fn import_servers(
        &self,
        specs: Vec<ServerSpec>,
    ) -> Result<Vec<Server>, Vec<(usize, StoreError)>> {
        // Most imports are clean: checked and written at once
        // (`import.rs`). Anything that import would refuse, or a failed
        // write, and the lines are written again one by one, each under
        // its own savepoint, so that every bad line is named.
        match self.import_at_once(&specs).await {
            Ok(Some(created)) => return Ok(created),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "import: written line by line after"),
        }
        self.import_line_by_line(specs).await
    }

    async fn server(&self, fqdn: &Fqdn) -> Result<Server> {
        let mut conn = self.pool.acquire().await?;
        fetch_server(&mut conn, fqdn).await
    }

    async fn list_servers(&self, filter: &ServerFilter, page: Page) -> Result<Listing<Server>> {
        let mut conn = self.pool.acquire().await?;
        let loc = filter.location.as_ref().map(|l| l.as_str().to_string());
        let label = filter.label.as_ref().map(|l| l.as_str().to_string());
        let state = filter.deployment_state.map(|s| s.as_str().to_string());
        // FQDNs and MACs are stored lower-case, so a lower-cased term
        // matches them without `lower()` on the column (which would keep
        // PostgreSQL from using anything but a scan); serials keep their
        // case. LIKE's wildcards in the term are matched as themselves.
        let term = filter.search.as_ref().map(|t| t.trim().to_lowercase());
        let like = |t: &str| {
            let escaped = t
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        };
        let search = term.as_deref().map(like);
        // A whole MAC (any of its spellings) is looked up by the unique
        // index on interfaces; part of one is matched with either
        // separator.
        let (mac_match, mac_term) = match term.as_deref() {
            Some(t) => match t.parse::<bootloader_core::model::MacAddr>() {
                Ok(mac) => ("i.mac = $5", Some(mac.to_string())),
                Err(_) => (
                    "i.mac LIKE $5 ESCAPE '\\'",
                    Some(like(&t.replace('-', ":"))),
                ),
            },
            None => ("$5 IS NULL", None),
        };
        let cond = format!(
            "WHERE ($1 IS NULL OR l.name = $1) AND ($2 IS NULL OR EXISTS \
            (SELECT 1 FROM server_labels sl JOIN labels lb ON lb.id = sl.label_id \
             WHERE sl.server_id = s.id AND lb.name = $2)) \
            AND ($3 IS NULL OR s.fqdn LIKE $3 ESCAPE '\\' OR lower(s.serial) LIKE $3 ESCAPE '\\' \
             OR s.id IN (SELECT i.server_id FROM interfaces i WHERE {mac_match})) \
            AND ($4 IS NULL OR (SELECT d.state FROM deployments d WHERE d.server_id = s.id \
             ORDER BY d.id DESC LIMIT 1) = $4)"
        );
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM servers s JOIN locations l ON l.id = s.location_id {cond}"
        )))
        .bind(&loc)
        .bind(&label)
        .bind(&search)
        .bind(&state)
        .bind(&mac_term)
        .fetch_one(&mut *conn)
        .await?;
        let (limit, offset) = limit(page);
        let rows: Vec<ServerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERVER_SELECT} {cond} ORDER BY s.id LIMIT $6 OFFSET $7"
        )))
        .bind(&loc)
        .bind(&label)
        .bind(&search)
        .bind(&state)
        .bind(&mac_term)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = with_details(&mut conn, rows).await?;
        Ok(Listing {
            total: total.max(0) as u64,
            items,
        })
    }

    async fn update_server(
        &self,
        fqdn: &Fqdn,
        spec: ServerSpec,
        read_at: OffsetDateTime,
    ) -> Result<Server> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let current = fetch_server(&mut tx, fqdn).await?;
        // Lock the row (PostgreSQL) so that the check holds until commit.
        let locked: OffsetDateTime =
            sqlx::query_scalar(locked!("SELECT updated_at FROM servers WHERE fqdn = $1"))
                .bind(fqdn.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if locked != read_at || current.updated_at != read_at {
            return Err(StoreError::Stale {
                what: "server",
                key: fqdn.to_string(),
            });
        }
        put_server(&mut tx, &self.cipher, &spec, Some(current.id)).await?;
        let server = emit_server(&mut tx, "updated", &spec.fqdn).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(server)
    }

    async fn delete_server(&self, fqdn: &Fqdn) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let server = fetch_server(&mut tx, fqdn).await?;
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(server.id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "server.deleted", event(&server)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(())
    }

    async fn bmc_login(&self, fqdn: &Fqdn) -> Result<Option<(String, String)>> {
        super::secrets::bmc_login(self, fqdn).await
    }

    async fn create_interface(&self, server: &Fqdn, spec: InterfaceSpec) -> Result<Interface> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let owner = fetch_server(&mut tx, server).await?;
        if owner.interfaces.iter().any(|i| i.mac == spec.mac) {
            return Err(StoreError::conflict(
                "mac",
                format!("{} is already used by {server}", spec.mac),
            ));
        }
        let location = location_id(&mut tx, &owner.location, "server").await?;
        let id = put_interface(&mut tx, owner.id, location, &spec, None, "interface")
            .await
            .map_err(strip_interface_prefix)?;
        let interface = fetch_interface(&mut tx, id).await?;
        emit(&mut tx, "interface.created", event(&interface)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(interface)
    }

    async fn interface(&self, id: i64) -> Result<Interface> {
        let mut conn = self.pool.acquire().await?;
        fetch_interface(&mut conn, id).await
    }

    async fn list_interfaces(
        &self,
        server: Option<&Fqdn>,
        page: Page,
    ) -> Result<Listing<Interface>> {
        let mut conn = self.pool.acquire().await?;
        let fqdn = server.map(|s| s.as_str().to_string());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM interfaces i JOIN servers s ON s.id = i.server_id WHERE ($1 IS NULL OR s.fqdn = $1)",
        )
        .bind(&fqdn)
        .fetch_one(&mut *conn)
        .await?;
        let (limit, offset) = limit(page);
        let rows: Vec<InterfaceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{INTERFACE_SELECT} WHERE ($1 IS NULL OR s.fqdn = $1) ORDER BY i.id LIMIT $2 OFFSET $3"
        )))
        .bind(&fqdn)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .into_iter()
            .map(convert::interface)
            .collect::<Result<_>>()?;
        Ok(Listing {
            total: total.max(0) as u64,
            items,
        })
    }

    async fn update_interface(
        &self,
        id: i64,
        spec: InterfaceSpec,
        read: &Interface,
    ) -> Result<Interface> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        // Lock the row (PostgreSQL) so that the check holds until commit.
        sqlx::query(locked!("SELECT id FROM interfaces WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let current = fetch_interface(&mut tx, id).await?;
        if current != *read {
            return Err(StoreError::Stale {
                what: "interface",
                key: id.to_string(),
            });
        }
        let owner = fetch_server(&mut tx, &current.server).await?;
        let location = location_id(&mut tx, &owner.location, "server").await?;
        put_interface(&mut tx, owner.id, location, &spec, Some(id), "interface")
            .await
            .map_err(strip_interface_prefix)?;
        let interface = fetch_interface(&mut tx, id).await?;
        emit(&mut tx, "interface.updated", event(&interface)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(interface)
    }

    async fn delete_interface(&self, id: i64) -> Result<()> {
        let mut turn = self.write_turn(crate::Lane::Ordinary).await?;
        let mut tx = turn.begin().await?;
        let interface = fetch_interface(&mut tx, id).await?;
        sqlx::query("DELETE FROM interfaces WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        emit(&mut tx, "interface.deleted", event(&interface)).await?;
        tx.commit().await?;
        self.boot_index.changed_all();
        Ok(())
    }

    async fn key_of(&self, kind: Keyed, id: i64) -> Result<String> {
        super::secrets::key_of(self, kind, id).await
    }

    async fn add_server_secret(
        &self,
        server: &Fqdn,
        name: &str,
        data: &Secret,
    ) -> Result<ServerSecret> {
        super::secrets::add(self, server, name, data).await
    }

    async fn server_secret(&self, id: i64) -> Result<ServerSecret> {
        super::secrets::get(self, id).await
    }

    async fn server_secrets(
        &self,
        server_id: Option<i64>,
        name: Option<&str>,
    ) -> Result<Vec<ServerSecret>> {
        super::secrets::list(self, server_id, name).await
    }

    async fn delete_server_secret(&self, id: i64) -> Result<()> {
        super::secrets::delete(self, id).await
    }
}

impl Backend {
    /// `import_servers` for an import with a bad line: each line under its
    /// own savepoint, so that later lines are still checked against the
    /// earlier ones after an error; nothing is kept unless all are good.
    async fn import_line_by_line(
        &self,
        specs: Vec<ServerSpec>,
    ) -> Result<Vec<Server>, Vec<(usize, StoreError)>> {
        let mut turn = self
            .write_turn(crate::Lane::Ordinary)
            .await
            .map_err(|e| vec![(0, e)])?;
        let mut tx = turn.begin().await.map_err(|e| vec![(0, e)])?;
        let mut errors = Vec::new();
        let mut created = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            // A savepoint per line, so that later lines are still
            // checked against the earlier ones after an error.
            let mut sp = match tx.begin().await {
                Ok(sp) => sp,
                Err(e) => return Err(vec![(i, e.into())]),
            };
            match create_one_server(&mut sp, &self.cipher, spec).await {
                Ok(server) => {
                    sp.commit().await.map_err(|e| vec![(i, e.into())])?;
                    created.push(server);
                }
                Err(e) => {
                    let _ = sp.rollback().await;
                    errors.push((i, e));
                }
            }
        }
        if !errors.is_empty() {
            let _ = tx.rollback().await;
            return Err(errors);
        }
        tx.commit().await.map_err(|e| vec![(0, e.into())])?;
        self.boot_index.changed_all();
        Ok(created)
    }
}
