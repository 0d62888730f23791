//! Configuration: the TOML file (`file.rs`, mirrors the file), layered as
//! default < file < environment < command line into a validated [`Config`]
//! that remembers where each value came from (`bootloader check-config`).

mod boot;
mod file;
pub mod keys;
mod limits;
mod power;
mod resolver;
mod sections;

use resolver::Resolver;
pub use sections::UiSettings;
use sections::{
    resolve_database, resolve_email, resolve_secret, resolve_tftp, resolve_tls, resolve_ui,
};

pub use limits::Limits;

pub use boot::{BootSettings, DhcpSettings};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use file::FileConfig;

use bootloader_core::model::Secret;
use bootloader_store::DatabaseConfig;

/// Where the shipped packages put the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bootloader/bootloader.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Cli(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Cli(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One line of `check-config`: a key, its value (secrets redacted) and source.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub data_dir: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("{s:?} is not a log format (text or json)")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Where the key that encrypts BMC passwords comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// SECRET_KEY / server.secret_key: a passphrase the key is derived from.
    Key(String),
    /// A file holding the passphrase (created with a random one if missing).
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(_) => f.write_str("Key(<redacted>)"),
            Self::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub enable: bool,
    /// Where HTTPS listens (the plain `http.listen` keeps serving the boot
    /// and callback endpoints).
    pub listen: SocketAddr,
    /// PEM: the certificate chain.
    pub certificate: Option<String>,
    /// PEM: the private key. Debug is redacted.
    pub key: Option<Secret>,
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Plain-HTTP requests for the API are redirected to HTTPS; what
    /// firmware and installers fetch is not.
    pub set_redirect: bool,
}

/// The TFTP server's settings.
#[derive(Debug, Clone)]
pub struct TftpSettings {
    pub enable: bool,
    pub listen: SocketAddr,
    pub root: PathBuf,
    /// Searched after `root`: pxelinux and its modules.
    pub syslinux_dirs: Vec<PathBuf>,
    pub max_transfers: u32,
    pub max_blksize: u16,
    pub max_windowsize: u16,
}

/// The validated, effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Base URL machines and installers use to reach us (BOOTLOADER_URL).
    pub public_url: String,
    pub http_listen: SocketAddr,
    pub database: DatabaseConfig,
    pub secret: SecretSource,
    pub tls: TlsConfig,
    /// May hold a password: Debug is redacted.
    pub broker_url: Option<Secret>,
    /// The topic exchange events are published to.
    pub broker_exchange: String,
    /// How long outbox rows are kept once they are done with.
    pub outbox_retention: Duration,
    /// The web console's sign-in sessions and looks.
    pub ui: UiSettings,
    /// Holds a token: Debug is redacted.
    pub slack_hook_url: Option<Secret>,
    pub slack_channel: Option<String>,
    /// Deployment notifications by email.
    pub email: Option<EmailSettings>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub tftp: TftpSettings,
    /// DHCP, static files and the boot timeline.
    pub boot: BootSettings,
    /// BMC drivers, retries, boot-storm pacing.
    pub power: crate::power::PowerSettings,
    /// How long a deployment's action may take when neither it, its step
    /// nor its profile says.
    pub deployment_timeout: Duration,
    /// The largest file a `serve_file` url source may download.
    pub download_max_bytes: u64,
    /// Bounds on what unauthenticated traffic may make the daemon hold or
    /// write.
    pub limits: Limits,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Every setting with its source, for `check-config`.
    pub settings: Vec<Setting>,
}

impl Config {
    /// Settings given but not used by any part of this build yet; `serve`
    /// warns about each so that nobody believes they took effect.
    pub fn inert_settings(&self) -> Vec<&'static str> {
        let mut inert = Vec::new();
        if self.slack_hook_url.is_none() && self.slack_channel.is_some() {
            inert.push("slack.channel (without slack.hook_url nothing is sent)");
        }
        inert
    }
}

