//! The [`Host`]: owners by host type, the run loop on store events, starting instances and
//! resuming bookmarks by key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use instore::{
    Command, CreateOwner, InstanceHandle, InstanceId, InstanceState, InstanceStore, KeyId, Load,
    LoadByKey, OwnerId, PropertyBag, Save, StoreError, StoreEvent, Value,
};
use instore_management::{owner_metadata, ControlEndpoint, EndpointRegistry};

use crate::control::HostControl;
use crate::runner::Loaded;
use crate::workflow::{Bookmark, Trigger, Workflow};

/// Owner metadata entry (string) naming the host type of a host's owner without one (the owner
/// it loads by key and applies control commands with).
pub const HOST_ROLE: &str = "instore:role";

/// How a host runs: serializable knobs, apart from the components given to the builder.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    /// The lease of the host's owners; `None` takes the store's (`StoreSettings::lease`). The
    /// store renews it; a host that dies leaves its instances to other hosts once it ends.
    pub lease: Option<Duration>,
    /// Steps running at once, over all host types (default 16). The run loop takes no more
    /// runnable instances than it has room for.
    pub max_running: usize,
    /// Timeout of each store command (default 30 s).
    pub command_timeout: Duration,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            lease: None,
            max_running: 16,
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// What went wrong in a host call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The store refused or failed the command; its variant says what to do.
    #[error("store command failed")]
    Store(#[from] StoreError),
    /// No workflow is registered under this host type on this host.
    #[error("unknown host type: host_type={host_type}")]
    UnknownHostType {
        /// The host type asked for.
        host_type: String,
    },
    /// `start` with a key of an instance that already started: resume it instead.
    #[error("instance already started: instance={instance}")]
    AlreadyStarted {
        /// The existing instance.
        instance: InstanceId,
    },
    /// The instance does not wait on this bookmark (it moved on, or never waited on it).
    #[error("bookmark not found: instance={instance} bookmark={bookmark}")]
    BookmarkNotFound {
        /// The instance.
        instance: InstanceId,
        /// The bookmark asked for.
        bookmark: String,
    },
    /// The control HTTP listener failed.
    #[error("control listener failed")]
    Io(#[from] std::io::Error),
}

/// How to start an instance: its initial data, and optionally a key to find it by later (and
/// its id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Start {
    /// The initial data (the first step sees it in [`crate::Context::data`]).
    pub data: PropertyBag,
    /// A key associated with the new instance, for [`Host::resume_bookmark`] (e.g.
    /// `KeyId::derive(namespace, "order-42")`). Starting twice with one key is
    /// [`HostError::AlreadyStarted`].
    pub key: Option<KeyId>,
    /// The instance id; `None` makes a new one.
    pub id: Option<InstanceId>,
}

impl Start {
    /// Starts with this initial data.
    pub fn with_data(data: PropertyBag) -> Self {
        Start {
            data,
            ..Start::default()
        }
    }

    /// Associates `key` with the new instance.
    pub fn key(mut self, key: KeyId) -> Self {
        self.key = Some(key);
        self
    }
}

/// Builds a [`Host`]: the store, one workflow per host type, settings, and where the control
/// endpoint is reachable.
#[derive(Debug)]
pub struct HostBuilder {
    store: InstanceStore,
    workflows: Vec<(String, Arc<dyn Workflow>)>,
    settings: HostSettings,
    registry: Option<EndpointRegistry>,
    http: Option<(tokio::net::TcpListener, Option<String>)>,
    metadata: PropertyBag,
}

impl std::fmt::Debug for dyn Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workflow")
    }
}

impl HostBuilder {
    /// Runs `workflow` for instances of `host_type` (one owner per host type). Registering a
    /// host type twice keeps the last workflow.
    pub fn host_type(mut self, host_type: impl Into<String>, workflow: impl Workflow) -> Self {
        let host_type = host_type.into();
        self.workflows.retain(|(h, _)| *h != host_type);
        self.workflows.push((host_type, Arc::new(workflow)));
        self
    }

