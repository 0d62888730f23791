//! Networks: the subnets servers live on, with optional DHCP pools.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;
use utoipa::ToSchema;

use bootloader_core::dhcp::options::DhcpOptionSetting;
use bootloader_core::model::{Fqdn, Name};
use bootloader_store::{Listing, Network, NetworkSpec, Page, Pool};

use super::input::check_text;
use super::{Actor, Error, Ops, Validator, update_fresh};

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolInput {
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkInput {
    /// Location name.
    pub location: Option<String>,
    /// e.g. `192.0.2.0/24`.
    pub cidr: Option<String>,
    pub gateway: Option<String>,
    pub nameservers: Option<Vec<String>>,
    pub domain: Option<String>,
    /// The dynamic DHCP range; `null` removes it.
    #[serde(default, deserialize_with = "super::input::double_option")]
    pub pool: Option<Option<PoolInput>>,
    /// Options added to the network's replies; a list replaces them all.
    pub dhcp_options: Option<Vec<DhcpOptionInput>>,
    pub description: Option<String>,
}

/// One option added to a network's replies: its name or code, and its
/// value as text (`{"option": "ntp-servers", "value": "10.0.0.5, 10.0.0.6"}`,
/// `{"option": 26, "value": "9000"}`, `{"option": 224, "value": "01:02"}`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DhcpOptionInput {
    #[schema(value_type = String)]
    pub option: serde_json::Value,
    pub value: String,
}

/// Validates a whole network; `current` supplies fields absent on update.
pub fn network_spec(input: NetworkInput, current: Option<&Network>) -> Result<NetworkSpec, Error> {
    let mut v = Validator::default();
    let location = match (input.location, current) {
        (Some(l), _) => v.parse("location", l.parse::<Name>()),
        (None, Some(c)) => Some(c.location.clone()),
        (None, None) => {
            v.error("location", "is required");
            None
        }
    };
    let cidr = match (input.cidr, current) {
        (Some(c), _) => match c.trim().parse::<Ipv4Net>() {
            Ok(net) if net.trunc() != net => {
                v.error(
                    "cidr",
                    format!("{c} has host bits set; did you mean {}?", net.trunc()),
                );
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                v.error(
                    "cidr",
                    format!("{c:?} is not an IPv4 network such as 192.0.2.0/24"),
                );
                None
            }
        },
        (None, Some(c)) => Some(c.cidr),
        (None, None) => {
            v.error("cidr", "is required");
            None
        }
    };
    let gateway = match (input.gateway, current) {
        (Some(g), _) if g.is_empty() => None,
        (Some(g), _) => v.parse("gateway", g.trim().parse::<Ipv4Addr>()),
        (None, Some(c)) => c.gateway,
        (None, None) => None,
    };
    let nameservers = match (input.nameservers, current) {
        (Some(list), _) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| v.parse(format!("nameservers[{i}]"), s.trim().parse::<Ipv4Addr>()))
            .collect(),
        (None, Some(c)) => c.nameservers.clone(),
        (None, None) => Vec::new(),
    };
    let domain = match (input.domain, current) {
        (Some(d), _) if d.is_empty() => None,
        (Some(d), _) => {
            // A domain is an FQDN without the host part: check it as one.
            match format!("host.{d}").parse::<Fqdn>() {
                Ok(f) => Some(f.domain().to_string()),
                Err(e) => {
                    v.error("domain", e.to_string());
                    None
                }
            }
        }
        (None, Some(c)) => c.domain.clone(),
        (None, None) => None,
    };
    let pool = match (input.pool, current) {
        (Some(None), _) => None,
        (Some(Some(p)), _) => {
            let start = match p.start {
                Some(s) => v.parse("pool.start", s.trim().parse::<Ipv4Addr>()),
                None => {
                    v.error("pool.start", "is required");
                    None
                }
            };
            let end = match p.end {
                Some(s) => v.parse("pool.end", s.trim().parse::<Ipv4Addr>()),
                None => {
                    v.error("pool.end", "is required");
                    None
                }
            };
            start.zip(end).map(|(start, end)| Pool { start, end })
        }
        (None, Some(c)) => c.pool,
        (None, None) => None,
    };
    if let Some(net) = cidr {
        let usable =
            |ip: Ipv4Addr| net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast());
        if let Some(g) = gateway
            && !(net.contains(&g) && usable(g))
        {
            v.error("gateway", format!("{g} is not a host address of {net}"));
        }
        if let Some(p) = pool {
            for (field, ip) in [("pool.start", p.start), ("pool.end", p.end)] {
                if !(net.contains(&ip) && usable(ip)) {
                    v.error(field, format!("{ip} is not a host address of {net}"));
                }
            }
            if p.start > p.end {
                v.error(
                    "pool.end",
                    format!("{} comes before pool.start {}", p.end, p.start),
                );
            }
            if let Some(g) = gateway
                && p.start <= g
                && g <= p.end
            {
                v.error("pool", format!("the gateway {g} lies inside the pool"));
            }
        }
    }
    let dhcp_options = match (input.dhcp_options, current) {
        (Some(list), _) => {
            let mut seen = std::collections::HashSet::new();
            list.iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    let option = match &o.option {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => String::new(),
                    };
                    let parsed = DhcpOptionSetting::parse(&option, &o.value)
                        .map_err(|e| {
                            let field =
                                if e.starts_with("unknown option") || e.contains("sets itself") {
                                    "option"
                                } else {
                                    "value"
                                };
                            v.error(format!("dhcp_options[{i}].{field}"), e);
                        })
                        .ok()?;
                    if !seen.insert(parsed.code) {
                        v.error(
                            format!("dhcp_options[{i}].option"),
                            format!("option {} is given twice", parsed.code),
                        );
                        return None;
                    }
                    Some(parsed)
                })
                .collect()
        }
        (None, Some(c)) => c.dhcp_options.clone(),
        (None, None) => Vec::new(),
    };
    let description = input
        .description
        .or_else(|| current.map(|c| c.description.clone()))
        .unwrap_or_default();
    check_text(&mut v, "description", &description, 1000);
    v.finish()?;
    match (location, cidr) {
        (Some(location), Some(cidr)) => Ok(NetworkSpec {
            location,
            cidr,
            gateway,
            nameservers,
            domain,
            pool,
            dhcp_options,
            description,
        }),
        _ => Err(Error::invalid_field("cidr", "is required")),
    }
}

