//! Servers (by FQDN) and their interfaces: validated whole (`server_spec`
//! names each bad field, `interfaces[1].mac`), merged from a fresh read on
//! update.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;
use utoipa::ToSchema;

use bootloader_core::model::{Fqdn, MacAddr, Name, Secret};
use bootloader_store::{
    BmcSpec, Interface, InterfaceSpec, Listing, Page, Server, ServerFilter, ServerSpec,
};

use super::input::check_text;
use super::{Actor, Error, Ops, Validator, update_fresh};

/// The BMC drivers a server may name.
pub const BMC_DRIVERS: &[&str] = &["native", "ipmitool"];
const DEFAULT_BMC_PORT: u16 = 623;

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BmcInput {
    /// BMC address or host name.
    pub host: Option<String>,
    /// UDP port, default 623.
    pub port: Option<u16>,
    pub username: Option<String>,
    /// Write-only: stored encrypted, never returned. `""` clears it.
    pub password: Option<Secret>,
    /// Name of a shared credential to use instead of username/password.
    pub credential: Option<String>,
    /// `native` (ipmi-rs) or `ipmitool`; empty for the configured default.
    pub driver: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceInput {
    /// e.g. `eth0`; defaults to `eth<index>`.
    pub name: Option<String>,
    pub mac: Option<String>,
    /// A fixed address inside one of the location's networks.
    pub ipv4: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerInput {
    pub fqdn: Option<String>,
    /// Location name.
    pub location: Option<String>,
    pub serial: Option<String>,
    pub notes: Option<String>,
    /// Label names; each must exist.
    pub labels: Option<Vec<String>>,
    pub bmc: Option<BmcInput>,
    /// On update, absent leaves the interfaces as they are; a list replaces
    /// them (matched by MAC).
    pub interfaces: Option<Vec<InterfaceInput>>,
}

fn interface_name(v: &mut Validator, field: &str, name: Option<&str>, index: usize) -> String {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    match name {
        None => format!("eth{index}"),
        Some(n) => {
            let ok = n.len() <= 32
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
            if !ok {
                v.error(field, "1 to 32 letters, digits, '.', '_', '-' or ':'");
            }
            n.to_string()
        }
    }
}

fn interface_spec(
    v: &mut Validator,
    prefix: &str,
    input: &InterfaceInput,
    index: usize,
) -> Option<InterfaceSpec> {
    let name = interface_name(v, &format!("{prefix}name"), input.name.as_deref(), index);
    let mac = match input.mac.as_deref() {
        Some(m) => v
            .parse(format!("{prefix}mac"), m.parse::<MacAddr>())
            .and_then(|mac| match mac.not_assignable() {
                Some(why) => {
                    v.error(format!("{prefix}mac"), format!("{mac} {why}"));
                    None
                }
                None => Some(mac),
            }),
        None => {
            v.error(format!("{prefix}mac"), "is required");
            None
        }
    };
    let ipv4 = match input.ipv4.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(ip) => match ip.parse::<Ipv4Addr>() {
            Ok(a)
                if a.is_unspecified()
                    || a.is_broadcast()
                    || a.is_multicast()
                    || a.is_loopback() =>
            {
                v.error(
                    format!("{prefix}ipv4"),
                    format!("{a} cannot be a host address"),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                v.error(
                    format!("{prefix}ipv4"),
                    format!("{ip:?} is not an IPv4 address"),
                );
                None
            }
        },
    };
    Some(InterfaceSpec {
        name,
        mac: mac?,
        ipv4,
    })
}

fn bmc_spec(v: &mut Validator, input: Option<BmcInput>, current: Option<&Server>) -> BmcSpec {
    let cur = current.map(|c| &c.bmc);
    let Some(b) = input else {
        return match cur {
            Some(c) => BmcSpec {
                host: c.host.clone(),
                port: c.port,
                username: c.username.clone(),
                password: None,
                credential: c.credential.clone(),
                driver: c.driver.clone(),
            },
            None => BmcSpec {
                port: DEFAULT_BMC_PORT,
                ..BmcSpec::default()
            },
        };
    };
    let host = match b.host.as_deref().map(str::trim) {
        Some("") => None,
        Some(h) => {
            let ok = h.len() <= 253
                && h.bytes().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']')
                });
            if !ok {
                // The value is not echoed: a shifted CSV column may put a
                // password here.
                v.error("bmc.host", "is not a host name or address");
            }
            Some(h.to_string())
        }
        None => cur.and_then(|c| c.host.clone()),
    };
    let port = b.port.or(cur.map(|c| c.port)).unwrap_or(DEFAULT_BMC_PORT);
    if port == 0 {
        v.error("bmc.port", "must be between 1 and 65535");
    }
    let username = match b.username {
        Some(u) if u.is_empty() => None,
        Some(u) => {
            if u.len() > 64 || u.chars().any(char::is_control) {
                v.error("bmc.username", "at most 64 printable characters");
            }
            Some(u)
        }
        None => cur.and_then(|c| c.username.clone()),
    };
    if let Some(p) = &b.password
        && (p.len() > 64 || p.chars().any(char::is_control))
    {
        v.error("bmc.password", "at most 64 printable characters");
    }
    let credential = match b.credential.as_deref() {
        Some("") => None,
        Some(c) => v.parse("bmc.credential", c.parse::<Name>()),
        None => cur.and_then(|c| c.credential.clone()),
    };
    let driver = match b.driver.as_deref() {
        Some("") => None,
        Some(d) if BMC_DRIVERS.contains(&d) => Some(d.to_string()),
        Some(d) => {
            v.error(
                "bmc.driver",
                format!(
                    "unknown driver {d:?} (expected one of: {})",
                    BMC_DRIVERS.join(", ")
                ),
            );
            None
        }
        None => cur.and_then(|c| c.driver.clone()),
    };
    let has_password = match b.password.as_deref() {
        Some("") => false,
        Some(_) => true,
        None => cur.is_some_and(|c| c.password_set),
    };
    if has_password && username.is_none() && credential.is_none() {
        v.error(
            "bmc.username",
            "is required with a password (or name a credential)",
        );
    }
    BmcSpec {
        host,
        port,
        username,
        password: b.password,
        credential,
        driver,
    }
}

