//! Users `{id, username, email, first_name, last_name, is_active,
//! is_staff}`, SSH keys `{id, key, user}`, credentials `{id, name, data,
//! content_object}` (secrets attached to a server, shown opened to
//! staff) and agents `{id, queue, agent_url}` (the daemons, and older
//! agents registered by queue), in the older API's shapes.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::error::LegacyError;
use super::inventory::{ALL, key};
use super::{
    Call, DETAIL_METHODS, DETAIL_NO_UPDATE, LIST_METHODS, answer, no_content, not_allowed,
};
use crate::ops::users::{SshKeyInput, UserInput};
use crate::ops::{self};
use bootloader_core::model::{Fqdn, Name, Secret};
use bootloader_store::{Agent, Keyed, ServerSecret, SshKey, User};

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.name,
        "email": u.email,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "is_active": u.is_active,
        "is_staff": u.is_staff,
    })
}

fn user_field(path: &str) -> &str {
    match path {
        "name" => "username",
        p => p,
    }
}

/// The user fields of a body, and the password if one is given (the
/// older API ignored it; it is set here).
fn user_input(call: &Call<'_>) -> Result<(UserInput, Option<String>), LegacyError> {
    let mut f = call.fields()?;
    let input = UserInput {
        name: f.text("username", true, false, false, 150),
        email: f.text("email", false, true, false, 254),
        first_name: f.text("first_name", false, true, false, 150),
        last_name: f.text("last_name", false, true, false, 150),
        is_active: f.boolean("is_active", false),
        is_staff: f.boolean("is_staff", false),
    };
    let password = f.text("password", false, true, true, 4096);
    f.finish()?;
    Ok((input, password.filter(|p| !p.is_empty())))
}

pub async fn users(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (store, actor) = (&*call.ops.users, &call.actor);
    let err = |e| LegacyError::from_ops(e, user_field);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::users::list(store, actor, ALL).await.map_err(err)?;
                Ok(answer(
                    StatusCode::OK,
                    Value::Array(all.items.iter().map(user_json).collect()),
                ))
            }
            Method::POST => {
                let (input, password) = user_input(call)?;
                let u = ops::users::create(store, actor, input).await.map_err(err)?;
                if let Some(p) = password {
                    ops::users::set_password(store, actor, &u.name, Some(&p))
                        .await
                        .map_err(err)?;
                }
                Ok(answer(StatusCode::CREATED, user_json(&u)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    let name: Name = key(call, Keyed::User, id).await?;
    match call.method {
        Method::GET | Method::HEAD => {
            let u = ops::users::get(store, actor, &name).await.map_err(err)?;
            Ok(answer(StatusCode::OK, user_json(&u)))
        }
        Method::PUT | Method::PATCH => {
            let (input, password) = user_input(call)?;
            let u = ops::users::update(store, actor, &name, input)
                .await
                .map_err(err)?;
            if let Some(p) = password {
                ops::users::set_password(store, actor, &u.name, Some(&p))
                    .await
                    .map_err(err)?;
            }
            Ok(answer(StatusCode::OK, user_json(&u)))
        }
        Method::DELETE => {
            ops::users::delete(store, actor, &name).await.map_err(err)?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_METHODS)),
    }
}

fn ssh_key_json(k: &SshKey) -> Value {
    json!({"id": k.id, "key": k.key, "user": k.user})
}

pub async fn ssh_keys(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (store, actor) = (&*call.ops.users, &call.actor);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::users::list_ssh_keys(store, actor, None, ALL).await?;
                Ok(answer(
                    StatusCode::OK,
                    Value::Array(all.items.iter().map(ssh_key_json).collect()),
                ))
            }
            Method::POST => {
                let mut f = call.fields()?;
                let key = f.text("key", true, false, false, 16 * 1024);
                let user = f.name("user");
                f.finish()?;
                let k = ops::users::add_ssh_key(
                    store,
                    actor,
                    SshKeyInput {
                        user,
                        name: None,
                        key,
                    },
                )
                .await?;
                Ok(answer(StatusCode::CREATED, ssh_key_json(&k)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    match call.method {
        Method::GET | Method::HEAD => {
            let k = ops::users::ssh_key(store, actor, id).await?;
            Ok(answer(StatusCode::OK, ssh_key_json(&k)))
        }
        Method::DELETE => {
            ops::users::delete_ssh_key(store, actor, id).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_NO_UPDATE)),
    }
}

fn credential_json(call: &Call<'_>, c: &ServerSecret) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "data": c.data.expose(),
        "content_object": call.url("servers", Some(c.server_id)),
    })
}