pub async fn list(
    ops: &Ops,
    _: &Actor,
    location: Option<&Name>,
    page: Page,
) -> Result<Listing<Network>, Error> {
    Ok(ops.inventory.list_networks(location, page).await?)
}

pub async fn get(ops: &Ops, _: &Actor, id: i64) -> Result<Network, Error> {
    Ok(ops.inventory.network(id).await?)
}

pub async fn create(ops: &Ops, actor: &Actor, input: NetworkInput) -> Result<Network, Error> {
    actor.require_write()?;
    let spec = network_spec(input, None)?;
    Ok(ops.inventory.create_network(spec).await?)
}

/// Merges `input` into the network as it is now and writes it, again if a
/// concurrent change got there first.
pub async fn update(
    ops: &Ops,
    actor: &Actor,
    id: i64,
    input: NetworkInput,
) -> Result<Network, Error> {
    actor.require_write()?;
    update_fresh(|| async {
        let current = ops.inventory.network(id).await?;
        let spec = network_spec(input.clone(), Some(&current))?;
        Ok(ops
            .inventory
            .update_network(id, spec, current.updated_at)
            .await)
    })
    .await
}

/// Deletes a network no address is placed in.
pub async fn delete(ops: &Ops, actor: &Actor, id: i64) -> Result<(), Error> {
    actor.require_write()?;
    Ok(ops.inventory.delete_network(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: serde_json::Value) -> Vec<String> {
        let input: NetworkInput = serde_json::from_value(input).unwrap();
        match network_spec(input, None) {
            Ok(_) => vec![],
            Err(Error::Invalid { fields, .. }) => fields.keys().cloned().collect(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn network_validation_names_fields() {
        let ok = serde_json::json!({"location": "dc1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1",
            "pool": {"start": "10.0.0.100", "end": "10.0.0.200"}, "nameservers": ["10.0.0.2"], "domain": "dc1.example.com"});
        assert!(fields(ok).is_empty());
        assert_eq!(
            fields(serde_json::json!({"location": "dc1", "cidr": "10.0.0.1/24"})),
            ["cidr"]
        );
        assert_eq!(
            fields(serde_json::json!({"cidr": "10.0.0.0/24"})),
            ["location"]
        );
        assert_eq!(
            fields(
                serde_json::json!({"location": "dc1", "cidr": "10.0.0.0/24", "gateway": "10.0.1.1",
                "pool": {"start": "10.0.0.200", "end": "10.0.0.100"}, "nameservers": ["x"]})
            ),
            ["gateway", "nameservers[0]", "pool.end"]
        );
        assert_eq!(
            fields(
                serde_json::json!({"location": "dc1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.150",
                "pool": {"start": "10.0.0.100", "end": "10.0.0.255"}})
            ),
            ["pool", "pool.end"]
        );
    }
}