/// Validates a whole server; `current` supplies fields absent on update.
pub fn server_spec(input: ServerInput, current: Option<&Server>) -> Result<ServerSpec, Error> {
    let mut v = Validator::default();
    let fqdn = match (&input.fqdn, current) {
        (Some(f), _) => v.parse("fqdn", f.parse::<Fqdn>()),
        (None, Some(c)) => Some(c.fqdn.clone()),
        (None, None) => {
            v.error("fqdn", "is required");
            None
        }
    };
    let location = match (&input.location, current) {
        (Some(l), _) => v.parse("location", l.parse::<Name>()),
        (None, Some(c)) => Some(c.location.clone()),
        (None, None) => {
            v.error("location", "is required");
            None
        }
    };
    let labels = match (&input.labels, current) {
        (Some(list), _) => {
            let mut labels: Vec<Name> = list
                .iter()
                .enumerate()
                .filter_map(|(i, l)| v.parse(format!("labels[{i}]"), l.parse::<Name>()))
                .collect();
            labels.sort();
            labels.dedup();
            labels
        }
        (None, Some(c)) => c.labels.clone(),
        (None, None) => Vec::new(),
    };
    let bmc = bmc_spec(&mut v, input.bmc, current);
    let interfaces = input.interfaces.map(|list| {
        let specs: Vec<Option<InterfaceSpec>> = list
            .iter()
            .enumerate()
            .map(|(i, iface)| interface_spec(&mut v, &format!("interfaces[{i}]."), iface, i))
            .collect();
        let mut macs = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let Some(spec) = spec else { continue };
            if let Some(first) = macs.insert(spec.mac, i) {
                v.error(
                    format!("interfaces[{i}].mac"),
                    format!("same MAC as interfaces[{first}]"),
                );
            }
            if let Some(first) = names.insert(spec.name.clone(), i) {
                v.error(
                    format!("interfaces[{i}].name"),
                    format!("same name as interfaces[{first}]"),
                );
            }
        }
        specs.into_iter().flatten().collect::<Vec<_>>()
    });
    let serial = input
        .serial
        .or_else(|| current.map(|c| c.serial.clone()))
        .unwrap_or_default();
    check_text(&mut v, "serial", &serial, 128);
    let notes = input
        .notes
        .or_else(|| current.map(|c| c.notes.clone()))
        .unwrap_or_default();
    check_text(&mut v, "notes", &notes, 10_000);
    v.finish()?;
    match (fqdn, location) {
        (Some(fqdn), Some(location)) => Ok(ServerSpec {
            fqdn,
            location,
            serial,
            notes,
            labels,
            bmc,
            interfaces,
        }),
        _ => Err(Error::invalid_field("fqdn", "is required")),
    }
}

