//! Users, their API tokens and their SSH keys. These need only the
//! `UserStore`, which the CLI opens without the rest of the daemon.

use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use bootloader_core::model::{ApiTokenSecret, Name, NewPassword, PasswordHash, TokenScope};
use bootloader_store::{
    ApiToken, Listing, NewApiToken, Page, Principal, SshKey, StoreError, User, UserSpec, UserStore,
};

use super::input::check_text;
use super::{Actor, Error, Validator};

/// The user behind a presented API token, if it is valid now (known,
/// not revoked, not expired, its user active).
pub async fn authenticate(
    users: &dyn UserStore,
    presented: &ApiTokenSecret,
) -> Result<Option<Principal>, Error> {
    Ok(users
        .authenticate(&presented.hash(), OffsetDateTime::now_utc())
        .await?)
}

/// Creates a token for `user`: through the API, `bootloader token create`
/// and `user add`, and for the first user at start-up. Its scope is
/// `write` for staff and `read` for others unless asked; a write token
/// needs a staff user.
pub async fn issue_token(
    store: &dyn UserStore,
    actor: &Actor,
    user: &Name,
    scope: Option<TokenScope>,
    description: &str,
    expires_in: Option<u64>,
) -> Result<(ApiTokenSecret, ApiToken), Error> {
    require_own_or_write(actor, user, "create tokens for others")?;
    let owner = store.user(user).await.map_err(|e| match e {
        bootloader_store::StoreError::NotFound { .. } => {
            Error::invalid_field("user", format!("user {user} does not exist"))
        }
        other => other.into(),
    })?;
    let scope = scope.unwrap_or(if owner.is_staff {
        TokenScope::Write
    } else {
        TokenScope::Read
    });
    if scope == TokenScope::Write && !owner.is_staff {
        return Err(Error::invalid_field("scope", "write needs a staff user"));
    }
    // A token may not do more than the one (or the session) that made it.
    if scope == TokenScope::Write && !actor.may_write() {
        return Err(Error::invalid_field(
            "scope",
            "a read-only token cannot make a write token",
        ));
    }
    let expires_at = match expires_in {
        Some(0) => {
            return Err(Error::invalid_field(
                "expires_in",
                "must be at least 1 second",
            ));
        }
        Some(s) => Some(
            OffsetDateTime::now_utc()
                + time::Duration::seconds(
                    i64::try_from(s.min(100 * 365 * 86400)).unwrap_or(i64::MAX),
                ),
        ),
        None => None,
    };
    let secret = ApiTokenSecret::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let info = store
        .create_token(NewApiToken {
            user: user.clone(),
            hash: secret.hash(),
            prefix: secret.prefix(),
            scope,
            description: description.to_string(),
            expires_at,
        })
        .await?;
    Ok((secret, info))
}

