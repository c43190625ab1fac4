//! # instore-postgres — one store shared by many hosts on many machines
//!
//! A [`instore::PersistenceProvider`] over PostgreSQL. Every command is **one round trip**: the
//! checks and writes of each operation live in server-side functions installed by the embedded
//! migrations, in the store's own schema, and the provider sends one statement per command.
//! Runnable instances are claimed with `FOR UPDATE SKIP LOCKED`; wake-ups come by
//! `LISTEN/NOTIFY` (plus the runtime's fallback poll); leases and timers are judged by the
//! server's clock, so hosts with skewed clocks agree.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), instore::StoreError> {
//! use std::time::Duration;
//! use instore::{bag, CreateOwner, InstanceId, Save};
//!
//! let url = "postgres://postgres@127.0.0.1:5432/test?schema=orders";
//! let store = instore_postgres::open_store(url, Default::default()).await?;
//! let owner = store.create_handle();
//! store.execute(&owner, CreateOwner::default(), Duration::from_secs(5)).await?;
//! let handle = store.create_handle_for(owner.owner(), Some(InstanceId::new()));
//! store.execute(&handle, Save::data(bag([("orders:total", 99i64)])).and_unlock(), Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```

mod clock;
mod codec;
mod error_map;
mod listener;
mod manage;
mod options;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use instore::encoding::{decode, encode, encode_within};
use instore::{
    Activatable, CompletionAction, Encoding, InstanceId, InstanceSnapshot, InstanceStore,
    LeaseState, LoadRequest, LoadTarget, NewOwner, OwnerId, OwnerInfo, PersistenceProvider,
    RunnableRequest, SaveRequest, SharedClock, StoreError, StoreSettings, SuspendChange, Timestamp,
    WakeUps,
};
use serde_json::Value as Json;
use tokio::sync::watch;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

pub use crate::options::PgOptions;

use crate::clock::ServerClock;
use crate::error_map::{rule_of, Rule};

/// Which clock judges leases and timers.
#[derive(Debug, Clone)]
pub enum PgClock {
    /// The server's (production): every function reads `clock_timestamp()`.
    Server,
    /// A pinned clock (tests): every call sends this clock's instant, so a test moves time by
    /// moving the clock. Never for production: hosts must agree on one clock.
    Pinned(SharedClock),
}

