//! What the engine does next for a deployment, as data: a commit to make
//! (an action's deadline armed before it starts, a step with nothing left,
//! an action's outcome, an operator's cancel) or an effect to carry out and
//! until when. Pure: the engine's executor performs the effects; this plans
//! them and turns what became of them into the next position, its
//! deadlines and its log lines.

use std::time::Duration;

use super::machine::{self, Cursor, Event, Position, WorkflowError};
use crate::model::{LogLevel, Via};
use crate::power::{BootDevice, PowerCommand};
use crate::profile::{Action, ActionKind, FileSource, IpmiCommand, Profile};

/// The deadlines of the action under way and of its step, in unix seconds.
/// They are committed with the deployment, so that a restart keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadlines {
    pub action: Option<i64>,
    pub step: Option<i64>,
}

/// One commit: where the deployment goes from where it was, with its
/// deadlines, why it failed (if it did) and what goes into its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: Position,
    pub to: Position,
    pub deadlines: Deadlines,
    pub error: Option<String>,
    pub log: Vec<(LogLevel, String)>,
}

/// What the engine does next.
#[derive(Debug)]
pub enum Next<'p> {
    /// Nothing is left to run.
    Finished,
    /// Commit this, then ask again: the step has nothing (more) to run, or
    /// the action's deadline is stored before the action starts.
    Commit(Change),
    /// Carry out the action at the cursor.
    Run(Run<'p>),
}

