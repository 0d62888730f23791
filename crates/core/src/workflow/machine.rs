//! The deployment state machine: where a deployment stands in its profile
//! (a state and a cursor on the next action), the one table of legal state
//! changes, and what each event does to them. Pure: the engine asks, then
//! commits what this answers.

use std::time::Duration;

use crate::model::DeploymentState;
use crate::profile::{Action, Profile, StepName};

/// The next thing to run: action `action` of step `step`. An index equal
/// to the step's length means the step has nothing left to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub step: StepName,
    pub action: usize,
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub state: DeploymentState,
    /// `None`: nothing more runs (a final state reached and its step done).
    pub cursor: Option<Cursor>,
    /// Actions of the six main steps finished, for progress.
    pub actions_done: u32,
}

impl Position {
    /// A new deployment: state `new`, at the first action of `new`.
    pub fn start() -> Self {
        Self {
            state: DeploymentState::New,
            cursor: Some(Cursor {
                step: StepName::New,
                action: 0,
            }),
            actions_done: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The action at the cursor finished, or the cursor's step has nothing
    /// left to run.
    Advance,
    /// The action at the cursor failed (after its retries) or timed out.
    Fail,
    /// An operator cancelled the deployment.
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("a {state} deployment cannot {event}")]
    Illegal {
        state: DeploymentState,
        event: &'static str,
    },
    #[error("the deployment has nothing left to run")]
    Finished,
}

/// The one table of legal state changes.
pub fn legal(from: DeploymentState, to: DeploymentState) -> bool {
    use DeploymentState::*;
    matches!(
        (from, to),
        (New, Preparing)
            | (Preparing, Installing)
            | (Installing, Configuring)
            | (Configuring, Postconfiguring)
            | (Postconfiguring, Complete)
            | (
                New | Preparing | Installing | Configuring | Postconfiguring,
                Error | Cancelled
            )
    )
}

/// The state a main step runs in.
pub fn state_of(step: StepName) -> Option<DeploymentState> {
    Some(match step {
        StepName::New => DeploymentState::New,
        StepName::Preparing => DeploymentState::Preparing,
        StepName::Installing => DeploymentState::Installing,
        StepName::Configuring => DeploymentState::Configuring,
        StepName::Postconfiguring => DeploymentState::Postconfiguring,
        StepName::Complete => DeploymentState::Complete,
        StepName::Error | StepName::Cleanup => return None,
    })
}

/// The main step after `step`.
fn next_step(step: StepName) -> Option<StepName> {
    let i = StepName::ORDER.iter().position(|s| *s == step)?;
    StepName::ORDER.get(i + 1).copied()
}

/// The action at the cursor, if the step has one left.
pub fn action_at(profile: &Profile, cursor: Cursor) -> Option<&Action> {
    profile
        .workflow
        .step(cursor.step)
        .actions
        .get(cursor.action)
}

/// The cursor at the start of `step`, or none if it has no actions (for the
/// `error` and `cleanup` steps, which are run only when they have some).
fn start_of(profile: &Profile, step: StepName) -> Option<Cursor> {
    (!profile.workflow.step(step).actions.is_empty()).then_some(Cursor { step, action: 0 })
}

/// What `event` does to a deployment at `at`.
pub fn apply(profile: &Profile, at: Position, event: &Event) -> Result<Position, WorkflowError> {
    match event {
        Event::Advance => {
            let cursor = at.cursor.ok_or(WorkflowError::Finished)?;
            let len = profile.workflow.step(cursor.step).actions.len();
            let mut next = at;
            let mut cursor = cursor;
            if cursor.action < len {
                cursor.action += 1;
                if state_of(cursor.step).is_some() {
                    next.actions_done += 1;
                }
            }
            if cursor.action < len {
                next.cursor = Some(cursor);
                return Ok(next);
            }
            // The step is done.
            match cursor.step {
                StepName::Complete | StepName::Error | StepName::Cleanup => {
                    next.cursor = None;
                }
                step => {
                    let following = next_step(step).ok_or(WorkflowError::Finished)?;
                    let state = state_of(following).ok_or(WorkflowError::Finished)?;
                    if !legal(at.state, state) {
                        return Err(WorkflowError::Illegal {
                            state: at.state,
                            event: "advance",
                        });
                    }
                    next.state = state;
                    next.cursor = Some(Cursor {
                        step: following,
                        action: 0,
                    });
                }
            }
            Ok(next)
        }
        Event::Fail => {
            let cursor = at.cursor.ok_or(WorkflowError::Finished)?;
            if at.state.is_final() {
                // A failure in the complete, error or cleanup step ends
                // it; the state stays what it is.
                return Ok(Position { cursor: None, ..at });
            }
            debug_assert!(state_of(cursor.step).is_some());
            Ok(Position {
                state: DeploymentState::Error,
                cursor: start_of(profile, StepName::Error),
                actions_done: at.actions_done,
            })
        }
        Event::Cancel => {
            if !legal(at.state, DeploymentState::Cancelled) {
                return Err(WorkflowError::Illegal {
                    state: at.state,
                    event: "be cancelled",
                });
            }
            Ok(Position {
                state: DeploymentState::Cancelled,
                cursor: start_of(profile, StepName::Cleanup),
                actions_done: at.actions_done,
            })
        }
    }
}

/// Progress in percent: finished actions over all actions of the six main
/// steps; 100 once complete.
pub fn progress(profile: &Profile, at: &Position) -> u8 {
    if at.state == DeploymentState::Complete {
        return 100;
    }
    let total = profile.action_count();
    if total == 0 {
        return 0;
    }
    ((u64::from(at.actions_done) * 100) / total as u64).min(99) as u8
}

/// How long the action at the cursor may take: its own timeout, else its
/// step's, else the profile's default, else the daemon's fallback.
pub fn action_timeout(profile: &Profile, cursor: Cursor, fallback: Duration) -> Duration {
    let step = profile.workflow.step(cursor.step);
    action_at(profile, cursor)
        .and_then(|a| a.timeout.as_ref())
        .or(step.timeout.as_ref())
        .or(profile.timeout.as_ref())
        .map_or(fallback, |d| d.as_std())
}

/// How long a whole step may take, when it sets its own timeout.
pub fn step_timeout(profile: &Profile, step: StepName) -> Option<Duration> {
    profile
        .workflow
        .step(step)
        .timeout
        .as_ref()
        .map(|d| d.as_std())
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentState::*;

    const PROFILE: &str = r#"
kind: Profile
apiVersion: v1alpha1
name: t
version: 1.0
timeout: 30m
workflow:
  new: {}
  preparing:
    - action: echo
      message: a
      timeout: 5m
    - action: expect_callback
      name: preparing
  installing:
    timeout: 2h
    actions:
      - action: expect_callback
        name: installing
  configuring: []
  postconfiguring:
    - action: echo
      message: b
  complete:
    - action: echo
      message: done
  error:
    - action: echo
      message: failed
templates: {}
"#;

    fn profile() -> Profile {
        crate::profile::parse(PROFILE).unwrap()
    }

    type Walked = (DeploymentState, Option<(StepName, usize)>, u32);

    fn walk(p: &Profile, mut at: Position, events: &[Event]) -> Vec<Walked> {
        let mut out = Vec::new();
        for e in events {
            at = apply(p, at, e).unwrap();
            out.push((
                at.state,
                at.cursor.map(|c| (c.step, c.action)),
                at.actions_done,
            ));
        }
        out
    }

    #[test]
    fn the_main_path_visits_every_state_in_order() {
        let p = profile();
        let steps = walk(&p, Position::start(), &[Event::Advance; 7]);
        assert_eq!(
            steps,
            vec![
                // `new` is empty: straight to preparing.
                (Preparing, Some((StepName::Preparing, 0)), 0),
                (Preparing, Some((StepName::Preparing, 1)), 1),
                (Installing, Some((StepName::Installing, 0)), 2),
                (Configuring, Some((StepName::Configuring, 0)), 3),
                // `configuring` is empty.
                (Postconfiguring, Some((StepName::Postconfiguring, 0)), 3),
                (Complete, Some((StepName::Complete, 0)), 4),
                (Complete, None, 5),
            ]
        );
        // Nothing is left after that.
        let mut at = Position::start();
        for _ in 0..7 {
            at = apply(&p, at, &Event::Advance).unwrap();
        }
        assert_eq!(apply(&p, at, &Event::Advance), Err(WorkflowError::Finished));
        assert_eq!(progress(&p, &at), 100);
    }

    #[test]
    fn failure_runs_the_error_step_then_stops() {
        let p = profile();
        let at = apply(&p, Position::start(), &Event::Advance).unwrap();
        let failed = apply(&p, at, &Event::Fail).unwrap();
        assert_eq!(failed.state, Error);
        assert_eq!(
            failed.cursor,
            Some(Cursor {
                step: StepName::Error,
                action: 0
            })
        );
        let done = apply(&p, failed, &Event::Advance).unwrap();
        assert_eq!((done.state, done.cursor), (Error, None));
        // A failing error step ends it too, still in error.
        let stopped = apply(&p, failed, &Event::Fail).unwrap();
        assert_eq!((stopped.state, stopped.cursor), (Error, None));
        assert!(apply(&p, done, &Event::Cancel).is_err());
    }

    #[test]
    fn cancel_is_legal_only_while_active() {
        let p = profile();
        let at = apply(&p, Position::start(), &Event::Advance).unwrap();
        let c = apply(&p, at, &Event::Cancel).unwrap();
        // No cleanup step in this profile: nothing more runs.
        assert_eq!((c.state, c.cursor), (Cancelled, None));
        assert!(matches!(
            apply(&p, c, &Event::Cancel),
            Err(WorkflowError::Illegal {
                state: Cancelled,
                ..
            })
        ));
    }

    #[test]
    fn transition_table() {
        let all = [
            New,
            Preparing,
            Installing,
            Configuring,
            Postconfiguring,
            Complete,
            Error,
            Cancelled,
        ];
        let legal_pairs: Vec<(DeploymentState, DeploymentState)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| legal(*a, *b))
            .collect();
        assert_eq!(legal_pairs.len(), 5 + 5 * 2);
        for f in [Complete, Error, Cancelled] {
            assert!(all.iter().all(|t| !legal(f, *t)), "{f} is final");
        }
        assert!(!legal(New, Installing), "no skipping");
        assert!(!legal(Installing, Preparing), "no going back");
    }

