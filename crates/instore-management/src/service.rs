//! [`ManagementService`]: its builder and its run loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use instore::{
    ControlProvider, InstanceStore, Providers, QueryProvider, QueueSettings, StoreError,
};

use crate::activation::{ActivationHook, Activator, Hooks};
use crate::endpoint::{EndpointRegistry, EndpointResolver};
use crate::execution::{chain, Executor};
use crate::owner::ServiceOwner;
use crate::retention::Retention;
use crate::stats::{Counter, ServiceStats};
use crate::ManagementSettings;

/// The management service (SPEC §10): drains the control queue and executes each command,
/// activates hosts, purges completed instances past retention. Several may run against one
/// shared store; the queue's locks give each command to one of them at a time.
///
/// Build it, take what you need while it runs ([`ManagementService::nudge`],
/// [`ManagementService::stats`]), then [`ManagementService::run`] it until shutdown.
#[derive(Debug)]
pub struct ManagementService {
    executor: Arc<Executor>,
    activator: Option<Arc<Activator>>,
    retention: Option<Retention>,
}

/// Wakes a [`ManagementService`]'s reader at once instead of at its next poll: call it after
/// enqueueing a command in the same process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    /// Wakes the reader (a wake-up while it is busy is kept for its next wait).
    pub fn nudge(&self) {
        self.0.notify_one();
    }
}

/// Builds a [`ManagementService`]: components (store, control provider, endpoints, hooks,
/// query provider for retention) apart from settings.
#[derive(Debug)]
pub struct ManagementServiceBuilder {
    store: InstanceStore,
    control: Arc<dyn ControlProvider>,
    queue: QueueSettings,
    settings: ManagementSettings,
    endpoints: Arc<dyn EndpointResolver>,
    hooks: Hooks,
    machine: Option<String>,
    query: Option<Arc<dyn QueryProvider>>,
    retention: Option<Duration>,
}

impl ManagementServiceBuilder {
    /// The control queue's settings (default: the store's, `StoreSettings::queue`).
    pub fn queue_settings(mut self, queue: QueueSettings) -> Self {
        self.queue = queue;
        self
    }

