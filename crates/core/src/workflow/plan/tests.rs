use std::time::Duration;

use super::*;
use crate::model::DeploymentState::{self, *};
use crate::power::{BootDevice, PowerAction};
use crate::profile::StepName;

/// Timeouts at every level: the action's own (5m), its step's (installing,
/// 2h), the profile's (30m) and, in `bare`, none (the daemon's fallback).
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
      - action: ipmi_command
        command: bootdev
        parameters: pxe
        retries: 2
      - action: expect_callback
        name: installing
        timeout: 3h
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
  cleanup:
    - action: delete_file
      on: http
      filename: x
templates: {}
"#;

const BARE: &str = r#"
kind: Profile
apiVersion: v1alpha1
name: bare
version: 1.0
workflow:
  new:
    - action: ipmi_command
      command: sensors
    - action: ipmi_command
      command: power
      parameters: cycle
  preparing: []
  installing: []
  configuring: []
  postconfiguring: []
  complete: []
templates: {}
"#;

const FALLBACK: Duration = Duration::from_secs(3600);
const NOW: i64 = 1_000_000;

fn profile() -> Profile {
    crate::profile::parse(PROFILE).unwrap()
}

fn at(state: DeploymentState, step: StepName, action: usize) -> Position {
    Position {
        state,
        cursor: Some(Cursor { step, action }),
        actions_done: 0,
    }
}

fn armed(action: i64) -> Deadlines {
    Deadlines {
        action: Some(action),
        step: None,
    }
}

