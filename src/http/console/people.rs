//! The console's pages of people and settings: labels and credentials
//! (inventory that servers refer to), users (staff), the signed-in user's
//! API tokens and SSH keys, the broker and its backlog, and the effective
//! configuration.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::ConsoleState;
use super::extract::{Path, Query};
use super::render::{Empty, Page, error_page, form_input};
use super::session::{Change, Posted, Viewer, done};
use crate::ops::{self, Error};
use bootloader_core::model::Name;
use bootloader_store::Page as Window;

const ALL: Window = Window {
    limit: 1000,
    offset: 0,
};

/// The form's changes failed at their fields: the page again, with them.
fn at_fields(e: &Error) -> bool {
    matches!(e, Error::Invalid { .. } | Error::Conflict { .. })
}

fn name_of(raw: &str) -> Result<Name, Error> {
    ops::input::path_key("object", raw)
}

// ------------------------------------------------------------------ labels

async fn labels_page<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Page<'a> {
    let labels = ops::locations::list_labels(&state.app.ops, &viewer.actor(), ALL)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    Page::new(state, viewer, "labels.html")
        .with("section", "labels")
        .with("labels", labels)
}

pub async fn labels(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<EditQuery>,
) -> Response {
    let page = Ok(labels_page(&state, &viewer).await);
    list_or_edit(&state, &viewer, "labels", q, page).await
}

pub async fn create_label(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let result = match form_input::<ops::locations::LabelInput>(&posted, &[], &[], Empty::Omitted) {
        Ok(input) => ops::locations::create_label(&state.app.ops, &viewer.actor(), input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(l) => done("/ui/labels", &format!("Label {} created.", l.name)),
        Err(e) if at_fields(&e) => labels_page(&state, &viewer)
            .await
            .failed(&posted, e)
            .render(),
        Err(e) => error_page(&state, e),
    }
}

pub async fn delete_label(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Change { viewer, .. }: Change,
) -> Response {
    let result = match name_of(&name) {
        Ok(n) => ops::locations::delete_label(&state.app.ops, &viewer.actor(), &n).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => done(
            "/ui/labels",
            &format!("Label {name} deleted; servers no longer carry it."),
        ),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done("/ui/labels", &format!("Label {name} not deleted: {e}")),
    }
}

// ------------------------------------------------------------- credentials

async fn credentials_page<'a>(
    state: &'a ConsoleState,
    viewer: &'a Viewer,
) -> Result<Page<'a>, Error> {
    let credentials = ops::credentials::list(&state.app.ops, &viewer.actor(), ALL).await?;
    Ok(Page::new(state, viewer, "credentials.html")
        .with("section", "credentials")
        .with("credentials", credentials.items))
}

pub async fn credentials(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<EditQuery>,
) -> Response {
    let page = credentials_page(&state, &viewer).await;
    list_or_edit(&state, &viewer, "credentials", q, page).await
}

pub async fn create_credential(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let result =
        match form_input::<ops::credentials::CredentialInput>(&posted, &[], &[], Empty::Omitted) {
            Ok(input) => ops::credentials::create(&state.app.ops, &viewer.actor(), input).await,
            Err(e) => Err(e),
        };
    match result {
        Ok(c) => done("/ui/credentials", &format!("Credential {} stored.", c.name)),
        Err(e) if at_fields(&e) => match credentials_page(&state, &viewer).await {
            Ok(p) => p.failed(&posted, e).render(),
            Err(e) => error_page(&state, e),
        },
        Err(e) => error_page(&state, e),
    }
}

pub async fn delete_credential(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Change { viewer, .. }: Change,
) -> Response {
    let result = match name_of(&name) {
        Ok(n) => ops::credentials::delete(&state.app.ops, &viewer.actor(), &n).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => done("/ui/credentials", &format!("Credential {name} deleted.")),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done(
            "/ui/credentials",
            &format!("Credential {name} not deleted: {e}"),
        ),
    }
}

