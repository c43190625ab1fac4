//! The host runtime on the memory store, end to end: start → timer → completion, resuming a
//! bookmark by key, faults suspending, control commands through a real `ManagementService`
//! (in-process registry and HTTP) and a store-level cancellation running the workflow's
//! cancellation logic. Nothing is timed: each case waits for an outcome with a generous deadline.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use instore::{
    bag, Condition, ControlCommand, InstanceFilter, InstanceId, InstanceInfo, InstanceStatus,
    InstanceStore, KeyId, MemoryProvider, PageRequest, PropertyBag, Providers, StoreError,
    StoreSettings, Uuid,
};
use instore_host::{Context, Fault, Host, HostError, Start, Step, Workflow, FAULT_REASON};
use instore_management::{
    EndpointRegistry, EndpointResolver, HttpEndpointResolver, ManagementService, ManagementSettings,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

struct Fixture {
    providers: Providers,
    store: InstanceStore,
}

fn fixture() -> Fixture {
    let providers = Providers::of(MemoryProvider::new());
    let settings = StoreSettings {
        suspension_extension: true,
        ..StoreSettings::default()
    };
    let store = InstanceStore::builder(providers.persistence.clone())
        .settings(settings)
        .build()
        .unwrap();
    Fixture { providers, store }
}

async fn info(f: &Fixture, id: InstanceId) -> InstanceInfo {
    let filter = InstanceFilter {
        ids: vec![id],
        ..InstanceFilter::default()
    };
    let page = f
        .providers
        .query
        .query(&filter, &PageRequest::default())
        .await
        .unwrap();
    page.items.into_iter().next().expect("the instance exists")
}

async fn eventually_info(
    f: &Fixture,
    id: InstanceId,
    what: &str,
    check: impl Fn(&InstanceInfo) -> bool,
) -> InstanceInfo {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let i = info(f, id).await;
        if check(&i) {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}; last: {i:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn completed_as(condition: Condition) -> impl Fn(&InstanceInfo) -> bool {
    move |i| i.status == InstanceStatus::Completed && i.condition == condition
}

fn running(host: &Host) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let host = host.clone();
        let shutdown = shutdown.clone();
        async move { host.run(shutdown).await.unwrap() }
    });
    (shutdown, task)
}

async fn stop(run: (CancellationToken, tokio::task::JoinHandle<()>)) {
    run.0.cancel();
    tokio::time::timeout(Duration::from_secs(30), run.1)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}

fn quick() -> ManagementSettings {
    ManagementSettings {
        poll_interval: Duration::from_millis(20),
        retry_delay: Duration::from_millis(10),
        retry_delay_max: Duration::from_millis(40),
        ..ManagementSettings::default()
    }
}

/// An order: waits for `paid` (by key), then a short timer, then completes; its cancellation
/// logic records itself.
struct Order;