/// The PostgreSQL provider.
#[derive(Debug)]
pub struct PgProvider {
    pool: Pool,
    schema: String,
    server: String,
    sql: Statements,
    pinned: Option<SharedClock>,
    clock: SharedClock,
    wake: Arc<watch::Sender<u64>>,
    listener: tokio::task::JoinHandle<()>,
    /// When this provider last vacuumed the count deltas (`manage.rs`, `vacuum_count_deltas`).
    deltas_vacuumed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Drop for PgProvider {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The text of every call, for this store's schema.
#[derive(Debug)]
struct Statements {
    load: String,
    save: String,
    unlock: String,
    try_load_runnable: String,
    next_runnable: String,
    activatable: String,
    create_owner: String,
    renew_lease: String,
    delete_owner: String,
    owners: String,
}

impl Statements {
    fn new(s: &str) -> Self {
        let call = |f: &str, n: usize| {
            let params: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
            format!("select * from \"{s}\".{f}({})", params.join(", "))
        };
        Self {
            load: call("load", 11),
            save: call("save", 33),
            unlock: call("unlock", 3),
            try_load_runnable: call("try_load_runnable", 5),
            next_runnable: call("next_runnable", 1),
            activatable: call("activatable", 1),
            create_owner: call("create_owner", 7),
            renew_lease: call("renew_lease", 3),
            delete_owner: call("delete_owner", 2),
            owners: format!(
                "select id, host_type, metadata, metadata_encoding, machine, created_at, \
                 lease_expires_at from \"{s}\".owners order by created_at, id"
            ),
        }
    }
}

/// A parameter with its type, as `query_typed` takes it (no extra round trip to describe the
/// statement).
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn ids(list: &[InstanceId]) -> Vec<uuid::Uuid> {
    list.iter().map(InstanceId::as_uuid).collect()
}

impl PgProvider {
    /// Opens the store at `url` (`postgres://USER@HOST:PORT/DATABASE?schema=NAME`) on the
    /// server's clock, creating its schema if missing.
    pub async fn open(url: &str) -> Result<Arc<Self>, StoreError> {
        Self::open_with(url, PgOptions::default(), PgClock::Server).await
    }

    /// Opens the store at `url` with `options` (URL parameters override them) and `clock`.
    pub async fn open_with(
        url: &str,
        options: PgOptions,
        clock: PgClock,
    ) -> Result<Arc<Self>, StoreError> {
        let (config, options) = options::parse_url(url, options)?;
        let server = options::describe_server(&config);
        let schema = options.schema.clone();

        // One connection first: it says clearly whether the server is there and who we are.
        let (mut client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| error_map::map_connect(&e, &server))?;
        let driver = tokio::spawn(connection);
        schema::prepare(&mut client, &schema, options.migrate, &server).await?;
        let skew = clock::measure_skew(&client).await.map_err(error_map::map)?;
        drop(client);
        driver.abort();

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::invalid(format!("connection pool: {e}")))?;

        let wake = Arc::new(watch::Sender::new(0u64));
        let listener = listener::spawn(config, schema::channel(&schema), wake.clone());
        let (pinned, clock): (Option<SharedClock>, SharedClock) = match clock {
            PgClock::Server => (None, Arc::new(ServerClock::new(skew))),
            PgClock::Pinned(c) => (Some(c.clone()), c),
        };
        Ok(Arc::new(Self {
            pool,
            sql: Statements::new(&schema),
            schema,
            server,
            pinned,
            clock,
            wake,
            listener,
            deltas_vacuumed: std::sync::Mutex::new(None),
        }))
    }

    /// The schema holding this store.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the store's schema with everything in it (`instore store drop`, test clean-up).
    pub async fn drop_store(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        schema::drop_schema(&client, &self.schema).await
    }

    /// Test hook: damages an instance's stored data blob (its checksum no longer matches).
    /// Returns whether the instance exists.
    pub async fn corrupt_instance_data(&self, instance: InstanceId) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                &format!(
                    "update \"{}\".instance_data set data = '\\xdeadbeef'::bytea where id = $1",
                    self.schema
                ),
                &[&instance.as_uuid()],
            )
            .await
            .map_err(error_map::map)?;
        Ok(n == 1)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| error_map::pool(e, &self.server))
    }

    /// The instant a call judges by: `None` lets the server read its own clock.
    fn now(&self) -> Option<i64> {
        self.pinned.as_ref().map(|c| c.now().as_micros())
    }

    /// One round trip: the statement, parsed, bound and executed in one exchange. The outer
    /// error is a pool failure (no connection), the inner one the driver's.
    async fn call(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Result<Vec<Row>, tokio_postgres::Error>, StoreError> {
        let mut guard = Abandoned(Some(self.client().await?));
        let mut attempts = 0;
        let result = loop {
            let Some(client) = guard.0.as_ref() else {
                unreachable!("the connection is only taken when the call is dropped");
            };
            let result = client.query_typed(sql, params).await;
            // A deadlock or serialization failure rolled the whole call back, so running it
            // again is safe; only then does a command take more than one round trip.
            match &result {
                Err(e) if error_map::is_retryable(e) && attempts < 3 => attempts += 1,
                _ => break result,
            }
        };
        // Answered: the connection goes back to the pool.
        drop(guard.0.take());
        Ok(result)
    }

    async fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        self.call(sql, params).await?.map_err(error_map::map)
    }

    async fn one(&self, sql: &str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        self.rows(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                StoreError::Storage(instore::StorageError::corrupt(format!(
                    "{sql} returned no row"
                )))
            })
    }

    async fn save_once(
        &self,
        owner: OwnerId,
        request: &SaveRequest,
        resolved: Option<(instore::EncodedBag, Json, String)>,
    ) -> Result<Result<InstanceSnapshot, Rule>, StoreError> {
        let save = &request.save;
        let rules = &request.rules;
        let encoded = match (&resolved, &save.data) {
            (Some((data, _, _)), _) => Some(data.clone()),
            (None, Some(data)) => Some(encode(data, &rules.encoding)),
            (None, None) => None,
        };
        let droppable = resolved.is_none()
            && save
                .data
                .as_ref()
                .is_some_and(|d| d.values().any(instore::InstanceValue::is_optional));
        let (delete, set) = codec::flatten_changes(&save.metadata_changes);
        let (metadata, base) = match &resolved {
            Some((_, m, b)) => (Some(m.clone()), Some(b.clone())),
            None => (None, None),
        };
        let assoc: Vec<uuid::Uuid> = save
            .keys_to_associate
            .iter()
            .map(|k| k.key.as_uuid())
            .collect();
        let assoc_encoded: Vec<instore::EncodedBag> = save
            .keys_to_associate
            .iter()
            .map(|k| encode(&k.metadata, &Default::default()))
            .collect();
        let assoc_metadata: Vec<&[u8]> = assoc_encoded.iter().map(|e| e.bytes.as_slice()).collect();
        let assoc_encodings: Vec<i16> = assoc_encoded.iter().map(|e| e.encoding.code()).collect();
        let complete: Vec<uuid::Uuid> = save.keys_to_complete.iter().map(|k| k.as_uuid()).collect();
        let free: Vec<uuid::Uuid> = save.keys_to_free.iter().map(|k| k.as_uuid()).collect();
        let (suspend, reason, ex_name, ex_message): (
            i16,
            Option<&str>,
            Option<&str>,
            Option<&str>,
        ) = match &save.suspend {
            SuspendChange::Unchanged => (0, None, None, None),
            SuspendChange::Suspend { reason, exception } => (
                1,
                Some(reason.as_str()),
                exception.as_ref().map(|e| e.name.as_str()),
                exception.as_ref().map(|e| e.message.as_str()),
            ),
            SuspendChange::Unsuspend => (2, None, None, None),
        };
        let now = self.now();
        let id = request.instance.as_uuid();
        let held = request
            .held_version
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let busy = ids(&request.busy);
        let has_data = encoded.is_some();
        let data_bytes: Option<&[u8]> = encoded.as_ref().map(|e| e.bytes.as_slice());
        let data_encoding: Option<i16> = encoded.as_ref().map(|e| e.encoding.code());
        let data_len: Option<i64> = encoded
            .as_ref()
            .map(|e| i64::try_from(e.logical_len).unwrap_or(i64::MAX));
        let timer = save.timer.map(|t| t.as_micros());
        let status = save.status.code();
        let limit = i64::try_from(rules.max_payload_bytes).unwrap_or(i64::MAX);
        let delete_all = rules.completion == CompletionAction::DeleteAll;
        let promoted = request.promoted.as_ref().map(codec::promoted);
        let (promoted_names, promoted_texts, promoted_values) = match &promoted {
            Some(p) => (Some(&p.names), Some(&p.texts), Some(&p.values)),
            None => (None, None, None),
        };
        let params: [Param<'_>; 33] = [
            (&now, Type::INT8),
            (&owner.as_uuid(), Type::UUID),
            (&id, Type::UUID),
            (&held, Type::INT8),
            (&busy, Type::UUID_ARRAY),
            (&has_data, Type::BOOL),
            (&data_bytes, Type::BYTEA),
            (&data_encoding, Type::INT2),
            (&data_len, Type::INT8),
            (&droppable, Type::BOOL),
            (&delete, Type::TEXT_ARRAY),
            (&set, Type::JSONB),
            (&metadata, Type::JSONB),
            (&base, Type::TEXT),
            (&assoc, Type::UUID_ARRAY),
            (&assoc_metadata, Type::BYTEA_ARRAY),
            (&assoc_encodings, Type::INT2_ARRAY),
            (&complete, Type::UUID_ARRAY),
            (&free, Type::UUID_ARRAY),
            (&timer, Type::INT8),
            (&status, Type::INT2),
            (&save.bookmarks, Type::TEXT_ARRAY),
            (&suspend, Type::INT2),
            (&reason, Type::TEXT),
            (&ex_name, Type::TEXT),
            (&ex_message, Type::TEXT),
            (&save.complete, Type::BOOL),
            (&save.unlock, Type::BOOL),
            (&limit, Type::INT8),
            (&delete_all, Type::BOOL),
            (&promoted_names, Type::TEXT_ARRAY),
            (&promoted_texts, Type::TEXT_ARRAY),
            (&promoted_values, Type::BYTEA_ARRAY),
        ];
        let rows = match self.call(&self.sql.save, &params).await? {
            Ok(rows) => rows,
            Err(e) => {
                return match rule_of(&e) {
                    Some(rule) if rule.name == "resolve_size" || rule.name == "metadata_moved" => {
                        Ok(Err(rule))
                    }
                    _ => Err(error_map::map(e)),
                }
            }
        };
        let row = rows.first().ok_or_else(|| {
            StoreError::Storage(instore::StorageError::corrupt("save returned no row"))
        })?;
        // The data stored is the data sent: decode it only if optional values were dropped.
        let in_hand = match (&resolved, &save.data) {
            (Some((data, _, _)), _) => Some(decode(data.encoding, &data.bytes)?),
            (None, data) => data.clone(),
        };
        codec::snapshot(row, in_hand)?.map(Ok).ok_or_else(|| {
            StoreError::Storage(instore::StorageError::corrupt("save returned no instance"))
        })
    }
}