    /// The service's own pacing.
    pub fn settings(mut self, settings: ManagementSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Where control endpoints are looked up (default: an empty [`EndpointRegistry`], so every
    /// command is executed at the store level).
    pub fn endpoints(mut self, endpoints: Arc<dyn EndpointResolver>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The hook that starts hosts of `host_type`.
    pub fn activation_hook(
        mut self,
        host_type: impl Into<String>,
        hook: Arc<dyn ActivationHook>,
    ) -> Self {
        self.hooks.by_host_type.insert(host_type.into(), hook);
        self
    }

    /// The hook for host types without one of their own.
    pub fn fallback_activation_hook(mut self, hook: Arc<dyn ActivationHook>) -> Self {
        self.hooks.fallback = Some(hook);
        self
    }

    /// The machine name reported with failures and queue reads (default: the store's).
    pub fn machine(mut self, machine: impl Into<String>) -> Self {
        self.machine = Some(machine.into());
        self
    }

    /// Purge completed instances past the store's retention (`StoreSettings::retention`)
    /// through this query provider. Without it, the service purges nothing.
    pub fn purge_with(mut self, query: Arc<dyn QueryProvider>) -> Self {
        self.query = Some(query);
        self
    }

    /// Overrides the retention the store's settings give (`None`: keep completed instances).
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Checks the settings and builds the service. Nothing runs until
    /// [`ManagementService::run`].
    pub fn build(self) -> Result<ManagementService, StoreError> {
        self.queue.validate()?;
        self.settings.validate()?;
        if self.retention.is_some_and(|r| r < Duration::from_secs(1)) {
            return Err(StoreError::invalid(
                "retention must be at least 1s (or absent to keep completed instances)",
            ));
        }
        let machine = self
            .machine
            .unwrap_or_else(|| self.store.machine().to_owned());
        let stats = Arc::new(ServiceStats::default());
        let clock = self.store.clock();
        let activator = (!self.hooks.is_empty()).then(|| {
            Arc::new(Activator {
                provider: self.store.provider().clone(),
                clock: clock.clone(),
                hooks: self.hooks,
                interval: self.settings.activation_interval,
                debounce: self.settings.activation_debounce,
                hook_timeout: self.settings.hook_timeout,
                stats: stats.clone(),
                last_called: Mutex::new(HashMap::new()),
            })
        });
        let retention = match (self.query, self.retention) {
            (Some(query), Some(retention)) => Some(Retention {
                query,
                clock,
                retention,
                interval: self.settings.purge_interval,
                batch: self.settings.purge_batch,
                stats: stats.clone(),
            }),
            _ => None,
        };
        let executor = Arc::new(Executor {
            owner: ServiceOwner::new(self.store.clone()),
            store: self.store,
            control: self.control,
            queue: self.queue,
            settings: self.settings,
            endpoints: self.endpoints,
            machine,
            stats,
            nudge: Arc::new(Notify::new()),
        });
        Ok(ManagementService {
            executor,
            activator,
            retention,
        })
    }
}

impl ManagementService {
    /// A service draining `control` through `store` with the queue `settings` and default
    /// everything else: no endpoints (every command at the store level), no activation hooks,
    /// no purging.
    pub fn new(
        store: InstanceStore,
        control: Arc<dyn ControlProvider>,
        settings: QueueSettings,
    ) -> Result<Self, StoreError> {
        Self::builder(store, control)
            .queue_settings(settings)
            .build()
    }

    /// A builder over a store and its control provider.
    pub fn builder(
        store: InstanceStore,
        control: Arc<dyn ControlProvider>,
    ) -> ManagementServiceBuilder {
        let settings = store.settings();
        ManagementServiceBuilder {
            queue: settings.queue,
            retention: settings.retention,
            store,
            control,
            settings: ManagementSettings::default(),
            endpoints: Arc::new(EndpointRegistry::new()),
            hooks: Hooks::default(),
            machine: None,
            query: None,
        }
    }

    /// A builder over a store opened on `providers.persistence`, with its control provider and
    /// purging through its query provider.
    pub fn for_providers(store: InstanceStore, providers: &Providers) -> ManagementServiceBuilder {
        Self::builder(store, providers.control.clone()).purge_with(providers.query.clone())
    }

    /// Wakes the reader early (see [`Nudge`]).
    pub fn nudge(&self) -> Nudge {
        Nudge(self.executor.nudge.clone())
    }

    /// The service's counters.
    pub fn stats(&self) -> Arc<ServiceStats> {
        self.executor.stats.clone()
    }

    /// Runs until `shutdown` is cancelled: reads the queue in batches and executes each command
    /// on a task of its own (at most `max_in_flight` at once), reporting each outcome; looks for
    /// hosts to activate; purges. Storage failures are logged and retried, never fatal.
    ///
    /// On shutdown it stops reading, hands failed commands held for a retry back at once, waits
    /// up to `shutdown_grace` for commands being executed, and deletes its owner.
    pub async fn run(self, shutdown: CancellationToken) {
        let stop = shutdown.child_token();
        let mut background = JoinSet::new();
        if let Some(activator) = self.activator.clone() {
            background.spawn(activator.run(stop.clone()));
        }
        if let Some(retention) = self.retention {
            background.spawn(retention.run(stop.clone()));
        }
        let executor = self.executor;
        tracing::info!(machine = %executor.machine, "management service started");
        let mut in_flight = JoinSet::new();
        read_loop(&executor, &stop, &mut in_flight).await;

        stop.cancel();
        let clock = executor.store.clock();
        let deadline = clock.now().plus(executor.settings.shutdown_grace);
        loop {
            tokio::select! {
                next = in_flight.join_next() => if next.is_none() { break },
                _ = clock.sleep_until(deadline) => {
                    tracing::warn!(
                        commands = in_flight.len(),
                        "commands still executing at the end of the shutdown grace; their queue locks will expire"
                    );
                    in_flight.abort_all();
                    break;
                }
            }
        }
        background.abort_all();
        while background.join_next().await.is_some() {}
        // Bounded like the rest of stopping: storage may be what is down.
        let settings = &executor.settings;
        let timeout = settings.command_timeout.min(settings.shutdown_grace);
        executor
            .owner
            .delete(timeout.max(Duration::from_secs(1)))
            .await;
        tracing::info!("management service stopped");
    }
}

/// Reads and dispatches until `stop`.
async fn read_loop(
    executor: &Arc<Executor>,
    stop: &CancellationToken,
    in_flight: &mut JoinSet<()>,
) {
    let clock = executor.store.clock();
    let settings = &executor.settings;
    let mut read_failures: u32 = 0;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a control command task ended abnormally");
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let free = settings.max_in_flight.saturating_sub(in_flight.len());
        if free == 0 {
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let want = free.min(executor.queue.batch_size);
        let queue = QueueSettings {
            batch_size: want,
            ..executor.queue
        };
        // A read is short and locks what it returns: let it finish even when stopping (what it
        // took is executed in the grace period), unless storage hangs past the grace period.
        let grace_after_stop = async {
            stop.cancelled().await;
            clock
                .sleep_until(clock.now().plus(settings.shutdown_grace))
                .await;
        };
        let read = tokio::select! {
            r = executor.control.read_batch(&queue, &executor.machine) => r,
            _ = grace_after_stop => return,
        };
        let wait = match read {
            Ok(batch) => {
                read_failures = 0;
                let full = batch.len() >= want;
                executor.stats.add(Counter::Read, batch.len() as u64);
                for command in batch {
                    in_flight.spawn(executor.clone().run(command, stop.clone()));
                }
                if full {
                    continue; // more may be waiting
                }
                settings.poll_interval
            }
            Err(e) => {
                read_failures = read_failures.saturating_add(1);
                tracing::warn!(error = %chain(&e), failures = read_failures, "could not read the control queue");
                // Back off while storage is down: the poll interval, doubling, up to 30 s.
                settings
                    .poll_interval
                    .saturating_mul(2u32.saturating_pow(read_failures.min(16) - 1))
                    .min(Duration::from_secs(30).max(settings.poll_interval))
            }
        };
        let next = clock.now().plus(wait);
        tokio::select! {
            _ = executor.nudge.notified() => {}
            _ = clock.sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
    }
}
