//! The `bootloader` command: CLI parsing and config loading. The only place
//! that exits the process.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use bootloader::app;
use bootloader::config::{self, CliOverrides, Config, LogFormat, SecretSource};
use bootloader::ops::{Actor, users};
use bootloader_core::model::{Name, TokenScope};
use bootloader_store::SecretCipher;
use bootloader_store::older::ImportMode;

#[derive(Parser)]
#[command(name = "bootloader", version, about = "Bare-metal provisioning daemon")]
struct Cli {
    /// Config file (default /etc/bootloader/bootloader.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (database, secret key).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address.
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    http_listen: Option<SocketAddr>,
    /// Log format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration and where each value came from.
    CheckConfig {
        /// Also say what each setting does and which environment variables
        /// and flag set it.
        #[arg(long)]
        explain: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Work with profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Bring an older system's (bootloader-web's) data over from its
    /// PostgreSQL database: locations, networks, labels, servers with
    /// their interfaces and credentials, profiles, users with their
    /// passwords, tokens and SSH keys, and past deployments as history.
    /// All or nothing; a second run changes nothing.
    ImportLegacy {
        /// The older database, `postgres://user@host:port/name`; its
        /// password from $DB_PASSWORD or $PGPASSWORD, never this line.
        /// Default: the older settings' $DB_HOST (postgresql), $DB_NAME
        /// and $DB_USER (postgres).
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// A file holding the older system's SECRET_KEY, which opens its
        /// credentials. Default: $OLDER_SECRET_KEY ($SECRET_KEY is this
        /// daemon's own key), else the older default `secret`.
        #[arg(long, value_name = "PATH")]
        secret_key_file: Option<PathBuf>,
        /// Say what would be written and every conflict; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write what can be written and leave the conflicting rows out
        /// (they are listed); without it one conflict writes nothing.
        #[arg(long, conflicts_with = "dry_run")]
        skip_conflicts: bool,
    },
    /// Re-encrypt stored BMC passwords under a new secret key.
    RotateSecret {
        /// Read the new passphrase from this file instead of generating one.
        #[arg(long, value_name = "PATH")]
        new_secret_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print a new token for it (and nothing else).
    Add {
        name: String,
        #[arg(long)]
        staff: bool,
        #[arg(long, default_value = "")]
        email: String,
    },
    /// Set a user's console password: asked twice on a terminal, else read
    /// as the first line of standard input.
    Passwd {
        name: String,
        /// Remove the password instead (the user can no longer sign in to
        /// the console; API tokens keep working).
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a user and print it (and nothing else).
    Create {
        user: String,
        /// read or write (default: write for staff, read otherwise).
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        expires_in: Option<u64>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Keep a token of the older system valid for a user: its key (40 hex
    /// digits) is read from standard input, never from the command line.
    Import {
        user: String,
        #[arg(long, default_value = "imported from the older system")]
        description: String,
    },
    /// Revoke a token by id or by its prefix (the first 10 characters).
    Revoke { id_or_prefix: String },
    /// List tokens (never the secrets).
    List { user: Option<String> },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate profile files offline; exit 1 if any is bad.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Prints a line of the serve banner: plain on stdout, or, with
/// `--log-format json`, as a JSON log record like every other line. A
/// daemon whose stdout was closed (a pipe whose reader went away) goes on
/// serving: the banner is not worth dying for, unlike `println!`, which
/// panics on a broken pipe.
macro_rules! say {
    () => {{
        if !JSON_BANNER.load(std::sync::atomic::Ordering::Relaxed) {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout());
        }
    }};
    ($($arg:tt)*) => {{
        if JSON_BANNER.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(target: "bootloader::banner", "{}", format_args!($($arg)*).to_string().trim());
        } else {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), $($arg)*);
        }
    }};
}

/// Whether the banner goes out as JSON log records (`--log-format json`).
static JSON_BANNER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main() -> ExitCode {
    // What the daemon writes (the database, its journal, keys, tokens,
    // downloads) is for its own user alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    // Offline commands need no config.
    if let Command::Profile(ProfileCommand::Validate { files }) = &cli.command {
        return validate_profiles(files);
    }
    let source = match config_source(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bootloader: {e:#}");
            return ExitCode::from(2);
        }
    };
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bootloader: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig { explain } = cli.command {
        print_config(&config, explain);
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bootloader: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bootloader: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the configuration comes from: the file, the environment and the
/// flags; read at start and again on SIGHUP.
#[derive(Clone)]
struct ConfigSource {
    file: Option<std::path::PathBuf>,
    overrides: CliOverrides,
}

impl ConfigSource {
    fn load(&self) -> anyhow::Result<Config> {
        let env = |k: &str| std::env::var(k).ok();
        Ok(config::load(self.file.as_deref(), &env, &self.overrides)?)
    }
}

fn config_source(cli: &Cli) -> anyhow::Result<ConfigSource> {
    let log_format = match &cli.log_format {
        Some(f) => Some(f.parse::<LogFormat>().map_err(anyhow::Error::msg)?),
        None => None,
    };
    Ok(ConfigSource {
        file: cli.config.clone(),
        overrides: CliOverrides {
            data_dir: cli.data_dir.clone(),
            http_listen: cli.http_listen,
            log_format,
        },
    })
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours for a person at a terminal, never into a file or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => {
            JSON_BANNER.store(true, std::sync::atomic::Ordering::Relaxed);
            builder.json().init()
        }
        LogFormat::Text => builder.init(),
    }
}

fn print_config(config: &Config, explain: bool) {
    match &config.file {
        Some(f) => println!("# config file: {}", f.display()),
        None => println!(
            "# config file: none ({} not found; zero-config defaults)",
            config::DEFAULT_CONFIG_PATH
        ),
    }
    println!("# database: {:?}", config.database);
    let width = config
        .settings
        .iter()
        .map(|s| s.key.len())
        .max()
        .unwrap_or(0);
    for s in &config.settings {
        if explain && let Some(key) = config::keys::lookup(s.key) {
            let mut set_by: Vec<String> = key.env.iter().map(|e| format!("env {e}")).collect();
            set_by.extend(key.flag.map(|f| format!("flag {f}")));
            let default = key
                .default
                .map_or(String::new(), |d| format!("; default {d:?}"));
            println!("\n# {}\n# set by: {}{default}", key.doc, set_by.join(", "));
        }
        println!(
            "{:width$} = {:<40} # {}",
            s.key,
            s.value,
            s.source,
            width = width
        );
    }
}

fn validate_profiles(files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for file in files {
        let result = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                bootloader_core::profile::parse_upload(&text).map_err(|e| e.to_string())
            });
        match result {
            Ok(p) => println!(
                "{}: ok ({}=={}, {} actions)",
                file.display(),
                p.name,
                p.version,
                p.action_count()
            ),
            Err(e) => {
                bad += 1;
                println!("{}: invalid", file.display());
                for line in e.lines() {
                    println!("  {line}");
                }
            }
        }
    }
    if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn dispatch(command: Command, config: Config, source: ConfigSource) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config, source).await,
        Command::Migrate => {
            let applied = bootloader_store::migrate(&config.database).await?;
            if applied.is_empty() {
                println!("database is up to date ({:?})", config.database);
            }
            for m in applied {
                println!("applied {m}");
            }
            Ok(())
        }
        Command::User(UserCommand::Add { name, staff, email }) => {
            let store = app::open_store(&config).await?;
            let user = users::create(
                store.as_ref(),
                &Actor::Host,
                users::UserInput {
                    name: Some(name),
                    email: Some(email),
                    is_staff: Some(staff),
                    ..Default::default()
                },
            )
            .await
            .map_err(ops_error)?;
            let (secret, _) = users::issue_token(
                store.as_ref(),
                &Actor::Host,
                &user.name,
                None,
                "created by `user add`",
                None,
            )
            .await
            .map_err(ops_error)?;
            println!("{}", secret.expose());
            Ok(())
        }
        Command::User(UserCommand::Passwd { name, clear }) => {
            let name: bootloader_core::model::Name = name
                .parse()
                .map_err(|e| anyhow::anyhow!("user name: {e}"))?;
            let store = app::open_store(&config).await?;
            // The user must exist before a password is asked for.
            users::get(store.as_ref(), &Actor::Host, &name)
                .await
                .map_err(ops_error)?;
            let password = if clear {
                None
            } else {
                Some(read_new_password(&name)?)
            };
            users::set_password(store.as_ref(), &Actor::Host, &name, password.as_deref())
                .await
                .map_err(ops_error)?;
            // Whoever was signed in with the old password is signed out.
            let ended = store.end_sessions_of(&name, None).await?;
            eprintln!(
                "{} {name}{}.",
                if clear {
                    "Removed the console password of"
                } else {
                    "Set the console password of"
                },
                match ended {
                    0 => String::new(),
                    1 => "; its console session ended".to_string(),
                    n => format!("; its {n} console sessions ended"),
                }
            );
            Ok(())
        }
        Command::Token(cmd) => token_command(cmd, &config).await,
        Command::RotateSecret { new_secret_file } => {
            rotate_secret(&config, new_secret_file.as_deref()).await
        }
        Command::ImportLegacy {
            from,
            secret_key_file,
            dry_run,
            skip_conflicts,
        } => {
            let mode = match (dry_run, skip_conflicts) {
                (true, _) => ImportMode::DryRun,
                (false, true) => ImportMode::SkipConflicts,
                (false, false) => ImportMode::AllOrNothing,
            };
            import_legacy(&config, from, secret_key_file.as_deref(), mode).await
        }
        Command::CheckConfig { .. } | Command::Profile(_) => Ok(()),
    }
}

