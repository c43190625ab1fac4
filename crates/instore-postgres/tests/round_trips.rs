//! Every command is one round trip (DESIGN "Providers"), control commands and queries included
//! (`enqueue`, `delete`, `read_batch`, `complete`, `abandon`, `query`, ...): the provider talks
//! to the server through a counting TCP proxy that reads the frontend protocol and records each
//! message; every provider operation must send exactly one `Sync` (the end of one
//! extended-protocol exchange: parse, bind, execute) and no simple query.
//!
//! Counting on the wire, not in the provider, means a helper query added later (a describe, a
//! `SET`, a second statement) is caught whatever code path sends it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    bag, Clock, CommandFailure, ControlCommand, ControlProvider, GroupBy, InstanceFilter,
    InstanceId, InstanceStatus, KeyId, LeaseState, LoadGuards, LoadRequest, LoadTarget,
    ManualClock, NewOwner, PageRequest, PersistenceProvider, PropertyBag, QueryProvider,
    QueueSettings, RunnableRequest, Save, SaveRequest, SaveRules, StoreSettings,
};
use instore_postgres::{PgClock, PgOptions, PgProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One frontend message seen by the proxy: its type byte and, for `Parse`/`Query`, the SQL.
#[derive(Debug, Clone)]
struct Message {
    kind: u8,
    sql: String,
}

/// A TCP proxy in front of the server recording every frontend message.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<Message>>>,
}

impl Proxy {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect((upstream.0.as_str(), upstream.1))
                    .await
                    .expect("connect upstream");
                let log = shared.clone();
                tokio::spawn(pump(client, server, log));
            }
        });
        Self { port, log }
    }

    fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

