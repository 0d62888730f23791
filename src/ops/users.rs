//! Users and their tokens.

use time::OffsetDateTime;

use bootloader_core::model::{ApiTokenSecret, Name, TokenScope};
use bootloader_store::{ApiToken, NewApiToken, UserStore};

use super::{Actor, Error};

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
    actor.require_write()?;
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