    #[test]
    fn progress_counts_main_actions() {
        let p = profile();
        assert_eq!(p.action_count(), 5);
        let mut at = Position::start();
        assert_eq!(progress(&p, &at), 0);
        at = apply(&p, at, &Event::Advance).unwrap(); // into preparing
        at = apply(&p, at, &Event::Advance).unwrap(); // echo done
        assert_eq!(progress(&p, &at), 20);
    }

    #[test]
    fn timeouts_fall_back_in_order() {
        let p = profile();
        let fallback = Duration::from_secs(3600);
        let c = |step, action| Cursor { step, action };
        assert_eq!(
            action_timeout(&p, c(StepName::Preparing, 0), fallback),
            Duration::from_secs(300)
        );
        assert_eq!(
            action_timeout(&p, c(StepName::Installing, 0), fallback),
            Duration::from_secs(7200)
        );
        assert_eq!(
            action_timeout(&p, c(StepName::Preparing, 1), fallback),
            Duration::from_secs(1800)
        );
        let mut bare = p.clone();
        bare.timeout = None;
        assert_eq!(
            action_timeout(&bare, c(StepName::Preparing, 1), fallback),
            fallback
        );
        assert_eq!(
            step_timeout(&p, StepName::Installing),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(step_timeout(&p, StepName::Preparing), None);
    }
}
