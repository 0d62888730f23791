//! Importing servers with interfaces from `;`-separated CSV,
//! as the older system's operators kept them. All or nothing: one bad line
//! and nothing is written, with every bad line reported.
//!
//! With a header row (first field `fqdn`) the columns may come in any order
//! and are named from: fqdn, location, serial, notes, labels (comma list),
//! bmc_host, bmc_port, bmc_username, bmc_password, bmc_credential,
//! bmc_driver, interface, mac, ipv4. Without one, the columns are
//! `fqdn;bmc_host;bmc_username;bmc_password;interface;mac;ipv4` (trailing
//! ones may be left off). Several lines with the same FQDN give one server
//! with several interfaces. `?location=` applies to lines without one.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::servers::{BmcInput, InterfaceInput, ServerInput, server_spec};
use super::{Actor, Error, Ops};
use bootloader_store::{Server, StoreError};

/// Columns of the interface a line adds.
const INTERFACE_COLUMNS: &[&str] = &["interface", "mac", "ipv4"];
const HEADERLESS: &[&str] = &[
    "fqdn",
    "bmc_host",
    "bmc_username",
    "bmc_password",
    "interface",
    "mac",
    "ipv4",
];
/// Columns that describe the server rather than one of its interfaces.
const SERVER_COLUMNS: &[&str] = &[
    "location",
    "serial",
    "notes",
    "labels",
    "bmc_host",
    "bmc_port",
    "bmc_username",
    "bmc_password",
    "bmc_credential",
    "bmc_driver",
];
const MAX_LINES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line number in the uploaded text.
    pub line: u64,
    /// The column or field at fault, if one is.
    pub field: Option<String>,
    pub message: String,
}

/// One server gathered from its lines.
#[derive(Debug, Clone)]
pub struct ImportedServer {
    pub first_line: u64,
    /// The line each interface came from, in order.
    pub interface_lines: Vec<u64>,
    /// The server-level columns of its first line, to check repeats against.
    pub columns: BTreeMap<&'static str, String>,
    pub input: ServerInput,
}