/// Copies both directions, parsing the client's side into messages.
async fn pump(client: TcpStream, server: TcpStream, log: Arc<Mutex<Vec<Message>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    // The startup message has no type byte: a length, then its body.
    let Ok(len) = client_read.read_u32().await else {
        return;
    };
    let mut body = vec![0; len as usize - 4];
    if client_read.read_exact(&mut body).await.is_err() {
        return;
    }
    let _ = server_write.write_u32(len).await;
    let _ = server_write.write_all(&body).await;
    loop {
        let Ok(kind) = client_read.read_u8().await else {
            return;
        };
        let Ok(len) = client_read.read_u32().await else {
            return;
        };
        let mut body = vec![0; len as usize - 4];
        if client_read.read_exact(&mut body).await.is_err() {
            return;
        }
        let sql = match kind {
            // Parse: statement name, then the query text (both NUL-terminated).
            b'P' => body
                .split(|b| *b == 0)
                .nth(1)
                .map(|q| String::from_utf8_lossy(q).into_owned())
                .unwrap_or_default(),
            b'Q' => String::from_utf8_lossy(&body)
                .trim_end_matches('\0')
                .to_owned(),
            _ => String::new(),
        };
        log.lock().expect("log").push(Message { kind, sql });
        let mut frame = vec![kind];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&body);
        if server_write.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// The messages of one operation, minus background work nobody waits for: the notification
/// listener's own `LISTEN`, and the `VACUUM` of the count deltas (with its `SET lock_timeout`) a
/// count may start on another connection (`manage.rs`, `vacuum_count_deltas`).
fn exchanges(messages: &[Message]) -> (usize, usize, Vec<String>) {
    let relevant: Vec<&Message> = messages
        .iter()
        .filter(|m| {
            let sql = m.sql.to_ascii_lowercase();
            !sql.starts_with("listen")
                && !sql.starts_with("vacuum")
                && !sql.starts_with("set lock_timeout")
        })
        .collect();
    let syncs = relevant.iter().filter(|m| m.kind == b'S').count();
    let simple = relevant.iter().filter(|m| m.kind == b'Q').count();
    let parsed = relevant
        .iter()
        .filter(|m| m.kind == b'P')
        .map(|m| m.sql.clone())
        .collect();
    (syncs, simple, parsed)
}

fn upstream() -> (String, u16) {
    let config: tokio_postgres::Config = support::server_url().parse().expect("server URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// Runs `op` and asserts it cost exactly one round trip: one statement, one `Sync`.
async fn one_round_trip<T, F>(proxy: &Proxy, what: &str, op: F) -> T
where
    F: std::future::Future<Output = T>,
{
    // Let the listener's connection settle so its traffic is not mistaken for ours.
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.take();
    let out = op.await;
    let (syncs, simple, parsed) = exchanges(&proxy.take());
    assert_eq!(
        (syncs, simple, parsed.len()),
        (1, 0, 1),
        "{what}: expected one extended-protocol exchange, saw {syncs} syncs, {simple} simple \
         queries, statements {parsed:?}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_operation_is_one_round_trip() {
    let proxy = Proxy::start(upstream()).await;
    let schema = support::fresh_schema();
    let _guard = support::SchemaGuard(schema.clone());
    let config: tokio_postgres::Config = support::server_url().parse().expect("server URL");
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}?schema={schema}",
        config.get_user().unwrap_or("postgres"),
        proxy.port,
        config.get_dbname().unwrap_or("test"),
    );
    let clock = ManualClock::starting_now();
    let p = PgProvider::open_with(
        &url,
        PgOptions {
            pool_size: 2,
            ..PgOptions::default()
        },
        PgClock::Pinned(Arc::new(clock.clone())),
    )
    .await
    .expect("open through the proxy");

    let new_owner = |host_type: &str| NewOwner {
        host_type: Some(host_type.to_owned()),
        metadata: bag([("host", "a")]),
        lease: Duration::from_secs(60),
        machine: "test".to_owned(),
    };
    let owner = one_round_trip(&proxy, "create_owner", p.create_owner(new_owner("orders")))
        .await
        .expect("owner")
        .id;
    let renewed = one_round_trip(
        &proxy,
        "renew_lease",
        p.renew_lease(owner, Duration::from_secs(60)),
    )
    .await
    .expect("renew");
    assert!(matches!(renewed, LeaseState::Renewed { .. }));

    let rules = SaveRules {
        max_payload_bytes: 1 << 20,
        encoding: Default::default(),
        completion: StoreSettings::default().completion,
    };
    let id = InstanceId::new();
    let key = KeyId::new();
    let save = |save: Save, held: Option<u64>| SaveRequest {
        instance: id,
        held_version: held,
        busy: Vec::new(),
        save,
        rules,
        promoted: None,
    };
    // An acquiring save creating the instance with a key, metadata and a timer.
    let first = Save {
        keys_to_associate: vec![key.into()],
        metadata_changes: vec![(
            "orders:customer".into(),
            instore::MetadataChange::Set("ada".into()),
        )],
        timer: Some(clock.now()),
        ..Save::data(bag([("step", 1i64)]))
    };
    let snap = one_round_trip(&proxy, "save (acquiring)", p.save(owner, save(first, None)))
        .await
        .expect("save");
    let version = snap.lock_version;
    let held_save = Save {
        timer: Some(clock.now()),
        ..Save::data(bag([("step", 2i64)]))
    };
    one_round_trip(
        &proxy,
        "save (held)",
        p.save(owner, save(held_save, Some(version))),
    )
    .await
    .expect("held save");
    let reread = LoadRequest {
        target: LoadTarget::Id {
            instance: id,
            accept_uninitialized: false,
        },
        held_version: Some(version),
        busy: Vec::new(),
        guards: LoadGuards::default(),
    };
    one_round_trip(&proxy, "load (held)", p.load(owner, reread))
        .await
        .expect("reread");
    one_round_trip(&proxy, "unlock", p.unlock(owner, id))
        .await
        .expect("unlock");
    one_round_trip(&proxy, "next_runnable", p.next_runnable("orders"))
        .await
        .expect("next");
    let by_key = LoadRequest {
        target: LoadTarget::Key {
            key,
            accept_uninitialized: false,
            create_with_id: None,
            keys_to_associate: vec![KeyId::new().into()],
        },
        held_version: None,
        busy: Vec::new(),
        guards: LoadGuards::default(),
    };
    one_round_trip(&proxy, "load by key", p.load(owner, by_key))
        .await
        .expect("by key");
    one_round_trip(&proxy, "unlock again", p.unlock(owner, id))
        .await
        .expect("unlock");
    let runnable = RunnableRequest {
        host_type: "orders".into(),
        guards: LoadGuards::default(),
        skip: Vec::new(),
    };
    let found = one_round_trip(
        &proxy,
        "try_load_runnable",
        p.try_load_runnable(owner, runnable),
    )
    .await
    .expect("runnable");
    let found = found.expect("the due instance is runnable");
    assert_eq!(found.instance, id);
    let metadata_only = Save::default().and_unlock();
    one_round_trip(
        &proxy,
        "save (metadata only, unlock)",
        p.save(owner, save(metadata_only, Some(found.lock_version))),
    )
    .await
    .expect("metadata-only save");
    let new_instance = LoadRequest {
        target: LoadTarget::Id {
            instance: InstanceId::new(),
            accept_uninitialized: true,
        },
        held_version: None,
        busy: Vec::new(),
        guards: LoadGuards::default(),
    };
    one_round_trip(&proxy, "load (creating)", p.load(owner, new_instance))
        .await
        .expect("create by load");
    one_round_trip(&proxy, "activatable", p.activatable())
        .await
        .expect("activatable");
    one_round_trip(&proxy, "runnable_backlog", p.runnable_backlog())
        .await
        .expect("runnable_backlog");
    one_round_trip(&proxy, "owners", p.owners())
        .await
        .expect("owners");

    // The control queue and the query side: one statement each too.
    one_round_trip(
        &proxy,
        "enqueue",
        p.enqueue(
            id,
            ControlCommand::Suspend {
                reason: "look".into(),
            },
        ),
    )
    .await
    .expect("enqueue");
    let settings = QueueSettings::default();
    let batch = one_round_trip(&proxy, "read_batch", p.read_batch(&settings, "reader"))
        .await
        .expect("read");
    assert_eq!(batch.len(), 1);
    let failure = CommandFailure {
        code: "instance_locked".into(),
        message: "held".into(),
        machine: "reader".into(),
    };
    one_round_trip(
        &proxy,
        "abandon",
        p.abandon(id, batch[0].lock, failure, &settings),
    )
    .await
    .expect("abandon");
    let batch = one_round_trip(
        &proxy,
        "read_batch again",
        p.read_batch(&settings, "reader"),
    )
    .await
    .expect("read");
    one_round_trip(&proxy, "complete", p.complete(id, batch[0].lock))
        .await
        .expect("complete");
    one_round_trip(&proxy, "queued", p.queued(None, 10))
        .await
        .expect("queued");
    one_round_trip(&proxy, "error_log", p.error_log(10))
        .await
        .expect("error log");
    let filter = InstanceFilter {
        status: vec![InstanceStatus::Running],
        machine: Some("test".into()),
        promoted: vec![("orders:customer".into(), "ada".into())],
        has_pending_command: Some(false),
        ..InstanceFilter::all()
    };
    one_round_trip(
        &proxy,
        "query",
        p.query(&InstanceFilter::all(), &PageRequest::first(10)),
    )
    .await
    .expect("query");
    one_round_trip(
        &proxy,
        "query (filtered)",
        p.query(&filter, &PageRequest::default()),
    )
    .await
    .expect("query");
    one_round_trip(&proxy, "count", p.count(&filter))
        .await
        .expect("count");
    one_round_trip(
        &proxy,
        "group_count",
        p.group_count(&InstanceFilter::all(), GroupBy::Status),
    )
    .await
    .expect("group count");
    one_round_trip(
        &proxy,
        "purge_completed",
        p.purge_completed(clock.now(), 100),
    )
    .await
    .expect("purge");
    one_round_trip(&proxy, "delete", p.delete(id))
        .await
        .expect("delete");

    one_round_trip(&proxy, "delete_owner", p.delete_owner(owner))
        .await
        .expect("delete");

    // An operation that fails is one round trip too (the function raises; nothing to undo).
    let stranger = instore::OwnerId::new();
    let refused = one_round_trip(
        &proxy,
        "save by an unknown owner",
        p.save(stranger, save(Save::data(PropertyBag::new()), None)),
    )
    .await;
    assert!(
        matches!(refused, Err(instore::StoreError::OwnerLost { .. })),
        "{refused:?}"
    );
}
