//! The signed-in user's page: theme and password.

use axum::extract::State;
use axum::response::Response;

use super::ConsoleState;
use super::render::{Page, error_page};
use super::session::{Change, Viewer, done};
use crate::ops::{self, Error};
use bootloader_core::model::Theme;

pub async fn me(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    Page::new(&state, &viewer, "me.html")
        .with("section", "me")
        .with("chosen", viewer.session.theme.map(Theme::as_str))
        .with("default_theme", state.ui.default_theme.as_str())
        .with("min_password", bootloader_core::model::MIN_PASSWORD_CHARS)
        .render()
}

pub async fn set_theme(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let theme = match posted.get("theme").unwrap_or_default() {
        "" => None,
        t => match t.parse::<Theme>() {
            Ok(t) => Some(t),
            Err(e) => return error_page(&state, Error::invalid_field("theme", e)),
        },
    };
    if let Err(e) = ops::sessions::set_theme(&state.app.ops, &viewer.actor(), theme).await {
        return error_page(&state, e);
    }
    let back = super::session::safe_next(posted.get("next"));
    done(&back, "Theme changed.")
}

pub async fn change_password(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let (current, new, again) = (
        posted.get("current").unwrap_or_default(),
        posted.get("new").unwrap_or_default(),
        posted.get("again").unwrap_or_default(),
    );
    let me_page = |e: Error| {
        Page::new(&state, &viewer, "me.html")
            .with("section", "me")
            .with("chosen", viewer.session.theme.map(Theme::as_str))
            .with("default_theme", state.ui.default_theme.as_str())
            .with("min_password", bootloader_core::model::MIN_PASSWORD_CHARS)
            .failed(&posted, e)
            .render()
    };
    if new != again {
        return me_page(Error::invalid_field(
            "again",
            "the two new passwords differ",
        ));
    }
    let ops = &state.app.ops;
    match ops::users::check_password(&*ops.users, &viewer.session.principal.user, current).await {
        Ok(Some(_)) => {}
        Ok(None) => return me_page(Error::invalid_field("current", "is not your password")),
        Err(e) => return error_page(&state, e),
    }
    match ops::users::set_password(
        &*ops.users,
        &viewer.actor(),
        &viewer.session.principal.user,
        Some(new),
    )
    .await
    {
        Ok(()) => {
            // Every other browser signed in as this user signs in again.
            let me = &viewer.session.principal.user;
            match ops
                .sessions
                .end_sessions_of(me, Some(viewer.session.id))
                .await
            {
                Ok(0) => done("/ui/me", "Password changed."),
                Ok(n) => done(
                    "/ui/me",
                    &format!("Password changed; your {n} other session(s) ended."),
                ),
                Err(e) => error_page(&state, e.into()),
            }
        }
        Err(e @ Error::Invalid { .. }) => {
            // The rule's message names `password`; the form's field is `new`.
            let body = e.into_body();
            let message = body
                .fields
                .into_values()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            me_page(Error::invalid_field("new", message))
        }
        Err(e) => error_page(&state, e),
    }
}
