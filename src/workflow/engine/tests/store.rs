//! The store: an outage delays a deployment and loses nothing, a store
//! failing during an action does not fail it, a deployment another daemon
//! took over is left alone.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_store_outage_delays_the_deployment_but_loses_nothing() {
    let bench = Bench::new(
        &profile(&format!("  preparing:{SERVE}\n")),
        Script::default(),
    );
    *bench.ledger.outage.lock().unwrap() = 3;
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(bench.script.started(), ["serve"]);
    assert!(
        bench.elapsed() >= Duration::from_secs(6),
        "retried every two seconds"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_during_an_action_does_not_fail_the_deployment() {
    let down = || {
        Err(Failure::Store(
            "cannot read the server: database unavailable".into(),
        ))
    };
    // More failures than the action has retries: each attempt is made
    // again once the store answers, none counted against the retries.
    let bench = Bench::new(
        &profile(&format!("  preparing:{CYCLE}\n")),
        Script::default().answer("power", vec![down(); 5]),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Complete);
    assert_eq!(bench.script.started().len(), 6);
    assert_eq!(bench.ledger.logged("retrying"), 0);
    assert_eq!(
        bench.ledger.logged(
            "(power ok; the store failed 5 times before it answered: cannot read the server"
        ),
        1,
        "{:?}",
        bench.ledger.lines()
    );

    // A store down longer than the action may take: it times out, and
    // the reason says what the store said.
    let steps = format!("  preparing:{CYCLE}\n      timeout: 1m\n");
    let bench = Bench::new(
        &profile(&steps),
        Script::default().answer("power", vec![down(); 1000]),
    );
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::Error);
    let error = view.record.error.unwrap();
    assert!(
        error.contains("timed out in step preparing")
            && error
                .ends_with("; the store was failing: cannot read the server: database unavailable"),
        "{error}"
    );
    assert!(bench.elapsed() < Duration::from_secs(65));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_another_daemon_took_over_is_left_alone() {
    let bench = Bench::new(
        &profile(&format!("  preparing:{SERVE}\n")),
        Script::default(),
    );
    bench.ledger.view.lock().unwrap().record.runner = Some("elsewhere".into());
    let view = bench.finish().await;
    assert_eq!(view.record.state, DeploymentState::New);
    assert!(bench.ledger.lines().is_empty());
    assert!(bench.script.started().is_empty());
}