/// What a reloaded configuration changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// The `[[dhcp.quirk]]` rules differ: they are applied at once.
    pub quirks: bool,
    /// Other settings whose values differ: they take effect at the next
    /// start. Secrets are compared by whether they are set, not by value
    /// (their values are redacted here).
    pub need_restart: Vec<&'static str>,
}

/// Compares the running configuration with one read again (SIGHUP).
pub fn compare(running: &Config, reread: &Config) -> Reload {
    let need_restart = reread
        .settings
        .iter()
        .filter(|s| s.key != "dhcp.quirk")
        .filter(|s| {
            running
                .settings
                .iter()
                .find(|o| o.key == s.key)
                .is_none_or(|o| o.value != s.value)
        })
        .map(|s| s.key)
        .collect();
    Reload {
        quirks: running.boot.dhcp.quirks != reread.boot.dhcp.quirks,
        need_restart,
    }
}

/// `[email]`: where deployment notifications are mailed.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtps://[user:password@]host[:port]` (TLS, port 465 by default),
    /// `smtp://...?tls=required` (STARTTLS), or `smtp://host:25` (plain,
    /// for a relay on the host or the site's network). Percent-encode the
    /// user and password. May hold a password: Debug is redacted.
    pub smtp_url: Secret,
    pub from: String,
    pub to: Vec<String>,
}

/// Reads the environment through a function so tests can pass a map.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Loads the configuration. `path` is the `--config` flag: when it is given
/// the file must exist; when it is not, [`DEFAULT_CONFIG_PATH`] is read if it
/// exists and otherwise the zero-config defaults apply.
pub fn load(
    path: Option<&Path>,
    env: EnvLookup<'_>,
    cli: &CliOverrides,
) -> Result<Config, ConfigError> {
    let (file, file_path) = match path {
        Some(p) => (read_file(p)?, Some(p.to_path_buf())),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            let p = Path::new(DEFAULT_CONFIG_PATH);
            (read_file(p)?, Some(p.to_path_buf()))
        }
        None => (FileConfig::default(), None),
    };
    resolve(file, file_path, env, cli)
}

/// Parses a config file's text; errors name the bad key.
pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().to_string(),
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(&text, path)
}

