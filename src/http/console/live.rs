//! Deployment pages that follow their deployment as it moves, by
//! server-sent events. One watcher asks the store once a second which
//! deployments changed, and only while some page follows one; each open
//! page reads its deployment again only when that one changed. Two hundred
//! open pages cost one query a second, not two hundred.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};

use super::ConsoleState;
use super::extract::Path;
use super::render::error_page;
use super::session::Viewer;
use crate::ops;
use bootloader_store::engine::EngineStore;

/// How often the watcher asks which deployments changed.
const TICK: Duration = Duration::from_secs(1);

/// The watcher of changed deployments, shared by every following page.
#[derive(Clone)]
pub struct Live {
    store: Arc<dyn EngineStore>,
    changed: broadcast::Sender<Arc<Vec<i64>>>,
    running: Arc<Mutex<bool>>,
}

impl Live {
    pub fn new(store: Arc<dyn EngineStore>) -> Self {
        Self {
            store,
            changed: broadcast::channel(64).0,
            running: Arc::new(Mutex::new(false)),
        }
    }

    /// Changed deployment ids from now on; starts the watcher if it is not
    /// running.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<i64>>> {
        let rx = self.changed.subscribe();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !*running {
            *running = true;
            tokio::spawn(self.clone().watch());
        }
        rx
    }

    async fn watch(self) {
        let mut since = OffsetDateTime::now_utc() - time::Duration::seconds(2);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            {
                // Nobody follows: stop (the next follower starts it again).
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if self.changed.receiver_count() == 0 {
                    *running = false;
                    return;
                }
            }
            match self.store.changed_deployments(since, 1000).await {
                Ok(rows) if !rows.is_empty() => {
                    if let Some((_, at)) = rows.last() {
                        since = *at;
                    }
                    let ids: Vec<i64> = rows.into_iter().map(|(id, _)| id).collect();
                    let _ = self.changed.send(Arc::new(ids));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "live pages: the store did not answer"),
            }
        }
    }
}

/// `GET /ui/deployments/{id}/live`: the deployment as it moves (`state`
/// events with its record) and its new log lines (`log` events), until it
/// ends: final, and its complete, error or cleanup step run too, so the
/// lines that step logs are streamed before the stream ends.
pub async fn follow(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    let actor = viewer.actor();
    if let Err(e) = ops::deployments::get(&state.app.ops, &actor, id).await {
        return error_page(&state, e);
    }
    let mut changes = state.live.subscribe();
    let (tx, mut rx) = mpsc::channel::<Event>(16);
    let ops = state.app.ops.clone();
    tokio::spawn(async move {
        let mut last_log = None;
        loop {
            let Ok(d) = ops::deployments::get(&ops, &actor, id).await else {
                return;
            };
            let log = ops::deployments::log(&ops, &actor, id, last_log, Some(200))
                .await
                .unwrap_or_default();
            for entry in &log {
                let event = Event::default().event("log").json_data(entry);
                if let Ok(event) = event
                    && tx.send(event).await.is_err()
                {
                    return;
                }
                last_log = Some(entry.id);
            }
            match Event::default().event("state").json_data(&d) {
                Ok(event) => {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
            if super::deployments::settled(&d) {
                return;
            }
            // Wait until this deployment changes (or the page goes).
            loop {
                tokio::select! {
                    changed = changes.recv() => match changed {
                        Ok(ids) if ids.contains(&id) => break,
                        Ok(_) => continue,
                        // Missed some: read again to be sure.
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
