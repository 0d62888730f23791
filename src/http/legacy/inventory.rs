//! Servers, interfaces, networks, locations and labels in the older
//! API's shapes: servers `{id, fqdn, location, serial, ipmi_host,
//! interfaces}`, interfaces `{id, name, mac, server}`, networks `{id,
//! name, network, gateway, nameserver, location}` (a network's `name` is
//! its description here), locations `{id, name, servers}`, labels `{id,
//! name}`.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::error::LegacyError;
use super::{Call, DETAIL_METHODS, LIST_METHODS, Version, answer, no_content, not_allowed};
use crate::ops::locations::{LabelInput, LocationInput};
use crate::ops::networks::NetworkInput;
use crate::ops::servers::{BmcInput, InterfaceCreate, InterfaceInput, ServerInput, ServerSearch};
use crate::ops::{self, Error};
use bootloader_core::model::{Fqdn, MacAddr, Name};
use bootloader_store::{Interface, Keyed, Network, Page, Server};

/// Every item: the older lists were not paged.
pub const ALL: Page = Page {
    limit: u32::MAX,
    offset: 0,
};

/// The name behind a numeric id (a 404 when there is none).
pub async fn key<T: std::str::FromStr>(
    call: &Call<'_>,
    kind: Keyed,
    id: i64,
) -> Result<T, LegacyError> {
    let key = ops::key_of(call.ops, kind, id).await?;
    key.parse().map_err(|_| LegacyError::NotFound)
}

/// `Ok(None)` for an operation's 404.
pub fn found<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn list(items: impl IntoIterator<Item = Value>) -> Response {
    answer(StatusCode::OK, Value::Array(items.into_iter().collect()))
}

fn server_json(s: &Server) -> Value {
    json!({
        "id": s.id,
        "fqdn": s.fqdn,
        "location": s.location,
        "serial": (!s.serial.is_empty()).then_some(&s.serial),
        "ipmi_host": s.bmc.host.clone().unwrap_or_default(),
        "interfaces": s.interfaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
    })
}

fn server_field(path: &str) -> &str {
    match path {
        "bmc.host" => "ipmi_host",
        p => p,
    }
}

