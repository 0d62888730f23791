//! The sections of the file that need more than one key at a time: the
//! secret key (a passphrase or its file), the database (SQLite, or
//! PostgreSQL by URL or by parts), TLS, TFTP, email.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bootloader_core::model::redact_url;
use bootloader_store::{DatabaseConfig, PostgresTarget};

use super::resolver::Resolver;
use super::{EmailSettings, SecretSource, TftpSettings, TlsConfig, file};

/// Where the key that seals BMC passwords comes from.
pub(super) fn resolve_secret(
    r: &mut Resolver<'_>,
    secret_key: Option<String>,
    secret_key_file: Option<String>,
    data_dir: &Path,
) -> SecretSource {
    let secret_key = r.pick("server.secret_key", None, secret_key);
    let secret_key_file = r.pick("server.secret_key_file", None, secret_key_file);

    match (secret_key, secret_key_file) {
        (Some(_), Some(_)) => {
            r.errors.push(
                "server.secret_key and server.secret_key_file are both set; keep one".to_string(),
            );
            SecretSource::File(PathBuf::new())
        }
        (Some(k), None) if k.len() < 16 => {
            r.errors
                .push("server.secret_key (SECRET_KEY) must be at least 16 characters".to_string());
            SecretSource::Key(k)
        }
        (Some(k), None) => SecretSource::Key(k),
        (None, Some(p)) => SecretSource::File(PathBuf::from(p)),
        (None, None) => SecretSource::File(data_dir.join("secret.key")),
    }
}

/// The embedded SQLite file, or PostgreSQL by URL or by parts.
pub(super) fn resolve_database(
    r: &mut Resolver<'_>,
    d: file::DatabaseSection,
    data_dir: &Path,
) -> DatabaseConfig {
    let db_url = r.pick("database.url", None, d.url);
    let db_host = r.pick("database.host", None, d.host);
    let db_port = r.pick("database.port", None, d.port);
    let db_name = r.pick("database.name", None, d.name);
    let db_user = r.pick("database.user", None, d.user);
    let db_password = r.pick("database.password", None, d.password);
    let max_connections = r
        .pick("database.max_connections", None, d.max_connections)
        .unwrap_or_default();

    match (db_url, db_host) {
        (Some(_), Some(_)) => {
            r.errors.push(
                "database.url (DATABASE_URL) and database.host (DB_HOST) are both set; keep one"
                    .to_string(),
            );
            DatabaseConfig::Sqlite {
                path: PathBuf::new(),
            }
        }
        (Some(url), None) => {
            if let Some(path) = url.strip_prefix("sqlite://") {
                DatabaseConfig::Sqlite {
                    path: PathBuf::from(path),
                }
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                DatabaseConfig::Postgres {
                    target: PostgresTarget::Url(url),
                    max_connections,
                }
            } else {
                r.errors.push(format!(
                    "database.url: {} is neither sqlite:// nor postgres://",
                    redact_url(&url)
                ));
                DatabaseConfig::Sqlite {
                    path: PathBuf::new(),
                }
            }
        }
        (None, Some(host)) => DatabaseConfig::Postgres {
            target: PostgresTarget::Parts {
                host,
                port: db_port.unwrap_or(5432),
                name: db_name.unwrap_or_default(),
                user: db_user.unwrap_or_default(),
                password: db_password,
            },
            max_connections,
        },
        (None, None) => DatabaseConfig::Sqlite {
            path: data_dir.join("bootloader.sqlite3"),
        },
    }
}

/// HTTPS beside the plain listener, whose address gives its default.
pub(super) fn resolve_tls(
    r: &mut Resolver<'_>,
    t: file::TlsSection,
    http_listen: Option<SocketAddr>,
) -> TlsConfig {
    let tls = TlsConfig {
        enable: r.pick("tls.enable", None, t.enable).unwrap_or_default(),
        certificate: r.pick("tls.certificate", None, t.certificate),
        key: r
            .pick("tls.key", None, t.key)
            .map(bootloader_core::model::Secret::new),
        listen: {
            let host = http_listen.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
            let default = SocketAddr::new(host, 8443).to_string();
            let raw = r.pick_or("tls.listen", None, t.listen, default);
            match raw.parse() {
                Ok(a) => a,
                Err(_) => {
                    r.errors
                        .push(format!("tls.listen: {raw:?} is not an address:port"));
                    SocketAddr::new(host, 8443)
                }
            }
        },
        certificate_file: r
            .pick("tls.certificate_file", None, t.certificate_file)
            .map(PathBuf::from),
        key_file: r.pick("tls.key_file", None, t.key_file).map(PathBuf::from),
        set_redirect: r
            .pick("tls.set_redirect", None, t.set_redirect)
            .unwrap_or_default(),
    };

    if tls.enable {
        if tls.certificate.is_none() && tls.certificate_file.is_none() {
            r.errors.push(
                "tls.enable (SSL_ENABLE) needs a certificate: tls.certificate (SSL_CERTIFICATE_CONTENTS) or tls.certificate_file"
                    .into(),
            );
        }
        if tls.key.is_none() && tls.key_file.is_none() {
            r.errors.push(
                "tls.enable (SSL_ENABLE) needs a private key: tls.key (SSL_KEY_CONTENTS) or tls.key_file"
                    .into(),
            );
        }
    }
    tls
}

