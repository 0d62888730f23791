//! The daemons sharing the database, each its location's agent: staff
//! read them and forget one that is gone for good (a host retired or
//! reinstalled under a new instance name).

use time::OffsetDateTime;

use bootloader_store::{Agent, AgentState};

use super::{Actor, Error, Ops};

pub async fn list(ops: &Ops, actor: &Actor) -> Result<Vec<Agent>, Error> {
    actor.require_staff("see agents")?;
    Ok(ops.agents.list_agents(OffsetDateTime::now_utc()).await?)
}

pub async fn get(ops: &Ops, actor: &Actor, name: &str) -> Result<Agent, Error> {
    actor.require_staff("see agents")?;
    Ok(ops.agents.agent(name, OffsetDateTime::now_utc()).await?)
}

/// Forgets an agent that no longer reports (gone or stopped); a running
/// one is refused, since it would register again at its next report.
pub async fn delete(ops: &Ops, actor: &Actor, name: &str) -> Result<Agent, Error> {
    actor.require_write()?;
    let now = OffsetDateTime::now_utc();
    let agent = ops.agents.agent(name, now).await?;
    if matches!(agent.state, AgentState::Up | AgentState::Degraded) {
        let ago = (now - agent.last_seen).whole_seconds().max(0);
        return Err(Error::Conflict {
            message: format!(
                "agent {name} is running (it reported {ago} s ago) and would register again; \
                 stop that daemon first"
            ),
            fields: Default::default(),
        });
    }
    Ok(ops.agents.delete_agent(name, now).await?)
}

/// Registers an agent of the older system (`POST agents/` with its queue
/// and URL): kept under its queue name, shown like the daemons, and gone
/// once it stops registering, since an older agent reports only at start.
pub async fn register(ops: &Ops, actor: &Actor, queue: &str, url: &str) -> Result<Agent, Error> {
    actor.require_write()?;
    let mut v = super::Validator::default();
    for (field, value) in [("queue", queue), ("agent_url", url)] {
        if value.trim().is_empty() {
            v.error(field, "This field may not be blank.");
        }
        super::input::check_text(&mut v, field, value, 255);
    }
    v.finish()?;
    let now = OffsetDateTime::now_utc();
    let known = match ops.agents.agent(queue, now).await {
        Ok(a) => Some(a),
        Err(bootloader_store::StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(ops
        .agents
        .report_agent(&bootloader_store::AgentReport {
            name: queue.to_string(),
            location: known.as_ref().and_then(|a| a.location.clone()),
            url: url.to_string(),
            version: known
                .map(|a| a.version)
                .unwrap_or_else(|| "older agent".to_string()),
            started_at: now,
            listeners: Vec::new(),
            services_down: Vec::new(),
            at: now,
        })
        .await?)
}