/// The action at the cursor, what carrying it out means, and until when.
#[derive(Debug)]
pub struct Run<'p> {
    pub cursor: Cursor,
    pub action: &'p Action,
    pub effect: Effect<'p>,
    /// The earlier of the action's and the step's deadline (unix seconds).
    pub deadline: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect<'p> {
    /// Work the executor does, one attempt at a time.
    Perform(Work<'p>),
    /// Wait until the machine has called back `name` (callbacks are stored
    /// as they arrive, also before the action started).
    AwaitCallback { name: &'p str },
    /// Nothing can carry this out: a profile stored before the check at
    /// upload refused it. The action fails with this reason.
    Refuse(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work<'p> {
    /// Render `message` and log it.
    Echo { message: &'p str },
    /// Serve a file under `filename` (rendered per interface).
    Serve {
        via: Via,
        filename: &'p str,
        source: &'p FileSource,
    },
    /// Stop serving `filename` (rendered per interface).
    Unserve { on: Via, filename: &'p str },
    /// A command for the server's BMC.
    Power(PowerCommand),
    /// The boot device for the next boot (or every boot); EFI or legacy as
    /// `efi` says, or (`None`) as the machine was last seen booting.
    Bootdev {
        device: BootDevice,
        persistent: bool,
        efi: Option<bool>,
    },
}

/// What became of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It finished after `took`; `said` is what it reports.
    Done { said: String, took: Duration },
    /// It failed (after its retries) or timed out, for `reason`.
    Failed { reason: String },
}

/// The effect of `action`.
pub fn effect(action: &Action) -> Effect<'_> {
    match &action.kind {
        ActionKind::Echo { message } => Effect::Perform(Work::Echo { message }),
        ActionKind::ServeFile {
            via,
            filename,
            source,
        } => Effect::Perform(Work::Serve {
            via: *via,
            filename,
            source,
        }),
        ActionKind::DeleteFile { on, filename } => {
            Effect::Perform(Work::Unserve { on: *on, filename })
        }
        ActionKind::ExpectCallback { name } => Effect::AwaitCallback { name },
        ActionKind::IpmiCommand(command) => match *command {
            IpmiCommand::Power(action) => Effect::Perform(Work::Power(PowerCommand::Power(action))),
            IpmiCommand::PowerStatus => Effect::Perform(Work::Power(PowerCommand::Status)),
            IpmiCommand::Bootdev {
                device,
                persistent,
                efi,
            } => Effect::Perform(Work::Bootdev {
                device,
                persistent,
                efi,
            }),
            IpmiCommand::BootdevStatus => Effect::Perform(Work::Power(PowerCommand::GetBootDevice)),
            IpmiCommand::Unsupported(_) => Effect::Refuse(
                "this ipmi_command is a query the power drivers do not run as a step",
            ),
        },
    }
}

/// What to do next for a deployment at `at` with `deadlines`, at `now`
/// (unix seconds). `fallback` is how long an action may take when neither
/// it, its step nor its profile says.
pub fn next(
    profile: &Profile,
    at: Position,
    deadlines: Deadlines,
    now: i64,
    fallback: Duration,
) -> Result<Next<'_>, WorkflowError> {
    let Some(cursor) = at.cursor else {
        return Ok(Next::Finished);
    };
    let Some(action) = machine::action_at(profile, cursor) else {
        let to = machine::apply(profile, at, &Event::Advance)?;
        let mut log = vec![(
            LogLevel::Info,
            format!("step {} done", cursor.step.as_str()),
        )];
        log.extend(state_line(at, to));
        return Ok(Next::Commit(Change {
            from: at,
            to,
            deadlines: Deadlines {
                action: None,
                step: step_deadline(profile, at, to, deadlines.step, now),
            },
            error: None,
            log,
        }));
    };
    let Some(action_deadline) = deadlines.action else {
        let timeout = machine::action_timeout(profile, cursor, fallback);
        return Ok(Next::Commit(Change {
            from: at,
            to: at,
            deadlines: Deadlines {
                action: Some(now.saturating_add(secs(timeout))),
                step: deadlines.step,
            },
            error: None,
            log: vec![(
                LogLevel::Info,
                format!(
                    "{}: started (timeout {})",
                    what(cursor, action),
                    human(timeout)
                ),
            )],
        }));
    };
    Ok(Next::Run(Run {
        cursor,
        action,
        effect: effect(action),
        deadline: deadlines
            .step
            .map_or(action_deadline, |s| s.min(action_deadline)),
    }))
}

/// The commit after the action at `at`'s cursor ended with `outcome`: on
/// to the next action when it is done; to the `error` step when it failed
/// (or, failing in a final state's step, to the end).
pub fn settle(
    profile: &Profile,
    at: Position,
    deadlines: Deadlines,
    outcome: Outcome,
    now: i64,
) -> Result<Change, WorkflowError> {
    let cursor = at.cursor.ok_or(WorkflowError::Finished)?;
    let action = machine::action_at(profile, cursor).ok_or(WorkflowError::Finished)?;
    let what = what(cursor, action);
    Ok(match outcome {
        Outcome::Done { said, took } => {
            let to = machine::apply(profile, at, &Event::Advance)?;
            let mut log = vec![(
                LogLevel::Info,
                format!("{what}: done in {} ({said})", human(took)),
            )];
            log.extend(state_line(at, to));
            Change {
                from: at,
                to,
                deadlines: Deadlines {
                    action: None,
                    step: step_deadline(profile, at, to, deadlines.step, now),
                },
                error: None,
                log,
            }
        }
        Outcome::Failed { reason } => {
            let to = machine::apply(profile, at, &Event::Fail)?;
            let reason = format!("{what}: {reason}");
            Change {
                from: at,
                to,
                deadlines: Deadlines::default(),
                // A failure in the complete, error or cleanup step is
                // logged; the deployment's error stays the first one.
                error: (!at.state.is_final()).then(|| reason.clone()),
                log: vec![(LogLevel::Error, reason)],
            }
        }
    })
}

/// The commit of an operator's cancel: to `cancelled`, at the start of the
/// `cleanup` step if the profile has one.
pub fn cancel(profile: &Profile, at: Position) -> Result<Change, WorkflowError> {
    let to = machine::apply(profile, at, &Event::Cancel)?;
    Ok(Change {
        from: at,
        to,
        deadlines: Deadlines::default(),
        error: None,
        log: vec![(LogLevel::Warn, "cancelled by an operator".into())],
    })
}

/// Whether a failed attempt number `attempt` (from 1) is made again.
pub fn retry(action: &Action, attempt: u32) -> bool {
    attempt <= action.retries
}

/// The log line of a failed attempt that is made again.
pub fn retry_line(action: &Action, attempt: u32, error: &str) -> String {
    format!(
        "attempt {attempt} of {} failed: {error}; retrying",
        action.retries + 1
    )
}

/// Why the action at `cursor` timed out, with what the machine did last
/// (`last_seen`, when the executor knows).
pub fn timeout_reason(cursor: Cursor, action: &Action, last_seen: Option<&str>) -> String {
    let mut reason = format!(
        "timed out in step {} waiting for {}",
        cursor.step.as_str(),
        describe(action)
    );
    if let Some(seen) = last_seen {
        reason.push_str("; ");
        reason.push_str(seen);
    }
    reason
}

/// The action as the log names it: `installing #2 expect_callback done`.
pub fn what(cursor: Cursor, action: &Action) -> String {
    format!(
        "{} #{} {}",
        cursor.step.as_str(),
        cursor.action + 1,
        describe(action)
    )
}

pub fn describe(action: &Action) -> String {
    match &action.kind {
        ActionKind::ServeFile { via, filename, .. } => {
            format!("serve_file {} {filename}", via.as_str())
        }
        ActionKind::DeleteFile { on, filename } => {
            format!("delete_file {} {filename}", on.as_str())
        }
        ActionKind::ExpectCallback { name } => format!("expect_callback {name}"),
        ActionKind::IpmiCommand(command) => {
            let (name, parameters) = command.parts();
            let mut text = format!("ipmi_command {name}");
            if !parameters.is_empty() {
                text.push_str(&format!(" {parameters}"));
            }
            if let IpmiCommand::Bootdev {
                persistent, efi, ..
            } = command
            {
                if *persistent {
                    text.push_str(" persistent");
                }
                match efi {
                    Some(true) => text.push_str(" efi"),
                    Some(false) => text.push_str(" legacy"),
                    None => {}
                }
            }
            text
        }
        ActionKind::Echo { .. } => "echo".into(),
    }
}

/// `2h`, `5m`, `30s`, `250 ms`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if s >= 1 {
        format!("{s}s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn state_line(from: Position, to: Position) -> Option<(LogLevel, String)> {
    (to.state != from.state).then(|| (LogLevel::Info, format!("state {}", to.state)))
}

/// A step with a timeout of its own gets its deadline when it is entered;
/// within a step the deadline stays.
fn step_deadline(
    profile: &Profile,
    from: Position,
    to: Position,
    current: Option<i64>,
    now: i64,
) -> Option<i64> {
    match (from.cursor, to.cursor) {
        (Some(a), Some(b)) if a.step == b.step => current,
        (_, Some(b)) => machine::step_timeout(profile, b.step).map(|t| now.saturating_add(secs(t))),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