/// An operation's error as the CLI says it: the message, and each bad
/// field with what is wrong with it.
/// A new password: asked twice without echo on a terminal, else the first
/// line of standard input (its line break dropped).
fn read_new_password(name: &bootloader_core::model::Name) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(line.strip_suffix('\r').unwrap_or(line).to_string());
    }
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let saved = nix::sys::termios::tcgetattr(&stdin)?;
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet)?;
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved)?;
        eprintln!();
        read?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask(&format!("New console password for {name}: "))?;
    let second = ask("Again: ")?;
    if first != second {
        anyhow::bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

fn ops_error(e: bootloader::ops::Error) -> anyhow::Error {
    let body = e.into_body();
    let mut text = body.message;
    for (field, messages) in body.fields {
        text.push_str(&format!("\n  {field}: {}", messages.join("; ")));
    }
    anyhow::anyhow!(text)
}

async fn token_command(cmd: TokenCommand, config: &Config) -> anyhow::Result<()> {
    let store = app::open_store(config).await?;
    match cmd {
        TokenCommand::Create {
            user,
            scope,
            expires_in,
            description,
        } => {
            let user: Name = user
                .parse()
                .map_err(|e| anyhow::anyhow!("user name: {e}"))?;
            let scope = match scope {
                Some(s) => Some(s.parse::<TokenScope>().map_err(anyhow::Error::msg)?),
                None => None,
            };
            let (secret, _) = users::issue_token(
                store.as_ref(),
                &Actor::Host,
                &user,
                scope,
                &description,
                expires_in,
            )
            .await
            .map_err(ops_error)?;
            println!("{}", secret.expose());
        }
        TokenCommand::Import { user, description } => {
            let user: Name = user
                .parse()
                .map_err(|e| anyhow::anyhow!("user name: {e}"))?;
            let mut key = String::new();
            std::io::stdin()
                .read_line(&mut key)
                .map_err(|e| anyhow::anyhow!("reading the key from standard input: {e}"))?;
            let token = users::import_token(
                store.as_ref(),
                &Actor::Host,
                &user,
                key.trim(),
                &description,
            )
            .await
            .map_err(ops_error)?;
            println!(
                "token {} ({}) of {} is valid",
                token.id, token.prefix, token.user
            );
        }
        TokenCommand::Revoke { id_or_prefix } => {
            let token = users::revoke_token(store.as_ref(), &Actor::Host, &id_or_prefix)
                .await
                .map_err(ops_error)?;
            println!(
                "revoked token {} ({}) of {}",
                token.id, token.prefix, token.user
            );
        }
        TokenCommand::List { user } => {
            let page = bootloader_store::Page {
                limit: 10_000,
                offset: 0,
            };
            let tokens = users::list_tokens(store.as_ref(), &Actor::Host, user.as_deref(), page)
                .await
                .map_err(ops_error)?;
            for t in tokens.items {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.prefix,
                    t.user,
                    t.scope.as_str(),
                    t.description
                );
            }
        }
    }
    Ok(())
}