/// The server id in a server's URL (absolute or a path, any of the older
/// API's prefixes).
fn server_in_url(url: &str) -> Option<i64> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url,
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let rest = match parts.as_slice() {
        ["api", "v1alpha1" | "v1alpha2", rest @ ..] | ["api", rest @ ..] => rest,
        _ => return None,
    };
    match rest {
        ["servers", id] => id.parse().ok().filter(|i| *i > 0),
        _ => None,
    }
}

pub async fn credentials(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    actor.require_staff("see credentials")?;
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                call.only_filters(&["object", "object_id", "name", "id"])?;
                // Only servers carry credentials.
                if call.param("object").is_some_and(|o| o != "server") {
                    return Ok(answer(StatusCode::OK, json!([])));
                }
                let server = match call.param("object_id") {
                    Some(s) => Some(s.parse::<i64>().map_err(|_| {
                        LegacyError::Detail(400, format!("object_id {s:?} is not a number"))
                    })?),
                    None => None,
                };
                let all = ops::secrets::list(o, actor, server, call.param("name")).await?;
                let shown = all
                    .iter()
                    .filter(|c| call.param("id").is_none_or(|i| i == c.id.to_string()))
                    .map(|c| credential_json(call, c));
                Ok(answer(StatusCode::OK, Value::Array(shown.collect())))
            }
            Method::POST => {
                let mut f = call.fields()?;
                let name = f.name("name");
                let data = f.text("data", true, false, false, 4096);
                let object = f.text("content_object", true, false, false, 2048);
                let server = object.as_deref().and_then(server_in_url);
                if let (Some(o), None) = (&object, server) {
                    f.error(
                        "content_object",
                        format!("Could not determine a valid serializer for value {o:?}."),
                    );
                }
                f.finish()?;
                let (Some(name), Some(data), Some(server)) = (name, data, server) else {
                    return Err(LegacyError::field("name", "This field is required."));
                };
                let fqdn: Fqdn = key(call, Keyed::Server, server).await.map_err(|_| {
                    LegacyError::field(
                        "content_object",
                        format!("Invalid hyperlink - Object does not exist (server {server})."),
                    )
                })?;
                let c = ops::secrets::add(o, actor, &fqdn, &name, &Secret::new(data)).await?;
                Ok(answer(StatusCode::CREATED, credential_json(call, &c)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    match call.method {
        Method::GET | Method::HEAD => {
            let c = ops::secrets::get(o, actor, id).await?;
            Ok(answer(StatusCode::OK, credential_json(call, &c)))
        }
        Method::DELETE => {
            ops::secrets::delete(o, actor, id).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_NO_UPDATE)),
    }
}

fn agent_json(a: &Agent) -> Value {
    json!({"id": a.id, "queue": a.name, "agent_url": a.url})
}

pub async fn agents(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    actor.require_staff("see agents")?;
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::agents::list(o, actor).await?;
                Ok(answer(
                    StatusCode::OK,
                    Value::Array(all.iter().map(agent_json).collect()),
                ))
            }
            // Keyed by queue: an agent that registers again keeps its id.
            Method::POST => {
                let mut f = call.fields()?;
                let queue = f.name("queue");
                let url = f.name("agent_url");
                f.finish()?;
                let (Some(queue), Some(url)) = (queue, url) else {
                    return Err(LegacyError::field("queue", "This field is required."));
                };
                let a = ops::agents::register(o, actor, &queue, &url).await?;
                Ok(answer(StatusCode::CREATED, agent_json(&a)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    let agent = ops::agents::list(o, actor)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or(LegacyError::NotFound)?;
    match call.method {
        Method::GET | Method::HEAD => Ok(answer(StatusCode::OK, agent_json(&agent))),
        Method::DELETE => {
            ops::agents::delete(o, actor, &agent.name).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_NO_UPDATE)),
    }
}

#[cfg(test)]
mod tests {
    use super::server_in_url;

    #[test]
    fn server_urls_in_every_form_the_older_api_took() {
        for (url, id) in [
            ("http://127.0.0.1:8000/api/v1alpha1/servers/115/", Some(115)),
            ("https://boot.example.com/api/v1alpha2/servers/3/", Some(3)),
            ("/api/servers/7/", Some(7)),
            ("/api/servers/7", Some(7)),
            ("/api/v1alpha2/servers/", None),
            ("/api/v1alpha2/locations/3/", None),
            ("servers/3", None),
            ("http://host", None),
            ("3", None),
        ] {
            assert_eq!(server_in_url(url), id, "{url}");
        }
    }
}
