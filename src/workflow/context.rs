//! The template context of a deployment: what `{{ fqdn }}`,
//! `{{ callback_base }}`, `{{ ipaddress }}`, ... mean for one interface of
//! the server. Pure: built from records the engine has read.

use serde_json::{Map, Value, json};

use bootloader_store::boot::DeploymentRecord;
use bootloader_store::{Interface, Network, Server};

/// What the context is built from.
pub struct ContextInput<'a> {
    pub public_url: &'a str,
    pub token: &'a str,
    pub deployment: &'a DeploymentRecord,
    pub profile_name: &'a str,
    pub profile_version: &'a str,
    pub server: &'a Server,
}

/// The context for `interface` of the server, whose network (if it has
/// one) is `network`.
pub fn for_interface(
    input: &ContextInput<'_>,
    interface: Option<&Interface>,
    network: Option<&Network>,
) -> Value {
    let fqdn = input.server.fqdn.as_str();
    let (hostname, fqdn_domain) = fqdn.split_once('.').unwrap_or((fqdn, ""));
    let url = input.public_url.trim_end_matches('/');
    let mut labels = Map::new();
    for l in &input.server.labels {
        labels.insert(
            l.as_str().to_string(),
            Value::String(l.as_str().to_string()),
        );
    }
    let nameservers: Vec<String> = network
        .map(|n| n.nameservers.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let mac = interface.map(|i| i.mac.to_string()).unwrap_or_default();
    json!({
        "agent_url": url,
        "callback_base": format!("{url}/_callback/{}/", input.token),
        "export_base": format!(
            "{url}/export/file/{}/{}/{}/{}/",
            input.deployment.id, input.token, input.profile_name, input.profile_version
        ),
        "deployment_id": input.deployment.id,
        "server_id": input.server.id,
        "fqdn": fqdn,
        "hostname": hostname,
        "domain": network
            .and_then(|n| n.domain.clone())
            .unwrap_or_else(|| fqdn_domain.to_string()),
        "location": input.server.location.as_str(),
        "serial": input.server.serial,
        "labels": labels,
        "profile": input.profile_name,
        "profile_version": input.profile_version,
        "ipmi_host": input.server.bmc.host.clone().unwrap_or_default(),
        "interface": interface.map(|i| i.name.clone()).unwrap_or_default(),
        "mac_address": mac,
        "mac_address_dashed": mac.replace(':', "-"),
        "ipaddress": interface
            .and_then(|i| i.ipv4)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        "netmask": network.map(|n| n.cidr.netmask().to_string()).unwrap_or_default(),
        "gateway": network
            .and_then(|n| n.gateway)
            .map(|g| g.to_string())
            .unwrap_or_default(),
        "nameserver": nameservers.first().cloned().unwrap_or_default(),
        "nameservers": nameservers.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootloader_core::profile::CONTEXT_VARIABLES;

    #[test]
    fn every_context_variable_is_defined() {
        let server = sample_server();
        let record = sample_deployment();
        let input = ContextInput {
            public_url: "http://10.0.0.5:8080/",
            token: "tok",
            deployment: &record,
            profile_name: "payload",
            profile_version: "1.0",
            server: &server,
        };
        let ctx = for_interface(&input, server.interfaces.first(), None);
        for v in CONTEXT_VARIABLES {
            assert!(ctx.get(*v).is_some(), "{v} missing");
        }
        assert_eq!(ctx["callback_base"], "http://10.0.0.5:8080/_callback/tok/");
        assert_eq!(ctx["hostname"], "n1");
        assert_eq!(ctx["domain"], "dc1.example.com");
        assert_eq!(ctx["mac_address_dashed"], "52-54-00-12-34-56");
    }

    fn sample_server() -> Server {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        Server {
            id: 7,
            fqdn: "n1.dc1.example.com".parse().unwrap(),
            location: "dc1".parse().unwrap(),
            serial: "S1".into(),
            notes: String::new(),
            labels: vec![],
            bmc: bootloader_store::Bmc {
                host: Some("10.0.1.7".into()),
                port: 623,
                username: None,
                password_set: false,
                credential: None,
                driver: None,
            },
            interfaces: vec![Interface {
                id: 1,
                server: "n1.dc1.example.com".parse().unwrap(),
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".parse().unwrap(),
                ipv4: None,
                network_id: None,
            }],
            created_at: now,
            updated_at: now,
        }
    }

    fn sample_deployment() -> DeploymentRecord {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        DeploymentRecord {
            id: 3,
            server: "n1.dc1.example.com".parse().unwrap(),
            profile_id: 1,
            profile: "payload==1.0".into(),
            state: bootloader_core::model::DeploymentState::New,
            progress: 0,
            step: Some("new".into()),
            action_index: 0,
            error: None,
            repeat_of: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            runner: None,
        }
    }
}