/// Keeps a token issued by the older system (its 40-hex DRF keys) valid
/// for `user`: stored by its SHA-256 like every token, with the scope a
/// new token of that user would have. Importing it again changes nothing;
/// a key that is already another user's is refused.
pub async fn import_token(
    store: &dyn UserStore,
    actor: &Actor,
    user: &Name,
    key: &str,
    description: &str,
) -> Result<ApiToken, Error> {
    actor.require_write()?;
    let key = key.trim();
    if !(16..=200).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid_field(
            "key",
            "16 to 200 printable characters without spaces (the older keys are 40 hex digits)",
        ));
    }
    let owner = store.user(user).await.map_err(|e| match e {
        bootloader_store::StoreError::NotFound { .. } => {
            Error::invalid_field("user", format!("user {user} does not exist"))
        }
        other => other.into(),
    })?;
    let secret = ApiTokenSecret::from_presented(key);
    let created = store
        .create_token(NewApiToken {
            user: user.clone(),
            hash: secret.hash(),
            prefix: secret.prefix(),
            scope: if owner.is_staff {
                TokenScope::Write
            } else {
                TokenScope::Read
            },
            description: description.to_string(),
            expires_at: None,
        })
        .await;
    match created {
        Ok(token) => Ok(token),
        Err(bootloader_store::StoreError::Conflict { .. }) => {
            // Already here: this user's (imported before) or another's.
            let mine = store
                .list_tokens(
                    Some(user),
                    Page {
                        limit: u32::MAX,
                        offset: 0,
                    },
                )
                .await?
                .items
                .into_iter()
                .find(|t| t.prefix == secret.prefix());
            let held = store
                .authenticate(&secret.hash(), OffsetDateTime::now_utc())
                .await?;
            match (mine, held) {
                (Some(t), Some(p)) if p.user == *user => Ok(t),
                _ => Err(Error::invalid_field(
                    "key",
                    "this key is already another user's token",
                )),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    pub name: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `false`: the user's tokens, sessions and password stop working
    /// (nothing is deleted). Default `true`.
    pub is_active: Option<bool>,
    pub is_staff: Option<bool>,
}

pub fn user_spec(input: UserInput, current: Option<&User>) -> Result<UserSpec, Error> {
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
    let first_name = input
        .first_name
        .or_else(|| current.map(|c| c.first_name.clone()))
        .unwrap_or_default();
    check_text(&mut v, "first_name", &first_name, 150);
    let last_name = input
        .last_name
        .or_else(|| current.map(|c| c.last_name.clone()))
        .unwrap_or_default();
    check_text(&mut v, "last_name", &last_name, 150);
    v.finish()?;
    Ok(UserSpec {
        name: name.ok_or_else(|| Error::invalid_field("name", "is required"))?,
        email,
        first_name,
        last_name,
        is_active: input
            .is_active
            .or(current.map(|c| c.is_active))
            .unwrap_or(true),
        is_staff: input
            .is_staff
            .or(current.map(|c| c.is_staff))
            .unwrap_or(false),
    })
}

pub async fn list(store: &dyn UserStore, _: &Actor, page: Page) -> Result<Listing<User>, Error> {
    Ok(store.list_users(page).await?)
}

pub async fn get(store: &dyn UserStore, _: &Actor, name: &Name) -> Result<User, Error> {
    Ok(store.user(name).await?)
}

pub async fn create(store: &dyn UserStore, actor: &Actor, input: UserInput) -> Result<User, Error> {
    actor.require_write()?;
    let spec = user_spec(input, None)?;
    Ok(store.create_user(spec).await?)
}

/// Merges `input` into the user; nobody takes staff away from themselves.
pub async fn update(
    store: &dyn UserStore,
    actor: &Actor,
    name: &Name,
    input: UserInput,
) -> Result<User, Error> {
    actor.require_write()?;
    super::update_fresh(|| async {
        let current = store.user(name).await?;
        let spec = user_spec(input.clone(), Some(&current))?;
        if let Actor::User(me) = actor
            && current.id == me.user_id
        {
            let refused = if !spec.is_staff {
                Some(("is_staff", "you cannot take staff away from yourself"))
            } else if !spec.is_active {
                Some(("is_active", "you cannot deactivate yourself"))
            } else {
                None
            };
            if let Some((field, why)) = refused {
                return Err(Error::invalid_field(field, why));
            }
        }
        Ok(store.update_user(name, spec, &current).await)
    })
    .await
}

/// Sets `name`'s console password (`None` removes it: the user can no
/// longer sign in to the console; API tokens are not touched). Staff and
/// the host set anyone's; a user sets their own.
pub async fn set_password(
    store: &dyn UserStore,
    actor: &Actor,
    name: &Name,
    password: Option<&str>,
) -> Result<(), Error> {
    if let Actor::User(me) = actor
        && me.user != *name
    {
        actor.require_write()?;
    }
    let hash = match password {
        Some(text) => {
            let new = NewPassword::new(text)
                .map_err(|e| Error::invalid_field("password", e.to_string()))?;
            // argon2id takes tens of milliseconds of one core: off the
            // runtime's threads.
            let hashed = tokio::task::spawn_blocking(move || new.hash())
                .await
                .map_err(|e| Error::Internal(format!("password hashing stopped: {e}")))?;
            Some(hashed.map_err(|e| Error::Internal(e.to_string()))?)
        }
        None => None,
    };
    Ok(store.set_password(name, hash.as_ref()).await?)
}

/// The user, if `presented` is their console password. A user without one,
/// or one who does not exist, is refused the same way (and costs the same
/// time), so that a sign-in form does not tell which names exist.
pub async fn check_password(
    store: &dyn UserStore,
    name: &Name,
    presented: &str,
) -> Result<Option<User>, Error> {
    let user = match store.user(name).await {
        // An inactive user is refused like one who does not exist.
        Ok(u) if u.is_active => Some(u),
        Ok(_) => None,
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let stored = match &user {
        Some(_) => store.password_hash(name).await?,
        None => None,
    };
    let presented = presented.to_string();
    // A hash brought over from the older system is replaced by argon2id
    // once the password is known to match it.
    let (matches, rehashed) = tokio::task::spawn_blocking(move || match stored {
        Some(hash) if hash.verify(&presented) => {
            let rehashed = hash
                .is_older()
                .then(|| PasswordHash::rehash(&presented).ok())
                .flatten();
            (true, rehashed)
        }
        Some(_) => (false, None),
        None => {
            // The same work as a real check, against nothing.
            if let Some(decoy) = decoy() {
                let _ = decoy.verify(&presented);
            }
            (false, None)
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("password check stopped: {e}")))?;
    if let Some(new) = rehashed {
        match store.set_password(name, Some(&new)).await {
            Ok(()) => {
                tracing::info!(user = %name, "the older system's password hash was replaced by argon2id")
            }
            Err(e) => {
                tracing::warn!(user = %name, error = %e, "could not replace an older password hash; it is tried again at the next sign-in")
            }
        }
    }
    Ok(user.filter(|_| matches))
}

/// A hash no password matches, for timing a check of a user without one
/// (made once; `None` if no randomness was to be had).
fn decoy() -> Option<PasswordHash> {
    static DECOY: std::sync::OnceLock<Option<PasswordHash>> = std::sync::OnceLock::new();
    DECOY
        .get_or_init(|| {
            let mut secret = [0u8; 16];
            getrandom::fill(&mut secret).ok()?;
            NewPassword::new(&hex::encode(secret)).ok()?.hash().ok()
        })
        .clone()
}

/// Deletes a user (and their tokens and keys); nobody deletes themselves.
pub async fn delete(store: &dyn UserStore, actor: &Actor, name: &Name) -> Result<(), Error> {
    actor.require_write()?;
    if let Actor::User(me) = actor
        && *name == me.user
    {
        return Err(Error::Conflict {
            message: "you cannot delete yourself".into(),
            fields: Default::default(),
        });
    }
    Ok(store.delete_user(name).await?)
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

/// Validates a token request and issues the token: its secret, shown
/// once, and what is stored of it.
pub async fn create_token(
    store: &dyn UserStore,
    actor: &Actor,
    input: TokenInput,
) -> Result<(ApiTokenSecret, ApiToken), Error> {
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
        check_text(&mut v, "description", d, 1000);
    }
    v.finish()?;
    let user = user.ok_or_else(|| Error::invalid_field("user", "is required"))?;
    issue_token(
        store,
        actor,
        &user,
        scope,
        input.description.as_deref().unwrap_or(""),
        input.expires_in,
    )
    .await
}

/// Tokens: staff see every token (or one user's); others only their own.
pub async fn list_tokens(
    store: &dyn UserStore,
    actor: &Actor,
    user: Option<&str>,
    page: Page,
) -> Result<Listing<ApiToken>, Error> {
    let user = match actor {
        Actor::User(me) if !me.is_staff => Some(me.user.clone()),
        _ => match user {
            Some(u) => Some(
                u.parse::<Name>()
                    .map_err(|e| Error::invalid_field("user", e.to_string()))?,
            ),
            None => None,
        },
    };
    Ok(store.list_tokens(user.as_ref(), page).await?)
}

/// Revokes a token by id or prefix: staff any, others their own (a token
/// of someone else is not found for them).
pub async fn revoke_token(
    store: &dyn UserStore,
    actor: &Actor,
    id_or_prefix: &str,
) -> Result<ApiToken, Error> {
    if let Actor::User(me) = actor
        && !actor.may_write()
    {
        let all = Page {
            limit: 10_000,
            offset: 0,
        };
        let own = store.list_tokens(Some(&me.user), all).await?;
        let mine = own
            .items
            .iter()
            .find(|t| t.id.to_string() == id_or_prefix || t.prefix == id_or_prefix);
        let Some(token) = mine else {
            return Err(Error::NotFound(format!(
                "no token {id_or_prefix:?} of yours"
            )));
        };
        return Ok(store.revoke_token(&token.id.to_string()).await?);
    }
    actor.require_write()?;
    Ok(store.revoke_token(id_or_prefix).await?)
}

/// Lets a user act on what is their own (tokens, SSH keys); anything of
/// someone else needs the right to change things.
fn require_own_or_write(actor: &Actor, owner: &Name, what: &str) -> Result<(), Error> {
    match actor {
        Actor::User(me) if me.user == *owner => Ok(()),
        Actor::User(me) if !actor.may_write() => Err(Error::Forbidden(format!(
            "user {} may manage only their own: not {what}",
            me.user
        ))),
        _ => actor.require_write(),
    }
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
pub fn check_ssh_key(line: &str) -> Result<(String, String), String> {
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

pub async fn list_ssh_keys(
    store: &dyn UserStore,
    _: &Actor,
    user: Option<&str>,
    page: Page,
) -> Result<Listing<SshKey>, Error> {
    let user = match user {
        Some(u) => Some(
            u.parse::<Name>()
                .map_err(|e| Error::invalid_field("user", e.to_string()))?,
        ),
        None => None,
    };
    Ok(store.list_ssh_keys(user.as_ref(), page).await?)
}

/// Adds an authorized key to a user; it is named by its comment unless a
/// name is given.
pub async fn add_ssh_key(
    store: &dyn UserStore,
    actor: &Actor,
    input: SshKeyInput,
) -> Result<SshKey, Error> {
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
        check_text(&mut v, "name", n, 200);
    }
    v.finish()?;
    let (Some(user), Some((key, comment))) = (user, key) else {
        return Err(Error::invalid_field("key", "is required"));
    };
    require_own_or_write(actor, &user, "add keys for others")?;
    let name = input.name.unwrap_or(comment);
    store
        .add_ssh_key(&user, &name, &key)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => {
                Error::invalid_field("user", format!("user {user} does not exist"))
            }
            other => other.into(),
        })
}

pub async fn ssh_key(store: &dyn UserStore, _: &Actor, id: i64) -> Result<SshKey, Error> {
    Ok(store.ssh_key(id).await?)
}

/// Deletes an SSH key: staff any, others their own.
pub async fn delete_ssh_key(store: &dyn UserStore, actor: &Actor, id: i64) -> Result<(), Error> {
    if !actor.may_write() {
        let key = store.ssh_key(id).await?;
        require_own_or_write(actor, &key.user, "delete keys of others")?;
    }
    Ok(store.delete_ssh_key(id).await?)
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
