//! The SQL of `BootStore`, written once and expanded for each backend by
//! `boot_sql_store!`, like `sql.rs` does for the inventory.

/// Row types of the boot tables.
pub(super) mod rows {
    use time::OffsetDateTime;

    #[derive(sqlx::FromRow)]
    pub struct BootTargetRow {
        pub server_id: i64,
        pub fqdn: String,
        pub name: String,
        pub mac: String,
        pub ipv4: Option<String>,
        pub network_id: Option<i64>,
        pub deployment_id: Option<i64>,
        pub pxelinux: bool,
    }

    #[derive(sqlx::FromRow)]
    pub struct DeploymentRow {
        pub id: i64,
        pub fqdn: String,
        pub profile_id: i64,
        pub profile_name: String,
        pub profile_version: String,
        pub action_count: i64,
        pub state: String,
        pub step: Option<String>,
        pub action_index: i64,
        pub actions_done: i64,
        pub error: Option<String>,
        pub repeat_of: Option<i64>,
        pub created_at: OffsetDateTime,
        pub updated_at: OffsetDateTime,
        pub finished_at: Option<OffsetDateTime>,
        pub runner: Option<String>,
    }

    #[derive(sqlx::FromRow)]
    pub struct LeaseRow {
        pub network_id: i64,
        pub ip: String,
        pub mac: String,
        pub state: String,
        pub expires_at: i64,
        pub hostname: String,
        pub updated_at: i64,
    }

    #[derive(sqlx::FromRow)]
    pub struct BootEventRow {
        pub id: i64,
        pub at: OffsetDateTime,
        pub mac: Option<String>,
        pub peer: String,
        pub phase: String,
        pub request: String,
        pub outcome: String,
        pub detail: String,
    }

    #[derive(sqlx::FromRow)]
    pub struct CallbackRow {
        pub name: String,
        pub method: String,
        pub body: String,
        pub received_at: OffsetDateTime,
    }

    #[derive(sqlx::FromRow)]
    pub struct UnknownMacRow {
        pub mac: String,
        pub events: i64,
        pub first_seen: OffsetDateTime,
        pub last_seen: OffsetDateTime,
    }
}

pub(super) mod convert {
    use super::rows::*;
    use crate::boot::*;
    use crate::sql::stored;
    use crate::{Result, StoreError};
    use bootloader_core::model::{DeploymentState, Outcome, Phase};

    pub fn boot_target(r: BootTargetRow) -> Result<BootTarget> {
        let reservation = match (r.network_id, r.ipv4) {
            (Some(n), Some(ip)) => Some((n, stored(&ip, "interface address")?)),
            _ => None,
        };
        let deployment = r.deployment_id;
        Ok(BootTarget {
            server_id: r.server_id,
            fqdn: stored(&r.fqdn, "fqdn")?,
            interface: r.name,
            mac: stored(&r.mac, "mac")?,
            reservation,
            pxelinux: r.pxelinux,
            deployment,
        })
    }

    pub fn deployment(r: DeploymentRow) -> Result<DeploymentRecord> {
        let state: DeploymentState = stored(&r.state, "deployment state")?;
        let progress = if state == DeploymentState::Complete {
            100
        } else if r.action_count > 0 {
            ((r.actions_done.max(0) * 100) / r.action_count).min(99) as u8
        } else {
            0
        };
        Ok(DeploymentRecord {
            id: r.id,
            server: stored(&r.fqdn, "fqdn")?,
            profile_id: r.profile_id,
            profile: format!("{}=={}", r.profile_name, r.profile_version),
            state,
            progress,
            step: r.step,
            action_index: r.action_index.max(0) as u32,
            error: r.error,
            repeat_of: r.repeat_of,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
            runner: r.runner,
        })
    }

    pub fn lease(r: LeaseRow) -> Result<Lease> {
        Ok(Lease {
            network_id: r.network_id,
            ip: stored(&r.ip, "lease address")?,
            mac: stored(&r.mac, "lease mac")?,
            state: r.state.parse().map_err(StoreError::Corrupt)?,
            expires_at: r.expires_at,
            hostname: r.hostname,
            updated_at: r.updated_at,
        })
    }

    pub fn boot_event(r: BootEventRow) -> Result<(i64, BootEvent)> {
        let phase = match r.phase.as_str() {
            "dhcp" => Phase::Dhcp,
            "tftp" => Phase::Tftp,
            "http" => Phase::Http,
            "power" => Phase::Power,
            other => return Err(StoreError::Corrupt(format!("boot event phase {other:?}"))),
        };
        let outcome = match r.outcome.as_str() {
            "answered" => Outcome::Answered,
            "silent" => Outcome::Silent,
            "refused" => Outcome::Refused,
            "failed" => Outcome::Failed,
            "done" => Outcome::Done,
            other => return Err(StoreError::Corrupt(format!("boot event outcome {other:?}"))),
        };
        let mac = match r.mac {
            Some(m) => Some(stored(&m, "boot event mac")?),
            None => None,
        };
        Ok((
            r.id,
            BootEvent {
                at: r.at,
                mac,
                peer: r.peer,
                phase,
                request: r.request,
                outcome,
                detail: r.detail,
            },
        ))
    }
}

/// A deployment as `DeploymentRow` reads it; append a WHERE clause.
pub(super) const DEPLOYMENT_SELECT: &str = "SELECT d.id, s.fqdn, d.profile_id, p.name AS profile_name, \
     p.version AS profile_version, CAST(p.action_count AS BIGINT) AS action_count, d.state, d.step, \
     CAST(d.action_index AS BIGINT) AS action_index, CAST(d.actions_done AS BIGINT) AS actions_done, \
     d.error, d.repeat_of, d.created_at, d.updated_at, d.finished_at, d.runner \
     FROM deployments d JOIN servers s ON s.id = d.server_id JOIN profiles p ON p.id = d.profile_id";

/// The columns of `DEPLOYMENT_SELECT`, as the `RETURNING` clause of a
/// statement that writes one deployment: the written row comes back
/// without reading it again (one round trip to the database fewer).
pub(super) const DEPLOYMENT_RETURNING: &str = " RETURNING id, \
     (SELECT fqdn FROM servers WHERE servers.id = deployments.server_id) AS fqdn, profile_id, \
     (SELECT name FROM profiles WHERE profiles.id = deployments.profile_id) AS profile_name, \
     (SELECT version FROM profiles WHERE profiles.id = deployments.profile_id) AS profile_version, \
     (SELECT CAST(action_count AS BIGINT) FROM profiles WHERE profiles.id = deployments.profile_id) AS action_count, \
     state, step, CAST(action_index AS BIGINT) AS action_index, \
     CAST(actions_done AS BIGINT) AS actions_done, error, repeat_of, created_at, updated_at, \
     finished_at, runner";

/// The states a deployment ends in, as an SQL list: a deployment is active
/// when its `state NOT IN` them. Written so, the condition is the very one
/// of the partial index `deployments_one_active`, which SQLite's planner
/// uses only for a query naming its condition as written: with the active
/// states listed instead, reading the boot index read every deployment for
/// each interface (13 s for 10,000 servers), and each boot target missing
/// from the index every deployment.
pub(super) const FINAL_STATES: &str = "('complete', 'error', 'cancelled')";

#[cfg(test)]
mod tests {
    use bootloader_core::model::DeploymentState;

    #[test]
    fn final_states_are_the_states_a_deployment_ends_in() {
        let listed: Vec<&str> = super::FINAL_STATES
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|s| s.trim_matches('\''))
            .collect();
        let finals: Vec<&str> = DeploymentState::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(listed, finals);
    }
}