fn line_error(line: u64, field: Option<&str>, message: impl Into<String>) -> LineError {
    LineError {
        line,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// Parses the CSV text into servers, or every line error found.
pub fn parse_csv(
    text: &str,
    default_location: Option<&str>,
) -> Result<Vec<ImportedServer>, Vec<LineError>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    let mut servers: Vec<ImportedServer> = Vec::new();
    let mut by_fqdn: BTreeMap<String, usize> = BTreeMap::new();
    for (n, record) in reader.records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(n as u64 + 1);
                errors.push(line_error(line, None, format!("unreadable line: {e}")));
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(n as u64 + 1);
        if record.iter().all(str::is_empty) || record.get(0).is_some_and(|f| f.starts_with('#')) {
            continue;
        }
        if n >= MAX_LINES {
            errors.push(line_error(
                line,
                None,
                format!("more than {MAX_LINES} lines; split the file"),
            ));
            break;
        }
        if columns.is_none() {
            if record
                .get(0)
                .is_some_and(|f| f.eq_ignore_ascii_case("fqdn"))
            {
                let header: Vec<String> = record.iter().map(|h| h.to_ascii_lowercase()).collect();
                for h in &header {
                    let known = h == "fqdn"
                        || SERVER_COLUMNS.contains(&h.as_str())
                        || INTERFACE_COLUMNS.contains(&h.as_str());
                    if !known {
                        errors.push(line_error(
                            line,
                            Some(h),
                            format!(
                                "unknown column (known: fqdn, {}, {})",
                                SERVER_COLUMNS.join(", "),
                                INTERFACE_COLUMNS.join(", ")
                            ),
                        ));
                    }
                }
                columns = Some(header);
                continue;
            }
            columns = Some(HEADERLESS.iter().map(|s| s.to_string()).collect());
        }
        let cols = columns.as_deref().unwrap_or_default();
        if record.len() > cols.len() {
            errors.push(line_error(
                line,
                None,
                format!("{} fields, but only {} columns", record.len(), cols.len()),
            ));
            continue;
        }
        let get = |name: &str| -> Option<String> {
            cols.iter()
                .position(|c| c == name)
                .and_then(|i| record.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let Some(fqdn) = get("fqdn") else {
            errors.push(line_error(line, Some("fqdn"), "is required"));
            continue;
        };
        let bmc_port = match get("bmc_port").map(|p| p.parse::<u16>()) {
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => {
                errors.push(line_error(line, Some("bmc_port"), "is not a port number"));
                continue;
            }
            None => None,
        };
        let has_interface = get("mac").is_some();
        let interface = get("mac").map(|mac| InterfaceInput {
            name: get("interface"),
            mac: Some(mac),
            ipv4: get("ipv4"),
        });
        let key = fqdn.to_ascii_lowercase().trim_end_matches('.').to_string();
        let columns: BTreeMap<&'static str, String> = SERVER_COLUMNS
            .iter()
            .filter_map(|c| get(c).map(|v| (*c, v)))
            .collect();
        if let Some(&i) = by_fqdn.get(&key) {
            // A further line of a server seen before adds an interface; its
            // other columns may repeat the first line's but not differ.
            let server = &mut servers[i];
            for (column, value) in &columns {
                match server.columns.get(column) {
                    Some(first) if first == value => {}
                    Some(_) => errors.push(line_error(
                        line,
                        Some(column),
                        format!("differs from line {} of the same server", server.first_line),
                    )),
                    None => errors.push(line_error(
                        line,
                        Some(column),
                        format!(
                            "give it on line {}, the server's first line",
                            server.first_line
                        ),
                    )),
                }
            }
            match interface {
                Some(iface) => {
                    server.interface_lines.push(line);
                    server
                        .input
                        .interfaces
                        .get_or_insert_with(Vec::new)
                        .push(iface);
                }
                None => errors.push(line_error(
                    line,
                    Some("mac"),
                    "repeats a server without adding an interface",
                )),
            }
            continue;
        }
        let bmc = BmcInput {
            host: get("bmc_host"),
            port: bmc_port,
            username: get("bmc_username"),
            password: get("bmc_password").map(bootloader_core::model::Secret::new),
            credential: get("bmc_credential"),
            driver: get("bmc_driver"),
        };
        let input = ServerInput {
            fqdn: Some(fqdn),
            location: get("location").or_else(|| default_location.map(str::to_string)),
            serial: get("serial"),
            notes: get("notes"),
            labels: get("labels").map(|l| {
                l.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            bmc: Some(bmc),
            interfaces: Some(interface.into_iter().collect()),
        };
        by_fqdn.insert(key, servers.len());
        servers.push(ImportedServer {
            first_line: line,
            interface_lines: if has_interface {
                vec![line]
            } else {
                Vec::new()
            },
            columns,
            input,
        });
    }
    if errors.is_empty() && servers.is_empty() {
        errors.push(line_error(1, None, "no servers in the file"));
    }
    if errors.is_empty() {
        Ok(servers)
    } else {
        Err(errors)
    }
}

/// Maps a field path of a server to the line it came from: an interface
/// field points at the line that gave that interface.
fn line_of(server: &ImportedServer, field: &str) -> u64 {
    field
        .strip_prefix("interfaces[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| server.interface_lines.get(i).copied())
        .unwrap_or(server.first_line)
}

/// Why an import wrote nothing.
#[derive(Debug)]
pub enum ImportError {
    /// These lines are wrong (every one found), sorted by line.
    Lines(Vec<LineError>),
    Other(Error),
}

impl From<Error> for ImportError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

/// Imports the servers of a `;`-separated CSV `text`, all or nothing;
/// `location` applies to lines that do not name one.
pub async fn import(
    ops: &Ops,
    actor: &Actor,
    text: &[u8],
    location: Option<&str>,
) -> Result<Vec<Server>, ImportError> {
    actor.require_write()?;
    let text =
        std::str::from_utf8(text).map_err(|_| Error::BadRequest("the CSV is not UTF-8".into()))?;
    let parsed = parse_csv(text, location).map_err(ImportError::Lines)?;
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    for server in &parsed {
        match server_spec(server.input.clone(), None) {
            Ok(spec) => specs.push(spec),
            Err(Error::Invalid { fields, .. }) => {
                for (field, messages) in fields {
                    for m in messages {
                        errors.push(line_error(line_of(server, &field), Some(&field), m));
                    }
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(ImportError::Lines(errors));
    }
    match ops.inventory.import_servers(specs).await {
        Ok(servers) => Ok(servers),
        Err(store_errors) => {
            let mut lines = Vec::new();
            for (i, e) in store_errors {
                let server = &parsed[i.min(parsed.len().saturating_sub(1))];
                match e {
                    StoreError::Conflict { field, message }
                    | StoreError::Invalid { field, message } => {
                        lines.push(line_error(line_of(server, &field), Some(&field), message));
                    }
                    StoreError::Unavailable(_) => return Err(Error::from(e).into()),
                    other => lines.push(line_error(server.first_line, None, other.to_string())),
                }
            }
            lines.sort_by_key(|e| e.line);
            Err(ImportError::Lines(lines))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headerless_lines_group_by_fqdn() {
        let text = "# fqdn;bmc;user;pass;if;mac\n\
                    n1.example.com;10.1.0.1;ADMIN;secret;eth0;52:54:00:00:00:01\n\
                    n1.example.com;;;;eth1;52:54:00:00:00:02;10.0.0.5\n\
                    \n\
                    n2.example.com;10.1.0.2;ADMIN;secret\n";
        let servers = parse_csv(text, Some("dc1")).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].interface_lines, vec![2, 3]);
        let ifaces = servers[0].input.interfaces.as_ref().unwrap();
        assert_eq!(ifaces.len(), 2);
        assert_eq!(ifaces[1].ipv4.as_deref(), Some("10.0.0.5"));
        assert_eq!(servers[1].input.location.as_deref(), Some("dc1"));
        assert_eq!(servers[1].input.interfaces.as_ref().unwrap().len(), 0);
        assert_eq!(line_of(&servers[0], "interfaces[1].mac"), 3);
        assert_eq!(line_of(&servers[0], "fqdn"), 2);
    }

    #[test]
    fn repeated_lines_map_interfaces_and_refuse_changes() {
        let text = "n1.example.com;10.1.0.1;ADMIN;pw\n\
                    n1.example.com;;;;eth0;52:54:00:00:00:01;10.9.9.9\n\
                    n1.example.com;10.1.0.2;;;eth1;52:54:00:00:00:02\n";
        let errors = parse_csv(text, Some("dc1")).unwrap_err();
        assert_eq!(
            errors,
            vec![line_error(
                3,
                Some("bmc_host"),
                "differs from line 1 of the same server"
            )]
        );
        let servers = parse_csv(&text.replace("10.1.0.2", "10.1.0.1"), Some("dc1")).unwrap();
        assert_eq!(servers[0].interface_lines, vec![2, 3]);
        assert_eq!(line_of(&servers[0], "interfaces[0].ipv4"), 2);
        assert_eq!(line_of(&servers[0], "bmc.host"), 1);
    }

    #[test]
    fn header_names_columns_and_errors_name_lines() {
        let text = "fqdn;mac;location;bmc_port\nn1.example.com;52:54:00:00:00:01;dc1;623\n;52:54:00:00:00:02;dc1\nn3.example.com;x;dc1;notaport\n";
        let errors = parse_csv(text, None).unwrap_err();
        assert_eq!(
            errors,
            vec![
                line_error(3, Some("fqdn"), "is required"),
                line_error(4, Some("bmc_port"), "is not a port number"),
            ]
        );
        let errors = parse_csv("fqdn;macaddress\n", None).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("macaddress"));
    }
}
