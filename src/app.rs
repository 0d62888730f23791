//! Start-up: the secret key, the store, the first user, and `run`, which
//! serves on listeners bound by the caller until a shutdown future fires.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::Config;
use crate::dhcp::{self, sockets::DhcpSocket};
use crate::http::{self, AppState};
use crate::supervisor::{Stage, Supervisor};
use crate::tftp;
use crate::timeline::Timeline;
use bootloader_core::model::{Name, TokenScope};
use bootloader_store::{self as store, SecretCipher, Store, UserSpec};

mod data_dir;
pub use data_dir::*;

/// Name of the staff user created on first start.
pub const FIRST_USER: &str = "admin";

/// Raises the soft limit on open files to the hard one (systemd's unit
/// sets `LimitNOFILE`; a shell's default soft limit of 1024 would let a
/// few hundred idle connections starve TFTP and the database of
/// descriptors) and returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// The HTTP connection bounds, with the global cap kept well below the
/// open-file limit, so that held connections never take the descriptors
/// TFTP, DHCP and the database need (each listener, plain and TLS, has its
/// own cap).
pub fn http_limits(config: &Config, open_files: u64) -> http::conn::ConnLimits {
    let mut limits = http::conn::ConnLimits::from_config(&config.limits);
    let listeners = if config.tls.enable { 2 } else { 1 };
    let room = (open_files.saturating_sub(512) / 2 / listeners).max(64) as usize;
    if limits.max > room {
        tracing::warn!(
            configured = limits.max,
            used = room,
            open_file_limit = open_files,
            "limits.http_connections lowered to fit the open-file limit (raise LimitNOFILE)"
        );
        limits.max = room;
    }
    limits
}

/// Opens the configured store (applying migrations) with the secret key.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let passphrase = load_secret(&config.secret)?;
    let cipher = SecretCipher::from_passphrase(&passphrase);
    store::open(&config.database, cipher).await.map_err(|e| match e {
        store::StoreError::Cipher(store::CipherError::WrongKey) => anyhow::anyhow!(
            "the configured secret key ({:?}) is not the one this database's BMC passwords were encrypted with. \
             Every daemon sharing a database needs the same key: if another daemon uses this database, give this one \
             that daemon's key (the same SECRET_KEY, or a copy of its data dir's secret.key in {}). \
             Otherwise restore the old key (if `bootloader rotate-secret` was interrupted, the new one is in the `.new` \
             file beside the key file)",
            config.secret,
            config.data_dir.display()
        ),
        other => anyhow::anyhow!("cannot open the store ({:?}): {other}", config.database),
    })
}

/// On a store without users, creates the staff user `admin` and returns its
/// new token, to be printed once.
pub async fn bootstrap_first_user(store: &dyn Store) -> anyhow::Result<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let name: Name = FIRST_USER.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let created = store
        .create_user(UserSpec {
            name: name.clone(),
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            is_active: true,
            is_staff: true,
        })
        .await;
    match created {
        Ok(_) => {}
        // Another daemon on the same database got there first.
        Err(store::StoreError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let (secret, _) = crate::ops::users::issue_token(
        store,
        &crate::ops::Actor::Host,
        &name,
        Some(TokenScope::Write),
        "created on first start",
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the first token: {e}"))?;
    Ok(Some(secret.expose().to_string()))
}

/// Every socket the daemon serves on, bound before anything serves.
pub struct Listeners {
    pub http: TcpListener,
    pub tftp: Option<UdpSocket>,
    /// Port 67 (and 4011 in proxy mode) per boot interface; empty when
    /// DHCP is off.
    pub dhcp: Vec<DhcpSocket>,
    /// IPv6 router solicitations per boot interface (`src/ndp.rs`); empty
    /// when DHCP is off or they are not answered.
    pub ndp: Vec<crate::ndp::RaSocket>,
    /// HTTPS (`tls.enable`): its socket and the certificate it presents.
    pub https: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// Binds what the configuration asks for, failing with a message that names
/// the setting and the likely cause.
pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
    let dhcp = dhcp::sockets::bind(&config.boot.dhcp)?;
    let ndp = if config.boot.dhcp.mode.is_some() {
        crate::ndp::bind(
            &config.boot.dhcp.interfaces,
            config.boot.dhcp.router_advertisements,
        )
    } else {
        Vec::new()
    };
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http_listen))?;
    let tftp = if config.tftp.enable {
        let addr = config.tftp.listen;
        let socket = UdpSocket::bind(addr).await.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "; ports below 1024 need root or CAP_NET_BIND_SERVICE"
                }
                std::io::ErrorKind::AddrInUse => {
                    "; another TFTP server (tftpd-hpa, dnsmasq?) holds it"
                }
                _ => "",
            };
            anyhow::anyhow!("cannot bind TFTP on {addr} (tftp.listen): {e}{hint}")
        })?;
        if !config.tftp.root.is_dir() {
            bail!(
                "tftp.root {} is not a directory (on Debian, `apt install ipxe` provides /usr/lib/ipxe)",
                config.tftp.root.display()
            );
        }
        Some(socket)
    } else {
        None
    };
    let https = if config.tls.enable {
        let acceptor = http::tls::acceptor(&config.tls)?;
        let listener = TcpListener::bind(config.tls.listen)
            .await
            .with_context(|| format!("cannot listen on {} (tls.listen)", config.tls.listen))?;
        Some((listener, acceptor))
    } else {
        None
    };
    Ok(Listeners {
        http,
        tftp,
        dhcp,
        ndp,
        https,
    })
}

