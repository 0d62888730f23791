//! `/users`, `/tokens` and `/ssh_authorized_keys`.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Validator};
use super::extract::{JsonBody, PageQuery, Paginated, Path, Query, Reader, Staff, path_key};
use crate::http::AppState;
use crate::ops::Actor;
use bootloader_core::model::{Name, TokenScope};
use bootloader_store::{ApiToken, SshKey, User, UserSpec};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub name: Option<String>,
    pub email: Option<String>,
    pub is_staff: Option<bool>,
}

pub fn user_spec(input: UserInput, current: Option<&User>) -> Result<UserSpec, ApiError> {
    let mut v = Validator::default();
    let name = match (input.name, current) {
        (Some(n), _) => v.parse("name", n.parse::<Name>()),
        (None, Some(c)) => Some(c.name.clone()),
        (None, None) => {
            v.error("name", "is required");
            None
        }
    };
    let email = input
        .email
        .or_else(|| current.map(|c| c.email.clone()))
        .unwrap_or_default();
    if !email.is_empty()
        && (email.len() > 254
            || !email.contains('@')
            || email.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        v.error("email", format!("{email:?} is not an e-mail address"));
    }
    v.finish()?;
    Ok(UserSpec {
        name: name.ok_or_else(|| ApiError::invalid_field("name", "is required"))?,
        email,
        is_staff: input
            .is_staff
            .or(current.map(|c| c.is_staff))
            .unwrap_or(false),
    })
}

#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Paginated<User>)))]
pub async fn list_users(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    _: Reader,
    Query(q): Query<PageQuery>,
) -> Result<Json<Paginated<User>>, ApiError> {
    let page = q.page(&state)?;
    let listing = state.store.list_users(page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |u| u)))
}

#[utoipa::path(post, path = "/users", tag = "users", request_body = UserInput,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    _: Staff,
    JsonBody(input): JsonBody<UserInput>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let spec = user_spec(input, None)?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_user(spec).await?),
    ))
}

#[utoipa::path(get, path = "/users/{name}", tag = "users",
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    _: Reader,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    let name: Name = path_key("user", &name)?;
    Ok(Json(state.store.user(&name).await?))
}

#[utoipa::path(patch, path = "/users/{name}", tag = "users", request_body = UserInput,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<UserInput>,
) -> Result<Json<User>, ApiError> {
    let name: Name = path_key("user", &name)?;
    let current = state.store.user(&name).await?;
    let spec = user_spec(input, Some(&current))?;
    if current.id == me.user_id && !spec.is_staff {
        return Err(ApiError::invalid_field(
            "is_staff",
            "you cannot take staff away from yourself",
        ));
    }
    Ok(Json(state.store.update_user(&name, spec).await?))
}

#[utoipa::path(delete, path = "/users/{name}", tag = "users",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: Name = path_key("user", &name)?;
    if name == me.user {
        return Err(ApiError::Conflict {
            message: "you cannot delete yourself".into(),
            fields: Default::default(),
        });
    }
    state.store.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// The user the token is for.
    pub user: Option<String>,
    /// `read` or `write`; default `write` for staff, `read` otherwise.
    #[schema(value_type = Option<String>)]
    pub scope: Option<String>,
    pub description: Option<String>,
    /// Lifetime in seconds; none for a token that does not expire.
    pub expires_in: Option<u64>,
}

/// A new token: the secret appears here once and is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: ApiToken,
}

