//! The command queue: each daemon consumes `bootloader.commands.<location>`
//! (`bootloader.commands` without a location) and carries out what a web
//! layer asks there: create, cancel or repeat a deployment, power actions
//! and boot devices. A command runs through the same API handlers as the
//! REST request it mirrors, so it is validated and answered the same way;
//! it is acknowledged only after its effect is committed, and the result
//! or the error is published to the message's `reply_to` with its
//! `correlation_id`. A command the store could not take (503) goes back to
//! the queue, to be tried again. Like the relay, the consumer reconnects
//! from scratch with backoff on any error.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde_json::{Map, Value};
use tower::ServiceExt;
use tracing::{info, warn};
use utoipa::ToSchema;

/// The version of the reply's shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Commands carried out at once (unacknowledged deliveries).
const PREFETCH: u16 = 8;

/// The largest command body read.
const MAX_BODY: usize = 64 * 1024;

/// The queue a daemon of `location` consumes.
pub fn queue_name(location: Option<&str>) -> String {
    match location {
        Some(l) => format!("bootloader.commands.{l}"),
        None => "bootloader.commands".to_string(),
    }
}

/// Marks a request as a command from the broker: the API's `Staff`
/// extractor lets it write as the user `broker`. Only this module inserts
/// it; requests from the network cannot carry extensions.
#[derive(Debug, Clone, Copy)]
pub struct BrokerCommand;

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CommandStatus {
    /// Whether a broker is configured.
    pub enabled: bool,
    pub queue: Option<String>,
    pub connected: bool,
    /// Commands carried out (answered and acknowledged).
    pub handled: u64,
    pub last_error: Option<String>,
}

/// The status the API shows.
pub type CommandHandle = super::StatusCell<CommandStatus>;

/// A command turned into the API request it mirrors.
#[derive(Debug, PartialEq)]
pub struct ApiCall {
    pub method: Method,
    /// Under `/api/v1alpha2`.
    pub path: String,
    pub body: Option<Value>,
}

/// Why a message is not a command; answered as a 400.
#[derive(Debug, PartialEq)]
pub struct BadCommand(pub String);

fn segment(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Takes a path parameter (a string, or a number for ids) out of `fields`.
fn take(fields: &mut Map<String, Value>, name: &str) -> Result<String, BadCommand> {
    match fields.remove(name) {
        Some(Value::String(s)) if s.is_empty() => Err(BadCommand(format!("{name}: empty"))),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(BadCommand(format!("{name}: must be a string or a number"))),
        None => Err(BadCommand(format!("{name}: missing"))),
    }
}

fn no_more(fields: &Map<String, Value>) -> Result<(), BadCommand> {
    match fields.keys().next() {
        Some(k) => Err(BadCommand(format!("{k}: unknown field"))),
        None => Ok(()),
    }
}

/// Reads a command: a JSON object with `command` and its fields.
///
/// | command | fields | mirrors |
/// | --- | --- | --- |
/// | `deployment.create` | `server`, `profile` | `POST /deployments` |
/// | `deployment.cancel` | `id` | `POST /deployments/{id}/cancel` |
/// | `deployment.repeat` | `id` | `POST /deployments/{id}/repeat` |
/// | `power` | `server`, `action` | `POST /servers/{server}/power` |
/// | `power.status` | `server` | `GET /servers/{server}/power` |
/// | `bootdev` | `server`, `device`, `persistent`, `efi` | `POST /servers/{server}/bootdev` |
pub fn parse(body: &[u8]) -> Result<(String, ApiCall), BadCommand> {
    if body.len() > MAX_BODY {
        return Err(BadCommand(format!(
            "the command is larger than {MAX_BODY} bytes"
        )));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BadCommand(format!("the command is not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(BadCommand("the command must be a JSON object".into()));
    };
    let command = match fields.remove("command") {
        Some(Value::String(c)) => c,
        Some(_) => return Err(BadCommand("command: must be a string".into())),
        None => return Err(BadCommand("command: missing".into())),
    };
    let call = match command.as_str() {
        "deployment.create" => ApiCall {
            method: Method::POST,
            path: "/deployments".into(),
            body: Some(Value::Object(fields)),
        },
        "deployment.cancel" | "deployment.repeat" => {
            let id = take(&mut fields, "id")?;
            no_more(&fields)?;
            let verb = command.trim_start_matches("deployment.");
            ApiCall {
                method: Method::POST,
                path: format!("/deployments/{}/{verb}", segment(&id)),
                body: None,
            }
        }
        "power" | "bootdev" => {
            let server = take(&mut fields, "server")?;
            ApiCall {
                method: Method::POST,
                path: format!("/servers/{}/{command}", segment(&server)),
                body: Some(Value::Object(fields)),
            }
        }
        "power.status" => {
            let server = take(&mut fields, "server")?;
            no_more(&fields)?;
            ApiCall {
                method: Method::GET,
                path: format!("/servers/{}/power", segment(&server)),
                body: None,
            }
        }
        other => {
            return Err(BadCommand(format!(
                "command: unknown command {other:?} (deployment.create, deployment.cancel, \
                 deployment.repeat, power, power.status, bootdev)"
            )));
        }
    };
    Ok((command, call))
}

/// The reply published to `reply_to`.
#[derive(Debug, Serialize)]
struct Reply<'a> {
    schema_version: u32,
    command: Option<&'a str>,
    ok: bool,
    /// The HTTP status the same request would have had.
    status: u16,
    /// The API's response body on success (the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    /// The API's error body otherwise: `error` (a code), `message`, and
    /// `fields` naming each bad field.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// Carries out `call` through the API router.
async fn dispatch(api: &Router, call: ApiCall) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(call.method)
        .uri(format!("/api/v1alpha2{}", call.path));
    let body = match call.body {
        Some(v) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        None => Body::empty(),
    };
    let request = match builder.extension(BrokerCommand).body(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "bad_command", "message": format!("bad command: {e}") }),
            );
        }
    };
    let response = match api.clone().oneshot(request).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[derive(Debug, Clone)]