/// Serves until `shutdown` resolves. The sockets are bound by the caller, so
/// tests can pass `127.0.0.1:0` and start-up errors surface before serving.
pub async fn run(
    config: &Config,
    store: Arc<dyn Store>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_reloads(config, store, listeners, shutdown, None).await
}

/// How long a stopping daemon waits for TFTP transfers and HTTP requests
/// under way before it cuts them off.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

/// As `run`; each configuration received on `reloads` (read again on
/// SIGHUP) is compared with the running one: the firmware quirk rules are
/// applied at once, every other changed setting is named as needing a
/// restart.
pub async fn run_with_reloads(
    config: &Config,
    store: Arc<dyn Store>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: Option<tokio::sync::mpsc::Receiver<Config>>,
) -> anyhow::Result<()> {
    // The metrics recorder, before anything counts.
    let metrics = crate::telemetry::handle();
    let upkeep = tokio::spawn(crate::telemetry::upkeep(metrics.clone()));
    let open_files = raise_open_file_limit();
    let instance = instance_name(&config.data_dir)?;
    let location = config
        .boot
        .dhcp
        .location
        .as_ref()
        .map(|l| l.as_str().to_string());
    tracing::info!(
        instance = %instance,
        location = location.as_deref().unwrap_or("(every location)"),
        "daemon"
    );
    let mut sup = Supervisor::new();
    let quirks = bootloader_core::dhcp::quirks::QuirkRules::new(config.boot.dhcp.quirks.clone());
    if let Some(reloads) = reloads {
        tokio::spawn(apply_reloads(config.clone(), quirks.clone(), reloads));
    }
    let (timeline, timeline_writer) = Timeline::new(
        store.clone(),
        crate::timeline::Retention {
            age: config.boot.timeline_retention,
            max_events: config.limits.timeline_max_events,
        },
        sup.shutdown(Stage::Record).wait(),
    );
    sup.spawn("timeline", Stage::Record, async move {
        timeline_writer.await;
        Ok(())
    });
    let (relay, notify) = start_events(&mut sup, config, &store, &instance, location.as_deref())?;
    // Known machines' first requests answered from memory too (where the
    // index is on: always on SQLite; on PostgreSQL once its listener
    // listens, which reads it then). A failure only means the index fills
    // as machines ask.
    match store.warm_boot_index().await {
        Ok(n) => tracing::debug!(interfaces = n, "boot index read ahead"),
        Err(e) => tracing::warn!(error = %e, "cannot read the boot index ahead"),
    }
    // Alone on SQLite, lease changes are durable in the journal before
    // their replies; what a previous run left there is applied first.
    let journal = if store.backend() == "sqlite" {
        let journal =
            dhcp::journal::Journal::open(&config.data_dir.join("lease-journal"), store.clone())
                .await?;
        let flusher = journal.clone().flusher(sup.shutdown(Stage::Work).wait());
        sup.spawn("lease journal", Stage::Work, async move {
            flusher.await;
            Ok(())
        });
        Some(journal)
    } else {
        None
    };
    // Every socket, for /readyz: each is up while its service runs.
    let serving = listed(&listeners)?;
    start_boot_services(
        &mut sup,
        config,
        dhcp::server::DhcpStores {
            boot: store.clone(),
            inventory: store.clone(),
            leases: store.clone(),
            shared: store.backend() != "sqlite",
            locks: store.clone(),
            instance: instance.clone(),
            journal: journal.clone(),
        },
        BootSockets {
            dhcp: listeners.dhcp,
            ndp: listeners.ndp,
            tftp: listeners.tftp,
        },
        &timeline,
        &quirks,
    );
    let power = crate::power::PowerService::new(store.clone(), store.clone(), config.power.clone());
    let engine = crate::workflow::Engine::new(
        crate::workflow::engine::EngineStores::of(&store),
        power.clone(),
        crate::workflow::EngineSettings {
            public_url: config.public_url.clone(),
            default_timeout: config.deployment_timeout,
            cache_dir: config.data_dir.join("cache").join("downloads"),
            download_max_bytes: config.download_max_bytes,
            runner: instance.clone(),
            location: location.clone(),
            // On SQLite this daemon is the only one: every callback comes
            // through its handler, which wakes the waiting task; where the
            // database tells of every callback stored (PostgreSQL), the
            // engine follows that (`Engine::run_claims`).
            callback_poll: if store.backend() == "sqlite" || store.callback_notices().is_some() {
                crate::workflow::engine::OWN_CALLBACK_POLL
            } else {
                crate::workflow::engine::SHARED_CALLBACK_POLL
            },
        },
    );
    // Deployments that were under way when the daemon stopped go on where
    // they stood, and those of a daemon that died are taken over; a store
    // that is not answering yet is retried. At shutdown the engine's tasks
    // stop and this daemon's deployments are handed over.
    {
        let engine = engine.clone();
        sup.spawn_restarting("engine", Stage::Work, move |stop| {
            let engine = engine.clone();
            async move {
                let claims = engine.clone().run_claims();
                tokio::pin!(claims);
                tokio::select! {
                    () = &mut claims => return Ok(()),
                    () = stop.wait() => engine.shutdown(),
                }
                claims.await;
                Ok(())
            }
        });
    }
    let boot_state = http::boot::BootState {
        engine: Some(engine.clone()),
        store: store.clone(),
        timeline: timeline.clone(),
        public_url: config.public_url.clone(),
        static_dir: config.boot.static_dir.clone(),
        binaries_dir: config.tftp.root.clone(),
        data_dir: config.data_dir.clone(),
        callback_body_bytes: config.limits.callback_body_bytes,
        callbacks: http::callbacks::CallbackWriter::spawn(
            store.clone(),
            config.limits.callbacks_per_deployment,
        ),
    };
    let commands = crate::events::commands::CommandHandle::default();
    let mut ops = crate::ops::Ops::new(&store, engine, power);
    if let Some(journal) = journal {
        ops.leases = journal;
    }
    let state = AppState {
        ops: ops.clone(),
        relay,
        commands: commands.clone(),
        notify,
        default_page_size: config.default_page_size,
        max_page_size: config.max_page_size,
    };
    // The command queue, when a broker is configured: commands are carried
    // out by the same operations as the REST requests they mirror.
    if let Some(url) = &config.broker_url {
        let settings = crate::events::commands::CommandSettings {
            url: url.expose().to_string(),
            queue: crate::events::commands::queue_name(location.as_deref()),
        };
        sup.spawn_restarting("commands", Stage::Work, move |stop| {
            let run = crate::events::commands::run(
                ops.clone(),
                settings.clone(),
                commands.clone(),
                stop.wait(),
            );
            async move {
                run.await;
                Ok(())
            }
        });
    }
    let health = http::health::HealthState {
        store: store.clone(),
        listeners: serving,
        services: sup.services(),
        relay: state.relay.clone(),
        commands: state.commands.clone(),
        notify: state.notify.clone(),
        metrics,
    };
    let http_address = listeners.http.local_addr()?;
    let console = http::console::ConsoleState::new(
        state.clone(),
        config.ui.clone(),
        health.listeners.clone(),
        health.services.clone(),
        config.settings.clone(),
    );
    let listening = health.listeners.clone();
    let front = http::router(state, boot_state, health, console);
    start_http(
        &mut sup,
        config,
        front,
        listeners.http,
        listeners.https,
        open_files,
    );
    // This daemon as its location's agent, once its listeners serve.
    {
        let presence = crate::presence::Presence {
            store: store.clone(),
            name: instance.clone(),
            location: location.clone(),
            url: config.public_url.clone(),
            started_at: time::OffsetDateTime::now_utc(),
            listeners: listening,
            services: sup.services(),
        };
        sup.spawn_restarting("agent", Stage::Work, move |stop| {
            let run = presence.clone().run(stop);
            async move {
                run.await;
                Ok(())
            }
        });
    }
    crate::systemd::notify(&format!("READY=1\nSTATUS=serving on {http_address}"));

    let failed = sup.failed();
    tokio::select! {
        () = shutdown => {}
        () = failed => tracing::error!("stopping: a service the daemon cannot run without has ended"),
    }
    crate::systemd::notify("STOPPING=1\nSTATUS=stopping: draining transfers and requests");
    // Requests and transfers under way get `DRAIN` to finish; then the
    // work they caused, its events and the timeline settle in that order.
    let stopped = sup.stop(DRAIN, SETTLE).await;
    upkeep.abort();
    stopped
}

