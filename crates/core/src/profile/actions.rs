//! Parsing of single workflow actions (continuation of the walker in `parse.rs`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::parse::{Walker, is_name_char, join, type_name};
use super::template::Checker;
use super::{Action, ActionKind, FileSource, IpmiCommand};
use crate::model::Via;

/// Largest accepted `retries` value.
pub const MAX_RETRIES: u32 = 10;

const ACTIONS: &[&str] = &[
    "serve_file",
    "delete_file",
    "expect_callback",
    "ipmi_command",
    "echo",
];

impl Walker {
    pub(super) fn action(
        &mut self,
        value: &Value,
        path: &str,
        templates: &BTreeMap<String, String>,
        checker: &Checker<'_>,
    ) -> Option<Action> {
        let Value::Object(map) = value else {
            self.err(
                path,
                format!("expected an action mapping, found {}", type_name(value)),
            );
            return None;
        };
        let name = self.req_str(map, path, "action")?;
        let specific: &[&str] = match name {
            "serve_file" => &["via", "filename", "source"],
            "delete_file" => &["on", "filename"],
            "expect_callback" => &["name"],
            "ipmi_command" => &["command", "parameters", "persistent", "efi"],
            "echo" => &["message"],
            other => {
                self.err(
                    join(path, "action"),
                    format!(
                        "unknown action {other:?} (expected one of: {})",
                        ACTIONS.join(", ")
                    ),
                );
                return None;
            }
        };
        let mut allowed = vec!["action", "timeout", "retries"];
        allowed.extend_from_slice(specific);
        self.check_keys(map, path, &allowed);
        let timeout = self.opt_duration(map, path, "timeout");

        let kind = match name {
            "serve_file" => self.serve_file(map, path, templates, checker),
            "delete_file" => {
                let on = self.transport(map, path, "on");
                let filename = self.template_field(map, path, "filename", checker);
                Some(ActionKind::DeleteFile {
                    on: on?,
                    filename: filename?,
                })
            }
            "expect_callback" => self.callback(map, path),
            "ipmi_command" => self.ipmi(map, path),
            _ => self
                .template_field(map, path, "message", checker)
                .map(|message| ActionKind::Echo { message }),
        };
        let retries = self.retries(map, path, name);
        Some(Action {
            kind: kind?,
            timeout,
            retries,
        })
    }