#[async_trait::async_trait]
impl Workflow for Order {
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
        if cx.is_start() {
            cx.set("orders:state", "waiting");
            return Ok(Step::wait_for("paid"));
        }
        if let Some(paid) = cx.bookmark() {
            cx.set("orders:paid", paid.payload.clone());
            cx.set("orders:state", "paid");
            return Ok(Step::sleep(Duration::from_millis(20)));
        }
        if cx.timer_fired() {
            cx.set("orders:state", "shipped");
            return Ok(Step::done());
        }
        Ok(Step::wait_for("paid"))
    }

    async fn on_cancel(&self, cx: &mut Context) -> Result<Step, Fault> {
        cx.set("orders:state", "cancelled by its logic");
        Ok(Step::canceled())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_instance_runs_its_timer_and_completes() {
    struct Timed;
    #[async_trait::async_trait]
    impl Workflow for Timed {
        async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
            let n = cx.get_i64("n").unwrap_or(0);
            cx.set("n", n + 1);
            if n < 2 {
                Ok(Step::sleep(Duration::from_millis(20)))
            } else {
                Ok(Step::done())
            }
        }
    }
    let f = fixture();
    let host = Host::builder(f.store.clone())
        .host_type("timed", Timed)
        .build()
        .await
        .unwrap();
    let run = running(&host);
    let id = host.start("timed", Start::default()).await.unwrap();
    let done = eventually_info(&f, id, "completed", completed_as(Condition::Successful)).await;
    assert_eq!(done.host_type.as_deref(), Some("timed"));
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bookmark_is_resumed_by_key_and_the_order_completes() {
    let f = fixture();
    let host = Host::builder(f.store.clone())
        .host_type("orders", Order)
        .build()
        .await
        .unwrap();
    let run = running(&host);
    let key = KeyId::derive(Uuid::nil(), "order-7");
    let start = Start::with_data(bag([("orders:total", 7i64)])).key(key);
    let id = host.start("orders", start.clone()).await.unwrap();
    let idle = info(&f, id).await;
    assert_eq!(idle.bookmarks, vec!["paid".to_owned()]);
    assert!(matches!(
        host.start("orders", start).await,
        Err(HostError::AlreadyStarted { instance }) if instance == id
    ));
    let unknown = host.resume_bookmark(key, "shipped", 1i64).await;
    assert!(
        matches!(unknown, Err(HostError::BookmarkNotFound { .. })),
        "{unknown:?}"
    );
    host.resume_bookmark(key, "paid", 7i64).await.unwrap();
    eventually_info(&f, id, "completed", completed_as(Condition::Successful)).await;
    // Its key is completed with it.
    assert!(matches!(
        host.resume_bookmark(key, "paid", 7i64).await,
        Err(HostError::Store(StoreError::InstanceKeyComplete { .. }))
    ));
    stop(run).await;
}

#[derive(Debug, thiserror::Error)]
#[error("card declined: total={0}")]
struct PaymentDeclined(i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_step_suspends_the_instance_with_its_exception() {
    struct Failing;
    #[async_trait::async_trait]
    impl Workflow for Failing {
        async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
            if cx.is_start() {
                return Ok(Step::wait_for("pay"));
            }
            cx.set("half-done", true); // not saved: the step failed
            Err(PaymentDeclined(cx.get_i64("total").unwrap_or(0)))?
        }
    }
    let f = fixture();
    let host = Host::builder(f.store.clone())
        .host_type("failing", Failing)
        .build()
        .await
        .unwrap();
    let key = KeyId::derive(Uuid::nil(), "failing-1");
    let start = Start::with_data(bag([("total", 5i64)])).key(key);
    let id = host.start("failing", start).await.unwrap();
    host.resume_bookmark(key, "pay", 5i64).await.unwrap();
    let i = info(&f, id).await;
    assert_eq!(i.status, InstanceStatus::Suspended);
    assert_eq!(i.condition, Condition::Exception);
    let s = i.suspension.expect("suspended");
    assert_eq!(s.reason, FAULT_REASON);
    let e = s.exception.expect("with the exception");
    assert_eq!(
        (e.name.as_str(), e.message.as_str()),
        ("PaymentDeclined", "card declined: total=5")
    );
    assert_eq!(
        i.bookmarks,
        vec!["pay".to_owned()],
        "the last saved state stays"
    );
    // A suspended instance is not resumed by bookmark.
    assert!(matches!(
        host.resume_bookmark(key, "pay", 5i64).await,
        Err(HostError::Store(StoreError::InstanceSuspended { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_requested_at_the_store_level_runs_the_cancellation_logic() {
    let f = fixture();
    let host = Host::builder(f.store.clone())
        .host_type("orders", Order)
        .build()
        .await
        .unwrap();
    let run = running(&host);
    let id = host
        .start("orders", Start::with_data(PropertyBag::new()))
        .await
        .unwrap();
    // No host holds the idle instance: the service cancels at the store level.
    let service = ManagementService::for_providers(f.store.clone(), &f.providers)
        .settings(quick())
        .build()
        .unwrap();
    let stats = service.stats();
    let service_stop = CancellationToken::new();
    let service_task = tokio::spawn(service.run(service_stop.clone()));
    f.providers
        .control
        .enqueue(id, ControlCommand::Cancel)
        .await
        .unwrap();
    eventually_info(&f, id, "canceled", completed_as(Condition::Canceled)).await;
    assert_eq!(
        stats.snapshot().via_endpoint,
        0,
        "executed at the store level"
    );
    service_stop.cancel();
    service_task.await.unwrap();
    stop(run).await;
}

/// A workflow whose steps after the first wait for a permit, so the host holds the instance
/// while a test sends it control commands.
struct Gated(Arc<Semaphore>);

#[async_trait::async_trait]
impl Workflow for Gated {
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
        if !cx.is_start() {
            let permit = self
                .0
                .acquire()
                .await
                .map_err(|e| Fault::new("gate", e.to_string()))?;
            permit.forget();
        }
        let n = cx.get_i64("steps").unwrap_or(0);
        cx.set("steps", n + 1);
        Ok(Step::sleep(Duration::from_millis(10)))
    }

    async fn on_cancel(&self, cx: &mut Context) -> Result<Step, Fault> {
        cx.set("cancelled", true);
        Ok(Step::canceled())
    }
}

/// Waits until the host holds `id` (its gated step runs).
async fn held(f: &Fixture, id: InstanceId) {
    eventually_info(f, id, "held by the host", |i| i.locked_since.is_some()).await;
}

/// Suspend (held: through the endpoint), Resume (idle: at the store level), Terminate and
/// Cancel (held: through the endpoint).
async fn control_through_the_service(
    f: &Fixture,
    host: &Host,
    gate: &Arc<Semaphore>,
    service: ManagementService,
) {
    let stats = service.stats();
    let nudge = service.nudge();
    let service_stop = CancellationToken::new();
    let service_task = tokio::spawn(service.run(service_stop.clone()));
    let control = f.providers.control.clone();

    let id = host.start("gated", Start::default()).await.unwrap();
    held(f, id).await;
    control
        .enqueue(
            id,
            ControlCommand::Suspend {
                reason: "audit".into(),
            },
        )
        .await
        .unwrap();
    nudge.nudge();
    eventually_info(f, id, "the command reached the endpoint", |_| {
        stats.snapshot().read >= 1
    })
    .await;
    gate.add_permits(1);
    let i = eventually_info(f, id, "suspended", |i| {
        i.status == InstanceStatus::Suspended
    })
    .await;
    assert_eq!(i.suspension.unwrap().reason, "audit");
    // The service counts an execution before its `complete` removes the command from the
    // queue; a new command for the instance is refused (CommandLocked) until then.
    eventually_info(f, id, "completed via the endpoint", |i| {
        stats.snapshot().via_endpoint == 1 && i.pending_command.is_none()
    })
    .await;

    control.enqueue(id, ControlCommand::Resume).await.unwrap();
    nudge.nudge();
    eventually_info(f, id, "resumed and held again", |i| {
        i.status == InstanceStatus::Running
            && i.locked_since.is_some()
            && i.pending_command.is_none()
    })
    .await;
    control
        .enqueue(
            id,
            ControlCommand::Terminate {
                reason: "fraud".into(),
            },
        )
        .await
        .unwrap();
    nudge.nudge();
    eventually_info(f, id, "the command was read", |_| {
        stats.snapshot().read >= 3
    })
    .await;
    gate.add_permits(1);
    eventually_info(f, id, "terminated", completed_as(Condition::Terminated)).await;

    let id = host.start("gated", Start::default()).await.unwrap();
    held(f, id).await;
    control.enqueue(id, ControlCommand::Cancel).await.unwrap();
    nudge.nudge();
    eventually_info(f, id, "the command was read", |_| {
        stats.snapshot().read >= 4
    })
    .await;
    gate.add_permits(1);
    eventually_info(f, id, "canceled", completed_as(Condition::Canceled)).await;
    eventually_info(f, id, "all through the endpoint but Resume", |_| {
        stats.snapshot().via_endpoint == 3
    })
    .await;

    service_stop.cancel();
    service_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_reach_a_running_host_through_the_in_process_registry() {
    let f = fixture();
    let gate = Arc::new(Semaphore::new(0));
    let registry = EndpointRegistry::new();
    let host = Host::builder(f.store.clone())
        .host_type("gated", Gated(gate.clone()))
        .control_registry(registry.clone())
        .build()
        .await
        .unwrap();
    let run = running(&host);
    let service = ManagementService::for_providers(f.store.clone(), &f.providers)
        .settings(quick())
        .endpoints(Arc::new(registry))
        .build()
        .unwrap();
    control_through_the_service(&f, &host, &gate, service).await;
    stop(run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_reach_a_running_host_over_http() {
    let f = fixture();
    let gate = Arc::new(Semaphore::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/control", listener.local_addr().unwrap());
    let host = Host::builder(f.store.clone())
        .host_type("gated", Gated(gate.clone()))
        .control_http(listener, None)
        .build()
        .await
        .unwrap();
    let run = running(&host);
    // The service knows no in-process endpoint: it can only use HTTP.
    let resolver = HttpEndpointResolver::new();
    let endpoint = resolver.resolve(&url).expect("an http endpoint");
    let service = ManagementService::for_providers(f.store.clone(), &f.providers)
        .settings(quick())
        .endpoints(Arc::new(resolver))
        .build()
        .unwrap();
    control_through_the_service(&f, &host, &gate, service).await;

    // Straight over HTTP, for an idle instance the host loads to apply the command.
    let id = host.start("gated", Start::default()).await.unwrap();
    held(&f, id).await;
    let suspend = ControlCommand::Suspend {
        reason: "hold".into(),
    };
    let call = tokio::spawn({
        let endpoint = endpoint.clone();
        async move { endpoint.execute(id, &suspend, &PropertyBag::new()).await }
    });
    gate.add_permits(1);
    call.await.unwrap().unwrap();
    assert_eq!(info(&f, id).await.status, InstanceStatus::Suspended);
    endpoint
        .execute(id, &ControlCommand::Resume, &PropertyBag::new())
        .await
        .unwrap();
    assert_eq!(info(&f, id).await.status, InstanceStatus::Running);
    let done = endpoint
        .execute(
            InstanceId::new(),
            &ControlCommand::Resume,
            &PropertyBag::new(),
        )
        .await;
    assert!(
        matches!(done, Err(StoreError::InstanceNotReady { .. })),
        "{done:?}"
    );
    gate.add_permits(100);
    stop(run).await;
}