/// The relay (with a broker), outbox pruning and notifications (when
/// configured), under the supervisor; their status handles for the API.
fn start_events(
    sup: &mut Supervisor,
    config: &Config,
    store: &Arc<dyn Store>,
    instance: &str,
    location: Option<&str>,
) -> anyhow::Result<(
    crate::events::relay::RelayHandle,
    crate::events::notify::NotifyHandle,
)> {
    // The outbox relay, when a broker is configured.
    let relay = crate::events::relay::RelayHandle::default();
    if let Some(url) = &config.broker_url {
        let settings = crate::events::relay::RelaySettings {
            url: url.expose().to_string(),
            exchange: config.broker_exchange.clone(),
            location: location.map(str::to_string),
            instance: instance.to_string(),
        };
        let (store, relay) = (store.clone(), relay.clone());
        sup.spawn_restarting("relay", Stage::Publish, move |stop| {
            let run = crate::events::relay::run(
                store.clone(),
                settings.clone(),
                relay.clone(),
                stop.wait(),
            );
            async move {
                run.await;
                Ok(())
            }
        });
    }
    // Old outbox rows, once published and notified.
    {
        let (store, retention, no_broker) = (
            store.clone(),
            config.outbox_retention,
            config.broker_url.is_none(),
        );
        sup.spawn_restarting("outbox-pruning", Stage::Work, move |stop| {
            let run = crate::events::prune_outbox(store.clone(), retention, no_broker, stop.wait());
            async move {
                run.await;
                Ok(())
            }
        });
    }
    // Slack and email notifications, when configured.
    let notify = crate::events::notify::NotifyHandle::default();
    if let Some(notifier) = crate::events::notify::Notifier::from_config(config, instance)? {
        let (notifier, store, notify) = (Arc::new(notifier), store.clone(), notify.clone());
        sup.spawn_restarting("notifications", Stage::Work, move |stop| {
            let run = notifier
                .clone()
                .run(store.clone(), notify.clone(), stop.wait());
            async move {
                run.await;
                Ok(())
            }
        });
    }
    Ok((relay, notify))
}

