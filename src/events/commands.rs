//! The command queue: each daemon consumes `bootloader.commands.<location>`
//! (`bootloader.commands` without a location) and carries out what a web
//! layer asks there: create, cancel or repeat a deployment, power actions
//! and boot devices. A command is carried out by the same operation
//! (`ops/`) as the REST request it mirrors, its input read the same way,
//! so it is validated and answered alike: the reply carries the status
//! and body that request would have had. It is acknowledged only after
//! its effect is committed, and the result
//! or the error is published to the message's `reply_to` with its
//! `correlation_id`. A command the store could not take (503) goes back to
//! the queue, to be tried again. Like the relay, the consumer reconnects
//! from scratch with backoff on any error.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::ops::input::{deployment_id, parse_json, path_key};
use crate::ops::power::PowerInput;
use crate::ops::{self, Actor, Ops};
use crate::power::service::PowerCommand;
use bootloader_core::power::BootRequest;

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

/// A command as read from the queue: which operation, and its fields as
/// sent (read into the operation's input when it is carried out, the way
/// the REST API reads a request).
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `POST /deployments`.
    CreateDeployment(Map<String, Value>),
    /// `POST /deployments/{id}/cancel`.
    CancelDeployment(String),
    /// `POST /deployments/{id}/repeat`.
    RepeatDeployment(String),
    /// `POST /servers/{server}/power`.
    Power {
        server: String,
        fields: Map<String, Value>,
    },
    /// `GET /servers/{server}/power`.
    PowerStatus { server: String },
    /// `POST /servers/{server}/bootdev`.
    Bootdev {
        server: String,
        fields: Map<String, Value>,
    },
}

/// Why a message is not a command; answered as a 400.
#[derive(Debug, PartialEq)]
pub struct BadCommand(pub String);

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
pub fn parse(body: &[u8]) -> Result<(String, Command), BadCommand> {
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
        "deployment.create" => Command::CreateDeployment(fields),
        "deployment.cancel" | "deployment.repeat" => {
            let id = take(&mut fields, "id")?;
            no_more(&fields)?;
            if command == "deployment.cancel" {
                Command::CancelDeployment(id)
            } else {
                Command::RepeatDeployment(id)
            }
        }
        "power" => Command::Power {
            server: take(&mut fields, "server")?,
            fields,
        },
        "bootdev" => Command::Bootdev {
            server: take(&mut fields, "server")?,
            fields,
        },
        "power.status" => {
            let server = take(&mut fields, "server")?;
            no_more(&fields)?;
            Command::PowerStatus { server }
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

/// Reads the fields into the operation's input as the REST API reads a
/// body, so a bad field is named the same way.
fn input<T: serde::de::DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ops::Error> {
    parse_json(&serde_json::to_vec(&Value::Object(fields)).unwrap_or_default())
}

fn body(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Carries out `command` as the broker: the status the same REST request
/// would have had, and its body.
async fn dispatch(ops: &Ops, command: Command) -> Result<(u16, Value), ops::Error> {
    let actor = Actor::Broker;
    Ok(match command {
        Command::CreateDeployment(fields) => {
            let record = ops::deployments::create(ops, &actor, input(fields)?).await?;
            (201, body(record))
        }
        Command::CancelDeployment(id) => {
            let record = ops::deployments::cancel(ops, &actor, deployment_id(&id)?).await?;
            (200, body(record))
        }
        Command::RepeatDeployment(id) => {
            let record = ops::deployments::repeat(ops, &actor, deployment_id(&id)?).await?;
            (201, body(record))
        }
        Command::Power { server, fields } => {
            let server = path_key("server", &server)?;
            let PowerInput { action } = input(fields)?;
            let result =
                ops::power::execute(ops, &actor, server, PowerCommand::Power(action)).await?;
            (result.status(), body(result))
        }
        Command::PowerStatus { server } => {
            let server = path_key("server", &server)?;
            let result = ops::power::execute(ops, &actor, server, PowerCommand::Status).await?;
            (result.status(), body(result))
        }
        Command::Bootdev { server, fields } => {
            let server = path_key("server", &server)?;
            let request: BootRequest = input(fields)?;
            let command = PowerCommand::SetBootDevice(request);
            let result = ops::power::execute(ops, &actor, server, command).await?;
            (result.status(), body(result))
        }
    })
}

#[derive(Debug, Clone)]
pub struct CommandSettings {
    pub url: String,
    pub queue: String,
}

/// Consumes the command queue until `shutdown` resolves, carrying each
/// command out through `ops`.
pub async fn run(
    ops: Ops,
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
            r = session(&ops, &settings, &handle) => r,
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
async fn session(ops: &Ops, settings: &CommandSettings, handle: &CommandHandle) -> String {
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
        let ops = ops.clone();
        let channel = channel.clone();
        let handle = handle.clone();
        let failed = failed_tx.clone();
        tokio::spawn(async move {
            match carry_out(&ops, &channel, delivery).await {
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
async fn carry_out(ops: &Ops, channel: &Channel, delivery: Delivery) -> Result<Outcome, String> {
    let parsed = parse(&delivery.data);
    let (command, status, body) = match parsed {
        Ok((command, call)) => match dispatch(ops, call).await {
            Ok((status, body)) => (Some(command), status, body),
            Err(e) => (Some(command), e.status(), body(e.into_body())),
        },
        Err(BadCommand(message)) => (
            None,
            400,
            // The API's error shape.
            serde_json::json!({ "error": "bad_command", "message": message }),
        ),
    };
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string());
    if status == 503 {
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
    let ok = (200..300).contains(&status);
    info!(command = ?command, message_id = ?id, status, "command from the broker");
    if let Some(reply_to) = delivery.properties.reply_to() {
        let reply = Reply {
            schema_version: SCHEMA_VERSION,
            command: command.as_deref(),
            ok,
            status,
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

    fn call(json: &str) -> Result<Command, BadCommand> {
        parse(json.as_bytes()).map(|(_, c)| c)
    }

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn commands_name_the_operations_they_ask_for() {
        assert_eq!(
            call(
                r#"{"command":"deployment.create","server":"n1.example.com","profile":"echo==1"}"#
            ),
            Ok(Command::CreateDeployment(fields(
                serde_json::json!({"server":"n1.example.com","profile":"echo==1"})
            )))
        );
        assert_eq!(
            call(r#"{"command":"deployment.cancel","id":12}"#),
            Ok(Command::CancelDeployment("12".into()))
        );
        assert_eq!(
            call(r#"{"command":"deployment.repeat","id":"12"}"#),
            Ok(Command::RepeatDeployment("12".into()))
        );
        assert_eq!(
            call(r#"{"command":"power","server":"n1.example.com","action":"cycle"}"#),
            Ok(Command::Power {
                server: "n1.example.com".into(),
                fields: fields(serde_json::json!({"action":"cycle"})),
            })
        );
        assert_eq!(
            call(r#"{"command":"power.status","server":"n1"}"#),
            Ok(Command::PowerStatus {
                server: "n1".into()
            })
        );
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
    fn a_key_that_names_nothing_is_not_found() {
        assert_eq!(deployment_id("1/../../users").unwrap_err().status(), 404);
        let server: Result<bootloader_core::model::Fqdn, _> = path_key("server", "../users");
        assert_eq!(server.unwrap_err().status(), 404);
    }

    #[test]
    fn queue_per_location() {
        assert_eq!(queue_name(Some("dc1")), "bootloader.commands.dc1");
        assert_eq!(queue_name(None), "bootloader.commands");
    }
}