/// The TFTP server.
pub(super) fn resolve_tftp(r: &mut Resolver<'_>, t: file::TftpSection) -> TftpSettings {
    let tftp_enable = r.pick("tftp.enable", None, t.enable).unwrap_or_default();
    let tftp_listen_raw = r.pick("tftp.listen", None, t.listen).unwrap_or_default();
    let tftp_listen = tftp_listen_raw.parse::<SocketAddr>().unwrap_or_else(|_| {
        r.errors.push(format!(
            "tftp.listen: {tftp_listen_raw:?} is not an address:port such as 0.0.0.0:69"
        ));
        SocketAddr::from(([0, 0, 0, 0], 69))
    });
    let tftp_root = r.pick("tftp.root", None, t.root).unwrap_or_default();
    let syslinux_dirs: String = r
        .pick(
            "tftp.syslinux_dirs",
            None,
            t.syslinux_dirs.map(|v| v.join(",")),
        )
        .unwrap_or_default();
    let max_transfers = r
        .pick("tftp.max_transfers", None, t.max_transfers)
        .unwrap_or_default();
    let max_blksize = r
        .pick("tftp.max_blksize", None, t.max_blksize)
        .unwrap_or_default();
    let max_windowsize = r
        .pick("tftp.max_windowsize", None, t.max_windowsize)
        .unwrap_or_default();

    TftpSettings {
        enable: tftp_enable,
        listen: tftp_listen,
        root: PathBuf::from(tftp_root),
        syslinux_dirs: syslinux_dirs
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect(),
        max_transfers,
        max_blksize: max_blksize.clamp(8, 65464) as u16,
        max_windowsize: max_windowsize.clamp(1, 32768) as u16,
    }
}

pub(super) fn resolve_email(r: &mut Resolver<'_>, f: file::EmailSection) -> Option<EmailSettings> {
    let smtp_url = r.pick("email.smtp_url", None, f.smtp_url);
    let from = r.pick("email.from", None, f.from);
    let to = r.pick("email.to", None, f.to);
    let smtp_url = smtp_url?;
    let mut ok = true;
    if !(smtp_url.starts_with("smtp://") || smtp_url.starts_with("smtps://")) {
        r.errors
            .push("email.smtp_url must be an smtp:// or smtps:// URL".into());
        ok = false;
    }
    let looks_like_address = |a: &str| {
        let a = a.trim();
        a.split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
    };
    let from = from.unwrap_or_default();
    if !looks_like_address(&from) {
        r.errors
            .push("email.from: give the sender's address (user@host) with email.smtp_url".into());
        ok = false;
    }
    let to: Vec<String> = to
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if to.is_empty() || !to.iter().all(|a| looks_like_address(a)) {
        r.errors.push(
            "email.to: give one or more addresses (user@host, separated by commas) with email.smtp_url"
                .into(),
        );
        ok = false;
    }
    ok.then(|| EmailSettings {
        smtp_url: bootloader_core::model::Secret::new(smtp_url),
        from: from.trim().to_string(),
        to,
    })
}

/// The web console's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// The theme of users who did not choose one.
    pub default_theme: bootloader_core::model::Theme,
    /// Avatars from Gravatar, fetched by the daemon; off: initials.
    pub gravatar_proxy: bool,
    /// Where avatars are fetched from (`<url>/<sha256 of the e-mail>`).
    pub gravatar_url: String,
    /// A session unused for this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however used.
    pub session_lifetime: Duration,
}

pub(super) fn resolve_ui(r: &mut Resolver<'_>, f: file::UiSection) -> UiSettings {
    let theme_text = r
        .pick("ui.default_theme", None, f.default_theme)
        .unwrap_or_default();
    let default_theme = theme_text.parse().unwrap_or_else(|e: String| {
        r.errors.push(format!("ui.default_theme: {e}"));
        bootloader_core::model::Theme::Light
    });
    let gravatar_proxy = r
        .pick("ui.gravatar_proxy", None, f.gravatar_proxy)
        .unwrap_or_default();
    let gravatar_url: String = r
        .pick("ui.gravatar_url", None, f.gravatar_url)
        .unwrap_or_default();
    if !(gravatar_url.starts_with("https://") || gravatar_url.starts_with("http://")) {
        r.errors.push(format!(
            "ui.gravatar_url must be an http(s) URL, not {gravatar_url:?}"
        ));
    }
    let idle_minutes: u32 = r
        .pick("ui.session_idle_minutes", None, f.session_idle_minutes)
        .unwrap_or_default();
    let days: u32 = r
        .pick("ui.session_days", None, f.session_days)
        .unwrap_or_default();
    UiSettings {
        default_theme,
        gravatar_proxy,
        gravatar_url: gravatar_url.trim_end_matches('/').to_string(),
        session_idle: Duration::from_secs(u64::from(idle_minutes) * 60),
        session_lifetime: Duration::from_secs(u64::from(days) * 86_400),
    }
}