// ------------------------------------------------------------------- users

async fn users_page<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Result<Page<'a>, Error> {
    viewer.actor().require_staff("see every user")?;
    let users = ops::users::list(&*state.app.ops.users, &viewer.actor(), ALL).await?;
    Ok(Page::new(state, viewer, "users.html")
        .with("section", "users")
        .with("users", users.items))
}

pub async fn users(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<EditQuery>,
) -> Response {
    let page = users_page(&state, &viewer).await;
    list_or_edit(&state, &viewer, "users", q, page).await
}

pub async fn create_user(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let input = ops::users::UserInput {
        name: posted.get("name").map(String::from),
        email: posted.get("email").map(String::from),
        first_name: posted.get("first_name").map(String::from),
        last_name: posted.get("last_name").map(String::from),
        is_active: Some(posted.get("inactive") != Some("on")),
        is_staff: Some(posted.get("is_staff") == Some("on")),
    };
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let created = ops::users::create(&*ops.users, &actor, input).await;
    let result = match (created, posted.get("password").filter(|p| !p.is_empty())) {
        (Ok(user), Some(password)) => {
            match ops::users::set_password(&*ops.users, &actor, &user.name, Some(password)).await {
                Ok(()) => Ok(user),
                // The user exists; say what was wrong with the password.
                Err(e) => {
                    return done(
                        "/ui/users",
                        &format!("User {} created without a password: {e}", user.name),
                    );
                }
            }
        }
        (other, _) => other,
    };
    match result {
        Ok(u) => done("/ui/users", &format!("User {} created.", u.name)),
        Err(e) if at_fields(&e) => match users_page(&state, &viewer).await {
            Ok(p) => p.failed(&posted, e).render(),
            Err(e) => error_page(&state, e),
        },
        Err(e) => error_page(&state, e),
    }
}

pub async fn delete_user(
    State(state): State<ConsoleState>,
    Path(name): Path<String>,
    Change { viewer, .. }: Change,
) -> Response {
    let result = match name_of(&name) {
        Ok(n) => ops::users::delete(&*state.app.ops.users, &viewer.actor(), &n).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => done(
            "/ui/users",
            &format!("User {name} deleted, with their tokens, keys and sessions."),
        ),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done("/ui/users", &format!("User {name} not deleted: {e}")),
    }
}

// ------------------------------------------------- my tokens and SSH keys

async fn keys_page<'a>(state: &'a ConsoleState, viewer: &'a Viewer) -> Result<Page<'a>, Error> {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let me = viewer.name();
    let tokens = ops::users::list_tokens(&*ops.users, &actor, Some(me), ALL).await?;
    let keys = ops::users::list_ssh_keys(&*ops.users, &actor, Some(me), ALL).await?;
    Ok(Page::new(state, viewer, "keys.html")
        .with("section", "keys")
        .with("tokens", tokens.items)
        .with("keys", keys.items))
}

pub async fn keys(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    match keys_page(&state, &viewer).await {
        Ok(p) => p.render(),
        Err(e) => error_page(&state, e),
    }
}

/// How long a new token lives, as the form offers it.
fn lifetime(choice: &str) -> Result<Option<u64>, Error> {
    Ok(match choice {
        "" | "never" => None,
        "1d" => Some(86_400),
        "30d" => Some(30 * 86_400),
        "90d" => Some(90 * 86_400),
        "365d" => Some(365 * 86_400),
        other => {
            return Err(Error::invalid_field(
                "expires",
                format!("unknown lifetime {other:?}"),
            ));
        }
    })
}