fn server_input(call: &Call<'_>) -> Result<ServerInput, LegacyError> {
    let mut f = call.fields()?;
    let fqdn = f.name("fqdn");
    let location = f.name("location");
    let serial = f.text("serial", false, true, true, 255);
    let ipmi_host = f.text("ipmi_host", false, true, false, 255);
    f.finish()?;
    Ok(ServerInput {
        fqdn,
        location,
        serial,
        bmc: ipmi_host.map(|h| BmcInput {
            host: Some(h),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub async fn servers(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let err = |e| LegacyError::from_ops(e, server_field);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                // `?fqdn=` is the one filter the older API had.
                let servers = match call.param("fqdn") {
                    Some(f) => match f.parse::<Fqdn>() {
                        Ok(fqdn) => found(ops::servers::get(o, actor, &fqdn).await)
                            .map_err(err)?
                            .into_iter()
                            .collect(),
                        Err(_) => Vec::new(),
                    },
                    None => {
                        ops::servers::list(o, actor, ServerSearch::default(), ALL)
                            .await
                            .map_err(err)?
                            .items
                    }
                };
                Ok(list(servers.iter().map(server_json)))
            }
            Method::POST => {
                let input = server_input(call)?;
                let s = ops::servers::create(o, actor, input).await.map_err(err)?;
                Ok(answer(StatusCode::CREATED, server_json(&s)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    let fqdn: Fqdn = key(call, Keyed::Server, id).await?;
    match call.method {
        Method::GET | Method::HEAD => {
            let s = ops::servers::get(o, actor, &fqdn).await.map_err(err)?;
            Ok(answer(StatusCode::OK, server_json(&s)))
        }
        Method::PUT | Method::PATCH => {
            let input = server_input(call)?;
            let s = ops::servers::update(o, actor, &fqdn, input)
                .await
                .map_err(err)?;
            Ok(answer(StatusCode::OK, server_json(&s)))
        }
        Method::DELETE => {
            ops::servers::delete(o, actor, &fqdn).await.map_err(err)?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_METHODS)),
    }
}

fn interface_json(i: &Interface) -> Value {
    json!({"id": i.id, "name": i.name, "mac": i.mac, "server": i.server})
}

pub async fn interfaces(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                call.only_filters(&["server", "server__fqdn", "name", "mac", "id"])?;
                // `?server=` took the server's id; its FQDN is accepted too.
                let server: Option<Option<String>> = match call.param("server") {
                    Some(s) => match s.parse::<i64>() {
                        Ok(n) => Some(found(ops::key_of(o, Keyed::Server, n).await)?),
                        Err(_) => Some(Some(s.to_string())),
                    },
                    None => call.param("server__fqdn").map(|f| Some(f.to_string())),
                };
                let items = match server {
                    Some(None) => Vec::new(),
                    Some(Some(fqdn)) => {
                        found(ops::servers::list_interfaces(o, actor, Some(fqdn), ALL).await)?
                            .map(|l| l.items)
                            .unwrap_or_default()
                    }
                    None => {
                        ops::servers::list_interfaces(o, actor, None, ALL)
                            .await?
                            .items
                    }
                };
                let mac = call.param("mac").map(|m| m.parse::<MacAddr>());
                let items = items.iter().filter(|i| {
                    call.param("name").is_none_or(|n| n == i.name)
                        && call.param("id").is_none_or(|n| n == i.id.to_string())
                        && mac
                            .as_ref()
                            .is_none_or(|m| m.as_ref().is_ok_and(|m| *m == i.mac))
                });
                Ok(list(items.map(interface_json)))
            }
            Method::POST => {
                let mut f = call.fields()?;
                let name = f.text("name", true, false, false, 16);
                let mac = f.text("mac", true, false, false, 17);
                let server = f.name("server");
                f.finish()?;
                let i = ops::servers::create_interface(
                    o,
                    actor,
                    InterfaceCreate {
                        server,
                        name,
                        mac,
                        ipv4: None,
                    },
                )
                .await?;
                Ok(answer(StatusCode::CREATED, interface_json(&i)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    let current = ops::servers::interface(o, actor, id).await?;
    match call.method {
        Method::GET | Method::HEAD => Ok(answer(StatusCode::OK, interface_json(&current))),
        Method::PUT | Method::PATCH => {
            let mut f = call.fields()?;
            let name = f.text("name", true, false, false, 16);
            let mac = f.text("mac", true, false, false, 17);
            let server = f.name("server");
            if server.is_some_and(|s| s != current.server.as_str()) {
                f.error(
                    "server",
                    "an interface does not move between servers: delete it and add it to the other",
                );
            }
            f.finish()?;
            let i = ops::servers::update_interface(
                o,
                actor,
                id,
                InterfaceInput {
                    name,
                    mac,
                    ipv4: None,
                },
            )
            .await?;
            Ok(answer(StatusCode::OK, interface_json(&i)))
        }
        Method::DELETE => {
            ops::servers::delete_interface(o, actor, id).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_METHODS)),
    }
}

fn network_json(call: &Call<'_>, n: &Network) -> Value {
    let mut v = json!({
        "id": n.id,
        "name": n.description,
        "network": n.cidr.to_string(),
        "gateway": n.gateway,
        "nameserver": n.nameservers.first(),
        "location": n.location,
    });
    // v1alpha1 did not show the id.
    if call.version == Version::V1alpha1
        && let Some(map) = v.as_object_mut()
    {
        map.remove("id");
    }
    v
}

fn network_field(path: &str) -> &str {
    match path {
        "cidr" => "network",
        "description" => "name",
        p if p.starts_with("nameservers") => "nameserver",
        p => p,
    }
}

fn network_input(call: &Call<'_>) -> Result<NetworkInput, LegacyError> {
    let mut f = call.fields()?;
    let name = f.name("name");
    let network = f.name("network");
    let gateway = f.name("gateway");
    let nameserver = f.name("nameserver");
    let location = f.name("location");
    f.finish()?;
    Ok(NetworkInput {
        location,
        cidr: network,
        gateway,
        nameservers: nameserver.map(|n| vec![n]),
        description: name,
        ..Default::default()
    })
}

pub async fn networks(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let err = |e| LegacyError::from_ops(e, network_field);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::networks::list(o, actor, None, ALL).await?.items;
                Ok(list(all.iter().map(|n| network_json(call, n))))
            }
            Method::POST => {
                let input = network_input(call)?;
                let n = ops::networks::create(o, actor, input).await.map_err(err)?;
                Ok(answer(StatusCode::CREATED, network_json(call, &n)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    match call.method {
        Method::GET | Method::HEAD => {
            let n = ops::networks::get(o, actor, id).await?;
            Ok(answer(StatusCode::OK, network_json(call, &n)))
        }
        Method::PUT | Method::PATCH => {
            let input = network_input(call)?;
            let n = ops::networks::update(o, actor, id, input)
                .await
                .map_err(err)?;
            Ok(answer(StatusCode::OK, network_json(call, &n)))
        }
        Method::DELETE => {
            ops::networks::delete(o, actor, id).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_METHODS)),
    }
}

async fn location_json(call: &Call<'_>, id: i64, name: &Name) -> Result<Value, LegacyError> {
    let search = ServerSearch {
        location: Some(name.to_string()),
        ..Default::default()
    };
    let servers = ops::servers::list(call.ops, &call.actor, search, ALL).await?;
    let fqdns: Vec<&Fqdn> = servers.items.iter().map(|s| &s.fqdn).collect();
    Ok(json!({"id": id, "name": name, "servers": fqdns}))
}

fn name_input(call: &Call<'_>) -> Result<Option<String>, LegacyError> {
    let mut f = call.fields()?;
    let name = f.name("name");
    f.finish()?;
    Ok(name)
}

pub async fn locations(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::locations::list_locations(o, actor, ALL).await?.items;
                let mut out = Vec::with_capacity(all.len());
                for l in &all {
                    out.push(location_json(call, l.id, &l.name).await?);
                }
                Ok(list(out))
            }
            Method::POST => {
                let name = name_input(call)?;
                let input = LocationInput {
                    name,
                    description: None,
                };
                let l = ops::locations::create_location(o, actor, input).await?;
                Ok(answer(
                    StatusCode::CREATED,
                    location_json(call, l.id, &l.name).await?,
                ))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    let name: Name = key(call, Keyed::Location, id).await?;
    match call.method {
        Method::GET | Method::HEAD => Ok(answer(
            StatusCode::OK,
            location_json(call, id, &name).await?,
        )),
        Method::PUT | Method::PATCH => {
            let input = LocationInput {
                name: name_input(call)?,
                description: None,
            };
            let l = ops::locations::update_location(o, actor, &name, input).await?;
            Ok(answer(
                StatusCode::OK,
                location_json(call, l.id, &l.name).await?,
            ))
        }
        Method::DELETE => {
            ops::locations::delete_location(o, actor, &name).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_METHODS)),
    }
}

pub async fn labels(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let label_json = |id: i64, name: &Name| json!({"id": id, "name": name});
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::locations::list_labels(o, actor, ALL).await?.items;
                Ok(list(all.iter().map(|l| label_json(l.id, &l.name))))
            }
            Method::POST => {
                let input = LabelInput {
                    name: name_input(call)?,
                    description: None,
                };
                let l = ops::locations::create_label(o, actor, input).await?;
                Ok(answer(StatusCode::CREATED, label_json(l.id, &l.name)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    let name: Name = key(call, Keyed::Label, id).await?;
    match call.method {
        Method::GET | Method::HEAD => Ok(answer(StatusCode::OK, label_json(id, &name))),
        Method::PUT | Method::PATCH => {
            let input = LabelInput {
                name: name_input(call)?,
                description: None,
            };
            let l = ops::locations::update_label(o, actor, &name, input).await?;
            Ok(answer(StatusCode::OK, label_json(l.id, &l.name)))
        }
        Method::DELETE => {
            ops::locations::delete_label(o, actor, &name).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_METHODS)),
    }
}
