//! Servers read with their interfaces and labels: one statement for one
//! server (`fetch_server`), one for a page of them (`with_details`).

use crate::sql::rows::*;
use crate::sql::*;
use crate::types::*;
use crate::{Result, StoreError};
use bootloader_core::model::Fqdn;

use super::Conn;

/// Loads servers with their labels and interfaces. `rows` are in
/// id order, so their labels and interfaces lie in one id range, read in
/// one query (`SERVER_DETAILS`: one round trip to the database, not two).
pub(super) async fn with_details(conn: &mut Conn, rows: Vec<ServerRow>) -> Result<Vec<Server>> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    let (lo, hi) = (first.id.min(last.id), first.id.max(last.id));
    let details: Vec<DetailRow> = sqlx::query_as(sqlx::AssertSqlSafe(SERVER_DETAILS.as_str()))
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
    servers_with(rows, details)
}

/// Servers from their rows and their `SERVER_DETAILS` rows.
pub(super) fn servers_with(rows: Vec<ServerRow>, details: Vec<DetailRow>) -> Result<Vec<Server>> {
    let mut labels = Vec::new();
    let mut interfaces = Vec::new();
    for d in details {
        match (d.id, d.server, d.mac) {
            (Some(id), Some(server), Some(mac)) => interfaces.push(InterfaceRow {
                id,
                server_id: d.server_id,
                server,
                name: d.name,
                mac,
                ipv4: d.ipv4,
                network_id: d.network_id,
            }),
            _ => labels.push(ServerLabelRow {
                server_id: d.server_id,
                name: d.name,
            }),
        }
    }
    rows.into_iter()
        .map(|r| convert::server(r, &labels, &interfaces))
        .collect()
}

/// The interfaces (by name, then id) and then the labels (by name) of the
/// servers with ids from `$1` to `$2`: a label's row has no interface id.
static SERVER_DETAILS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| details_sql("BETWEEN $1 AND $2"));

/// `SERVER_DETAILS` of the servers whose ids `which` matches (written
/// after `server_id`, twice).
pub(super) fn details_sql(which: &str) -> String {
    let interfaces = INTERFACE_SELECT
        .strip_prefix("SELECT ")
        .unwrap_or(INTERFACE_SELECT);
    format!(
        "SELECT CAST(0 AS BIGINT) AS part, {interfaces} WHERE i.server_id {which} \
         UNION ALL SELECT CAST(1 AS BIGINT), NULL, sl.server_id, NULL, lb.name, NULL, NULL, NULL \
         FROM server_labels sl JOIN labels lb ON lb.id = sl.label_id \
         WHERE sl.server_id {which} ORDER BY 1, 5, 2"
    )
}

/// A row of `SERVER_DETAILS`.
#[derive(sqlx::FromRow)]
pub(super) struct DetailRow {
    id: Option<i64>,
    server_id: i64,
    server: Option<String>,
    name: String,
    mac: Option<String>,
    ipv4: Option<String>,
    network_id: Option<i64>,
}

/// One server with its details in one statement: the server's columns on
/// every row, beside one `SERVER_DETAILS` row each (`d_` columns; none
/// when the server has no interfaces and no labels). One trip to the
/// database where the row and its details took two: the boot path reads
/// the server at every `serve_file` and `delete_file`.
static SERVER_BY_FQDN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let details = details_sql("= (SELECT id FROM servers WHERE fqdn = $1)");
    format!(
        "SELECT srv.*, d.part AS d_part, d.id AS d_id, d.server_id AS d_server_id, \
         d.server AS d_server, d.name AS d_name, d.mac AS d_mac, d.ipv4 AS d_ipv4, \
         d.network_id AS d_network_id \
         FROM ({SERVER_SELECT} WHERE s.fqdn = $1) srv LEFT JOIN ({details}) d ON TRUE \
         ORDER BY d.part, d.name, d.id"
    )
});

/// A row of `SERVER_BY_FQDN`'s detail side.
#[derive(sqlx::FromRow)]
struct JoinedDetail {
    d_part: Option<i64>,
    d_id: Option<i64>,
    d_server_id: Option<i64>,
    d_server: Option<String>,
    d_name: Option<String>,
    d_mac: Option<String>,
    d_ipv4: Option<String>,
    d_network_id: Option<i64>,
}

pub(super) async fn fetch_server(conn: &mut Conn, fqdn: &Fqdn) -> Result<Server> {
    use sqlx::FromRow;
    let rows = sqlx::query(sqlx::AssertSqlSafe(SERVER_BY_FQDN.as_str()))
        .bind(fqdn.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let first = rows
        .first()
        .ok_or_else(|| StoreError::not_found("server", fqdn))?;
    let server = ServerRow::from_row(first)?;
    let mut details = Vec::with_capacity(rows.len());
    for row in &rows {
        let d = JoinedDetail::from_row(row)?;
        // The left join's one row of nothing.
        if d.d_part.is_none() {
            continue;
        }
        let (Some(server_id), Some(name)) = (d.d_server_id, d.d_name) else {
            return Err(StoreError::Corrupt("a server's detail row".into()));
        };
        details.push(DetailRow {
            id: d.d_id,
            server_id,
            server: d.d_server,
            name,
            mac: d.d_mac,
            ipv4: d.d_ipv4,
            network_id: d.d_network_id,
        });
    }
    servers_with(vec![server], details)?
        .pop()
        .ok_or_else(|| StoreError::not_found("server", fqdn))
}