    /// The host's settings.
    pub fn settings(mut self, settings: HostSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Registers the host's control endpoint in `registry`, for a management service in this
    /// process (`ManagementService::builder(..).endpoints(Arc::new(registry))`).
    pub fn control_registry(mut self, registry: EndpointRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Serves the control endpoint over HTTP on `listener` while [`Host::run`] runs
    /// (`POST /control/{instance}` with a `ControlCommand` as JSON), for a management service
    /// in another process (`instore_management::HttpEndpointResolver`). Its URL
    /// (`http://ADDRESS/control`, or `advertised_url`) goes in the owners' metadata.
    pub fn control_http(
        mut self,
        listener: tokio::net::TcpListener,
        advertised_url: Option<String>,
    ) -> Self {
        self.http = Some((listener, advertised_url));
        self
    }

    /// Extra owner metadata (site, service path, ...), shown to operators and handed over with
    /// control commands.
    pub fn owner_metadata(mut self, metadata: PropertyBag) -> Self {
        self.metadata.extend(metadata);
        self
    }

    /// Registers the host's owners (one per host type, plus one without a host type for loads
    /// by key and control commands) with their control endpoint, and returns the host. Call
    /// [`Host::run`] to run instances.
    pub async fn build(self) -> Result<Host, HostError> {
        if self.settings.max_running == 0 {
            return Err(StoreError::invalid("HostSettings::max_running must be at least 1").into());
        }
        if !self.store.settings().suspension_extension {
            tracing::debug!(
                "the store's suspension extension is off: the host still never runs a suspended instance"
            );
        }
        let (http, endpoint_name) = match self.http {
            Some((listener, advertised)) => {
                let url = match advertised {
                    Some(url) => url,
                    None => {
                        let addr = listener.local_addr()?;
                        let host = if addr.ip().is_unspecified() {
                            self.store.machine().to_owned()
                        } else {
                            addr.ip().to_string()
                        };
                        let host = if host.contains(':') {
                            format!("[{host}]")
                        } else {
                            host
                        };
                        format!("http://{host}:{}/control", addr.port())
                    }
                };
                (Some(listener), Some(url))
            }
            None => (None, None),
        };
        let inner = Arc::new_cyclic(|weak| HostInner {
            store: self.store.clone(),
            workflows: self.workflows.iter().cloned().collect(),
            owners: Mutex::new(HashMap::new()),
            settings: self.settings.clone(),
            permits: Arc::new(Semaphore::new(self.settings.max_running)),
            running: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            endpoint: Arc::new(HostControl::new(weak.clone())),
            registered: Mutex::new(None),
        });
        let endpoint_name = match (&self.registry, endpoint_name) {
            (Some(registry), Some(url)) => {
                registry.register(url.clone(), inner.endpoint.clone());
                Some(url)
            }
            (Some(registry), None) => Some(registry.register_unique(inner.endpoint.clone())),
            (None, url) => url,
        };
        if let (Some(registry), Some(name)) = (&self.registry, &endpoint_name) {
            *inner.registered_slot() = Some((registry.clone(), name.clone()));
        }
        let mut metadata = self.metadata.clone();
        if let Some(name) = &endpoint_name {
            metadata.extend(owner_metadata(name));
        }
        let mut owners = HashMap::new();
        let mut host_types: Vec<Option<String>> = self
            .workflows
            .iter()
            .map(|(h, _)| Some(h.clone()))
            .collect();
        host_types.push(None);
        for host_type in host_types {
            let mut owner_bag = metadata.clone();
            if host_type.is_none() {
                owner_bag.insert(HOST_ROLE.into(), Value::from("host").into());
            }
            let create = CreateOwner {
                host_type: host_type.clone(),
                metadata: owner_bag,
                lease: self.settings.lease,
            };
            let handle = self.store.create_handle_for(None, None);
            let view = self
                .store
                .execute(&handle, create, self.settings.command_timeout)
                .await?;
            let owner = view
                .owner
                .ok_or_else(|| StoreError::invalid("CreateOwner answered without an owner"))?;
            owners.insert(host_type, owner);
        }
        *inner.owners_map() = owners;
        Ok(Host {
            inner,
            http: Arc::new(Mutex::new(http)),
        })
    }
}

/// A host: runs the instances of its host types in one store (SPEC §11). Cheap to clone; clones
/// share the host, so one clone can [`Host::run`] while others [`Host::start`] instances.
///
/// To serve several stores, build one `Host` per store (each registers its own owners there)
/// and run them side by side; they can share one `EndpointRegistry`.
#[derive(Debug, Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
    http: Arc<Mutex<Option<tokio::net::TcpListener>>>,
}

/// What every part of a host shares.
#[derive(Debug)]
pub(crate) struct HostInner {
    pub(crate) store: InstanceStore,
    pub(crate) workflows: HashMap<String, Arc<dyn Workflow>>,
    /// The owner of each host type, and (`None`) the owner without one.
    owners: Mutex<HashMap<Option<String>, OwnerId>>,
    pub(crate) settings: HostSettings,
    pub(crate) permits: Arc<Semaphore>,
    /// Instances with a step under way, and the control commands waiting for its save.
    pub(crate) running: Mutex<HashMap<InstanceId, crate::runner::Running>>,
    pub(crate) tasks: TaskTracker,
    pub(crate) endpoint: Arc<HostControl>,
    registered: Mutex<Option<(EndpointRegistry, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps updated in short sections: still usable after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HostInner {
    fn owners_map(&self) -> MutexGuard<'_, HashMap<Option<String>, OwnerId>> {
        lock(&self.owners)
    }

    fn registered_slot(&self) -> MutexGuard<'_, Option<(EndpointRegistry, String)>> {
        lock(&self.registered)
    }