/// `import-legacy`: exits 1 when conflicts kept (or would keep) the import
/// from being written.
async fn import_legacy(
    config: &Config,
    from: Option<String>,
    secret_key_file: Option<&Path>,
    mode: ImportMode,
) -> anyhow::Result<()> {
    if !bootloader::older::command(config, from, secret_key_file, mode).await? {
        std::process::exit(1);
    }
    Ok(())
}

async fn rotate_secret(config: &Config, new_secret_file: Option<&Path>) -> anyhow::Result<()> {
    let store = app::open_store(config).await?;
    let new_key = match new_secret_file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .trim()
            .to_string(),
        None => bootloader_store::cipher::random_passphrase()?,
    };
    if new_key.len() < 16 {
        bail!("the new secret must be at least 16 characters");
    }
    match &config.secret {
        SecretSource::File(path) => {
            // Keep the new key beside the old one until the database has it.
            let staged = path.with_extension("new");
            if staged.exists() {
                std::fs::remove_file(&staged)
                    .with_context(|| format!("cannot remove the stale {}", staged.display()))?;
            }
            app::write_key_file(&staged, &new_key)?;
            let n = store
                .rotate_secret(&SecretCipher::from_passphrase(&new_key))
                .await?;
            std::fs::rename(&staged, path).with_context(|| {
                format!(
                    "the database now uses the key in {}; move it to {} by hand",
                    staged.display(),
                    path.display()
                )
            })?;
            eprintln!(
                "re-encrypted {n} secret(s); the new key is in {}",
                path.display()
            );
        }
        SecretSource::Key(_) => {
            let n = store
                .rotate_secret(&SecretCipher::from_passphrase(&new_key))
                .await?;
            eprintln!(
                "re-encrypted {n} secret(s). Set SECRET_KEY (or server.secret_key) to the new key before the next start."
            );
            if new_secret_file.is_none() {
                println!("{new_key}");
            }
        }
    }
    Ok(())
}