pub struct CommandSettings {
    pub url: String,
    pub queue: String,
}

/// Consumes the command queue until `shutdown` resolves. `api` is the
/// REST router (with its state).
pub async fn run(
    api: Router,
    settings: CommandSettings,
    handle: CommandHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    handle.update(|s| {
        s.enabled = true;
        s.queue = Some(settings.queue.clone());
    });
    tokio::pin!(shutdown);
    let mut backoff = super::Backoff::new();
    loop {
        let session = tokio::select! {
            r = session(&api, &settings, &handle) => r,
            () = &mut shutdown => return,
        };
        let delay = backoff.after(handle.get().connected);
        warn!(error = %session, queue = %settings.queue,
            "command queue: broker session ended; reconnecting in {} ms", delay.as_millis());
        handle.update(|s| {
            s.connected = false;
            s.last_error = Some(session.clone());
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return,
        }
    }
}

/// One connection's life; returns why it ended.
async fn session(api: &Router, settings: &CommandSettings, handle: &CommandHandle) -> String {
    let url = super::with_heartbeat(&settings.url);
    let conn = match Connection::connect(&url, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => return format!("connect: {e}"),
    };
    let channel = match open(&conn, &settings.queue).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut consumer = match channel
        .basic_consume(
            settings.queue.as_str().into(),
            "bootloader".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return format!("consume {}: {e}", settings.queue),
    };
    info!(queue = %settings.queue, "command queue: consuming");
    handle.update(|s| {
        s.connected = true;
        s.last_error = None;
    });
    // Commands run side by side (at most PREFETCH, as the broker delivers
    // no more unacknowledged); each acknowledges itself when done.
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<String>(1);
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            Some(e) = failed_rx.recv() => return e,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return format!("delivery: {e}"),
            None => return "the broker ended the consumer".into(),
        };
        let api = api.clone();
        let channel = channel.clone();
        let handle = handle.clone();
        let failed = failed_tx.clone();
        tokio::spawn(async move {
            match carry_out(&api, &channel, delivery).await {
                Ok(Outcome::Answered) => handle.update(|s| s.handled += 1),
                Ok(Outcome::Requeued) => {}
                Err(e) => {
                    let _ = failed.try_send(e);
                }
            }
        });
    }
}

async fn open(conn: &Connection, queue: &str) -> Result<Channel, String> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("declare queue {queue}: {e}"))?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(|e| format!("prefetch: {e}"))?;
    Ok(channel)
}

enum Outcome {
    Answered,
    Requeued,
}

