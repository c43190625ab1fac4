//! The acceptance test of the management service (SPEC §10 "several may run against one shared
//! store"): two services, each with its own connection pool as if on two machines, drain one
//! PostgreSQL store's control queue. 2,000 commands (Suspend, then Resume, for 1,000 instances a
//! live host holds) reach the host's in-process control endpoint exactly once each; none is
//! lost, none fails, and both services take a share.
//!
//! The server is `$INSTORE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! the test works in a fresh schema and drops it at the end.

// Test code (clippy's allow-unwrap-in-tests covers #[test] functions, not their helpers).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instore::{ControlCommand, InstanceId, InstanceStore, Providers, Save};
use instore_management::{owner_metadata, EndpointRegistry, ManagementService, ManagementSettings};
use instore_postgres::PgProvider;
use tokio::task::JoinSet;

use support::*;

const INSTANCES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_share_one_queue_and_execute_each_command_exactly_once() {
    let url = pg_fresh_store_url();
    let operator = PgProvider::open(&url)
        .await
        .expect("open a PostgreSQL store");
    in_pg_schema(operator.clone(), two_services(url, Providers::of(operator))).await;
}

async fn open(url: &str, machine: &str) -> (InstanceStore, Providers) {
    let providers = Providers::of(PgProvider::open(url).await.unwrap());
    let store = InstanceStore::builder(providers.persistence.clone())
        .machine(machine)
        .build()
        .unwrap();
    (store, providers)
}

async fn two_services(url: String, operator: Providers) {
    // The host: holds every instance, and reaches them through its in-process endpoint.
    let (host_store, _) = open(&url, "host-1").await;
    let endpoint = "inproc:host-1";
    let owner = host(&host_store, "orders", owner_metadata(endpoint)).await;
    let mut saves = JoinSet::new();
    for _ in 0..INSTANCES {
        let store = host_store.clone();
        saves.spawn(async move { instance(&store, owner, Save::data(data())).await });
    }
    let mut held = Vec::new();
    while let Some(r) = saves.join_next().await {
        held.push(r.unwrap());
    }
    let ids: BTreeSet<InstanceId> = held.iter().map(|(id, _)| *id).collect();

    // Two services, each on its own pool and store, each with the host's endpoint registered.
    let log = Arc::new(Mutex::new(Vec::new()));
    let settings = ManagementSettings {
        poll_interval: Duration::from_millis(50),
        ..ManagementSettings::default()
    };
    let mut services = Vec::new();
    let mut stats = Vec::new();
    for (n, machine) in ["mgmt-a", "mgmt-b"].into_iter().enumerate() {
        let (store, providers) = open(&url, machine).await;
        let endpoints = EndpointRegistry::new();
        endpoints.register(endpoint, Arc::new(Recorder::new(n, log.clone())));
        let service = ManagementService::builder(store, providers.control.clone())
            .settings(settings.clone())
            .endpoints(Arc::new(endpoints))
            .build()
            .unwrap();
        stats.push(service.stats());
        services.push(start(service));
    }

    let phases = [
        ControlCommand::Suspend {
            reason: "audit".into(),
        },
        ControlCommand::Resume,
    ];
    for (phase, command) in phases.iter().enumerate() {
        let started = Instant::now();
        let mut enqueues = JoinSet::new();
        for chunk in ids.iter().copied().collect::<Vec<_>>().chunks(100) {
            let (control, chunk, command) =
                (operator.control.clone(), chunk.to_vec(), command.clone());
            enqueues.spawn(async move {
                for id in chunk {
                    control.enqueue(id, command.clone()).await.unwrap();
                }
            });
        }
        while let Some(r) = enqueues.join_next().await {
            r.unwrap();
        }
        let expected = (phase + 1) * INSTANCES;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let received = log.lock().unwrap().len();
            let drained = queue_is_empty(&operator).await;
            if received >= expected && drained {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "phase {phase}: {received} of {expected} commands received"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("{} x{INSTANCES}: {:?}", command.name(), started.elapsed());
    }
    // A late duplicate would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for service in services {
        service.stop().await;
    }

    let received: Vec<Received> = log.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        2 * INSTANCES,
        "each command once, none lost"
    );
    let mut executions: HashMap<(InstanceId, &str), usize> = HashMap::new();
    for r in &received {
        *executions
            .entry((r.instance, r.command.name()))
            .or_default() += 1;
        assert_eq!(
            r.metadata[instore::handover::OWNER].value,
            instore::Value::Uuid(owner.as_uuid())
        );
    }
    for id in &ids {
        for command in &phases {
            assert_eq!(
                executions.get(&(*id, command.name())),
                Some(&1),
                "{} for {id}",
                command.name()
            );
        }
    }
    // Suspend before Resume for every instance.
    let mut seen: HashMap<InstanceId, Vec<&str>> = HashMap::new();
    for r in &received {
        seen.entry(r.instance).or_default().push(r.command.name());
    }
    assert!(seen.values().all(|s| s == &["Suspend", "Resume"]));

    let per_service: Vec<usize> = (0..2)
        .map(|n| received.iter().filter(|r| r.service == n).count())
        .collect();
    eprintln!("executions per service: {per_service:?}");
    assert!(
        per_service.iter().all(|n| *n > 0),
        "both services took some: {per_service:?}"
    );
    for s in &stats {
        let s = s.snapshot();
        assert_eq!((s.failed, s.lock_lost), (0, 0), "{s:?}");
        assert_eq!(s.completed, s.via_endpoint);
    }
    let completed: u64 = stats.iter().map(|s| s.snapshot().completed).sum();
    assert_eq!(completed, 2 * INSTANCES as u64);
    assert!(operator.control.error_log(10).await.unwrap().is_empty());
    drop(held);
}
