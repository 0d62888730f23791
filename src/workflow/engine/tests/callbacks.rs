//! Callbacks: taken when they arrive, judged from memory when stored
//! here, not missed when stored elsewhere during a read.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_callback_is_taken_when_it_arrives_and_a_nudge_wakes_the_wait() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
";
    let bench = Bench::new(&profile(steps), Script::default());
    let task = bench.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let_run().await;
    bench.script.arrive("booted");
    bench.runner.nudge();
    task.await.unwrap();
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
    // Woken by the nudge, not by the next poll two seconds on.
    assert!(
        bench.elapsed() < Duration::from_secs(1),
        "{:?}",
        bench.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn callbacks_stored_here_are_judged_and_taken_from_memory() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
  installing:
    - action: expect_callback
      name: installed
";
    let bench = Bench::new(&profile(steps), Script::default());
    assert_eq!(bench.runner.expects("booted"), None, "not started yet");
    let task = bench.start();
    let_run().await;
    // Read once on entering the first wait: nothing had arrived.
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 1);
    assert_eq!(bench.runner.expects("booted"), Some(true));
    assert_eq!(bench.runner.expects("installed"), Some(true));
    assert_eq!(bench.runner.expects("other"), Some(false));
    bench
        .runner
        .arrived("booted", "callback booted received (GET)".into());
    let_run().await;
    assert_eq!(
        bench.ledger.view().record.state,
        DeploymentState::Installing
    );
    // A callback of a step passed is no longer expected.
    assert_eq!(bench.runner.expects("booted"), Some(false));
    bench.runner.arrived(
        "installed",
        "callback installed received (POST): done".into(),
    );
    task.await.unwrap();
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
    assert_eq!(
        bench.runner.expects("installed"),
        None,
        "final: ask the store"
    );
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 1);
    let lines = bench.ledger.lines();
    // The lines the handler gave are the ones logged.
    for said in [
        "(callback booted received (GET))",
        "(callback installed received (POST): done)",
    ] {
        assert!(lines.iter().any(|l| l.ends_with(said)), "{lines:?}");
    }
    assert!(bench.elapsed() < Duration::from_secs(1));
}

/// A deployment this daemon has just created has no callback stored: its
/// task waits without reading the store, and still reads it when told
/// that one may have been stored elsewhere.
#[tokio::test(start_paused = true)]
async fn a_created_deployment_waits_without_reading_the_store() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
";
    let mut bench = Bench::new(&profile(steps), Script::default());
    bench.runner = Arc::new(Runner::created());
    let task = bench.start();
    let_run().await;
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 0);
    assert_eq!(bench.runner.expects("booted"), Some(true));
    bench.script.arrive("booted");
    bench.runner.nudge();
    task.await.unwrap();
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 1);
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
}

#[tokio::test(start_paused = true)]
async fn a_callback_stored_elsewhere_during_a_read_is_not_missed() {
    let steps = "  preparing:
    - action: expect_callback
      name: booted
";
    let script = Script::default();
    let bench = Bench::new(&profile(steps), script);
    // While the task reads, another daemon stores the callback and its
    // notice wakes the task: the read's answer is not the whole story.
    let (script, runner) = (bench.script.clone(), bench.runner.clone());
    *bench.script.meanwhile.lock().unwrap() = Some(Box::new(move || {
        script.arrive("booted");
        runner.nudge();
    }));
    bench.finish().await;
    assert_eq!(bench.ledger.view().record.state, DeploymentState::Complete);
    assert_eq!(bench.script.reads.load(Ordering::SeqCst), 2);
    // Not left for the poll two seconds on.
    assert!(
        bench.elapsed() < Duration::from_secs(1),
        "{:?}",
        bench.elapsed()
    );
}

/// A deployment's task keeps, for its whole life, room for the largest of
/// its states; most of that life is spent waiting for its machine, ten
/// thousand deployments at once in a storm. The states of a step (a
/// commit, an action under its deadline) live in a box of their own while
/// the step runs, so that what a task keeps is about what a wait needs.
#[test]
fn a_deployments_task_keeps_little_more_than_its_wait() {
    let bench = Bench::new(&profile(""), Script::default());
    let task = bench.driver.run(ID, &bench.runner, None);
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1024, "{size} bytes");
}

/// A deployment created here is written with its task's first moves (the
/// `new` step done, the first action's deadline armed); its task then
/// goes on from there as if it had committed them itself: the same log,
/// the same end.
#[tokio::test(start_paused = true)]
async fn first_moves_written_at_creation_are_the_tasks_own() {
    let steps = format!(
        "  preparing:{SERVE}
    - action: expect_callback
      name: booted
"
    );
    let run = |first: bool| {
        let steps = steps.clone();
        async move {
            let bench = Bench::new(&profile(&steps), Script::default());
            if first {
                let parsed = super::super::drive::parse_text(&profile(&steps)).unwrap();
                let change =
                    super::super::drive::first_moves(&parsed, EPOCH, DEFAULT_TIMEOUT).unwrap();
                assert_eq!(change.from.state, DeploymentState::New);
                assert_eq!(change.to.state, DeploymentState::Preparing);
                let t = Transition {
                    runner: Some(RUNNER.into()),
                    ..transition(ID, change)
                };
                assert!(bench.ledger.commit_transition(&t).await.unwrap());
            }
            let task = bench.start();
            let_run().await;
            bench.script.arrive("booted");
            bench.runner.nudge();
            task.await.unwrap();
            (bench.ledger.view().record.state, bench.ledger.lines())
        }
    };
    let (state, own) = run(false).await;
    assert_eq!(state, DeploymentState::Complete);
    assert_eq!(run(true).await, (state, own));
}
