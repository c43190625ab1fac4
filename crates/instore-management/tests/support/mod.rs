//! What the management service's tests share: stores on real providers, a running service that
//! stops on request, host-side helpers, and an endpoint that records what it receives.

#![allow(dead_code)] // each test binary uses a part

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instore::{
    bag, Command, ControlCommand, CreateOwner, InstanceFilter, InstanceHandle, InstanceId,
    InstanceInfo, InstanceStore, MemoryProvider, OwnerId, PageRequest, PropertyBag, Providers,
    Save, StoreError,
};
use instore_management::{ControlEndpoint, ManagementService, ManagementSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const T: Duration = Duration::from_secs(10);

/// A store and its three provider sides (plus what keeps its storage alive).
pub struct Fixture {
    pub store: InstanceStore,
    pub providers: Providers,
    _dir: Option<tempfile::TempDir>,
}

pub async fn memory() -> Fixture {
    let providers = Providers::of(MemoryProvider::new());
    let store = InstanceStore::builder(providers.persistence.clone())
        .build()
        .unwrap();
    Fixture {
        store,
        providers,
        _dir: None,
    }
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let provider = instore_sqlite::SqliteProvider::open(dir.path().join("instore.db"))
        .await
        .unwrap();
    let providers = Providers::of(provider);
    let store = InstanceStore::builder(providers.persistence.clone())
        .build()
        .unwrap();
    Fixture {
        store,
        providers,
        _dir: Some(dir),
    }
}

/// The PostgreSQL server the tests use: `$INSTORE_TEST_PG_URL`, else the machine's local
/// cluster.
pub fn pg_server_url() -> String {
    std::env::var("INSTORE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The URL of a PostgreSQL store in a fresh schema no other test uses.
pub fn pg_fresh_store_url() -> String {
    let schema = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let base = pg_server_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}schema={schema}")
}

/// A store in a fresh PostgreSQL schema, and the provider to drop it with
/// ([`instore_postgres::PgProvider::drop_store`]) when the test is done.
pub async fn postgres() -> (Fixture, Arc<instore_postgres::PgProvider>) {
    let provider = instore_postgres::PgProvider::open(&pg_fresh_store_url())
        .await
        .expect("open a PostgreSQL store");
    let providers = Providers::of(provider.clone());
    let store = InstanceStore::builder(providers.persistence.clone())
        .build()
        .unwrap();
    let fixture = Fixture {
        store,
        providers,
        _dir: None,
    };
    (fixture, provider)
}

/// Runs `case` on a task of its own and drops the PostgreSQL schema afterwards, also when the
/// case panics (the panic is passed on).
pub async fn in_pg_schema<Fut>(provider: Arc<instore_postgres::PgProvider>, case: Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(case).await;
    provider.drop_store().await.expect("drop the test schema");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Turns each `async fn case(f: Fixture)` named into a test on the memory, SQLite and
/// PostgreSQL providers (modules `memory`, `sqlite`, `postgres`).
#[allow(unused_macros)] // not every test binary uses it
macro_rules! on_each_provider {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::memory().await).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (fixture, provider) = super::support::postgres().await;
                    super::support::in_pg_schema(provider, super::$case(fixture)).await
                }
            )*
        }
    };
}

/// Settings that keep tests quick: short polls and retry delays.
pub fn quick() -> ManagementSettings {
    ManagementSettings {
        poll_interval: Duration::from_millis(20),
        retry_delay: Duration::from_millis(10),
        retry_delay_max: Duration::from_millis(40),
        activation_interval: Duration::from_millis(50),
        purge_interval: Duration::from_millis(50),
        ..ManagementSettings::default()
    }
}

/// A service running on a task of its own until [`Running::stop`].
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

pub fn start(service: ManagementService) -> Running {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service.run(shutdown.clone()));
    Running { shutdown, task }
}

impl Running {
    /// Stops the service; how long `run` took to return.
    pub async fn stop(self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic");
        started.elapsed()
    }
}

/// Waits (up to 20 s) until `check` answers true.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Registers a host owner of `host_type` with `metadata`.
pub async fn host(store: &InstanceStore, host_type: &str, metadata: PropertyBag) -> OwnerId {
    let handle = store.create_handle_for(None, None);
    let create = CreateOwner {
        host_type: Some(host_type.into()),
        metadata,
        lease: None,
    };
    store
        .execute(&handle, Command::CreateOwner(create), T)
        .await
        .expect("create owner")
        .owner
        .expect("bound to the owner")
}

/// Saves a new instance as `owner` with `save`; the handle (holding the lock unless `save`
/// unlocks) comes back.
pub async fn instance(
    store: &InstanceStore,
    owner: OwnerId,
    save: Save,
) -> (InstanceId, InstanceHandle) {
    let id = InstanceId::new();
    let handle = store.create_handle_for(Some(owner), Some(id));
    store.execute(&handle, save, T).await.expect("save");
    (id, handle)
}

/// The data every test instance starts with.
pub fn data() -> PropertyBag {
    let mut data = bag([("orders:total", 42i64)]);
    data.extend(bag([("orders:customer", "ada")]));
    data
}

/// Ends an owner's lease now.
pub async fn delete_owner(store: &InstanceStore, owner: OwnerId) {
    let handle = store.create_handle_for(Some(owner), None);
    store
        .execute(&handle, Command::DeleteOwner, T)
        .await
        .expect("delete owner");
}

/// What queries show of one instance.
pub async fn info(providers: &Providers, id: InstanceId) -> InstanceInfo {
    let filter = InstanceFilter {
        ids: vec![id],
        ..InstanceFilter::default()
    };
    let page = providers
        .query
        .query(&filter, &PageRequest::default())
        .await
        .expect("query");
    page.items.into_iter().next().expect("the instance exists")
}

/// Whether the queue is empty.
pub async fn queue_is_empty(providers: &Providers) -> bool {
    providers
        .control
        .queued(None, 10)
        .await
        .expect("queued")
        .is_empty()
}

/// An endpoint that records each command it receives, tagged with `service`.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub service: usize,
    pub log: Arc<Mutex<Vec<Received>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub service: usize,
    pub instance: InstanceId,
    pub command: ControlCommand,
    pub metadata: PropertyBag,
}

impl Recorder {
    pub fn new(service: usize, log: Arc<Mutex<Vec<Received>>>) -> Self {
        Self { service, log }
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ControlEndpoint for Recorder {
    async fn execute(
        &self,
        instance: InstanceId,
        command: &ControlCommand,
        metadata: &PropertyBag,
    ) -> Result<(), StoreError> {
        self.log.lock().unwrap().push(Received {
            service: self.service,
            instance,
            command: command.clone(),
            metadata: metadata.clone(),
        });
        Ok(())
    }
}