fn commit(next: Next<'_>) -> Change {
    match next {
        Next::Commit(c) => c,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn run(next: Next<'_>) -> Run<'_> {
    match next {
        Next::Run(r) => r,
        other => panic!("expected an action to run, got {other:?}"),
    }
}

fn lines(change: &Change) -> Vec<&str> {
    change.log.iter().map(|(_, l)| l.as_str()).collect()
}

#[test]
fn an_empty_step_is_committed_done_and_the_next_state_entered() {
    let p = profile();
    let change = commit(next(&p, Position::start(), Deadlines::default(), NOW, FALLBACK).unwrap());
    assert_eq!(change.to, at(Preparing, StepName::Preparing, 0));
    assert_eq!(lines(&change), ["step new done", "state preparing"]);
    assert_eq!(change.deadlines, Deadlines::default());
    assert_eq!(change.error, None);
}

#[test]
fn an_action_is_armed_with_its_deadline_before_it_runs() {
    // Each level of timeout, in the order they are looked up.
    let p = profile();
    let bare = crate::profile::parse(BARE).unwrap();
    let table: [(&Profile, Position, i64, &str); 5] = [
        // Its own.
        (
            &p,
            at(Preparing, StepName::Preparing, 0),
            300,
            "preparing #1 echo: started (timeout 5m)",
        ),
        // Its own, longer than its step's (the step's deadline still ends it).
        (
            &p,
            at(Installing, StepName::Installing, 1),
            3 * 3600,
            "installing #2 expect_callback installing: started (timeout 3h)",
        ),
        // Its step's.
        (
            &p,
            at(Installing, StepName::Installing, 0),
            2 * 3600,
            "installing #1 ipmi_command bootdev pxe: started (timeout 2h)",
        ),
        // The profile's.
        (
            &p,
            at(Preparing, StepName::Preparing, 1),
            1800,
            "preparing #2 expect_callback preparing: started (timeout 30m)",
        ),
        // The daemon's.
        (
            &bare,
            at(New, StepName::New, 1),
            3600,
            "new #2 ipmi_command power cycle: started (timeout 1h)",
        ),
    ];
    for (profile, position, timeout, line) in table {
        let step = Some(NOW + 42);
        let deadlines = Deadlines { action: None, step };
        let change = commit(next(profile, position, deadlines, NOW, FALLBACK).unwrap());
        assert_eq!(change.to, position, "{line}");
        assert_eq!(change.deadlines.action, Some(NOW + timeout), "{line}");
        assert_eq!(
            change.deadlines.step, step,
            "the step's deadline stays: {line}"
        );
        assert_eq!(lines(&change), [line]);
    }
}

#[test]
fn an_armed_action_runs_until_the_earlier_deadline() {
    let p = profile();
    let position = at(Installing, StepName::Installing, 1);
    let table = [
        (Some(NOW + 100), NOW + 50, NOW + 50),
        (Some(NOW + 100), NOW + 500, NOW + 100),
        (None, NOW + 500, NOW + 500),
    ];
    for (step, action, expected) in table {
        let deadlines = Deadlines {
            action: Some(action),
            step,
        };
        let r = run(next(&p, position, deadlines, NOW, FALLBACK).unwrap());
        assert_eq!(r.deadline, expected);
        assert_eq!(r.cursor, position.cursor.unwrap());
        assert_eq!(r.effect, Effect::AwaitCallback { name: "installing" });
    }
}

#[test]
fn a_step_with_a_timeout_gets_its_deadline_when_entered_and_loses_it_when_left() {
    let p = profile();
    // The last action of preparing finishes: installing (2h) is entered.
    let change = settle(
        &p,
        at(Preparing, StepName::Preparing, 1),
        armed(NOW),
        Outcome::Done {
            said: "callback preparing received (POST)".into(),
            took: Duration::from_secs(12),
        },
        NOW,
    )
    .unwrap();
    assert_eq!(
        change.to.cursor,
        Some(Cursor {
            step: StepName::Installing,
            action: 0
        })
    );
    assert_eq!(
        change.deadlines,
        Deadlines {
            action: None,
            step: Some(NOW + 7200)
        }
    );
    assert_eq!(
        lines(&change),
        [
            "preparing #2 expect_callback preparing: done in 12s (callback preparing received (POST))",
            "state installing",
        ]
    );
    // Within installing the step's deadline stays.
    let inside = Deadlines {
        action: Some(NOW),
        step: Some(NOW + 7200),
    };
    let done = Outcome::Done {
        said: "x".into(),
        took: Duration::from_millis(250),
    };
    let change = settle(
        &p,
        at(Installing, StepName::Installing, 0),
        inside,
        done.clone(),
        NOW + 60,
    )
    .unwrap();
    assert_eq!(
        change.deadlines,
        Deadlines {
            action: None,
            step: Some(NOW + 7200)
        }
    );
    assert_eq!(
        lines(&change),
        ["installing #1 ipmi_command bootdev pxe: done in 250 ms (x)"]
    );
    // Leaving it for configuring (no timeout of its own) drops it.
    let change = settle(
        &p,
        at(Installing, StepName::Installing, 1),
        inside,
        done,
        NOW + 60,
    )
    .unwrap();
    assert_eq!(change.to.state, Configuring);
    assert_eq!(change.deadlines, Deadlines::default());
}

#[test]
fn done_actions_count_towards_progress_and_complete_ends_it() {
    let p = profile();
    let done = || Outcome::Done {
        said: "ok".into(),
        took: Duration::from_secs(1),
    };
    let mut position = at(Postconfiguring, StepName::Postconfiguring, 0);
    position.actions_done = 4;
    let change = settle(&p, position, armed(NOW), done(), NOW).unwrap();
    assert_eq!(change.to.state, Complete);
    assert_eq!(change.to.actions_done, 5);
    assert_eq!(
        change.to.cursor,
        Some(Cursor {
            step: StepName::Complete,
            action: 0
        })
    );
    // The complete step's action (one of the six main steps) ends it.
    let change = settle(&p, change.to, armed(NOW), done(), NOW).unwrap();
    assert_eq!(change.to.cursor, None);
    assert_eq!(change.to.actions_done, 6);
    assert!(matches!(
        next(&p, change.to, change.deadlines, NOW, FALLBACK).unwrap(),
        Next::Finished
    ));
}

#[test]
fn a_failure_goes_to_the_error_step_with_its_reason() {
    let p = profile();
    let failed = Outcome::Failed {
        reason: "power cycle failed: BMC timed out".into(),
    };
    let deadlines = Deadlines {
        action: Some(NOW),
        step: Some(NOW + 10),
    };
    let change = settle(
        &p,
        at(Installing, StepName::Installing, 0),
        deadlines,
        failed.clone(),
        NOW,
    )
    .unwrap();
    let reason = "installing #1 ipmi_command bootdev pxe: power cycle failed: BMC timed out";
    assert_eq!(change.to, at(Error, StepName::Error, 0));
    assert_eq!(change.error.as_deref(), Some(reason));
    assert_eq!(change.log, [(LogLevel::Error, reason.to_string())]);
    assert_eq!(change.deadlines, Deadlines::default());
    // A failure in the error step ends it; the first error stays the one.
    let change = settle(&p, change.to, armed(NOW), failed, NOW).unwrap();
    assert_eq!(change.to.state, Error);
    assert_eq!(change.to.cursor, None);
    assert_eq!(change.error, None);
}

#[test]
fn a_cancel_goes_to_cleanup_and_a_final_deployment_refuses_it() {
    let p = profile();
    let change = cancel(&p, at(Installing, StepName::Installing, 1)).unwrap();
    assert_eq!(change.to, at(Cancelled, StepName::Cleanup, 0));
    assert_eq!(
        change.log,
        [(LogLevel::Warn, "cancelled by an operator".to_string())]
    );
    assert_eq!(change.deadlines, Deadlines::default());
    let err = cancel(&p, at(Complete, StepName::Complete, 0)).unwrap_err();
    assert_eq!(err.to_string(), "a complete deployment cannot be cancelled");
}

#[test]
fn each_action_kind_has_its_effect() {
    let p = profile();
    let bare = crate::profile::parse(BARE).unwrap();
    fn effect_at(profile: &Profile, step: StepName, action: usize) -> Effect<'_> {
        effect(machine::action_at(profile, Cursor { step, action }).unwrap())
    }
    assert_eq!(
        effect_at(&p, StepName::Preparing, 0),
        Effect::Perform(Work::Echo { message: "a" })
    );
    assert_eq!(
        effect_at(&p, StepName::Installing, 0),
        Effect::Perform(Work::Bootdev {
            device: BootDevice::Pxe,
            persistent: false,
            efi: None,
        })
    );
    assert_eq!(
        effect_at(&p, StepName::Cleanup, 0),
        Effect::Perform(Work::Unserve {
            on: Via::Http,
            filename: "x"
        })
    );
    assert_eq!(
        effect_at(&bare, StepName::New, 1),
        Effect::Perform(Work::Power(PowerCommand::Power(PowerAction::Cycle)))
    );
    // A stored profile from before the check at upload.
    assert!(matches!(
        effect_at(&bare, StepName::New, 0),
        Effect::Refuse(_)
    ));
}

#[test]
fn retries_are_the_actions_extra_attempts() {
    let p = profile();
    let action = machine::action_at(
        &p,
        Cursor {
            step: StepName::Installing,
            action: 0,
        },
    )
    .unwrap();
    assert!(retry(action, 1));
    assert!(retry(action, 2));
    assert!(!retry(action, 3));
    assert_eq!(
        retry_line(action, 2, "no answer"),
        "attempt 2 of 3 failed: no answer; retrying"
    );
    let once = machine::action_at(
        &p,
        Cursor {
            step: StepName::Preparing,
            action: 0,
        },
    )
    .unwrap();
    assert!(!retry(once, 1));
}

#[test]
fn a_timeout_names_the_step_the_action_and_what_the_machine_did_last() {
    let p = profile();
    let cursor = Cursor {
        step: StepName::Preparing,
        action: 1,
    };
    let action = machine::action_at(&p, cursor).unwrap();
    assert_eq!(
        timeout_reason(cursor, action, None),
        "timed out in step preparing waiting for expect_callback preparing"
    );
    assert_eq!(
        timeout_reason(
            cursor,
            action,
            Some("the machine was never seen on the boot network")
        ),
        "timed out in step preparing waiting for expect_callback preparing; the machine was never seen on the boot network"
    );
}

#[test]
fn durations_read_as_people_write_them() {
    let table = [
        (7_200_000, "2h"),
        (300_000, "5m"),
        (90_000, "90s"),
        (1_000, "1s"),
        (250, "250 ms"),
    ];
    for (ms, text) in table {
        assert_eq!(human(Duration::from_millis(ms)), text);
    }
}
