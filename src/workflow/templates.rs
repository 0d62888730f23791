//! What a deployment's templates are rendered with: the server read from
//! the store, each interface's address (its reservation, else the server's
//! name resolved by DNS, `resolve.rs`) and network, and the context
//! `context.rs` builds from them, one per interface.

use std::sync::Arc;

use serde_json::Value;

use super::context::{self, ContextInput};
use super::executor::Failure;
use super::resolve::Resolver;
use bootloader_core::profile::Profile;
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::{InventoryStore, Network, Page, Server, StoreError};

/// The deployment whose templates are rendered.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub deployment: &'a DeploymentRecord,
    pub profile: &'a Profile,
    /// The callback token, opened.
    pub token: &'a str,
}

pub struct Templates {
    inventory: Arc<dyn InventoryStore>,
    /// BOOTLOADER_URL: what templates call `agent_url`.
    public_url: String,
    names: Resolver,
}

/// The server with its interfaces' addresses, and their networks.
pub struct Facts {
    pub server: Server,
    pub networks: Vec<Network>,
}

impl Templates {
    pub fn new(inventory: Arc<dyn InventoryStore>, public_url: String) -> Self {
        Self {
            inventory,
            public_url,
            names: Resolver::default(),
        }
    }

    /// The server of `deployment`, with each interface's address: its
    /// reservation, else (DNS as a fallback) the server's name resolved to
    /// an IPv4 address; and the networks of those addresses. A store that
    /// fails fails the facts: a template is never rendered without them.
    pub async fn facts(&self, deployment: &DeploymentRecord) -> Result<Facts, StoreError> {
        let mut server = self.inventory.server(&deployment.server).await?;
        if server.interfaces.iter().any(|i| i.ipv4.is_none())
            && let Some(addr) = self.names.v4(server.fqdn.as_str()).await
        {
            let page = Page {
                limit: 1000,
                offset: 0,
            };
            let networks = self
                .inventory
                .list_networks(Some(&server.location), page)
                .await?
                .items;
            let network = networks
                .iter()
                .find(|n| n.cidr.contains(&addr))
                .map(|n| n.id);
            for i in server.interfaces.iter_mut().filter(|i| i.ipv4.is_none()) {
                i.ipv4 = Some(addr);
                if i.network_id.is_none() {
                    i.network_id = network;
                }
            }
        }
        let mut networks = Vec::new();
        for i in &server.interfaces {
            if let Some(n) = i.network_id
                && !networks.iter().any(|x: &Network| x.id == n)
            {
                match self.inventory.network(n).await {
                    Ok(net) => networks.push(net),
                    // Deleted since the interface was read.
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Facts { server, networks })
    }

    /// The context of interface number `interface` (none when the server
    /// has no interfaces).
    pub fn context(&self, subject: Subject<'_>, facts: &Facts, interface: usize) -> Value {
        let iface = facts.server.interfaces.get(interface);
        let net = iface
            .and_then(|i| i.network_id)
            .and_then(|n| facts.networks.iter().find(|x| x.id == n));
        context::for_interface(
            &ContextInput {
                public_url: &self.public_url,
                token: subject.token,
                deployment: subject.deployment,
                profile_name: &subject.profile.name,
                profile_version: &subject.profile.version,
                server: &facts.server,
            },
            iface,
            net,
        )
    }

    /// Each interface's context with `filename` rendered in it: files are
    /// served once per interface of the server (once, with an empty
    /// interface, for a server that has none).
    pub async fn per_interface(
        &self,
        subject: Subject<'_>,
        filename: &str,
    ) -> Result<Vec<(Value, String)>, Failure> {
        let facts = self
            .facts(subject.deployment)
            .await
            .map_err(|e| Failure::of_store("cannot read the server", e))?;
        (0..facts.server.interfaces.len().max(1))
            .map(|i| {
                let ctx = self.context(subject, &facts, i);
                let path = subject
                    .profile
                    .render_inline(filename, &ctx, time::OffsetDateTime::now_utc())
                    .map_err(|e| Failure::Final(format!("filename: {e}")))?;
                Ok((ctx, path))
            })
            .collect()
    }
}