    fn retries(&mut self, map: &Map<String, Value>, path: &str, action: &str) -> u32 {
        let Some(value) = map.get("retries") else {
            return 0;
        };
        let path = join(path, "retries");
        let source_type = map
            .get("source")
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str);
        let retry_safe = match (action, source_type) {
            ("ipmi_command", _) | ("serve_file", Some("url")) => true,
            // unknown or missing source type: already reported
            ("serve_file", Some(t)) if t != "template" => false,
            ("serve_file", None) => false,
            (other, _) => {
                let what = if other == "serve_file" {
                    "serve_file with a template source"
                } else {
                    other
                };
                self.err(
                    &path,
                    format!(
                        "retries are not allowed on {what} (only on serve_file with a url source and ipmi_command)"
                    ),
                );
                false
            }
        };
        match value.as_u64() {
            Some(n) if n <= u64::from(MAX_RETRIES) => {
                if retry_safe {
                    u32::try_from(n).unwrap_or(0)
                } else {
                    0
                }
            }
            _ => {
                self.err(
                    path,
                    format!(
                        "expected an integer from 0 to {MAX_RETRIES}, found {}",
                        match value {
                            Value::Number(n) => n.to_string(),
                            v => type_name(v).to_string(),
                        }
                    ),
                );
                0
            }
        }
    }

    fn transport(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<Via> {
        self.choice(
            map,
            path,
            key,
            "transport",
            &[("http", Via::Http), ("tftp", Via::Tftp)],
        )
    }

    /// A required string field that is itself a template.
    fn template_field(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        checker: &Checker<'_>,
    ) -> Option<String> {
        let s = self.req_str(map, path, key)?;
        let fpath = join(path, key);
        let problems = checker.check_inline(s);
        let ok = problems.is_empty();
        for msg in problems {
            self.err(&fpath, msg);
        }
        if key == "filename" && s.trim().is_empty() {
            self.err(&fpath, "must not be empty");
            return None;
        }
        ok.then(|| s.to_string())
    }

    fn serve_file(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        templates: &BTreeMap<String, String>,
        checker: &Checker<'_>,
    ) -> Option<ActionKind> {
        let via = self.transport(map, path, "via");
        let filename = self.template_field(map, path, "filename", checker);
        let source = self.source(map.get("source"), &join(path, "source"), templates);
        Some(ActionKind::ServeFile {
            via: via?,
            filename: filename?,
            source: source?,
        })
    }

    fn source(
        &mut self,
        value: Option<&Value>,
        path: &str,
        templates: &BTreeMap<String, String>,
    ) -> Option<FileSource> {
        let map = match value {
            None => {
                self.err(path, "missing field");
                return None;
            }
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.err(
                    path,
                    format!(
                        "expected a mapping {{type: url|template, ...}}, found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        #[derive(Clone, Copy)]
        enum Ty {
            Url,
            Template,
        }
        let ty = self.choice(
            map,
            path,
            "type",
            "source type",
            &[("url", Ty::Url), ("template", Ty::Template)],
        )?;
        match ty {
            Ty::Url => {
                self.check_keys(map, path, &["type", "url", "sha256"]);
                let url = self.req_str(map, path, "url").and_then(|u| {
                    let rest = u
                        .strip_prefix("http://")
                        .or_else(|| u.strip_prefix("https://"));
                    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
                        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
                    if !ok {
                        self.err(
                            join(path, "url"),
                            format!("invalid url {u:?} (expected http:// or https:// followed by a host, no spaces)"),
                        );
                    }
                    ok.then(|| u.to_string())
                });
                let sha = self.opt_str(map, path, "sha256").and_then(|s| {
                    let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
                    if !ok {
                        self.err(
                            join(path, "sha256"),
                            format!("invalid sha256 {s:?} (expected 64 hexadecimal digits)"),
                        );
                    }
                    ok.then(|| s.to_ascii_lowercase())
                });
                let sha_ok = sha.is_some() || !matches!(map.get("sha256"), Some(v) if !v.is_null());
                if !sha_ok {
                    return None;
                }
                Some(FileSource::Url {
                    url: url?,
                    sha256: sha,
                })
            }
            Ty::Template => {
                self.check_keys(map, path, &["type", "name"]);
                let name = self.req_str(map, path, "name")?;
                if !templates.contains_key(name) {
                    self.err(
                        join(path, "name"),
                        format!("template {name:?} is not defined in templates"),
                    );
                    return None;
                }
                Some(FileSource::Template {
                    name: name.to_string(),
                })
            }
        }
    }

    fn callback(&mut self, map: &Map<String, Value>, path: &str) -> Option<ActionKind> {
        let name = self.req_str(map, path, "name")?;
        let npath = join(path, "name");
        if name.is_empty() || name.len() > 128 || !name.chars().all(is_name_char) {
            self.err(
                npath,
                format!(
                    "invalid callback name {name:?} (1 to 128 characters of A-Z a-z 0-9 . _ -)"
                ),
            );
            return None;
        }
        if let Some(first) = self.callbacks.get(name) {
            let msg = format!("duplicate callback name {name:?} (first used at {first})");
            self.err(npath, msg);
            return None;
        }
        self.callbacks.insert(name.to_string(), npath);
        Some(ActionKind::ExpectCallback {
            name: name.to_string(),
        })
    }

    fn ipmi(&mut self, map: &Map<String, Value>, path: &str) -> Option<ActionKind> {
        let command = self.req_str(map, path, "command")?;
        let parameters = match map.get("parameters") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                self.as_str(v, &join(path, "parameters"))?
                    .to_ascii_lowercase(),
            ),
        };
        let persistent = self.opt_bool(map, path, "persistent");
        let efi = self.opt_bool(map, path, "efi");
        let command = match (command, parameters.as_deref()) {
            ("power", None) => IpmiCommand::PowerStatus,
            ("power", Some(p)) => self.pick(
                join(path, "parameters"),
                "power parameter",
                p,
                &IpmiCommand::POWER,
            )?,
            ("bootdev", None) => IpmiCommand::BootdevStatus,
            ("bootdev", Some(p)) => IpmiCommand::Bootdev {
                device: self.pick(
                    join(path, "parameters"),
                    "bootdev parameter",
                    p,
                    &IpmiCommand::BOOTDEV,
                )?,
                persistent: persistent.unwrap_or(false),
                efi,
            },
            (other, _) => {
                let Some((name, reason)) =
                    IpmiCommand::UNSUPPORTED.iter().find(|(n, _)| *n == other)
                else {
                    let known: Vec<&str> = ["power", "bootdev"]
                        .into_iter()
                        .chain(IpmiCommand::UNSUPPORTED.iter().map(|(n, _)| *n))
                        .collect();
                    self.err(
                        join(path, "command"),
                        format!(
                            "unknown ipmi command {other:?} (expected one of: {})",
                            known.join(", ")
                        ),
                    );
                    return None;
                };
                self.unsupported.push(super::ProfileError::new(
                    join(path, "command"),
                    format!("ipmi_command {name} is not run as a step: {reason}"),
                ));
                IpmiCommand::Unsupported(name)
            }
        };
        if !matches!(command, IpmiCommand::Bootdev { .. }) {
            for (key, given) in [("persistent", persistent), ("efi", efi)] {
                if given.is_some() {
                    self.err(
                        join(path, key),
                        "only a bootdev command with a device takes it",
                    );
                }
            }
        }
        Some(ActionKind::IpmiCommand(command))
    }

    /// An optional `true` or `false`.
    fn opt_bool(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match map.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.err(
                    join(path, key),
                    format!("expected true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }
}