    pub(crate) fn running_map(
        &self,
    ) -> MutexGuard<'_, HashMap<InstanceId, crate::runner::Running>> {
        lock(&self.running)
    }

    /// The owner of `host_type` (`None`: the owner without a host type).
    pub(crate) fn owner(&self, host_type: Option<&str>) -> Option<OwnerId> {
        self.owners_map()
            .get(&host_type.map(str::to_owned))
            .copied()
    }

    /// Whether `owner` is one of this host's owners.
    pub(crate) fn is_own(&self, owner: OwnerId) -> bool {
        self.owners_map().values().any(|o| *o == owner)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.settings.command_timeout
    }

    /// Releases the lock `handle` took on `instance` for a call that then refused to run it,
    /// before the call answers: dropping the handle would unlock it in the background, and a
    /// `start` or `resume_bookmark` right after would find it still locked by this host
    /// (`InstanceLocked`, or `HandleConflict` within one owner). Nothing is changed.
    async fn release(&self, handle: &InstanceHandle, instance: InstanceId) {
        let release = Save::default().and_unlock();
        if let Err(e) = self.store.execute(handle, release, self.timeout()).await {
            tracing::debug!(%instance, error = %e, "releasing a refused instance failed");
        }
    }

    /// Replaces a lost owner by the store's replacement (`OwnerRecovered`), or registers a new
    /// one if none came.
    async fn replace_owner(&self, host_type: Option<&str>, lost: OwnerId) {
        let key = host_type.map(str::to_owned);
        let clock = self.store.clock();
        let deadline = clock.now().plus(Duration::from_secs(5));
        while clock.now() < deadline {
            if self.owners_map().get(&key) != Some(&lost) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let metadata = self
            .registered_slot()
            .as_ref()
            .map(|(_, name)| owner_metadata(name))
            .unwrap_or_default();
        let create = CreateOwner {
            host_type: key.clone(),
            metadata,
            lease: self.settings.lease,
        };
        let handle = self.store.create_handle_for(None, None);
        match self.store.execute(&handle, create, self.timeout()).await {
            Ok(view) => {
                if let Some(owner) = view.owner {
                    tracing::info!(%lost, %owner, "registered a new owner for a lost one");
                    self.owners_map().insert(key, owner);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not register a new owner; will retry"),
        }
    }

    fn adopt_replacement(&self, lost: OwnerId, replacement: OwnerId) {
        let mut owners = self.owners_map();
        for owner in owners.values_mut() {
            if *owner == lost {
                *owner = replacement;
            }
        }
    }

    /// The event loop of one host type: wait for `HasRunnableWorkflow`, then take runnable
    /// instances until there are none, each running on a task of its own within the bound.
    async fn serve(self: Arc<Self>, host_type: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let Some(owner) = self.owner(Some(&host_type)) else {
                return;
            };
            let waiter = self.store.create_handle_for(Some(owner), None);
            let events = tokio::select! {
                _ = shutdown.cancelled() => return,
                events = self.store.wait_for_events(&waiter, Duration::from_secs(30)) => events,
            };
            match events {
                Ok(events) if events.is_empty() => continue,
                Ok(_) => self.drain(&host_type, owner, &shutdown).await,
                Err(StoreError::OwnerLost { owner }) => {
                    self.replace_owner(Some(&host_type), owner).await
                }
                Err(e) => {
                    tracing::warn!(%host_type, error = %e, "waiting for events failed; retrying");
                    pause(&shutdown, Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn drain(
        self: &Arc<Self>,
        host_type: &str,
        owner: OwnerId,
        shutdown: &CancellationToken,
    ) {
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let handle = self.store.create_handle_for(Some(owner), None);
            match self
                .store
                .execute(&handle, Command::TryLoadRunnable, self.timeout())
                .await
            {
                Ok(view) if view.instance.is_none() => return,
                Ok(view) => {
                    let inner = self.clone();
                    let loaded = Loaded {
                        handle,
                        view,
                        trigger: None,
                        from_runnable: true,
                    };
                    self.tasks.spawn(async move {
                        let _permit = permit;
                        if let Err(e) = inner.run_loaded(loaded, false).await {
                            tracing::warn!(error = %e, "a step's save failed");
                        }
                    });
                }
                Err(StoreError::OwnerLost { owner }) => {
                    self.replace_owner(Some(host_type), owner).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(%host_type, error = %e, "TryLoadRunnable failed; retrying");
                    pause(shutdown, Duration::from_millis(200)).await;
                    return;
                }
            }
        }
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

impl Host {
    /// A builder over a store.
    pub fn builder(store: InstanceStore) -> HostBuilder {
        HostBuilder {
            store,
            workflows: Vec::new(),
            settings: HostSettings::default(),
            registry: None,
            http: None,
            metadata: PropertyBag::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &InstanceStore {
        &self.inner.store
    }

    /// The owner of `host_type` in the store (changes if the owner is lost and replaced).
    pub fn owner(&self, host_type: &str) -> Option<OwnerId> {
        self.inner.owner(Some(host_type))
    }

    /// The host's control endpoint (what the registry and the HTTP route call).
    pub fn control_endpoint(&self) -> Arc<dyn ControlEndpoint> {
        self.inner.endpoint.clone()
    }

    /// An axum router serving the control endpoint at `POST /control/{instance}`, to merge into
    /// an application's own server (or let [`HostBuilder::control_http`] serve it).
    pub fn control_router(&self) -> axum::Router {
        crate::http::control_router(self.control_endpoint())
    }

    /// Starts an instance of `host_type`: creates it (by key if given), runs its first step
    /// at once and persists the result. Returns the instance id once the first step is saved
    /// (or the instance suspended with the step's fault).
    pub async fn start(&self, host_type: &str, start: Start) -> Result<InstanceId, HostError> {
        let inner = &self.inner;
        if !inner.workflows.contains_key(host_type) {
            return Err(HostError::UnknownHostType {
                host_type: host_type.to_owned(),
            });
        }
        let owner = inner
            .owner(Some(host_type))
            .ok_or_else(|| StoreError::invalid("the host has no owner for this host type"))?;
        let store = &inner.store;
        let (handle, view) = match start.key {
            Some(key) => {
                let handle = store.create_handle_for(Some(owner), None);
                let load = LoadByKey {
                    create_with_id: start.id,
                    ..LoadByKey::or_create(key)
                };
                let view = store.execute(&handle, load, inner.timeout()).await?;
                (handle, view)
            }
            None => {
                let id = start.id.unwrap_or_default(); // a new random id
                let handle = store.create_handle_for(Some(owner), Some(id));
                let load = Load {
                    accept_uninitialized: true,
                    allow_suspended: false,
                };
                let view = store.execute(&handle, load, inner.timeout()).await?;
                (handle, view)
            }
        };
        let instance = view
            .instance
            .ok_or_else(|| StoreError::invalid("the load answered without an instance"))?;
        if view.state != InstanceState::Uninitialized {
            inner.release(&handle, instance).await;
            return Err(HostError::AlreadyStarted { instance });
        }
        let mut view = view;
        view.data = start.data;
        view.host_type = Some(host_type.to_owned());
        let _permit = inner.permits.clone().acquire_owned().await;
        let loaded = Loaded {
            handle,
            view,
            trigger: Some(Trigger::Start),
            from_runnable: false,
        };
        inner.run_loaded(loaded, false).await?;
        Ok(instance)
    }

    /// Resumes the bookmark `bookmark` of the instance found by `key` with `payload`: loads it,
    /// runs its step with [`crate::Context::bookmark`] set, and persists the result before
    /// returning. [`HostError::BookmarkNotFound`] if the instance does not wait on it;
    /// `InstanceSuspended` if it is suspended; `InstanceLocked` while another host runs it.
    pub async fn resume_bookmark(
        &self,
        key: KeyId,
        bookmark: &str,
        payload: impl Into<Value>,
    ) -> Result<(), HostError> {
        let inner = &self.inner;
        let owner = inner
            .owner(None)
            .ok_or_else(|| StoreError::invalid("the host has no owner"))?;
        let handle = inner.store.create_handle_for(Some(owner), None);
        let view = inner
            .store
            .execute(&handle, LoadByKey::new(key), inner.timeout())
            .await?;
        let instance = view
            .instance
            .ok_or_else(|| StoreError::invalid("the load answered without an instance"))?;
        let host_type = view.host_type.clone().unwrap_or_default();
        let refusal = if let Some(s) = &view.suspension {
            Some(HostError::Store(StoreError::InstanceSuspended {
                instance,
                reason: s.reason.clone(),
            }))
        } else if !view.bookmarks.iter().any(|b| b == bookmark) {
            Some(HostError::BookmarkNotFound {
                instance,
                bookmark: bookmark.to_owned(),
            })
        } else if !inner.workflows.contains_key(&host_type) {
            Some(HostError::UnknownHostType { host_type })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            inner.release(&handle, instance).await;
            return Err(refusal);
        }
        let _permit = inner.permits.clone().acquire_owned().await;
        let loaded = Loaded {
            handle,
            view,
            trigger: Some(Trigger::Bookmark(Bookmark {
                name: bookmark.to_owned(),
                payload: payload.into(),
            })),
            from_runnable: false,
        };
        inner.run_loaded(loaded, false).await?;
        Ok(())
    }

    /// Runs the host until `shutdown`: one event loop per host type, the control HTTP route if
    /// configured, owner replacement after a loss. On shutdown it stops taking instances, lets
    /// running steps finish and save, unregisters the control endpoint and deletes its owners
    /// (their instances are at once takeable by other hosts).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), HostError> {
        let inner = self.inner.clone();
        let stop = shutdown.child_token();
        let mut loops = tokio::task::JoinSet::new();
        let listener = lock(&self.http).take();
        if let Some(listener) = listener {
            let router = self.control_router();
            let stop = stop.clone();
            loops.spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "the control HTTP listener failed");
                }
            });
        }
        {
            let inner = inner.clone();
            let mut events = inner.store.subscribe();
            let stop = stop.clone();
            loops.spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = events.recv() => e,
                    };
                    match event {
                        Ok(StoreEvent::OwnerRecovered { lost, replacement }) => {
                            inner.adopt_replacement(lost, replacement)
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            });
        }
        let mut host_types: Vec<String> = inner.workflows.keys().cloned().collect();
        host_types.sort();
        for host_type in host_types {
            loops.spawn(inner.clone().serve(host_type, stop.clone()));
        }
        stop.cancelled().await;
        while loops.join_next().await.is_some() {}
        inner.tasks.close();
        inner.tasks.wait().await;
        if let Some((registry, name)) = inner.registered_slot().take() {
            registry.unregister(&name);
        }
        let owners: Vec<OwnerId> = inner.owners_map().values().copied().collect();
        for owner in owners {
            let handle = inner.store.create_handle_for(Some(owner), None);
            if let Err(e) = inner
                .store
                .execute(&handle, Command::DeleteOwner, inner.timeout())
                .await
            {
                tracing::debug!(%owner, error = %e, "could not delete the owner at shutdown");
            }
        }
        Ok(())
    }
}
