//! Pages from the embedded templates, and forms read into the API's
//! inputs.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::ConsoleState;
use super::session::{Posted, Viewer, clear_flash};
use crate::ops::{self, error::FieldErrors};
use bootloader_core::model::Theme;

/// Every template, by name, embedded in the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("error.html", include_str!("templates/error.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("servers.html", include_str!("templates/servers.html")),
    ("server.html", include_str!("templates/server.html")),
    (
        "server_form.html",
        include_str!("templates/server_form.html"),
    ),
    (
        "deployments.html",
        include_str!("templates/deployments.html"),
    ),
    ("deployment.html", include_str!("templates/deployment.html")),
    ("profiles.html", include_str!("templates/profiles.html")),
    ("profile.html", include_str!("templates/profile.html")),
    (
        "profile_form.html",
        include_str!("templates/profile_form.html"),
    ),
    ("locations.html", include_str!("templates/locations.html")),
    ("networks.html", include_str!("templates/networks.html")),
    ("me.html", include_str!("templates/me.html")),
    ("bulk.html", include_str!("templates/bulk.html")),
    ("labels.html", include_str!("templates/labels.html")),
    (
        "credentials.html",
        include_str!("templates/credentials.html"),
    ),
    ("users.html", include_str!("templates/users.html")),
    ("keys.html", include_str!("templates/keys.html")),
    ("events.html", include_str!("templates/events.html")),
    ("settings.html", include_str!("templates/settings.html")),
];

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        // `.html` templates escape what they print.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                // The templates are part of the binary; a test renders each.
                tracing::error!(template = name, error = %e, "a console template does not parse");
            }
        }
        env.add_filter("when", when);
        env.add_filter("ago", ago);
        env.add_filter("seconds", seconds);
        Self { env }
    }
}

fn parse_time(v: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
}

/// `2026-12-02 14:51:55 UTC` from an RFC 3339 time.
fn when(v: String) -> String {
    match parse_time(&v) {
        Some(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        None => v,
    }
}

/// `3 min ago` from an RFC 3339 time.
fn ago(v: String) -> String {
    match parse_time(&v) {
        Some(t) => {
            let s = (OffsetDateTime::now_utc() - t).whole_seconds();
            if s < 0 {
                "just now".into()
            } else {
                format!("{} ago", human_seconds(s as u64))
            }
        }
        None => v,
    }
}

fn seconds(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} s")
    } else {
        human_seconds(v as u64)
    }
}

pub fn human_seconds(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d", s / 86_400),
    }
}

/// A page to render: a template and what it shows.
pub struct Page<'a> {
    state: &'a ConsoleState,
    viewer: Option<&'a Viewer>,
    template: &'static str,
    ctx: BTreeMap<&'static str, Value>,
    status: StatusCode,
}

impl<'a> Page<'a> {
    /// A page of the signed-in console.
    pub fn new(state: &'a ConsoleState, viewer: &'a Viewer, template: &'static str) -> Self {
        Self {
            viewer: Some(viewer),
            ..Self::bare(state, template)
        }
    }