async fn serve(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    for inert in config.inert_settings() {
        tracing::warn!(setting = inert, "setting has no effect in this version");
    }
    app::prepare_data_dir(&config.data_dir)?;
    let listeners = app::bind(&config).await?;
    let store = app::open_store(&config).await?;
    if let Some(token) = app::bootstrap_first_user(store.as_ref()).await? {
        let path = app::write_first_token(&config.data_dir, &token)?;
        tracing::info!(user = app::FIRST_USER, file = %path.display(), "created the first staff user; its API token is in the file");
        // A terminal is a person; a pipe may be the journal, which keeps
        // what it is given and shows it to the adm group.
        if std::io::stdout().is_terminal() {
            say!(
                "Created the staff user {:?}. Its API token, shown only this once:",
                app::FIRST_USER
            );
            say!();
            say!("    {token}");
            say!();
            say!(
                "(also in {}; delete that file once you have kept the token)",
                path.display()
            );
        } else {
            say!(
                "Created the staff user {:?}. Its API token is in {} (readable by this user only); delete that file once you have kept the token.",
                app::FIRST_USER,
                path.display()
            );
        }
        say!(
            "To sign in to the web console, give {0:?} a password: bootloader user passwd {0} (with this daemon's config or --data-dir).",
            app::FIRST_USER
        );
    }
    let addr = listeners.http.local_addr()?;
    say!("bootloader is serving on http://{addr}");
    say!("  console:  http://{addr}/ui/  (passwords: bootloader user passwd <name>)");
    say!("  API:      http://{addr}/api/v1/  (Authorization: Token <key>)");
    say!("  OpenAPI:  http://{addr}/api/v1/openapi.json");
    if let Some((listener, _)) = &listeners.https {
        let tls_addr = listener.local_addr()?;
        say!(
            "  HTTPS:    https://{tls_addr}/api/v1/{}",
            if config.tls.set_redirect {
                "  (plain HTTP redirects the API here)"
            } else {
                ""
            }
        );
    }
    say!(
        "  data dir: {}  store: {:?}",
        config.data_dir.display(),
        config.database
    );
    match &listeners.tftp {
        Some(socket) => say!(
            "  TFTP:     {} serving {}",
            socket.local_addr()?,
            config.tftp.root.display()
        ),
        None => say!("  TFTP:     off (tftp.enable)"),
    }
    if listeners.dhcp.is_empty() {
        say!("  DHCP:     off (dhcp.mode; name the boot interface in dhcp.interfaces)");
    }
    for s in &listeners.dhcp {
        say!(
            "  DHCP:     {} {} on {} as {} ({:?} port)",
            config
                .boot
                .dhcp
                .mode
                .map_or("off", bootloader_core::dhcp::decide::Mode::as_str),
            s.socket.local_addr()?,
            s.interface
                .as_deref()
                .unwrap_or("any interface (relayed requests)"),
            s.server_ip,
            s.port
        );
    }
    say!(
        "  boot:     {}/boot.ipxe, static files from {}",
        config.public_url,
        config.boot.static_dir.display()
    );
    say!("  timeline: http://{addr}/api/v1/servers/<fqdn>/timeline");
    match &config.broker_url {
        Some(url) => say!(
            "  events:   to exchange {:?} at {} (status: /api/v1/events/status)",
            config.broker_exchange,
            bootloader_core::model::redact_url(url.expose())
        ),
        None => say!("  events:   kept in the outbox table (broker.url to publish them)"),
    }
    tracing::info!(%addr, backend = store.backend(), "serving");
    app::run_with_reloads(
        &config,
        store,
        listeners,
        shutdown_signal(),
        Some(reloads(source)),
    )
    .await
}

/// Reads the configuration again on each SIGHUP; a configuration that does
/// not load is reported and the running one kept.
fn reloads(source: ConfigSource) -> tokio::sync::mpsc::Receiver<Config> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught: no reloads");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reading the configuration again");
            match source.load() {
                Ok(config) => {
                    if tx.send(config).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "the configuration does not load; the running one stays"
                ),
            }
        }
    });
    rx
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
