//! The TOML file as written: every section and key optional, unknown keys
//! rejected by name. `super::load` layers this over defaults and under the
//! environment and command line.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub broker: BrokerSection,
    #[serde(default)]
    pub ui: UiSection,
    #[serde(default)]
    pub slack: SlackSection,
    #[serde(default)]
    pub email: EmailSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub tftp: TftpSection,
    #[serde(default)]
    pub dhcp: DhcpSection,
    #[serde(default)]
    pub timeline: TimelineSection,
    #[serde(default)]
    pub power: PowerSection,
    #[serde(default)]
    pub deployments: DeploymentsSection,
    #[serde(default)]
    pub limits: LimitsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub http_connections: Option<u32>,
    pub http_connections_per_source: Option<u32>,
    pub http_header_timeout_secs: Option<u32>,
    pub http_idle_timeout_secs: Option<u32>,
    pub callback_body_bytes: Option<u32>,
    pub callbacks_per_deployment: Option<u32>,
    pub timeline_max_events: Option<u32>,
    pub tftp_transfers_per_source: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentsSection {
    pub timeout_minutes: Option<u32>,
    pub download_max_mb: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSection {
    pub driver: Option<String>,
    pub timeout_seconds: Option<u32>,
    pub retries: Option<u32>,
    pub backoff_ms: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub storm_rate: Option<f64>,
    pub storm_in_flight: Option<u32>,
    pub ipmitool: Option<String>,
    pub ipmitool_cipher_suite: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSection {
    pub mode: Option<String>,
    pub interfaces: Option<Vec<String>>,
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub proxy_port: Option<u16>,
    pub client_port: Option<u16>,
    pub server_address: Option<String>,
    pub location: Option<String>,
    pub unknown: Option<String>,
    pub efi_x64: Option<String>,
    pub arm64_binary: Option<String>,
    pub lease_time: Option<u32>,
    pub offer_hold: Option<u32>,
    pub decline_hold: Option<u32>,
    pub unicast: Option<bool>,
    pub trusted_relays: Option<Vec<String>>,
    pub router_advertisements: Option<String>,
    /// `[[dhcp.quirk]]` rules, in order.
    pub quirk: Option<Vec<QuirkSection>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuirkSection {
    pub name: Option<String>,
    pub mac_prefix: Option<String>,
    pub arch: Option<u16>,
    pub vendor_class: Option<String>,
    pub set_arch: Option<u16>,
    pub answer: Option<String>,
    pub tftp_blksize: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineSection {
    pub retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TftpSection {
    pub enable: Option<bool>,
    pub listen: Option<String>,
    pub root: Option<String>,
    pub syslinux_dirs: Option<Vec<String>>,
    pub max_transfers: Option<u32>,
    pub max_blksize: Option<u32>,
    pub max_windowsize: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub url: Option<String>,
    pub data_dir: Option<String>,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: Option<String>,
    pub static_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub enable: Option<bool>,
    pub listen: Option<String>,
    pub certificate: Option<String>,
    pub key: Option<String>,
    pub certificate_file: Option<String>,
    pub key_file: Option<String>,
    pub set_redirect: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    pub url: Option<String>,
    pub exchange: Option<String>,
    pub retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiSection {
    pub default_theme: Option<String>,
    pub gravatar_proxy: Option<bool>,
    pub gravatar_url: Option<String>,
    pub session_idle_minutes: Option<u32>,
    pub session_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSection {
    pub hook_url: Option<String>,
    pub channel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub default_page_size: Option<u32>,
    pub max_page_size: Option<u32>,
}
