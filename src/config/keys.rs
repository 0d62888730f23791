//! Every setting in one table: its key in the file, the environment
//! variables that override it (the older system's names first), whether
//! its value is secret, and one line on what it does. Layering reads the
//! environment names and the secrecy from here, `check-config` prints the
//! doc with `--explain`, and a test holds the shipped
//! `packaging/bootloader.toml` and the effective defaults to it.

/// How a value is shown by `check-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    Plain,
    /// Never shown.
    Secret,
    /// A URL whose password part is hidden.
    Url,
}

#[derive(Debug)]
pub struct Key {
    /// `section.name`, as in the file.
    pub name: &'static str,
    /// Environment variables, the first set one wins.
    pub env: &'static [&'static str],
    pub secrecy: Secrecy,
    /// The command-line flag that overrides it, if one does.
    pub flag: Option<&'static str>,
    /// The value when nothing sets it, as it would be written in the
    /// environment; `None` for settings without one and for those whose
    /// default is computed from other settings (the doc says from what).
    pub default: Option<&'static str>,
    /// The least and the greatest value a number may take (`None`: no
    /// greatest).
    pub range: Option<(u64, Option<u64>)>,
    pub doc: &'static str,
}

impl Key {
    /// This key with the default `value`.
    const fn or(self, value: &'static str) -> Self {
        Self {
            default: Some(value),
            ..self
        }
    }

    /// This key, a number between `least` and `most`.
    const fn within(self, least: u64, most: u64) -> Self {
        Self {
            range: Some((least, Some(most))),
            ..self
        }
    }

    /// This key, a number of at least `least`.
    const fn at_least(self, least: u64) -> Self {
        Self {
            range: Some((least, None)),
            ..self
        }
    }
}

const fn key(name: &'static str, env: &'static [&'static str], doc: &'static str) -> Key {
    Key {
        name,
        env,
        secrecy: Secrecy::Plain,
        flag: None,
        default: None,
        range: None,
        doc,
    }
}

const fn secret(name: &'static str, env: &'static [&'static str], doc: &'static str) -> Key {
    Key {
        secrecy: Secrecy::Secret,
        ..key(name, env, doc)
    }
}

const fn flagged(
    name: &'static str,
    env: &'static [&'static str],
    flag: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        flag: Some(flag),
        ..key(name, env, doc)
    }
}