/// A pooled connection with a statement in flight. Dropped before the answer came (the command
/// was cut off by its timeout), it cancels the statement on the server and leaves the pool for
/// good: a later command must never queue behind the abandoned one, which could otherwise still
/// take effect after the runtime has released the lock and handed the instance on.
struct Abandoned(Option<deadpool_postgres::Object>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(object) = self.0.take() else { return };
        let token = object.cancel_token();
        let client = deadpool_postgres::Object::take(object);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(NoTls).await {
                    tracing::debug!(error = %e, "cancelling an abandoned statement failed");
                }
                drop(client);
            });
        }
    }
}

#[async_trait::async_trait]
impl PersistenceProvider for PgProvider {
    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn wake_ups(&self) -> WakeUps {
        self.wake.subscribe()
    }

    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        let lease = owner.lease;
        let mut info = owner.register(Timestamp::from_micros(0));
        let metadata = encode(&info.metadata, &Default::default());
        let now = self.now();
        let row = self
            .one(
                &self.sql.create_owner,
                &[
                    (&now, Type::INT8),
                    (&info.id.as_uuid(), Type::UUID),
                    (&info.host_type, Type::TEXT),
                    (&metadata.bytes, Type::BYTEA),
                    (&metadata.encoding.code(), Type::INT2),
                    (&info.machine, Type::TEXT),
                    (&micros(lease), Type::INT8),
                ],
            )
            .await?;
        let created = Timestamp::from_micros(row.get(0));
        info.created_at = created;
        info.lease_expires_at = created.plus(lease);
        Ok(info)
    }

    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        let now = self.now();
        let row = self
            .one(
                &self.sql.renew_lease,
                &[
                    (&now, Type::INT8),
                    (&owner.as_uuid(), Type::UUID),
                    (&micros(lease), Type::INT8),
                ],
            )
            .await?;
        Ok(match row.get::<_, Option<i64>>(0) {
            None => LeaseState::Missing,
            Some(-1) => LeaseState::Expired,
            Some(t) => LeaseState::Renewed {
                expires_at: Timestamp::from_micros(t),
            },
        })
    }

    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        let now = self.now();
        self.rows(
            &self.sql.delete_owner,
            &[(&now, Type::INT8), (&owner.as_uuid(), Type::UUID)],
        )
        .await?;
        Ok(())
    }

    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        let (id, key, accept, new_keys) = match &request.target {
            LoadTarget::Id {
                instance,
                accept_uninitialized,
            } => (*instance, None, *accept_uninitialized, &[][..]),
            LoadTarget::Key {
                key,
                accept_uninitialized,
                create_with_id,
                keys_to_associate,
            } => (
                create_with_id.unwrap_or_default(),
                Some(key.as_uuid()),
                *accept_uninitialized,
                keys_to_associate.as_slice(),
            ),
        };
        let keys: Vec<uuid::Uuid> = new_keys.iter().map(|k| k.key.as_uuid()).collect();
        let encoded: Vec<instore::EncodedBag> = new_keys
            .iter()
            .map(|k| encode(&k.metadata, &Default::default()))
            .collect();
        let key_metadata: Vec<&[u8]> = encoded.iter().map(|e| e.bytes.as_slice()).collect();
        let key_encodings: Vec<i16> = encoded.iter().map(|e| e.encoding.code()).collect();
        let now = self.now();
        let held = request
            .held_version
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let busy = ids(&request.busy);
        let row = self
            .one(
                &self.sql.load,
                &[
                    (&now, Type::INT8),
                    (&owner.as_uuid(), Type::UUID),
                    (&held, Type::INT8),
                    (&id.as_uuid(), Type::UUID),
                    (&key, Type::UUID),
                    (&accept, Type::BOOL),
                    (&keys, Type::UUID_ARRAY),
                    (&key_metadata, Type::BYTEA_ARRAY),
                    (&key_encodings, Type::INT2_ARRAY),
                    (&busy, Type::UUID_ARRAY),
                    (&request.guards.reject_suspended, Type::BOOL),
                ],
            )
            .await?;
        codec::snapshot(&row, None)?.ok_or_else(|| {
            StoreError::Storage(instore::StorageError::corrupt("load returned no instance"))
        })
    }

    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        // Almost always one round trip. Only a save whose data holds OPTIONAL values and does
        // not fit the size limit comes back (`resolve_size`): the client drops values (it holds
        // the data), and sends the result with the metadata it merged into, checked unchanged.
        let mut resolved = None;
        for _ in 0..8 {
            match self.save_once(owner, &request, resolved.take()).await? {
                Ok(snapshot) => return Ok(snapshot),
                Err(rule) if rule.name == "resolve_size" => {
                    let data = request.save.data.as_ref().ok_or_else(|| {
                        StoreError::invalid(
                            "the server asked to resolve the size of a save without data",
                        )
                    })?;
                    let merged = rule.detail.get("metadata").cloned().unwrap_or(Json::Null);
                    let base = rule
                        .detail
                        .get("base")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let (metadata, _) = codec::metadata_of(&merged)?;
                    let rules = &request.rules;
                    let (d, m) =
                        encode_within(data, &metadata, rules.max_payload_bytes, &rules.encoding)?;
                    let kept = decode(m.encoding, &m.bytes)?;
                    resolved = Some((d, codec::metadata_json(&kept), base));
                }
                Err(_) => {} // metadata_moved: someone changed it meanwhile; start over.
            }
        }
        Err(StoreError::Storage(instore::StorageError::new(
            instore::StorageErrorKind::Unavailable,
            "the instance's metadata kept changing while a save resolved its size limit",
        )))
    }

    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        let now = self.now();
        self.rows(
            &self.sql.unlock,
            &[
                (&now, Type::INT8),
                (&owner.as_uuid(), Type::UUID),
                (&instance.as_uuid(), Type::UUID),
            ],
        )
        .await?;
        Ok(())
    }

    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        let now = self.now();
        let skip = ids(&request.skip);
        let row = self
            .one(
                &self.sql.try_load_runnable,
                &[
                    (&now, Type::INT8),
                    (&owner.as_uuid(), Type::UUID),
                    (&request.host_type, Type::TEXT),
                    (&request.guards.reject_suspended, Type::BOOL),
                    (&skip, Type::UUID_ARRAY),
                ],
            )
            .await?;
        codec::snapshot(&row, None)
    }

    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        let host_type = host_type.to_owned();
        let row = self
            .one(&self.sql.next_runnable, &[(&host_type, Type::TEXT)])
            .await?;
        Ok(row.get::<_, Option<i64>>(0).map(Timestamp::from_micros))
    }

    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        let now = self.now();
        let rows = self
            .rows(&self.sql.activatable, &[(&now, Type::INT8)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Activatable {
                host_type: r.get(0),
                runnable_count: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            })
            .collect())
    }

    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        let rows = self.rows(&self.sql.owners, &[]).await?;
        rows.iter()
            .map(|r| {
                let metadata: &[u8] = r.get(2);
                Ok(OwnerInfo {
                    id: OwnerId::from_uuid(r.get(0)),
                    host_type: r.get(1),
                    metadata: decode(Encoding::from_code(r.get(3))?, metadata)?,
                    machine: r.get(4),
                    created_at: Timestamp::from_micros(r.get(5)),
                    lease_expires_at: Timestamp::from_micros(r.get(6)),
                })
            })
            .collect()
    }
}

/// Opens an [`InstanceStore`] on the PostgreSQL store at `url`
/// (`postgres://USER@HOST:PORT/DATABASE?schema=NAME&pool_size=N&migrate=true`).
pub async fn open_store(url: &str, settings: StoreSettings) -> Result<InstanceStore, StoreError> {
    let provider = PgProvider::open(url).await?;
    InstanceStore::builder(provider).settings(settings).build()
}