pub async fn create_token(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let result = match lifetime(posted.get("expires").unwrap_or_default()) {
        Ok(expires_in) => {
            let input = ops::users::TokenInput {
                user: Some(viewer.name().to_string()),
                scope: posted
                    .get("scope")
                    .filter(|s| !s.is_empty())
                    .map(String::from),
                description: posted.get("description").map(String::from),
                expires_in,
            };
            ops::users::create_token(&*state.app.ops.users, &viewer.actor(), input).await
        }
        Err(e) => Err(e),
    };
    match result {
        // Shown once, on this answer only; never stored in clear.
        Ok((secret, token)) => match keys_page(&state, &viewer).await {
            Ok(p) => p
                .with("new_token", secret.expose())
                .with("new_token_id", token.id)
                .status(StatusCode::CREATED)
                .render(),
            Err(e) => error_page(&state, e),
        },
        Err(e) if at_fields(&e) => match keys_page(&state, &viewer).await {
            Ok(p) => p.failed(&posted, e).render(),
            Err(e) => error_page(&state, e),
        },
        Err(e) => error_page(&state, e),
    }
}

pub async fn revoke_token(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    Change { viewer, .. }: Change,
) -> Response {
    match ops::users::revoke_token(&*state.app.ops.users, &viewer.actor(), &id.to_string()).await {
        Ok(t) => done("/ui/keys", &format!("Token {} revoked.", t.prefix)),
        Err(e) => error_page(&state, e),
    }
}

pub async fn add_key(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let input = ops::users::SshKeyInput {
        user: Some(viewer.name().to_string()),
        name: posted
            .get("name")
            .filter(|n| !n.trim().is_empty())
            .map(String::from),
        key: posted.get("key").map(|k| k.trim().to_string()),
    };
    match ops::users::add_ssh_key(&*state.app.ops.users, &viewer.actor(), input).await {
        Ok(k) => done("/ui/keys", &format!("SSH key {} added.", k.name)),
        Err(e) if at_fields(&e) => match keys_page(&state, &viewer).await {
            Ok(p) => p.failed(&posted, e).render(),
            Err(e) => error_page(&state, e),
        },
        Err(e) => error_page(&state, e),
    }
}

pub async fn delete_key(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    Change { viewer, .. }: Change,
) -> Response {
    match ops::users::delete_ssh_key(&*state.app.ops.users, &viewer.actor(), id).await {
        Ok(()) => done("/ui/keys", "SSH key removed."),
        Err(e) => error_page(&state, e),
    }
}

// --------------------------------------------------- events and settings

pub async fn events(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let backlog = match ops::events::backlog(&state.app.ops, &viewer.actor()).await {
        Ok(b) => b,
        Err(e) => return error_page(&state, e),
    };
    Page::new(&state, &viewer, "events.html")
        .with("section", "events")
        .with("backlog", backlog)
        .with("relay", state.app.relay.status())
        .with("commands", state.app.commands.get())
        .with("notifications", state.app.notify.get())
        .render()
}

#[derive(Serialize)]
struct SettingRow {
    key: &'static str,
    value: String,
    source: String,
}

pub async fn settings(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    if let Err(e) = viewer.actor().require_staff("see the configuration") {
        return error_page(&state, e);
    }
    let rows: Vec<SettingRow> = state
        .settings
        .iter()
        .map(|s| SettingRow {
            key: s.key,
            value: s.value.clone(),
            source: s.source.to_string(),
        })
        .collect();
    Page::new(&state, &viewer, "settings.html")
        .with("section", "settings")
        .with("settings", rows)
        .render()
}

// ----------------------------------------------------------------- editing

/// `?edit=<key>` on a list page: its form holds that object, to change it.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EditQuery {
    edit: Option<String>,
}