/// Every setting, in the order of the shipped file.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    // [server]
    key("server.url", &["BOOTLOADER_URL"], "Base URL machines and installers use to reach the daemon; defaults to http://<http.listen>."),
    flagged("server.data_dir", &["BOOTLOADER_DATA_DIR"], "--data-dir", "Where the embedded database, the secret key file and caches live.").or("./bootloader-data"),
    secret("server.secret_key", &["SECRET_KEY", "BOOTLOADER_SECRET_KEY"], "Passphrase the key that encrypts BMC passwords is derived from (at least 16 characters)."),
    key("server.secret_key_file", &["BOOTLOADER_SECRET_KEY_FILE"], "File holding that passphrase; created with a random one if missing."),
    // [http]
    flagged("http.listen", &["BOOTLOADER_HTTP_LISTEN"], "--http-listen", "Address and port of the HTTP server (API, boot scripts, callbacks).").or("127.0.0.1:8080"),
    key("http.static_dir", &["BOOTLOADER_HTTP_STATIC_DIR"], "Served at /static/ with Range and ETag; defaults to <data_dir>/static."),
    // [database]
    Key { secrecy: Secrecy::Url, ..key("database.url", &["DATABASE_URL"], "postgres://user:password@host:5432/dbname or sqlite:///path; unset: embedded SQLite.") },
    key("database.host", &["DB_HOST"], "PostgreSQL by parts: setting the host selects PostgreSQL."),
    key("database.port", &["DB_PORT"], "PostgreSQL port.").or("5432"),
    key("database.name", &["DB_NAME"], "PostgreSQL database.").or("bootloader"),
    key("database.user", &["DB_USER"], "PostgreSQL user.").or("bootloader"),
    secret("database.password", &["DB_PASSWORD"], "PostgreSQL password."),
    key("database.max_connections", &["BOOTLOADER_DB_MAX_CONNECTIONS"], "Size of the PostgreSQL connection pool.").or("10").at_least(1),
    // [tls]
    key("tls.enable", &["SSL_ENABLE"], "HTTPS for the API and operators, on its own port.").or("false"),
    key("tls.listen", &["BOOTLOADER_TLS_LISTEN"], "Where HTTPS listens; defaults to http.listen's address, port 8443."),
    secret("tls.certificate", &["SSL_CERTIFICATE_CONTENTS"], "The certificate chain, PEM."),
    secret("tls.key", &["SSL_KEY_CONTENTS"], "The private key, PEM."),
    key("tls.certificate_file", &["SSL_CERTIFICATE_FILE"], "The certificate chain, as a PEM file."),
    key("tls.key_file", &["SSL_KEY_FILE"], "The private key, as a PEM file."),
    key("tls.set_redirect", &["SSL_SET_REDIRECT"], "Redirect the API on plain HTTP to HTTPS; boot endpoints stay on HTTP.").or("false"),
    // [broker]
    Key { secrecy: Secrecy::Url, ..key("broker.url", &["BROKER_URL"], "RabbitMQ the outbox relay publishes every change to; unset: no broker.") },
    key("broker.exchange", &["BOOTLOADER_BROKER_EXCHANGE"], "The topic exchange events are published to.").or("bootloader"),
    key("broker.retention_days", &["BOOTLOADER_BROKER_RETENTION_DAYS"], "Days outbox rows are kept once published and notified.").or("7").at_least(1),
    // [ui]
    key("ui.default_theme", &["DEFAULT_THEME"], "The web console's theme for users who did not pick one: light, dark or high-contrast.").or("light"),
    key("ui.gravatar_proxy", &["GRAVATAR_PROXY"], "Show avatars from Gravatar, fetched through the daemon (browsers never reach the internet); off: initials.").or("false"),
    key("ui.gravatar_url", &["BOOTLOADER_UI_GRAVATAR_URL"], "Where the daemon fetches avatars from (a mirror, for sites that run one).").or("https://www.gravatar.com/avatar"),
    key("ui.session_idle_minutes", &["BOOTLOADER_UI_SESSION_IDLE_MINUTES"], "A console session unused for this long ends.").or("720").within(5, 10080),
    key("ui.session_days", &["BOOTLOADER_UI_SESSION_DAYS"], "A console session ends this many days after sign-in, however used.").or("7").within(1, 90),
    // [slack]
    secret("slack.hook_url", &["SLACK_HOOK_URL"], "Slack incoming webhook for deployment notifications."),
    key("slack.channel", &["SLACK_CHANNEL"], "Slack channel of those notifications."),
    // [email]
    Key { secrecy: Secrecy::Url, ..key("email.smtp_url", &["BOOTLOADER_EMAIL_SMTP_URL"], "smtps://, smtp://...?tls=required or plain smtp:// server for notifications by email.") },
    key("email.from", &["BOOTLOADER_EMAIL_FROM"], "Sender of notification emails."),
    key("email.to", &["BOOTLOADER_EMAIL_TO"], "Recipients of notification emails, comma-separated."),
    // [log]
    flagged("log.format", &["BOOTLOADER_LOG_FORMAT"], "--log-format", "text or json.").or("text"),
    key("log.level", &["BOOTLOADER_LOG_LEVEL"], "A tracing filter such as info or info,bootloader::http=debug; RUST_LOG wins.").or("info"),
    // [api]
    key("api.default_page_size", &["BOOTLOADER_API_DEFAULT_PAGE_SIZE"], "Page size of list endpoints without ?limit=.").or("100"),
    key("api.max_page_size", &["BOOTLOADER_API_MAX_PAGE_SIZE"], "Largest ?limit= of list endpoints.").or("1000"),
    // [tftp]
    key("tftp.enable", &["BOOTLOADER_TFTP_ENABLE"], "The read-only TFTP server that hands iPXE to PXE firmware.").or("false"),
    key("tftp.listen", &["BOOTLOADER_TFTP_LISTEN"], "Where TFTP listens (port 69 needs CAP_NET_BIND_SERVICE).").or("0.0.0.0:69"),
    key("tftp.root", &["BOOTLOADER_TFTP_ROOT"], "The directory TFTP serves (Debian's ipxe package fills /usr/lib/ipxe).").or("/usr/lib/ipxe"),
    key("tftp.syslinux_dirs", &["BOOTLOADER_TFTP_SYSLINUX_DIRS"], "Directories searched after tftp.root, comma-separated in the environment: lpxelinux.0 and its modules for deployments that serve pxelinux.cfg/ (Debian's pxelinux and syslinux-common).").or("/usr/lib/PXELINUX,/usr/lib/syslinux/modules/bios"),
    key("tftp.max_transfers", &["BOOTLOADER_TFTP_MAX_TRANSFERS"], "Transfers in flight at most; more requests wait, unanswered, for a free slot.").or("1024").at_least(1),
    key("tftp.max_blksize", &["BOOTLOADER_TFTP_MAX_BLKSIZE"], "Largest blksize granted (RFC 2348).").or("1468").within(8, 65464),
    key("tftp.max_windowsize", &["BOOTLOADER_TFTP_MAX_WINDOWSIZE"], "Largest windowsize granted (RFC 7440).").or("64").within(1, 32768),
    // [dhcp]
    key("dhcp.mode", &["BOOTLOADER_DHCP_MODE"], "off, proxy (beside the site's DHCP server) or authoritative.").or("off"),
    key("dhcp.interfaces", &["BOOTLOADER_DHCP_INTERFACES"], "Boot interfaces, comma-separated in the environment; required unless off.").or(""),
    key("dhcp.listen", &["BOOTLOADER_DHCP_LISTEN"], "The address DHCP sockets bind to.").or("0.0.0.0"),
    key("dhcp.port", &["BOOTLOADER_DHCP_PORT"], "The DHCP server port.").or("67").within(1, 65535),
    key("dhcp.proxy_port", &["BOOTLOADER_DHCP_PROXY_PORT"], "The PXE boot server port ProxyDHCP also answers on.").or("4011").within(1, 65535),
    key("dhcp.client_port", &["BOOTLOADER_DHCP_CLIENT_PORT"], "The port replies go to.").or("68").within(1, 65535),
    key("dhcp.server_address", &["BOOTLOADER_DHCP_SERVER_ADDRESS"], "Our address as clients see it; defaults to the interface's first IPv4 address."),
    key("dhcp.location", &["BOOTLOADER_DHCP_LOCATION"], "Answer only for this location's networks."),
    key("dhcp.unknown", &["BOOTLOADER_DHCP_UNKNOWN"], "Machines no interface has: ignore, or local (iPXE, then the local disk).").or("ignore"),
    key("dhcp.efi_x64", &["BOOTLOADER_DHCP_EFI_X64"], "The iPXE x86-64 UEFI machines get: ipxe.efi or snponly.efi.").or("ipxe.efi"),
    key("dhcp.arm64_binary", &["BOOTLOADER_DHCP_ARM64_BINARY"], "File in tftp.root of an arm64 EFI iPXE; arm64 clients are not answered without one."),
    key("dhcp.lease_time", &["BOOTLOADER_DHCP_LEASE_TIME"], "Lease time in seconds.").or("3600").at_least(60),
    key("dhcp.offer_hold", &["BOOTLOADER_DHCP_OFFER_HOLD"], "Seconds an offered address is held before the REQUEST.").or("30").at_least(1),
    key("dhcp.decline_hold", &["BOOTLOADER_DHCP_DECLINE_HOLD"], "Seconds a declined address stays out of the pool.").or("600").at_least(1),
    key("dhcp.unicast", &["BOOTLOADER_DHCP_UNICAST"], "Unicast replies to clients without an address (adds an ARP entry).").or("false"),
    key("dhcp.trusted_relays", &["BOOTLOADER_DHCP_TRUSTED_RELAYS"], "Relays whose requests are answered, comma-separated in the environment; empty: any.").or(""),
    key("dhcp.router_advertisements", &["BOOTLOADER_DHCP_ROUTER_ADVERTISEMENTS"], "Answer IPv6 router solicitations on the boot interfaces with an empty advertisement, which ends iPXE's wait for IPv6: auto (unless another router advertises there), on, off.").or("auto"),
    key("dhcp.quirk", &[], "Firmware quirk rules, [[dhcp.quirk]] tables in the file; the first that matches applies."),
    // [timeline]
    key("timeline.retention_days", &["BOOTLOADER_TIMELINE_RETENTION_DAYS"], "Days the boot timeline is kept.").or("14").at_least(1),
    // [power]
    key("power.driver", &["BOOTLOADER_POWER_DRIVER"], "The BMC driver of servers that do not name one: native or ipmitool.").or("native"),
    key("power.timeout_seconds", &["BOOTLOADER_POWER_TIMEOUT_SECONDS"], "One attempt at one BMC command, the session included.").or("10").within(1, 300),
    key("power.retries", &["BOOTLOADER_POWER_RETRIES"], "Extra attempts after a transient BMC failure.").or("2").within(0, 10),
    key("power.backoff_ms", &["BOOTLOADER_POWER_BACKOFF_MS"], "The first retry's delay; it doubles each time, with jitter.").or("1000"),
    key("power.max_in_flight", &["BOOTLOADER_POWER_MAX_IN_FLIGHT"], "BMC operations in flight at most.").or("32").within(1, 10000),
    key("power.storm_rate", &["BOOTLOADER_POWER_STORM_RATE"], "Power-on and cycle commands started per second at most.").or("2.0"),
    key("power.storm_in_flight", &["BOOTLOADER_POWER_STORM_IN_FLIGHT"], "Power-on and cycle commands in flight at most.").or("8").within(1, 10000),
    key("power.ipmitool", &["BOOTLOADER_POWER_IPMITOOL"], "The ipmitool program.").or("ipmitool"),
    key("power.ipmitool_cipher_suite", &["BOOTLOADER_POWER_IPMITOOL_CIPHER_SUITE"], "The cipher suite ipmitool asks for.").or("17").within(0, 17),
    // [deployments]
    key("deployments.timeout_minutes", &["BOOTLOADER_DEPLOYMENTS_TIMEOUT_MINUTES"], "How long an action may take when its profile does not say.").or("60").within(1, 10080),
    key("deployments.download_max_mb", &["BOOTLOADER_DEPLOYMENTS_DOWNLOAD_MAX_MB"], "The largest file a serve_file url source downloads.").or("4096").at_least(1),
    // [limits]
    key("limits.http_connections", &["BOOTLOADER_LIMITS_HTTP_CONNECTIONS"], "HTTP connections held at once; the longest idle goes for a newcomer.").or("8192").within(16, 1000000),
    key("limits.http_connections_per_source", &["BOOTLOADER_LIMITS_HTTP_CONNECTIONS_PER_SOURCE"], "HTTP connections one address may hold.").or("64").within(1, 1000000),
    key("limits.http_header_timeout_secs", &["BOOTLOADER_LIMITS_HTTP_HEADER_TIMEOUT_SECS"], "Seconds a request's head may take to arrive.").or("10").within(1, 3600),
    key("limits.http_idle_timeout_secs", &["BOOTLOADER_LIMITS_HTTP_IDLE_TIMEOUT_SECS"], "Seconds a connection may sit with no byte moving.").or("60").within(1, 86400),
    key("limits.callback_body_bytes", &["BOOTLOADER_LIMITS_CALLBACK_BODY_BYTES"], "The largest callback body kept.").or("65536").within(0, 16777216),
    key("limits.callbacks_per_deployment", &["BOOTLOADER_LIMITS_CALLBACKS_PER_DEPLOYMENT"], "Callbacks one deployment may hold.").or("64").within(1, 100000),
    key("limits.timeline_max_events", &["BOOTLOADER_LIMITS_TIMELINE_MAX_EVENTS"], "Boot timeline rows kept at most.").or("500000").within(1000, 100000000),
    key("limits.tftp_transfers_per_source", &["BOOTLOADER_LIMITS_TFTP_TRANSFERS_PER_SOURCE"], "TFTP transfers one address may have at once.").or("8").within(1, 65536),
];

/// The setting named `name`.
pub fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}