/// Every socket the daemon serves on, as `/readyz` lists them.
fn listed(listeners: &Listeners) -> anyhow::Result<Vec<http::health::Listener>> {
    let mut serving = vec![http::health::Listener {
        name: "http",
        address: listeners.http.local_addr()?.to_string(),
        interface: None,
    }];
    for s in &listeners.dhcp {
        serving.push(http::health::Listener {
            name: "dhcp",
            address: s.socket.local_addr()?.to_string(),
            interface: s.interface.clone(),
        });
    }
    if let Some((listener, _)) = &listeners.https {
        serving.push(http::health::Listener {
            name: "https",
            address: listener.local_addr()?.to_string(),
            interface: None,
        });
    }
    if let Some(socket) = &listeners.tftp {
        serving.push(http::health::Listener {
            name: "tftp",
            address: socket.local_addr()?.to_string(),
            interface: None,
        });
    }
    Ok(serving)
}

/// The boot path's sockets, handed to their services.
struct BootSockets {
    dhcp: Vec<DhcpSocket>,
    ndp: Vec<crate::ndp::RaSocket>,
    tftp: Option<UdpSocket>,
}

/// DHCP and TFTP on their bound sockets, under the supervisor.
fn start_boot_services(
    sup: &mut Supervisor,
    config: &Config,
    stores: dhcp::server::DhcpStores,
    sockets: BootSockets,
    timeline: &Timeline,
    quirks: &bootloader_core::dhcp::quirks::QuirkRules,
) {
    let tftp_store = stores.boot.clone();
    if !sockets.dhcp.is_empty() {
        let service = Arc::new(dhcp::server::DhcpService::new(
            &config.boot.dhcp,
            &config.public_url,
            stores,
            timeline.clone(),
            quirks,
        ));
        let serve = dhcp::server::serve(sockets.dhcp, service, sup.shutdown(Stage::Serve).wait());
        sup.spawn("dhcp", Stage::Serve, async move {
            serve.await;
            Ok(())
        });
    }
    if !sockets.ndp.is_empty() {
        let serve = crate::ndp::serve(
            sockets.ndp,
            config.boot.dhcp.router_advertisements,
            sup.shutdown(Stage::Serve).wait(),
        );
        sup.spawn("ndp", Stage::Serve, async move {
            serve.await;
            Ok(())
        });
    }
    if let Some(socket) = sockets.tftp {
        let settings = &config.tftp;
        let tftp_config = tftp::server::TftpConfig {
            root: settings.root.clone(),
            extra_roots: settings.syslinux_dirs.clone(),
            limits: bootloader_core::tftp::transfer::Limits {
                max_blksize: settings.max_blksize,
                max_windowsize: settings.max_windowsize,
                ..bootloader_core::tftp::transfer::Limits::default()
            },
            max_transfers: settings.max_transfers as usize,
            store: Some(tftp_store),
            timeline: Some(timeline.clone()),
            quirks: quirks.clone(),
            private_dir: Some(config.data_dir.clone()),
            per_source: config.limits.tftp_transfers_per_source,
        };
        let serve = tftp::server::serve(socket, tftp_config, sup.shutdown(Stage::Serve).wait());
        sup.spawn("tftp", Stage::Serve, async move {
            serve.await.context("TFTP server")
        });
    }
}