/// The form's values for an object being edited.
fn values(pairs: &[(&str, String)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// What a list page with an object to edit shows.
async fn editing<'a>(
    state: &'a ConsoleState,
    viewer: &'a Viewer,
    kind: &str,
    key: &str,
    page: Page<'a>,
) -> Result<Page<'a>, Error> {
    viewer.actor().require_write()?;
    let ops = &state.app.ops;
    let actor = viewer.actor();
    if kind == "networks" {
        let id: i64 = ops::input::path_key("network", key)?;
        let n = ops::networks::get(ops, &actor, id).await?;
        let addrs: Vec<String> = n.nameservers.iter().map(|a| a.to_string()).collect();
        let mut pairs = vec![
            ("location", n.location.to_string()),
            ("cidr", n.cidr.to_string()),
            (
                "gateway",
                n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            ),
            ("nameservers", addrs.join(", ")),
            ("domain", n.domain.unwrap_or_default()),
            ("description", n.description),
        ];
        if let Some(p) = n.pool {
            pairs.push(("pool.start", p.start.to_string()));
            pairs.push(("pool.end", p.end.to_string()));
        }
        let mut v = values(&pairs);
        for (i, o) in n.dhcp_options.iter().enumerate() {
            let option = if o.name.is_empty() {
                o.code.to_string()
            } else {
                o.name.clone()
            };
            v.insert(format!("dhcp_options[{i}].option"), option);
            v.insert(format!("dhcp_options[{i}].value"), o.value.clone());
        }
        return Ok(page
            .with("editing", key)
            .with("option_rows", n.dhcp_options.len() + 2)
            .with("values", v));
    }
    let name = name_of(key)?;
    let pairs = match kind {
        "labels" => {
            let l = ops::locations::label(ops, &actor, &name).await?;
            vec![("name", l.name.to_string()), ("description", l.description)]
        }
        "locations" => {
            let l = ops::locations::location(ops, &actor, &name).await?;
            vec![("name", l.name.to_string()), ("description", l.description)]
        }
        "credentials" => {
            let c = ops::credentials::get(ops, &actor, &name).await?;
            vec![
                ("name", c.name.to_string()),
                ("username", c.username),
                ("description", c.description),
            ]
        }
        _ => {
            let u = ops::users::get(&*ops.users, &actor, &name).await?;
            let on = |b: bool| if b { "on" } else { "" }.to_string();
            vec![
                ("name", u.name.to_string()),
                ("email", u.email),
                ("first_name", u.first_name),
                ("last_name", u.last_name),
                ("inactive", on(!u.is_active)),
                ("is_staff", on(u.is_staff)),
            ]
        }
    };
    Ok(page.with("editing", key).with("values", values(&pairs)))
}

/// A list page, with the object of `?edit=` in its form.
pub async fn list_or_edit(
    state: &ConsoleState,
    viewer: &Viewer,
    kind: &'static str,
    query: EditQuery,
    page: Result<Page<'_>, Error>,
) -> Response {
    let page = match page {
        Ok(p) => p,
        Err(e) => return error_page(state, e),
    };
    match query.edit {
        Some(key) => match editing(state, viewer, kind, &key, page).await {
            Ok(p) => p.render(),
            Err(e) => error_page(state, e),
        },
        None => page.render(),
    }
}