/// The server as `input` would leave it.
fn merged_server(input: ServerInput, current: &Server) -> Result<ServerSpec, Error> {
    let mut spec = server_spec(input, Some(current))?;
    if spec.location != current.location && spec.interfaces.is_none() {
        // Fixed addresses belong to the old location's networks: place the
        // current interfaces again in the new one (or fail naming them).
        spec.interfaces = Some(
            current
                .interfaces
                .iter()
                .map(|i| InterfaceSpec {
                    name: i.name.clone(),
                    mac: i.mac,
                    ipv4: i.ipv4,
                })
                .collect(),
        );
    }
    Ok(spec)
}

/// What a list of servers is narrowed to; each part given must match.
#[derive(Debug, Default, Clone)]
pub struct ServerSearch {
    /// Servers of this location.
    pub location: Option<String>,
    /// Servers carrying this label.
    pub label: Option<String>,
    /// Part of the FQDN, the serial or a MAC, any case.
    pub search: Option<String>,
    /// The state of the server's latest deployment.
    pub state: Option<String>,
}

pub async fn list(
    ops: &Ops,
    _: &Actor,
    search: ServerSearch,
    page: Page,
) -> Result<Listing<Server>, Error> {
    let mut v = Validator::default();
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let term = nonempty(search.search);
    if let Some(t) = &term {
        check_text(&mut v, "search", t, 255);
    }
    let filter = ServerFilter {
        location: nonempty(search.location).and_then(|l| v.parse("location", l.parse::<Name>())),
        label: nonempty(search.label).and_then(|l| v.parse("label", l.parse::<Name>())),
        search: term,
        deployment_state: nonempty(search.state).and_then(|s| {
            v.parse(
                "state",
                s.parse::<bootloader_core::model::DeploymentState>(),
            )
        }),
    };
    v.finish()?;
    Ok(ops.inventory.list_servers(&filter, page).await?)
}

pub async fn get(ops: &Ops, _: &Actor, fqdn: &Fqdn) -> Result<Server, Error> {
    Ok(ops.inventory.server(fqdn).await?)
}

pub async fn create(ops: &Ops, actor: &Actor, input: ServerInput) -> Result<Server, Error> {
    actor.require_write()?;
    let mut spec = server_spec(input, None)?;
    spec.interfaces.get_or_insert_with(Vec::new);
    Ok(ops.inventory.create_server(spec).await?)
}

/// Merges `input` into the server as it is now and writes it; a concurrent
/// update between the read and the write makes the store refuse the write
/// as stale, and it is merged again from a fresh read.
pub async fn update(
    ops: &Ops,
    actor: &Actor,
    fqdn: &Fqdn,
    input: ServerInput,
) -> Result<Server, Error> {
    actor.require_write()?;
    update_fresh(|| async {
        let current = ops.inventory.server(fqdn).await?;
        let spec = merged_server(input.clone(), &current)?;
        Ok(ops
            .inventory
            .update_server(fqdn, spec, current.updated_at)
            .await)
    })
    .await
}

pub async fn delete(ops: &Ops, actor: &Actor, fqdn: &Fqdn) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_server(fqdn).await?)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceCreate {
    /// FQDN of the server the interface belongs to.
    pub server: Option<String>,
    pub name: Option<String>,
    pub mac: Option<String>,
    pub ipv4: Option<String>,
}