/// HTTPS (when configured) and plain HTTP with the same router, under the
/// supervisor; the plain listener redirects the API to HTTPS when asked.
fn start_http(
    sup: &mut Supervisor,
    config: &Config,
    front: http::Front,
    http_listener: TcpListener,
    https: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    open_files: u64,
) {
    let https_port = https
        .as_ref()
        .map(|(l, _)| l.local_addr().map(|a| a.port()));
    if let Some((listener, acceptor)) = https {
        let serve = http::tls::serve(
            listener,
            acceptor,
            front
                .clone()
                .map_router(|r| r.layer(axum::middleware::from_fn(http::tls::mark_https))),
            http_limits(config, open_files),
            sup.shutdown(Stage::Serve).wait(),
        );
        sup.spawn("https", Stage::Serve, async move {
            serve.await;
            Ok(())
        });
    }
    let plain = match (https_port, config.tls.set_redirect) {
        (Some(port), true) => {
            let port = port.unwrap_or(443);
            front.map_router(|r| {
                r.layer(axum::middleware::from_fn(move |req, next| {
                    http::tls::redirect(port, req, next)
                }))
            })
        }
        _ => front,
    };
    let serve = http::serve(
        http_listener,
        plain,
        http_limits(config, open_files),
        sup.shutdown(Stage::Serve).wait(),
    );
    sup.spawn("http", Stage::Serve, async move {
        serve.await.context("HTTP server")
    });
}

/// How long each later stage of a stopping daemon (work, relay, timeline)
/// may take before it is cut off.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies each configuration received on `reloads` (read again on
/// SIGHUP): the firmware quirk rules at once; every other changed setting
/// is named as needing a restart.
async fn apply_reloads(
    mut running: Config,
    quirks: bootloader_core::dhcp::quirks::QuirkRules,
    mut reloads: tokio::sync::mpsc::Receiver<Config>,
) {
    while let Some(reread) = reloads.recv().await {
        crate::systemd::notify("RELOADING=1");
        let change = crate::config::compare(&running, &reread);
        if change.quirks {
            quirks.replace(reread.boot.dhcp.quirks.clone());
            running.boot.dhcp.quirks = reread.boot.dhcp.quirks.clone();
            tracing::info!(
                rules = running.boot.dhcp.quirks.len(),
                "configuration reloaded: dhcp.quirk rules applied"
            );
        }
        if change.need_restart.is_empty() {
            tracing::info!("configuration reloaded: nothing else changed");
        } else {
            tracing::warn!(
                settings = change.need_restart.join(", "),
                "configuration reloaded: these settings changed and take effect only after a restart"
            );
        }
        crate::systemd::notify("READY=1");
    }
}