    /// A page shown without a session (sign-in, errors).
    pub fn bare(state: &'a ConsoleState, template: &'static str) -> Self {
        Self {
            state,
            viewer: None,
            template,
            ctx: BTreeMap::new(),
            status: StatusCode::OK,
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Serialize) -> Self {
        self.ctx
            .insert(key, Value::from(minijinja::value::Serde(&value)));
        self
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The form's values and each field's errors, from a failed change.
    pub fn failed(self, posted: &Posted, error: ops::Error) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let values: BTreeMap<&str, &str> = posted
            .0
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && !k.ends_with("password"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = error.into_body();
        // Each error goes next to its field; one about an element of a
        // field the form sends whole (`nameservers[1]` of `nameservers`)
        // goes next to that field; one about no field of the form goes in
        // the summary.
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut elsewhere: Vec<String> = Vec::new();
        for (key, messages) in body.fields {
            let text = messages.join("; ");
            let base = key.split('[').next().unwrap_or(&key).to_string();
            let placed = if values.contains_key(key.as_str()) || key.ends_with("password") {
                Some(key.clone())
            } else if values.contains_key(base.as_str()) {
                Some(base)
            } else {
                None
            };
            match placed {
                Some(field) => {
                    let differs = field != key;
                    let entry = fields.entry(field).or_default();
                    if !entry.is_empty() {
                        entry.push_str("; ");
                    }
                    if differs {
                        entry.push_str(&format!("{key}: "));
                    }
                    entry.push_str(&text);
                }
                None => elsewhere.push(format!("{key}: {text}")),
            }
        }
        self.with("values", values)
            .with("errors", fields)
            .with("elsewhere", elsewhere)
            .with("error", body.message)
            .status(status)
    }

    pub fn render(self) -> Response {
        let theme = self.viewer.map_or(self.state.ui.default_theme, |v| v.theme);
        let themes: Vec<(&str, &str)> =
            Theme::ALL.iter().map(|t| (t.as_str(), t.label())).collect();
        let mut ctx = self.ctx;
        ctx.insert("theme", Value::from(theme.as_str()));
        ctx.insert("themes", Value::from(minijinja::value::Serde(&themes)));
        ctx.insert("asset_v", Value::from(super::asset_version()));
        ctx.insert("version", Value::from(env!("CARGO_PKG_VERSION")));
        let mut flash = false;
        if let Some(v) = self.viewer {
            let p = &v.session.principal;
            ctx.insert(
                "me",
                Value::from(minijinja::value::Serde(serde_json::json!({
                    "name": p.user.as_str(),
                    "email": v.session.email,
                    "staff": p.is_staff,
                    "may_write": v.may_write(),
                    "initials": initials(p.user.as_str()),
                    "avatar": self.state.avatars.enabled(),
                }))),
            );
            ctx.insert("csrf", Value::from(v.form_token.clone()));
            if let Some(f) = &v.flash {
                ctx.insert("flash", Value::from(f.clone()));
                flash = true;
            }
        }
        let rendered = self
            .state
            .templates
            .env
            .get_template(self.template)
            .and_then(|t| t.render(Value::from(minijinja::value::Serde(&ctx))));
        let mut response = match rendered {
            Ok(html) => (self.status, html).into_response(),
            Err(e) => {
                tracing::error!(template = self.template, error = %format!("{e:#}"), "a console page did not render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "This page could not be rendered; the daemon's log says why.\n",
                )
                    .into_response()
            }
        };
        let h = response.headers_mut();
        if !h.contains_key(header::CONTENT_TYPE)
            || self.status.is_success()
            || h.get(header::CONTENT_TYPE)
                .is_some_and(|c| c.as_bytes().starts_with(b"text/plain"))
        {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
        }
        secure_headers(h);
        if flash {
            clear_flash(&mut response);
        }
        response
    }
}

/// What every console answer carries: no caching of pages with data, no
/// framing, scripts and styles only from this daemon.
pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
}

pub fn initials(name: &str) -> String {
    name.split(['.', '-', '_'])
        .filter_map(|p| p.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase()
}

/// An error in one sentence, each bad field named.
pub fn describe(e: ops::Error) -> String {
    let body = e.into_body();
    let mut text = body.message;
    for (field, messages) in body.fields {
        text.push_str(&format!("; {field}: {}", messages.join(", ")));
    }
    text
}

/// An operation's failure as a page of its own (a page that cannot be
/// shown at all: not found, forbidden, the store down).
pub fn error_page(state: &ConsoleState, e: ops::Error) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if let ops::Error::Internal(detail) = &e {
        tracing::error!(%detail, "console request failed");
        "Something went wrong inside the daemon; its log says what.".to_string()
    } else {
        describe(e)
    };
    Page::bare(state, "error.html")
        .with("status", status.as_u16())
        .with("message", message)
        .status(status)
        .render()
}

/// What an empty field of a form means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// Left out (a new object: the default applies).
    Omitted,
    /// Cleared (an edit), except numbers and passwords, which keep their
    /// value.
    Clears,
}

