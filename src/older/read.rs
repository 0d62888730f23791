//! The older system's database as its Django models left it (PostgreSQL,
//! tables `<app>_<model>`), read in one repeatable-read transaction so the
//! rows agree with each other. Rows its UI had deleted (`is_active`
//! false on its own models) are not read; users keep their flag.

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use time::OffsetDateTime;

/// One older table's rows, as read.
#[derive(Debug, Default)]
pub struct OlderRows {
    /// `host:port/name`, what the import's records are keyed by.
    pub source: String,
    pub locations: Vec<(i64, String)>,
    pub labels: Vec<(i64, String)>,
    pub networks: Vec<NetworkRow>,
    pub servers: Vec<ServerRow>,
    /// (server, label)
    pub server_labels: Vec<(i64, i64)>,
    pub interfaces: Vec<InterfaceRow>,
    pub credentials: Vec<CredentialRow>,
    pub profiles: Vec<ProfileRow>,
    pub users: Vec<UserRow>,
    /// (key, user)
    pub tokens: Vec<(String, i64)>,
    /// (id, key, user)
    pub ssh_keys: Vec<(i64, String, i64)>,
    pub deployments: Vec<DeploymentRow>,
    pub log: Vec<LogRow>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct NetworkRow {
    pub id: i64,
    pub name: String,
    pub network: String,
    pub gateway: Option<String>,
    pub nameserver: Option<String>,
    pub location_id: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct ServerRow {
    pub id: i64,
    pub fqdn: String,
    pub location_id: Option<i64>,
    pub notes: Option<String>,
    pub serial: Option<String>,
    pub ipmi_host: String,
}

#[derive(Debug, sqlx::FromRow)]
pub struct InterfaceRow {
    pub id: i64,
    pub name: String,
    pub mac: String,
    pub server_id: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: i64,
    pub name: String,
    pub data: String,
    pub salt: Option<String>,
    pub iterations: Option<i32>,
    pub object_id: i64,
    pub app_label: String,
    pub model: String,
}

#[derive(Debug, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub profile: String,
}

#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
}

#[derive(Debug, sqlx::FromRow)]
pub struct DeploymentRow {
    pub id: i64,
    pub server_id: i64,
    pub profile_id: i64,
    pub status: String,
    pub token: String,
    pub parameters: String,
    pub progress: f64,
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
}

#[derive(Debug, sqlx::FromRow)]
pub struct LogRow {
    pub deployment_id: i64,
    pub level: String,
    pub message: String,
    pub created: OffsetDateTime,
}

/// The older database's name for records: where it is, never who reads it.
pub fn source_of(url: &str) -> anyhow::Result<String> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("the older database URL: {e}"))?;
    Ok(format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    ))
}

/// Reads everything the import brings over.
pub async fn read(url: &str, password: Option<&str>) -> anyhow::Result<OlderRows> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("the older database URL: {e}"))?;
    if let Some(password) = password {
        options = options.password(password);
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the older database: {e}"))?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    // The casts make every column a type this reader names, whatever the
    // older migrations chose (serial or bigserial, cidr or text).
    let mut rows = OlderRows {
        source: source_of(url)?,
        ..OlderRows::default()
    };
    rows.locations = sqlx::query_as(
        "SELECT id::bigint, name::text FROM servers_location WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("servers_location"))?;
    rows.labels = sqlx::query_as(
        "SELECT id::bigint, name::text FROM servers_label WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("servers_label"))?;
    rows.networks = sqlx::query_as(
        "SELECT id::bigint AS id, name::text AS name, network::text AS network, \
         host(gateway::inet) AS gateway, host(nameserver::inet) AS nameserver, \
         location_id::bigint AS location_id \
         FROM servers_network WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("servers_network"))?;
    rows.servers = sqlx::query_as(
        "SELECT id::bigint AS id, fqdn::text AS fqdn, location_id::bigint AS location_id, \
         notes::text AS notes, serial::text AS serial, ipmi_host::text AS ipmi_host \
         FROM servers_server WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("servers_server"))?;
    rows.server_labels = sqlx::query_as(
        "SELECT server_id::bigint, label_id::bigint FROM servers_server_labels ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("servers_server_labels"))?;
    rows.interfaces = sqlx::query_as(
        "SELECT id::bigint AS id, name::text AS name, mac::text AS mac, server_id::bigint AS server_id \
         FROM servers_interface WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("servers_interface"))?;
    rows.credentials = sqlx::query_as(
        "SELECT c.id::bigint AS id, c.name::text AS name, c.data AS data, c.salt::text AS salt, \
         c.iterations AS iterations, c.object_id::bigint AS object_id, \
         t.app_label::text AS app_label, t.model::text AS model \
         FROM tools_credential c JOIN django_content_type t ON t.id = c.content_type_id ORDER BY c.id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("tools_credential"))?;
    rows.profiles = sqlx::query_as(
        "SELECT id::bigint AS id, name::text AS name, version::text AS version, profile::text AS profile \
         FROM deployments_profile WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("deployments_profile"))?;
    rows.users = sqlx::query_as(
        "SELECT id::bigint AS id, username::text AS username, password::text AS password, \
         email::text AS email, first_name::text AS first_name, last_name::text AS last_name, \
         is_active, is_staff, is_superuser FROM auth_user ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("auth_user"))?;
    rows.tokens =
        sqlx::query_as("SELECT key::text, user_id::bigint FROM authtoken_token ORDER BY user_id")
            .fetch_all(&mut *tx)
            .await
            .map_err(table("authtoken_token"))?;
    rows.ssh_keys = sqlx::query_as(
        "SELECT id::bigint, key::text, user_id::bigint FROM users_sshauthorizedkey WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("users_sshauthorizedkey"))?;
    rows.deployments = sqlx::query_as(
        "SELECT id::bigint AS id, server_id::bigint AS server_id, profile_id::bigint AS profile_id, \
         status::text AS status, token::text AS token, parameters::text AS parameters, \
         progress::float8 AS progress, created, modified \
         FROM deployments_deployment WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("deployments_deployment"))?;
    rows.log = sqlx::query_as(
        "SELECT deployment_id::bigint AS deployment_id, level::text AS level, message, created \
         FROM deployments_logentry WHERE is_active ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(table("deployments_logentry"))?;
    // Reading only: nothing to keep.
    let _ = tx.rollback().await;
    Ok(rows)
}

/// An error reading `name`, with the table named (a database of another
/// system, or of a version of the older one that lacks it).
fn table(name: &'static str) -> impl Fn(sqlx::Error) -> anyhow::Error {
    move |e| anyhow::anyhow!("reading the older table {name}: {e}")
}
