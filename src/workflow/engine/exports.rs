//! What an installer of an active deployment may fetch with its callback
//! token (compared in constant time): a template of its profile rendered
//! for it, and a user's SSH keys.

use subtle::ConstantTimeEq;

use super::Engine;
use crate::workflow::templates::Subject;
use bootloader_core::model::{LogLevel, Name};
use bootloader_store::engine::EngineView;
use bootloader_store::{Page, StoreError};

impl Engine {
    /// The deployment, if `presented` is its callback token and it is
    /// active (machine-facing URLs work only while it runs).
    async fn authorized(&self, id: i64, presented: &str) -> Result<Option<EngineView>, StoreError> {
        let view = match self.ledger.engine_view(id).await {
            Ok(v) => v,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let ok = view
            .token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(presented.as_bytes())));
        Ok((ok && !view.record.state.is_final()).then_some(view))
    }

    /// `/export/file/{id}/{token}/{profile}/{version}/{file}`: the
    /// deployment's template `file` rendered for its first interface, if
    /// the token, profile and version are the deployment's.
    pub async fn export_file(
        &self,
        id: i64,
        presented: &str,
        profile_name: &str,
        version: &str,
        file: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(mut view) = self.authorized(id, presented).await? else {
            return Ok(None);
        };
        let profile = self.driver.profiles.of(&mut view)?;
        if profile.name != profile_name
            || profile.version != version
            || !profile.templates.contains_key(file)
        {
            return Ok(None);
        }
        let subject = Subject {
            deployment: &view.record,
            profile: &profile,
            token: presented,
        };
        let facts = self.templates.facts(&view.record).await?;
        let ctx = self.templates.context(subject, &facts, 0);
        match profile.render(file, &ctx, time::OffsetDateTime::now_utc()) {
            Ok(text) => Ok(Some(text)),
            Err(e) => {
                self.ledger
                    .append_log(
                        id,
                        LogLevel::Warn,
                        &format!("export of template {file} failed: {e}"),
                    )
                    .await?;
                Ok(None)
            }
        }
    }

    /// `/export/sshkeys/{id}/{token}/{user}`: the user's authorized keys,
    /// for an installer of an active deployment.
    pub async fn export_ssh_keys(
        &self,
        id: i64,
        presented: &str,
        user: &str,
    ) -> Result<Option<String>, StoreError> {
        if self.authorized(id, presented).await?.is_none() {
            return Ok(None);
        }
        let Ok(user) = user.parse::<Name>() else {
            return Ok(None);
        };
        let page = Page {
            limit: 1000,
            offset: 0,
        };
        let keys = self.users.list_ssh_keys(Some(&user), page).await?;
        Ok(Some(
            keys.items
                .iter()
                .map(|k| format!("{}\n", k.key.trim()))
                .collect(),
        ))
    }
}
