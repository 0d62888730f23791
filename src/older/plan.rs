//! The older rows as the daemon will keep them: each validated by the
//! same rules as the API's (`ops::*::*_spec`), secrets opened with the
//! older `SECRET_KEY`, deployments turned into ended history. A row that
//! cannot be kept is `Unusable`, with the reason, and what depends on it
//! is left out with it.

use std::collections::{HashMap, HashSet};

use bootloader_core::model::older::open_credential;
use bootloader_core::model::{
    ApiTokenSecret, CallbackToken, DeploymentState, LogLevel, MacAddr, Name, PasswordHash,
    TokenScope,
};
use bootloader_store::NewLocation;
use bootloader_store::older::*;

use super::read::OlderRows;
use crate::ops::Error;
use crate::ops::networks::{NetworkInput, network_spec};
use crate::ops::servers::{BmcInput, InterfaceInput, ServerInput, server_spec};
use crate::ops::users::{UserInput, user_spec};

/// Where servers and networks the older system left without a location
/// are put (its servers could have none; here every one has one).
pub const UNPLACED: &str = "unassigned";

/// One line for an `ops` validation error: each field with its messages.
fn reason(e: &Error) -> String {
    match e {
        Error::Invalid { fields, message } | Error::Conflict { fields, message }
            if !fields.is_empty() =>
        {
            let _ = message;
            fields
                .iter()
                .map(|(field, messages)| format!("{field}: {}", messages.join("; ")))
                .collect::<Vec<_>>()
                .join(", ")
        }
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Planner {
    data: OlderData,
    unusable: Vec<Unusable>,
}

impl Planner {
    fn refuse(&mut self, kind: &'static str, older_id: impl ToString, key: &str, why: String) {
        self.unusable.push(Unusable {
            kind,
            older_id: older_id.to_string(),
            key: key.to_string(),
            reason: why,
        });
    }
}

/// The plan for `rows`, with `secret_key` opening the credentials.
pub fn plan(rows: &OlderRows, secret_key: &str) -> (OlderData, Vec<Unusable>) {
    let mut p = Planner::default();
    p.data.source = rows.source.clone();

    let mut location_names: HashMap<i64, String> = HashMap::new();
    for (id, name) in &rows.locations {
        match name.parse::<Name>() {
            Ok(n) => {
                location_names.insert(*id, n.to_string());
                p.data.locations.push(Older {
                    older_id: id.to_string(),
                    item: NewLocation {
                        name: n,
                        description: String::new(),
                    },
                });
            }
            Err(e) => p.refuse("location", id, name, format!("name: {e}")),
        }
    }
    let unplaced_needed = rows
        .servers
        .iter()
        .map(|s| s.location_id)
        .chain(rows.networks.iter().map(|n| n.location_id))
        .any(|l| l.is_none_or(|l| !location_names.contains_key(&l)));
    if unplaced_needed {
        p.data.locations.push(Older {
            older_id: UNPLACED.to_string(),
            item: NewLocation {
                name: UNPLACED.parse().expect("a valid name"),
                description: "servers and networks the older system had without a location"
                    .to_string(),
            },
        });
    }
    let location_of = |id: Option<i64>| {
        id.and_then(|l| location_names.get(&l).cloned())
            .unwrap_or_else(|| UNPLACED.to_string())
    };

    let mut label_names: HashMap<i64, String> = HashMap::new();
    for (id, name) in &rows.labels {
        match name.parse::<Name>() {
            Ok(n) => {
                label_names.insert(*id, n.to_string());
                p.data.labels.push(Older {
                    older_id: id.to_string(),
                    item: n,
                });
            }
            Err(e) => p.refuse("label", id, name, format!("name: {e}")),
        }
    }

    for n in &rows.networks {
        let input = NetworkInput {
            location: Some(location_of(n.location_id)),
            cidr: Some(n.network.clone()),
            gateway: n.gateway.clone(),
            nameservers: n.nameserver.clone().map(|ns| vec![ns]),
            description: Some(n.name.clone()),
            ..NetworkInput::default()
        };
        match network_spec(input, None) {
            Ok(spec) => p.data.networks.push(Older {
                older_id: n.id.to_string(),
                item: spec,
            }),
            Err(e) => p.refuse("network", n.id, &n.network, reason(&e)),
        }
    }

    // Interfaces by server; a MAC the older database holds twice (its
    // uniqueness was case-sensitive text) is kept on its first interface.
    let mut macs: HashMap<MacAddr, (i64, i64)> = HashMap::new();
    let mut interfaces: HashMap<i64, Vec<InterfaceInput>> = HashMap::new();
    for i in &rows.interfaces {
        let key = format!("{} {}", i.name, i.mac);
        let mac = match i.mac.parse::<MacAddr>() {
            Ok(m) => m,
            Err(e) => {
                p.refuse("interface", i.id, &key, format!("mac: {e}"));
                continue;
            }
        };
        if let Some((first, server)) = macs.get(&mac) {
            p.refuse(
                "interface",
                i.id,
                &key,
                format!(
                    "mac: {mac} is also interface #{first} of server #{server}, which keeps it"
                ),
            );
            continue;
        }
        macs.insert(mac, (i.id, i.server_id));
        interfaces
            .entry(i.server_id)
            .or_default()
            .push(InterfaceInput {
                name: Some(i.name.clone()),
                mac: Some(i.mac.clone()),
                ipv4: None,
            });
    }
    let mut labels_of: HashMap<i64, Vec<String>> = HashMap::new();
    for (server, label) in &rows.server_labels {
        if let Some(name) = label_names.get(label) {
            labels_of.entry(*server).or_default().push(name.clone());
        }
    }
    let mut servers: HashSet<i64> = HashSet::new();
    for s in &rows.servers {
        let host = s.ipmi_host.trim();
        let input = ServerInput {
            fqdn: Some(s.fqdn.clone()),
            location: Some(location_of(s.location_id)),
            serial: s.serial.clone(),
            notes: s.notes.clone(),
            labels: Some(labels_of.remove(&s.id).unwrap_or_default()),
            bmc: (!host.is_empty()).then(|| BmcInput {
                host: Some(host.to_string()),
                ..BmcInput::default()
            }),
            interfaces: Some(interfaces.remove(&s.id).unwrap_or_default()),
        };
        match server_spec(input, None) {
            Ok(spec) => {
                servers.insert(s.id);
                p.data.servers.push(Older {
                    older_id: s.id.to_string(),
                    item: spec,
                });
            }
            Err(e) => p.refuse("server", s.id, &s.fqdn, reason(&e)),
        }
    }

    for c in &rows.credentials {
        let key = format!("{} of {}.{} #{}", c.name, c.app_label, c.model, c.object_id);
        if (c.app_label.as_str(), c.model.as_str()) != ("servers", "server") {
            p.refuse(
                "credential",
                c.id,
                &key,
                format!(
                    "attached to {}.{} #{}; only servers' credentials have a place here",
                    c.app_label, c.model, c.object_id
                ),
            );
            continue;
        }
        if !servers.contains(&c.object_id) {
            p.refuse(
                "credential",
                c.id,
                &key,
                "its server is not brought over".into(),
            );
            continue;
        }
        let iterations = c.iterations.unwrap_or(0).max(0) as u32;
        match open_credential(
            secret_key,
            c.salt.as_deref().unwrap_or(""),
            iterations,
            &c.data,
        ) {
            Ok(data) => p.data.secrets.push(Older {
                older_id: c.id.to_string(),
                item: OlderSecret {
                    server: c.object_id.to_string(),
                    name: c.name.clone(),
                    data,
                },
            }),
            Err(e) => p.refuse("credential", c.id, &key, e.to_string()),
        }
    }

    // Each brought-over profile's count of actions, for progress.
    let mut profiles: HashMap<i64, u64> = HashMap::new();
    for row in &rows.profiles {
        let key = format!("{}=={}", row.name, row.version);
        // Stored as jsonb: key order is PostgreSQL's. The daemon keeps
        // it as indented JSON, which its YAML reader takes as it is, its
        // templates marked as the Django templates they are.
        let source = match serde_json::from_str::<serde_json::Value>(&row.profile) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.entry("templating")
                    .or_insert_with(|| serde_json::Value::from("django"));
                serde_json::to_string_pretty(&map).unwrap_or_else(|_| row.profile.clone())
            }
            Ok(_) => {
                p.refuse("profile", row.id, &key, "not a JSON object".into());
                continue;
            }
            Err(e) => {
                p.refuse("profile", row.id, &key, format!("not JSON: {e}"));
                continue;
            }
        };
        match bootloader_core::profile::parse_upload(&source) {
            Ok(profile) => {
                profiles.insert(row.id, profile.action_count() as u64);
                p.data.profiles.push(Older {
                    older_id: row.id.to_string(),
                    item: OlderProfile {
                        name: profile.name.clone(),
                        version: profile.version.clone(),
                        source,
                        action_count: profile.action_count() as u64,
                    },
                });
            }
            Err(errors) => {
                let first: Vec<String> = errors.0.iter().take(3).map(|e| e.to_string()).collect();
                p.refuse("profile", row.id, &key, first.join("; "));
            }
        }
    }

    let mut users: HashMap<i64, bool> = HashMap::new();
    for u in &rows.users {
        let input = UserInput {
            name: Some(u.username.clone()),
            email: Some(u.email.clone()),
            first_name: Some(u.first_name.clone()),
            last_name: Some(u.last_name.clone()),
            is_active: Some(u.is_active),
            // A superuser could do everything there; staff is the most
            // there is here.
            is_staff: Some(u.is_staff || u.is_superuser),
        };
        match user_spec(input, None) {
            Ok(spec) => {
                users.insert(u.id, spec.is_staff);
                p.data.users.push(Older {
                    older_id: u.id.to_string(),
                    item: OlderUser {
                        spec,
                        password: PasswordHash::from_stored(&u.password)
                            .ok()
                            .filter(PasswordHash::is_older),
                    },
                });
            }
            Err(e) => p.refuse("user", u.id, &u.username, reason(&e)),
        }
    }
    for (key, user) in &rows.tokens {
        let shown = format!("{}… of user #{user}", key.get(..8).unwrap_or(key));
        let Some(staff) = users.get(user) else {
            p.refuse("token", user, &shown, "its user is not brought over".into());
            continue;
        };
        let secret = ApiTokenSecret::from_presented(key.trim());
        p.data.tokens.push(Older {
            older_id: user.to_string(),
            item: OlderToken {
                user: user.to_string(),
                hash: secret.hash(),
                prefix: secret.prefix(),
                scope: if *staff {
                    TokenScope::Write
                } else {
                    TokenScope::Read
                },
            },
        });
    }
    for (id, key, user) in &rows.ssh_keys {
        let shown = format!("key #{id} of user #{user}");
        if !users.contains_key(user) {
            p.refuse("ssh_key", id, &shown, "its user is not brought over".into());
            continue;
        }
        match crate::ops::users::check_ssh_key(key) {
            Ok((key, comment)) => p.data.ssh_keys.push(Older {
                older_id: id.to_string(),
                item: OlderSshKey {
                    user: user.to_string(),
                    name: comment,
                    key,
                },
            }),
            Err(why) => p.refuse("ssh_key", *id, &shown, format!("key: {why}")),
        }
    }

    let mut logs: HashMap<i64, Vec<OlderLogLine>> = HashMap::new();
    for l in &rows.log {
        let level = match l.level.as_str() {
            "CRITICAL" | "ERROR" => LogLevel::Error,
            "WARNING" => LogLevel::Warn,
            _ => LogLevel::Info,
        };
        logs.entry(l.deployment_id).or_default().push(OlderLogLine {
            at: l.created,
            level,
            message: l.message.clone(),
        });
    }
    for d in &rows.deployments {
        let key = format!("{} on server #{}", d.status, d.server_id);
        if !servers.contains(&d.server_id) {
            p.refuse(
                "deployment",
                d.id,
                &key,
                "its server is not brought over".into(),
            );
            continue;
        }
        let Some(&action_count) = profiles.get(&d.profile_id) else {
            p.refuse(
                "deployment",
                d.id,
                &key,
                "its profile is not brought over".into(),
            );
            continue;
        };
        let mut log = logs.remove(&d.id).unwrap_or_default();
        let (state, error) = match d.status.as_str() {
            "complete" => (DeploymentState::Complete, None),
            "error" => (
                DeploymentState::Error,
                Some(
                    log.iter()
                        .rev()
                        .find(|l| l.level == LogLevel::Error)
                        .map(|l| l.message.clone())
                        .unwrap_or_else(|| "failed in the older system".to_string()),
                ),
            ),
            other => (
                DeploymentState::Cancelled,
                Some(format!(
                    "brought over from the older system while at '{other}': it does not go on here"
                )),
            ),
        };
        log.push(OlderLogLine {
            at: d.modified,
            level: LogLevel::Info,
            message: format!(
                "imported from the older system: deployment #{}, status {}, progress {:.1}%, parameters {}",
                d.id, d.status, d.progress, d.parameters
            ),
        });
        p.data.deployments.push(Older {
            older_id: d.id.to_string(),
            item: OlderDeployment {
                server: d.server_id.to_string(),
                profile: d.profile_id.to_string(),
                state,
                error,
                // The older progress went up 16.6 a step; here it is the
                // share of the profile's actions done.
                actions_done: ((d.progress.clamp(0.0, 100.0) / 100.0) * action_count as f64).round()
                    as u32,
                token: CallbackToken::from_presented(&d.token),
                created: d.created,
                modified: d.modified,
                log,
            },
        });
    }
    (p.data, p.unusable)
}
