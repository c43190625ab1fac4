//! `/metrics` shows the core runtime's command metrics and the sampled store gauges, and they
//! move under a workload. One test in this file: the recorder is the process's.

mod common;

use axum::http::{Method, StatusCode};
use common::{call, fixture, get, TIMEOUT};
use instore::{ControlCommand, Load};

/// The value of the sample `name` (with its labels, as rendered), or 0.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test]
async fn metrics_move_under_a_workload() {
    // Installed before the store does anything, as `instore serve` does.
    instore_server::recorder();
    let f = fixture().await;
    let r = f.router();
    let before = get(&r, "/metrics").await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(before.content_type.starts_with("text/plain"));
    let before = before.text;
    let saves = r#"instore_command_duration_seconds_count{command="Save"}"#;
    let conflicts = r#"instore_lock_conflicts_total{command="Load"}"#;
    assert!(value(&before, saves) >= 3.0, "{before}");
    assert_eq!(value(&before, "instore_queue_depth"), 0.0);
    assert_eq!(
        value(&before, r#"instore_instances{status="Suspended"}"#),
        1.0,
        "{before}"
    );

    // A lock conflict: one live owner holds the instance, another loads it.
    let _held = f.lock(f.running).await;
    let other = f.store.create_handle_for(None, None);
    f.store
        .execute(&other, instore::CreateOwner::host_type("orders"), TIMEOUT)
        .await
        .unwrap();
    let h = f.store.create_handle_for(other.owner(), Some(f.running));
    let err = f
        .store
        .execute(&h, Load::default(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, instore::StoreError::InstanceLocked { .. }),
        "{err}"
    );
    // A queued command.
    let a = call(
        &r,
        Method::POST,
        &format!("/api/v1/instances/{}/commands", f.suspended),
        None,
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    f.providers
        .control
        .enqueue(f.running, ControlCommand::Cancel)
        .await
        .unwrap();

    let after = get(&r, "/metrics").await.text;
    assert_eq!(
        value(&after, conflicts),
        value(&before, conflicts) + 1.0,
        "{after}"
    );
    assert!(
        value(
            &after,
            r#"instore_command_duration_seconds_count{command="Load"}"#
        ) >= 2.0
    );
    assert_eq!(value(&after, "instore_queue_depth"), 2.0, "{after}");
    assert!(value(&after, "instore_owners_alive") >= 2.0, "{after}");
    assert!(
        after.contains("instore_queue_oldest_age_seconds "),
        "{after}"
    );
    assert!(
        after.contains(r#"instore_runnable_oldest_age_seconds{host_type="orders"}"#),
        "{after}"
    );
    assert!(
        after.contains(r#"instore_management_commands_total{outcome="completed"}"#),
        "{after}"
    );
    assert!(
        after.contains("# TYPE instore_command_duration_seconds histogram"),
        "{after}"
    );

    // What other crates record through the facade shows too (the host runtime's metrics).
    metrics::histogram!("instore_timer_lateness_seconds", "host_type" => "orders").record(0.2);
    metrics::counter!("instore_host_steps_total", "host_type" => "orders").increment(3);
    let last = get(&r, "/metrics").await.text;
    assert!(
        last.contains(r#"instore_timer_lateness_seconds_count{host_type="orders"} 1"#),
        "{last}"
    );
    assert!(
        last.contains(r#"instore_host_steps_total{host_type="orders"} 3"#),
        "{last}"
    );
}

#[tokio::test]
async fn runnable_instances_without_a_live_host_are_counted() {
    let f = fixture().await;
    let r = f.router();
    // An executing instance, unlocked: runnable; its owner is gone, so no live host.
    let host = f.store.create_handle_for(None, None);
    f.store
        .execute(&host, instore::CreateOwner::host_type("billing"), TIMEOUT)
        .await
        .unwrap();
    let h = f
        .store
        .create_handle_for(host.owner(), Some(instore::InstanceId::new()));
    let save = instore::Save::data(instore::bag([("n", 1i64)]))
        .with_status(instore::ExecutionStatus::Executing)
        .and_unlock();
    f.store.execute(&h, save, TIMEOUT).await.unwrap();
    f.store
        .execute(&host, instore::Command::DeleteOwner, TIMEOUT)
        .await
        .unwrap();
    let text = get(&r, "/metrics").await.text;
    assert_eq!(
        value(&text, r#"instore_runnable_instances{host_type="billing"}"#),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn runnable_instances_behind_a_live_host_are_counted() {
    let f = fixture().await;
    let r = f.router();
    let count = r#"instore_runnable_instances{host_type="orders"}"#;
    let age = r#"instore_runnable_oldest_age_seconds{host_type="orders"}"#;
    let before = get(&r, "/metrics").await.text;
    assert_eq!(value(&before, count), 0.0, "{before}");

    // A live host of `orders` that has not taken anything yet (it never calls TryLoadRunnable
    // until the end), and another that makes instances runnable: three executing, one due.
    let live = f.store.create_handle_for(None, None);
    f.store
        .execute(&live, instore::CreateOwner::host_type("orders"), TIMEOUT)
        .await
        .unwrap();
    let writer = f.store.create_handle_for(None, None);
    f.store
        .execute(&writer, instore::CreateOwner::host_type("orders"), TIMEOUT)
        .await
        .unwrap();
    let save = |save: instore::Save| {
        let h = f
            .store
            .create_handle_for(writer.owner(), Some(instore::InstanceId::new()));
        let store = f.store.clone();
        async move { store.execute(&h, save, TIMEOUT).await.unwrap() }
    };
    for n in 0..3i64 {
        let executing = instore::Save::data(instore::bag([("n", n)]))
            .with_status(instore::ExecutionStatus::Executing)
            .and_unlock();
        save(executing).await;
    }
    let due = instore::Clock::now(&instore::SystemClock).minus(std::time::Duration::from_secs(30));
    save(
        instore::Save::data(instore::bag([("n", 3i64)]))
            .with_timer(due)
            .and_unlock(),
    )
    .await;
    let text = get(&r, "/metrics").await.text;
    assert_eq!(value(&text, count), 4.0, "{text}");
    assert!(value(&text, age) >= 30.0, "the due timer waits: {text}");

    // The live host takes the oldest: the backlog shrinks.
    let taken = f.store.create_handle_for(live.owner(), None);
    let view = f
        .store
        .execute(&taken, instore::Command::TryLoadRunnable, TIMEOUT)
        .await
        .unwrap();
    assert!(view.instance.is_some());
    let text = get(&r, "/metrics").await.text;
    assert_eq!(value(&text, count), 3.0, "{text}");
    assert!(value(&text, age) < 30.0, "{text}");
}