#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = TokenInput,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Staff(principal): Staff,
    JsonBody(input): JsonBody<TokenInput>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let mut v = Validator::default();
    let user = match &input.user {
        Some(u) => v.parse("user", u.parse::<Name>()),
        None => {
            v.error("user", "is required");
            None
        }
    };
    let scope = input
        .scope
        .as_deref()
        .and_then(|s| v.parse("scope", s.parse::<TokenScope>()));
    if let Some(d) = &input.description {
        super::extract::check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    let user = user.ok_or_else(|| ApiError::invalid_field("user", "is required"))?;
    let (secret, info) = crate::ops::users::issue_token(
        state.store.as_ref(),
        &Actor::User(principal),
        &user,
        scope,
        input.description.as_deref().unwrap_or(""),
        input.expires_in,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret.expose().to_string(),
            info,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UserFilterQuery {
    /// Only items of this user.
    pub user: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

#[utoipa::path(get, path = "/tokens", tag = "tokens", params(UserFilterQuery),
    responses((status = 200, body = Paginated<ApiToken>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Reader(me): Reader,
    Query(q): Query<UserFilterQuery>,
) -> Result<Json<Paginated<ApiToken>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    // Staff see every token; others only their own.
    let user = match (me.is_staff, q.user) {
        (true, Some(u)) => Some(
            u.parse::<Name>()
                .map_err(|e| ApiError::invalid_field("user", e.to_string()))?,
        ),
        (true, None) => None,
        (false, _) => Some(me.user.clone()),
    };
    let listing = state.store.list_tokens(user.as_ref(), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |t| t)))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    _: Staff,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_token(&id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeyInput {
    pub user: Option<String>,
    /// A label for the key; defaults to the key's comment.
    pub name: Option<String>,
    /// One line of authorized_keys: `type base64 [comment]`.
    pub key: Option<String>,
}

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Checks an authorized_keys line; returns it normalised and its comment.
fn check_ssh_key(line: &str) -> Result<(String, String), String> {
    let line = line.trim();
    if line.contains(['\n', '\r']) {
        return Err("must be a single line".into());
    }
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("expected \"<type> <base64> [comment]\"".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!("unknown key type {kind:?}"));
    }
    let blob_ok = blob.len() >= 16
        && blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !blob_ok {
        return Err("the key data is not base64".into());
    }
    let comment = parts.collect::<Vec<_>>().join(" ");
    let normalised = if comment.is_empty() {
        format!("{kind} {blob}")
    } else {
        format!("{kind} {blob} {comment}")
    };
    Ok((normalised, comment))
}

#[utoipa::path(get, path = "/ssh_authorized_keys", tag = "ssh_authorized_keys", params(UserFilterQuery),
    responses((status = 200, body = Paginated<SshKey>)))]
pub async fn list_ssh_keys(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    _: Reader,
    Query(q): Query<UserFilterQuery>,
) -> Result<Json<Paginated<SshKey>>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page(&state)?;
    let user = match q.user {
        Some(u) => Some(
            u.parse::<Name>()
                .map_err(|e| ApiError::invalid_field("user", e.to_string()))?,
        ),
        None => None,
    };
    let listing = state.store.list_ssh_keys(user.as_ref(), page).await?;
    Ok(Json(Paginated::new(listing, page, &uri, |k| k)))
}

#[utoipa::path(post, path = "/ssh_authorized_keys", tag = "ssh_authorized_keys", request_body = SshKeyInput,
    responses((status = 201, body = SshKey), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_ssh_key(
    State(state): State<AppState>,
    _: Staff,
    JsonBody(input): JsonBody<SshKeyInput>,
) -> Result<(StatusCode, Json<SshKey>), ApiError> {
    let mut v = Validator::default();
    let user = match &input.user {
        Some(u) => v.parse("user", u.parse::<Name>()),
        None => {
            v.error("user", "is required");
            None
        }
    };
    let key = match &input.key {
        Some(k) => v.parse("key", check_ssh_key(k)),
        None => {
            v.error("key", "is required");
            None
        }
    };
    if let Some(n) = &input.name {
        super::extract::check_text(&mut v, "name", n, 200);
    }
    v.finish()?;
    let (Some(user), Some((key, comment))) = (user, key) else {
        return Err(ApiError::invalid_field("key", "is required"));
    };
    let name = input.name.unwrap_or(comment);
    let created = state
        .store
        .add_ssh_key(&user, &name, &key)
        .await
        .map_err(|e| match e {
            bootloader_store::StoreError::NotFound { .. } => {
                ApiError::invalid_field("user", format!("user {user} does not exist"))
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/ssh_authorized_keys/{id}", tag = "ssh_authorized_keys",
    responses((status = 200, body = SshKey), (status = 404, body = ErrorBody)))]
pub async fn get_ssh_key(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<i64>,
) -> Result<Json<SshKey>, ApiError> {
    Ok(Json(state.store.ssh_key(id).await?))
}

#[utoipa::path(delete, path = "/ssh_authorized_keys/{id}", tag = "ssh_authorized_keys",
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_ssh_key(
    State(state): State<AppState>,
    _: Staff,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_ssh_key(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::check_ssh_key;

    #[test]
    fn ssh_keys() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq9 alice@laptop";
        assert_eq!(check_ssh_key(k).unwrap().1, "alice@laptop");
        assert!(check_ssh_key("ssh-dss AAAAB3NzaC1kc3MAAACBAP").is_err());
        assert!(check_ssh_key("ssh-ed25519").is_err());
        assert!(check_ssh_key("ssh-ed25519 not-base64!!!!!!!!!!").is_err());
        assert!(check_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq9\nssh-rsa AAAA").is_err());
    }
}