/// `POST /ui/{kind}/{key}/edit`: the changed object, through the same
/// update as the API's PATCH; emptied fields clear, an empty password
/// keeps the stored one.
async fn update(
    state: ConsoleState,
    viewer: Viewer,
    kind: &str,
    key: String,
    posted: Posted,
) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    if kind == "networks" {
        return save_network(&state, &viewer, &key, &posted).await;
    }
    let name = match name_of(&key) {
        Ok(n) => n,
        Err(e) => return error_page(&state, e),
    };
    let result: Result<String, Error> = match kind {
        "labels" => {
            match form_input::<ops::locations::LabelInput>(&posted, &[], &[], Empty::Clears) {
                Ok(i) => ops::locations::update_label(ops, &actor, &name, i)
                    .await
                    .map(|l| l.name.to_string()),
                Err(e) => Err(e),
            }
        }
        "locations" => {
            match form_input::<ops::locations::LocationInput>(&posted, &[], &[], Empty::Clears) {
                Ok(i) => ops::locations::update_location(ops, &actor, &name, i)
                    .await
                    .map(|l| l.name.to_string()),
                Err(e) => Err(e),
            }
        }
        "credentials" => {
            match form_input::<ops::credentials::CredentialInput>(&posted, &[], &[], Empty::Clears)
            {
                Ok(i) => ops::credentials::update(ops, &actor, &name, i)
                    .await
                    .map(|c| c.name.to_string()),
                Err(e) => Err(e),
            }
        }
        "users" => {
            let input = ops::users::UserInput {
                name: posted.get("name").map(String::from),
                email: posted.get("email").map(String::from),
                first_name: posted.get("first_name").map(String::from),
                last_name: posted.get("last_name").map(String::from),
                is_active: Some(posted.get("inactive") != Some("on")),
                is_staff: Some(posted.get("is_staff") == Some("on")),
            };
            match ops::users::update(&*ops.users, &actor, &name, input).await {
                Ok(u) => match posted.get("password").filter(|p| !p.is_empty()) {
                    Some(p) => {
                        match ops::users::set_password(&*ops.users, &actor, &u.name, Some(p)).await
                        {
                            // Signed in with the old password: sign in again.
                            Ok(()) => ops
                                .sessions
                                .end_sessions_of(&u.name, Some(viewer.session.id))
                                .await
                                .map(|_| u.name.to_string())
                                .map_err(Error::from),
                            Err(e) => Err(e),
                        }
                    }
                    None => Ok(u.name.to_string()),
                },
                Err(e) => Err(e),
            }
        }
        other => Err(Error::NotFound(format!("nothing to edit at {other:?}"))),
    };
    let list = format!("/ui/{kind}");
    match result {
        Ok(saved) => done(&list, &format!("{saved} saved.")),
        Err(e) if at_fields(&e) => {
            let page = match kind {
                "labels" => Ok(labels_page(&state, &viewer).await),
                "locations" => Ok(super::places::locations_page(&state, &viewer).await),
                "credentials" => credentials_page(&state, &viewer).await,
                _ => users_page(&state, &viewer).await,
            };
            match page {
                Ok(p) => p.with("editing", &key).failed(&posted, e).render(),
                Err(e) => error_page(&state, e),
            }
        }
        Err(e) => error_page(&state, e),
    }
}

/// `POST /ui/labels/{name}/edit` and its kin.
macro_rules! edit_handler {
    ($name:ident, $kind:literal) => {
        pub async fn $name(
            State(state): State<ConsoleState>,
            Path(key): Path<String>,
            Change { viewer, posted }: Change,
        ) -> Response {
            update(state, viewer, $kind, key, posted).await
        }
    };
}

edit_handler!(update_label, "labels");
edit_handler!(update_location, "locations");
edit_handler!(update_credential, "credentials");
edit_handler!(update_user, "users");
edit_handler!(update_network, "networks");

/// A network's form as its update: a pool whose two ends are emptied is
/// removed.
async fn save_network(
    state: &ConsoleState,
    viewer: &Viewer,
    key: &str,
    posted: &Posted,
) -> Response {
    let ops = &state.app.ops;
    let result = async {
        let id: i64 = ops::input::path_key("network", key)?;
        let mut input: serde_json::Value =
            form_input(posted, &[], &["nameservers"], Empty::Clears)?;
        if input["pool"] == serde_json::json!({"start": "", "end": ""}) {
            input["pool"] = serde_json::Value::Null;
        }
        let bytes = serde_json::to_vec(&input).unwrap_or_default();
        let input: ops::networks::NetworkInput = ops::input::parse_json(&bytes)?;
        ops::networks::update(ops, &viewer.actor(), id, input).await
    }
    .await;
    match result {
        Ok(n) => done("/ui/networks", &format!("Network {} saved.", n.cidr)),
        Err(e) if at_fields(&e) => super::places::networks_page(state, viewer)
            .await
            .with("editing", key)
            .with("option_rows", super::places::option_rows(posted, 0))
            .failed(posted, e)
            .render(),
        Err(e) => error_page(state, e),
    }
}