pub async fn list_interfaces(
    ops: &Ops,
    _: &Actor,
    server: Option<String>,
    page: Page,
) -> Result<Listing<Interface>, Error> {
    let server = match server {
        Some(s) => Some(
            s.parse::<Fqdn>()
                .map_err(|e| Error::invalid_field("server", e.to_string()))?,
        ),
        None => None,
    };
    Ok(ops.inventory.list_interfaces(server.as_ref(), page).await?)
}

/// Adds an interface to a server (named `eth<n>` after the server's
/// others unless given).
pub async fn create_interface(
    ops: &Ops,
    actor: &Actor,
    input: InterfaceCreate,
) -> Result<Interface, Error> {
    actor.require_write()?;
    let mut v = Validator::default();
    let server = match &input.server {
        Some(s) => v.parse("server", s.parse::<Fqdn>()),
        None => {
            v.error("server", "is required");
            None
        }
    };
    let existing = match &server {
        Some(fqdn) => ops.inventory.server(fqdn).await?.interfaces.len(),
        None => 0,
    };
    let spec = interface_spec(
        &mut v,
        "",
        &InterfaceInput {
            name: input.name,
            mac: input.mac,
            ipv4: input.ipv4,
        },
        existing,
    );
    v.finish()?;
    let (Some(server), Some(spec)) = (server, spec) else {
        return Err(Error::invalid_field("mac", "is required"));
    };
    Ok(ops.inventory.create_interface(&server, spec).await?)
}

pub async fn interface(ops: &Ops, _: &Actor, id: i64) -> Result<Interface, Error> {
    Ok(ops.inventory.interface(id).await?)
}

/// Merges `input` into the interface; what is not given stays.
pub async fn update_interface(
    ops: &Ops,
    actor: &Actor,
    id: i64,
    input: InterfaceInput,
) -> Result<Interface, Error> {
    actor.require_write()?;
    update_fresh(|| async {
        let current = ops.inventory.interface(id).await?;
        let merged = InterfaceInput {
            name: input.name.clone().or(Some(current.name.clone())),
            mac: input.mac.clone().or(Some(current.mac.to_string())),
            ipv4: input.ipv4.clone().or(current.ipv4.map(|a| a.to_string())),
        };
        let mut v = Validator::default();
        let spec = interface_spec(&mut v, "", &merged, 0);
        v.finish()?;
        let spec = spec.ok_or_else(|| Error::invalid_field("mac", "is required"))?;
        Ok(ops.inventory.update_interface(id, spec, &current).await)
    })
    .await
}

pub async fn delete_interface(ops: &Ops, actor: &Actor, id: i64) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_interface(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: serde_json::Value) -> Vec<String> {
        let input: ServerInput = serde_json::from_value(input).unwrap();
        match server_spec(input, None) {
            Ok(_) => vec![],
            Err(Error::Invalid { fields, .. }) => fields.keys().cloned().collect(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_validation_names_fields() {
        assert!(fields(serde_json::json!({"fqdn": "n1.example.com", "location": "dc1",
            "interfaces": [{"mac": "52:54:00:00:00:01"}, {"name": "eth1", "mac": "52-54-00-00-00-02", "ipv4": "10.0.0.5"}]})).is_empty());
        assert_eq!(
            fields(serde_json::json!({"fqdn": "n1", "location": "dc 1"})),
            ["fqdn", "location"]
        );
        assert_eq!(
            fields(
                serde_json::json!({"fqdn": "n1.example.com", "location": "dc1",
                "interfaces": [{"mac": "52:54:00:00:00:01"}, {"name": "eth0", "mac": "52:54:00:00:00:01", "ipv4": "300.1.1.1"}]})
            ),
            [
                "interfaces[1].ipv4",
                "interfaces[1].mac",
                "interfaces[1].name"
            ]
        );
        assert_eq!(
            fields(
                serde_json::json!({"fqdn": "n1.example.com", "location": "dc1", "bmc": {"driver": "redfish", "port": 0}})
            ),
            ["bmc.driver", "bmc.port"]
        );
    }
}