/// Runs one command, answers it, and acknowledges it; a command the store
/// could not take goes back to the queue. `Err`: the channel failed.
async fn carry_out(api: &Router, channel: &Channel, delivery: Delivery) -> Result<Outcome, String> {
    let parsed = parse(&delivery.data);
    let (command, status, body) = match parsed {
        Ok((command, call)) => {
            let (status, body) = dispatch(api, call).await;
            (Some(command), status, body)
        }
        Err(BadCommand(message)) => (
            None,
            StatusCode::BAD_REQUEST,
            // The API's error shape.
            serde_json::json!({ "error": "bad_command", "message": message }),
        ),
    };
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        warn!(command = ?command, message_id = ?id,
            "command queue: the store is unavailable; the command goes back to the queue");
        // Not at once: the store needs a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        return delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map(|_| Outcome::Requeued)
            .map_err(|e| format!("nack: {e}"));
    }
    let ok = status.is_success();
    info!(command = ?command, message_id = ?id, status = status.as_u16(), "command from the broker");
    if let Some(reply_to) = delivery.properties.reply_to() {
        let reply = Reply {
            schema_version: SCHEMA_VERSION,
            command: command.as_deref(),
            ok,
            status: status.as_u16(),
            result: ok.then(|| body.clone()),
            error: (!ok).then(|| body.clone()),
        };
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_type("command.reply".into());
        if let Some(c) = delivery.properties.correlation_id() {
            properties = properties.with_correlation_id(c.clone());
        }
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        channel
            .basic_publish(
                "".into(),
                reply_to.as_str().into(),
                BasicPublishOptions::default(),
                &bytes,
                properties,
            )
            .await
            .map_err(|e| format!("reply: {e}"))?;
    }
    delivery
        .ack(BasicAckOptions::default())
        .await
        .map(|_| Outcome::Answered)
        .map_err(|e| format!("ack: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(json: &str) -> Result<ApiCall, BadCommand> {
        parse(json.as_bytes()).map(|(_, c)| c)
    }

    #[test]
    fn commands_map_to_the_api_requests_they_mirror() {
        assert_eq!(
            call(
                r#"{"command":"deployment.create","server":"n1.example.com","profile":"echo==1"}"#
            ),
            Ok(ApiCall {
                method: Method::POST,
                path: "/deployments".into(),
                body: Some(serde_json::json!({"server":"n1.example.com","profile":"echo==1"})),
            })
        );
        assert_eq!(
            call(r#"{"command":"deployment.cancel","id":12}"#)
                .unwrap()
                .path,
            "/deployments/12/cancel"
        );
        assert_eq!(
            call(r#"{"command":"deployment.repeat","id":"12"}"#)
                .unwrap()
                .path,
            "/deployments/12/repeat"
        );
        let power =
            call(r#"{"command":"power","server":"n1.example.com","action":"cycle"}"#).unwrap();
        assert_eq!(power.path, "/servers/n1%2Eexample%2Ecom/power");
        assert_eq!(power.body, Some(serde_json::json!({"action":"cycle"})));
        let status = call(r#"{"command":"power.status","server":"n1"}"#).unwrap();
        assert_eq!((status.method, status.body), (Method::GET, None));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        for (json, wanted) in [
            ("[1]", "must be a JSON object"),
            ("{", "not JSON"),
            (r#"{"id":1}"#, "command: missing"),
            (r#"{"command":"format.disks"}"#, "unknown command"),
            (r#"{"command":"deployment.cancel"}"#, "id: missing"),
            (
                r#"{"command":"deployment.cancel","id":true}"#,
                "id: must be",
            ),
            (
                r#"{"command":"deployment.cancel","id":1,"why":"x"}"#,
                "why: unknown field",
            ),
            (r#"{"command":"power","action":"on"}"#, "server: missing"),
            (r#"{"command":"power","server":""}"#, "server: empty"),
        ] {
            let err = call(json).expect_err(json);
            assert!(err.0.contains(wanted), "{json}: {}", err.0);
        }
    }

    #[test]
    fn path_parameters_cannot_reach_other_routes() {
        let c = call(r#"{"command":"deployment.cancel","id":"1/../../users"}"#).unwrap();
        assert_eq!(c.path, "/deployments/1%2F%2E%2E%2F%2E%2E%2Fusers/cancel");
    }

    #[test]
    fn queue_per_location() {
        assert_eq!(queue_name(Some("dc1")), "bootloader.commands.dc1");
        assert_eq!(queue_name(None), "bootloader.commands");
    }
}
