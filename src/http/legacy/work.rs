//! Profiles `{id, profile}` (the document as JSON text, in and out, as
//! the older API took and gave it) and deployments `{id, server,
//! profile, token, status, progress}` (v1alpha1 without the last two).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::error::LegacyError;
use super::inventory::ALL;
use super::{Call, DETAIL_NO_UPDATE, LIST_METHODS, Version, answer, no_content, not_allowed};
use crate::ops::deployments::DeploymentInput;
use crate::ops::{self, Error};
use bootloader_store::boot::DeploymentRecord;
use bootloader_store::{ProfileFilter, StoredProfile};

/// The stored document as JSON text (profiles uploaded as YAML through
/// the project's API included).
fn profile_json(p: &StoredProfile) -> Value {
    let text = serde_saphyr::from_str::<Value>(&p.source)
        .ok()
        .and_then(|v| serde_json::to_string(&v).ok())
        .unwrap_or_else(|| p.source.clone());
    json!({"id": p.id, "profile": text})
}

/// Every complaint about an uploaded profile, under `profile`, each with
/// the path it is about.
fn upload_error(e: Error) -> LegacyError {
    let messages: Vec<String> = match e {
        Error::Invalid { fields, message } | Error::Conflict { fields, message } => {
            if fields.is_empty() {
                vec![message]
            } else {
                fields
                    .into_iter()
                    .flat_map(|(path, ms)| {
                        ms.into_iter().map(move |m| {
                            if path.starts_with('(') {
                                m
                            } else {
                                format!("{path}: {m}")
                            }
                        })
                    })
                    .collect()
            }
        }
        other => return other.into(),
    };
    LegacyError::Fields([("profile".to_string(), messages)].into())
}

pub async fn profiles(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                call.only_filters(&["name", "version", "id"])?;
                let filter = ProfileFilter {
                    name: call.param("name").map(String::from),
                    version: call.param("version").map(String::from),
                };
                let all = ops::profiles::list(o, actor, &filter, ALL).await?.items;
                let shown = all
                    .iter()
                    .filter(|p| call.param("id").is_none_or(|i| i == p.id.to_string()))
                    .map(profile_json);
                Ok(answer(StatusCode::OK, Value::Array(shown.collect())))
            }
            Method::POST => {
                let mut f = call.fields()?;
                let document = match f.raw("profile") {
                    // JSON text, as the older clients send it.
                    Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                        Ok(Value::Object(map)) => Some(map),
                        _ => {
                            f.error("profile", "Value must be valid JSON.");
                            None
                        }
                    },
                    // The document itself, which it also is.
                    Some(Value::Object(map)) => Some(map.clone()),
                    Some(_) => {
                        f.error("profile", "Value must be valid JSON.");
                        None
                    }
                    None => {
                        f.error("profile", "This field is required.");
                        None
                    }
                };
                f.finish()?;
                // Its templates are the older system's: Django's language,
                // unless the document says otherwise.
                let text = document
                    .map(|mut map| {
                        map.entry("templating")
                            .or_insert_with(|| Value::from("django"));
                        Value::Object(map).to_string()
                    })
                    .unwrap_or_default();
                let p = ops::profiles::upload(o, actor, &text)
                    .await
                    .map_err(upload_error)?;
                Ok(answer(StatusCode::CREATED, profile_json(&p)))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    match call.method {
        Method::GET | Method::HEAD => {
            let p = ops::profiles::get(o, actor, &id.to_string()).await?;
            Ok(answer(StatusCode::OK, profile_json(&p)))
        }
        Method::DELETE => {
            ops::profiles::delete(o, actor, &id.to_string()).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_NO_UPDATE)),
    }
}

async fn deployment_json(call: &Call<'_>, d: &DeploymentRecord) -> Result<Value, LegacyError> {
    // The callback token is staff's (the older agent reads it with a
    // staff token); others see null.
    let token = if call.principal.is_staff {
        ops::deployments::token(call.ops, &call.actor, d.id).await?
    } else {
        None
    };
    let mut v = json!({
        "id": d.id,
        "server": d.server,
        "profile": d.profile_id,
        "token": token,
        "status": d.state.as_str(),
        "progress": d.progress,
    });
    if call.version == Version::V1alpha1
        && let Some(map) = v.as_object_mut()
    {
        map.remove("status");
        map.remove("progress");
    }
    Ok(v)
}

pub async fn deployments(call: &Call<'_>, id: Option<i64>) -> Result<Response, LegacyError> {
    let (o, actor) = (call.ops, &call.actor);
    let Some(id) = id else {
        return match call.method {
            Method::GET | Method::HEAD => {
                let all = ops::deployments::list(o, actor, None, None, ALL)
                    .await?
                    .items;
                let mut out = Vec::with_capacity(all.len());
                for d in &all {
                    out.push(deployment_json(call, d).await?);
                }
                Ok(answer(StatusCode::OK, Value::Array(out)))
            }
            Method::POST => {
                let mut f = call.fields()?;
                let server = f.name("server");
                let profile = f.integer("profile", true);
                f.finish()?;
                let (Some(server), Some(profile)) = (server, profile) else {
                    return Err(LegacyError::field("server", "This field is required."));
                };
                let input = DeploymentInput {
                    server,
                    profile: profile.to_string(),
                };
                let d = ops::deployments::create(o, actor, input).await?;
                Ok(answer(
                    StatusCode::CREATED,
                    deployment_json(call, &d).await?,
                ))
            }
            _ => Err(not_allowed(call, LIST_METHODS)),
        };
    };
    match call.method {
        Method::GET | Method::HEAD => {
            let d = ops::deployments::get(o, actor, id).await?;
            Ok(answer(StatusCode::OK, deployment_json(call, &d).await?))
        }
        Method::DELETE => {
            ops::deployments::delete(o, actor, id).await?;
            Ok(no_content())
        }
        _ => Err(not_allowed(call, DETAIL_NO_UPDATE)),
    }
}
