//! Actions: run in order, under each level of deadline, retried as they
//! allow, cancelled, resumed after a restart, refused before the executor.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_profile_runs_to_complete_in_order() {
    let steps = format!(
        "  preparing:{SERVE}{CYCLE}
    - action: expect_callback
      name: booted
  installing:
    - action: echo
      message: hi
  complete:
    - action: delete_file
      on: http
      filename: f
"
    );
    let bench = Bench::new(&profile(&steps), Script::default());
    bench.script.arrive("booted");
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(view.record.step, None);
    assert_eq!(view.actions_done, 5);
    assert_eq!(
        bench.script.started(),
        ["serve", "power", "echo", "unserve"]
    );
    assert_eq!(bench.ledger.logged(": started (timeout 1h)"), 5);
    assert_eq!(
        bench
            .ledger
            .logged("preparing #3 expect_callback booted: done in"),
        1
    );
    assert_eq!(bench.ledger.logged("state complete"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_action_fails_at_its_own_deadline_with_what_the_machine_did_last() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
      timeout: 5m
  error:
    - action: echo
      message: failed
";
    let bench = Bench::new(&profile(steps), Script::default());
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(
        view.record.error.as_deref(),
        Some(
            "preparing #1 expect_callback booted: timed out in step preparing waiting for \
             expect_callback booted; the machine was never seen on the boot network"
        )
    );
    // The error step ran.
    assert_eq!(bench.script.started(), ["echo"]);
    let took = bench.elapsed();
    assert!(
        took >= Duration::from_secs(300) && took < Duration::from_secs(302),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn each_level_of_timeout_ends_an_action_that_hangs() {
    // The BMC never answers within the deadline: the action's own, its
    // step's (shorter than the action's), the profile's, the daemon's.
    let power_on =
        "  preparing:\n    - action: ipmi_command\n      command: power\n      parameters: on\n";
    let cases = [
        ("", format!("{power_on}      timeout: 90s\n"), 90),
        (
            "",
            "  preparing:\n    timeout: 2m\n    actions:\n      - action: ipmi_command\n        command: power\n        parameters: on\n        timeout: 10m\n".to_string(),
            120,
        ),
        ("timeout: 3m\n", power_on.to_string(), 180),
        ("", power_on.to_string(), DEFAULT_TIMEOUT.as_secs()),
    ];
    for (head, steps, secs) in cases {
        let yaml = profile_with(head, &steps);
        let bench = Bench::new(
            &yaml,
            Script::default().slow("power", Duration::from_secs(86_400)),
        );
        let view = bench.finish().await;
        assert_eq!(view.record.state, DeploymentState::Error, "{steps}");
        assert!(
            view.record
                .error
                .as_deref()
                .unwrap()
                .contains("timed out in step preparing waiting for ipmi_command power on"),
            "{:?}",
            view.record.error
        );
        let took = bench.elapsed().as_secs();
        assert!(
            (secs..secs + 2).contains(&took),
            "{steps}: took {took}s, expected {secs}s"
        );
        assert!(
            bench.script.finished().is_empty(),
            "the hung command never finished"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_as_the_action_allows() {
    let transient = || {
        Err(Failure::Transient {
            error: "no answer".into(),
            reason: "power cycle failed: no answer".into(),
        })
    };
    // Two failures, then the third attempt succeeds.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer("power", vec![transient(), transient()]),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(bench.script.started(), ["power", "power", "power"]);
    assert_eq!(
        bench
            .ledger
            .logged("attempt 1 of 3 failed: no answer; retrying"),
        1
    );
    assert_eq!(
        bench
            .ledger
            .logged("attempt 2 of 3 failed: no answer; retrying"),
        1
    );
    assert!(
        bench.elapsed() >= Duration::from_secs(4),
        "a pause between attempts"
    );

    // Three failures: the action fails with the last one's reason.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer("power", vec![transient(), transient(), transient()]),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(
        view.record.error.as_deref(),
        Some("preparing #1 ipmi_command power cycle: power cycle failed: no answer")
    );
    assert_eq!(bench.script.started().len(), 3);

    // A failure no attempt would change is not retried.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer(
            "power",
            vec![Err(Failure::Final("the server has no BMC".into()))],
        ),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(bench.script.started(), ["power"]);
    assert_eq!(bench.ledger.logged("retrying"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_stops_each_kind_of_action_and_runs_cleanup() {
    let cleanup = "  cleanup:
    - action: delete_file
      on: http
      filename: f
";
    let cases: [(&str, &str); 4] = [
        (
            "expect_callback",
            "    - action: expect_callback\n      name: booted\n",
        ),
        (
            "power",
            "    - action: ipmi_command\n      command: power\n      parameters: on\n",
        ),
        (
            "serve",
            "    - action: serve_file\n      via: http\n      filename: f\n      source:\n        type: url\n        url: http://127.0.0.1:9/big.iso\n",
        ),
        ("echo", "    - action: echo\n      message: hi\n"),
    ];
    for (what, action) in cases {
        let steps = format!("  preparing:\n{action}{cleanup}");
        let script = Script::default()
            .slow("power", Duration::from_secs(600))
            .slow("serve", Duration::from_secs(600))
            .slow("echo", Duration::from_secs(600));
        let bench = Bench::new(&profile(&steps), script);
        let task = bench.start();
        // Well into the action.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let_run().await;
        assert_eq!(
            bench.ledger.view().record.state,
            DeploymentState::Preparing,
            "{what}"
        );
        bench.ledger.cancel();
        bench.runner.cancel();
        task.await.unwrap();
        let view = bench.ledger.view();
        assert_eq!(view.record.state, DeploymentState::Cancelled, "{what}");
        assert_eq!(view.record.step, None, "{what}: cleanup ran to its end");
        assert!(
            bench.elapsed() < Duration::from_secs(60),
            "{what}: stopped at once"
        );
        assert_eq!(
            bench.ledger.logged("preparing #1"),
            1,
            "{what}: only its start is logged"
        );
        assert_eq!(
            bench.ledger.logged("cleanup #1 delete_file http f: done"),
            1,
            "{what}"
        );
        assert_eq!(
            bench.script.finished(),
            ["unserve"],
            "{what}: the cancelled work never finished"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_an_action_resumes_with_the_deadline_it_had() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
      timeout: 10m
";
    let first = Bench::new(&profile(steps), Script::default());
    let task = first.start();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let_run().await;
    let armed = first.ledger.view().action_deadline;
    assert_eq!(armed, Some(EPOCH + 600));
    // The daemon stops in the middle of the action...
    task.abort();
    let _ = task.await;
    // ...and is down for two minutes.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let script = Arc::new(Script::default());
    let second = Bench::resume(first.ledger.clone(), script, first.origin);
    let view = second.finish().await;
    // The deadline is the one armed before the restart: six more minutes,
    // not ten; the action was not started twice.
    assert_eq!(view.record.state, DeploymentState::Error);
    let took = second.elapsed().as_secs();
    assert!((360..362).contains(&took), "took {took}s after the restart");
    assert_eq!(second.ledger.logged(": started (timeout 10m)"), 1);

    // A callback that arrived while the daemon was down is found at once.
    let first = Bench::new(&profile(steps), Script::default());
    let task = first.start();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let_run().await;
    task.abort();
    let _ = task.await;
    let script = Arc::new(Script::default());
    script.arrive("booted");
    let second = Bench::resume(first.ledger.clone(), script, first.origin);
    let view = second.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert!(second.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn what_no_driver_can_do_fails_without_reaching_the_executor() {
    let steps = "  preparing:
    - action: ipmi_command
      command: health
";
    let bench = Bench::new(&profile(steps), Script::default());
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    assert_eq!(
        view.record.error.as_deref(),
        Some(
            "preparing #1 ipmi_command health: this ipmi_command is a query the power drivers do not run as a step"
        )
    );
    assert!(bench.script.started().is_empty());
}