/// Reads a posted form as the API's JSON input `T`: `bmc.port` and
/// `interfaces[1].mac` name nested fields as they do in the API's errors;
/// fields in `numbers` are numbers, fields in `lists` are comma-separated;
/// empty fields are left out. Rows of a list that are left empty do not
/// count, and errors name the rows as the form numbered them.
pub fn form_input<T: DeserializeOwned>(
    posted: &Posted,
    numbers: &[&str],
    lists: &[&str],
    empty: Empty,
) -> Result<T, ops::Error> {
    let mut root = serde_json::Map::new();
    let mut bad = FieldErrors::new();
    let rows = form_rows(posted);
    for (key, value) in &posted.0 {
        let value = value.trim();
        if key.starts_with('_') {
            continue;
        }
        if value.is_empty() {
            // An edit clears what was emptied: a text to "", a list to [],
            // every row left empty out of its list. A number or a password
            // left empty keeps what it was.
            let generic = generic_key(key);
            let clears = empty == Empty::Clears
                && row_of(key).is_none()
                && !numbers.contains(&generic.as_str())
                && !key.ends_with("password");
            if clears {
                let cleared = if lists.contains(&generic.as_str()) {
                    serde_json::Value::Array(Vec::new())
                } else {
                    serde_json::Value::from("")
                };
                put(&mut root, key, cleared, &rows);
            } else if empty == Empty::Clears
                && let Some((list, _)) = row_of(key)
                && !root.contains_key(list)
            {
                // A list whose rows are all empty is an empty list.
                root.insert(list.to_string(), serde_json::Value::Array(Vec::new()));
            }
            continue;
        }
        let generic = generic_key(key);
        let json = if numbers.contains(&generic.as_str()) {
            match value.parse::<i64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => {
                    bad.entry(key.clone())
                        .or_default()
                        .push("must be a whole number".into());
                    continue;
                }
            }
        } else if lists.contains(&generic.as_str()) {
            serde_json::Value::from(
                value
                    .split([',', '\n'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        } else {
            serde_json::Value::from(value)
        };
        put(&mut root, key, json, &rows);
    }
    if !bad.is_empty() {
        return Err(ops::Error::invalid_fields(bad));
    }
    let bytes = serde_json::to_vec(&root).unwrap_or_default();
    ops::input::parse_json(&bytes).map_err(|e| renumber(e, &rows))
}

/// `interfaces[2].mac` -> `("interfaces", 2)`.
fn row_of(key: &str) -> Option<(&str, usize)> {
    let open = key.find('[')?;
    let close = key[open..].find(']')? + open;
    Some((&key[..open], key[open + 1..close].parse().ok()?))
}

/// `interfaces[2].mac` -> `interfaces[].mac`, for the type lists.
fn generic_key(key: &str) -> String {
    match row_of(key) {
        Some((list, _)) => {
            let close = key.find(']').unwrap_or(key.len() - 1);
            format!("{list}[]{}", &key[close + 1..])
        }
        None => key.to_string(),
    }
}

fn put(
    root: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    value: serde_json::Value,
    rows: &BTreeMap<(String, usize), usize>,
) {
    if let Some((list, row)) = row_of(key) {
        let pos = rows.get(&(list.to_string(), row)).copied().unwrap_or(0);
        let rest = key
            .find(']')
            .map(|c| key[c + 1..].trim_start_matches('.'))
            .unwrap_or("");
        let array = root
            .entry(list.to_string())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(items) = array {
            while items.len() <= pos {
                items.push(serde_json::Value::Object(Default::default()));
            }
            if rest.is_empty() {
                items[pos] = value;
            } else if let serde_json::Value::Object(item) = &mut items[pos] {
                put(item, rest, value, rows);
            }
        }
        return;
    }
    match key.split_once('.') {
        Some((head, rest)) => {
            let child = root
                .entry(head.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let serde_json::Value::Object(map) = child {
                put(map, rest, value, rows);
            }
        }
        None => {
            root.insert(key.to_string(), value);
        }
    }
}

/// An error naming `interfaces[0].mac` renamed to the form's row.
fn renumber(e: ops::Error, rows: &BTreeMap<(String, usize), usize>) -> ops::Error {
    let rename = |field: String| -> String {
        if let Some((list, pos)) = row_of(&field)
            && let Some(((_, row), _)) = rows.iter().find(|((l, _), p)| l == list && **p == pos)
        {
            let close = field.find(']').unwrap_or(field.len() - 1);
            return format!("{list}[{row}]{}", &field[close + 1..]);
        }
        field
    };
    match e {
        ops::Error::Invalid { message, fields } => ops::Error::Invalid {
            message,
            fields: fields.into_iter().map(|(k, v)| (rename(k), v)).collect(),
        },
        ops::Error::Conflict { message, fields } => ops::Error::Conflict {
            message,
            fields: fields.into_iter().map(|(k, v)| (rename(k), v)).collect(),
        },
        other => other,
    }
}

/// Renames the fields of an error from an operation the same way.
pub fn form_error(e: ops::Error, posted: &Posted) -> ops::Error {
    renumber(e, &form_rows(posted))
}

/// Dense positions of the rows the form numbered and filled: (list, form
/// row) -> position in the JSON array.
fn form_rows(posted: &Posted) -> BTreeMap<(String, usize), usize> {
    let mut present: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (key, value) in &posted.0 {
        if key.starts_with('_') || value.trim().is_empty() {
            continue;
        }
        if let Some((list, row)) = row_of(key) {
            let seen = present.entry(list.to_string()).or_default();
            if !seen.contains(&row) {
                seen.push(row);
            }
        }
    }
    let mut rows = BTreeMap::new();
    for (list, mut seen) in present {
        seen.sort_unstable();
        for (pos, row) in seen.into_iter().enumerate() {
            rows.insert((list.clone(), row), pos);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(pairs: &[(&str, &str)]) -> Posted {
        Posted(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                panic!("{name}: {e:#}");
            }
        }
    }

    #[test]
    fn a_form_becomes_the_api_input_with_its_nesting() {
        let p = posted(&[
            ("_csrf", "x"),
            ("fqdn", "s1.example.com"),
            ("bmc.port", "623"),
            ("bmc.host", ""),
            ("labels", "rack1, gpu"),
            ("interfaces[0].mac", ""),
            ("interfaces[0].name", ""),
            ("interfaces[2].mac", "52:54:00:00:00:01"),
            ("interfaces[2].name", "eth1"),
        ]);
        let v: serde_json::Value =
            form_input(&p, &["bmc.port"], &["labels"], Empty::Omitted).expect("reads");
        assert_eq!(
            v,
            serde_json::json!({
                "fqdn": "s1.example.com",
                "bmc": {"port": 623},
                "labels": ["rack1", "gpu"],
                "interfaces": [{"mac": "52:54:00:00:00:01", "name": "eth1"}],
            })
        );
    }

    #[test]
    fn errors_name_the_rows_as_the_form_numbered_them() {
        let p = posted(&[
            ("interfaces[1].mac", "52:54:00:00:00:01"),
            ("interfaces[3].mac", "bad"),
        ]);
        let e = ops::Error::invalid_field("interfaces[1].mac", "not a MAC");
        match form_error(e, &p) {
            ops::Error::Invalid { fields, .. } => {
                assert!(fields.contains_key("interfaces[3].mac"), "{fields:?}");
            }
            other => panic!("{other:?}"),
        }
        let bad_number = form_input::<serde_json::Value>(
            &posted(&[("bmc.port", "six")]),
            &["bmc.port"],
            &[],
            Empty::Omitted,
        );
        assert!(
            matches!(bad_number, Err(ops::Error::Invalid { ref fields, .. }) if fields.contains_key("bmc.port"))
        );
    }
}