fn resolve(
    file: FileConfig,
    file_path: Option<PathBuf>,
    env: EnvLookup<'_>,
    cli: &CliOverrides,
) -> Result<Config, ConfigError> {
    let mut r = Resolver {
        env,
        file_path: file_path.clone(),
        settings: Vec::new(),
        errors: Vec::new(),
    };
    let mut f = file;
    let boot_file = boot::BootFile {
        dhcp: std::mem::take(&mut f.dhcp),
        static_dir: f.http.static_dir.take(),
        retention_days: f.timeline.retention_days,
    };

    let data_dir = r
        .pick(
            "server.data_dir",
            cli.data_dir
                .as_ref()
                .map(|p| (p.display().to_string(), "--data-dir")),
            f.server.data_dir,
        )
        .unwrap_or_default();
    let data_dir = PathBuf::from(data_dir);

    let listen_raw = r
        .pick(
            "http.listen",
            cli.http_listen.map(|a| (a.to_string(), "--http-listen")),
            f.http.listen,
        )
        .unwrap_or_default();
    let http_listen = match listen_raw.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.errors.push(format!(
                "http.listen: {listen_raw:?} is not an address:port such as 127.0.0.1:8080"
            ));
            None
        }
    };

    let url = r.pick("server.url", None, f.server.url);
    let public_url = match (url, http_listen) {
        (Some(u), _) => {
            let u = u.trim_end_matches('/').to_string();
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
                r.errors.push(format!(
                    "server.url: {u:?} must be an absolute http:// or https:// URL"
                ));
            }
            u
        }
        (None, Some(a)) if a.ip().is_unspecified() => {
            r.errors.push(format!(
                "server.url (BOOTLOADER_URL) must be set when http.listen is the wildcard address {a}: machines need an address they can reach"
            ));
            String::new()
        }
        (None, Some(a)) => format!("http://{a}"),
        (None, None) => String::new(),
    };

    let secret = resolve_secret(
        &mut r,
        f.server.secret_key,
        f.server.secret_key_file,
        &data_dir,
    );

    let database = resolve_database(&mut r, std::mem::take(&mut f.database), &data_dir);

    let tls = resolve_tls(&mut r, std::mem::take(&mut f.tls), http_listen);
    let broker_url = r.pick("broker.url", None, f.broker.url);
    let broker_exchange = r
        .pick("broker.exchange", None, f.broker.exchange)
        .unwrap_or_default();
    let outbox_retention_days = r
        .pick("broker.retention_days", None, f.broker.retention_days)
        .unwrap_or_default();
    if broker_exchange.is_empty() || broker_exchange.len() > 255 {
        r.errors
            .push("broker.exchange must be 1 to 255 characters".into());
    }
    if let Some(url) = &broker_url
        && !url.starts_with("amqp://")
    {
        r.errors.push(
            "broker.url must be an amqp:// URL (amqps is not supported by this build)".into(),
        );
    }
    let ui = resolve_ui(&mut r, std::mem::take(&mut f.ui));
    let slack_hook_url = r.pick("slack.hook_url", None, f.slack.hook_url);
    let slack_channel = r.pick("slack.channel", None, f.slack.channel);
    if let Some(url) = &slack_hook_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        r.errors
            .push("slack.hook_url must be an https:// URL (Slack's incoming webhook)".into());
    }
    let email = resolve_email(&mut r, f.email);

    let log_format_raw = r
        .pick(
            "log.format",
            cli.log_format.map(|l| (l.to_string(), "--log-format")),
            f.log.format,
        )
        .unwrap_or_default();
    let log_format = log_format_raw.parse().unwrap_or_else(|e: String| {
        r.errors.push(format!("log.format: {e}"));
        LogFormat::Text
    });
    let log_level = r.pick("log.level", None, f.log.level).unwrap_or_default();

    let default_page_size = r
        .pick("api.default_page_size", None, f.api.default_page_size)
        .unwrap_or_default();
    let max_page_size = r
        .pick("api.max_page_size", None, f.api.max_page_size)
        .unwrap_or_default();
    if default_page_size == 0 || default_page_size > max_page_size {
        r.errors.push(format!(
            "api.default_page_size ({default_page_size}) must be between 1 and api.max_page_size ({max_page_size})"
        ));
    }

    let tftp = resolve_tftp(&mut r, std::mem::take(&mut f.tftp));

    let boot = boot::resolve(&mut r, boot_file, &data_dir);
    let power = power::resolve(&mut r, std::mem::take(&mut f.power));
    let limits = limits::resolve(&mut r, std::mem::take(&mut f.limits));
    let timeout_minutes = r
        .pick(
            "deployments.timeout_minutes",
            None,
            f.deployments.timeout_minutes,
        )
        .unwrap_or_default();
    let download_max_mb = r
        .pick(
            "deployments.download_max_mb",
            None,
            f.deployments.download_max_mb,
        )
        .unwrap_or_default();

    if !r.errors.is_empty() {
        return Err(ConfigError::Invalid(r.errors));
    }
    Ok(Config {
        data_dir,
        public_url,
        http_listen: http_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        database,
        secret,
        tls,
        broker_url: broker_url.map(bootloader_core::model::Secret::new),
        broker_exchange,
        outbox_retention: Duration::from_secs(u64::from(outbox_retention_days.max(1)) * 86_400),
        ui,
        slack_hook_url: slack_hook_url.map(bootloader_core::model::Secret::new),
        slack_channel,
        email,
        log_format,
        log_level,
        default_page_size,
        max_page_size,
        tftp,
        boot,
        power,
        deployment_timeout: Duration::from_secs(u64::from(timeout_minutes) * 60),
        download_max_bytes: u64::from(download_max_mb) * 1024 * 1024,
        limits,
        file: file_path,
        settings: r.settings,
    })
}

#[cfg(test)]
mod tests;
