//! A file written by schema version 1 (before query and control) is refused until migration is
//! asked for, then migrated in place: its instances keep their data, creation and change times,
//! get their last writer's machine, and are found by every query; the new tables work.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use instore::encoding::encode;
use instore::{
    bag, Condition, ControlCommand, ControlProvider, EncodingSettings, GroupBy, GroupCount,
    InstanceFilter, InstanceId, InstanceStatus, KeyId, KeyState, ManualClock, PageRequest,
    PersistenceProvider, PropertyBag, QueryProvider, StoreError, Timestamp, Uuid,
};
use instore_sqlite::{SqliteOptions, SqliteProvider};
use rusqlite::{params, Connection};

const V1: &str = include_str!("../src/migrations/0001_initial.sql");

/// The checksum `schema.rs` records for a migration (FNV-1a, 64 bits).
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

const T0: i64 = 1_700_000_000_000_000;
const OWNER: u128 = 0xaaaa;
const DEAD_OWNER: u128 = 0xbbbb;

/// A schema-1 instance: index in `ids`, state, lock owner, status, suspended, exception,
/// created, updated.
type V1Row = (
    usize,
    i64,
    Option<u128>,
    i64,
    bool,
    Option<&'static str>,
    i64,
    i64,
);

fn blob(bag: &PropertyBag) -> (Vec<u8>, i64, i64) {
    let e = encode(bag, &EncodingSettings::default());
    (e.bytes, i64::from(e.encoding.code()), e.logical_len as i64)
}

/// Writes a schema-1 file the way instore of that version did: application id, schema table,
/// migration 1, an owner and four instances (running and locked, suspended with an exception,
/// completed-terminated, and one locked by an owner that is gone), one with a key.
fn write_v1(path: &Path) -> Vec<InstanceId> {
    let conn = Connection::open(path).expect("test setup");
    conn.execute_batch(&format!(
        "pragma journal_mode = wal;
         pragma application_id = {};
         create table instore_schema (version integer primary key, checksum text not null, applied_at integer not null);",
        0x696e_7374
    ))
    .expect("test setup");
    conn.execute_batch(V1).expect("test setup");
    conn.execute(
        "insert into instore_schema values (1, ?1, ?2)",
        params![checksum(V1), T0],
    )
    .expect("test setup");
    let (m, me, _) = blob(&bag([("role", "worker")]));
    conn.execute(
        "insert into owners values (?1, 'orders', ?2, ?3, 'old-host', ?4, ?5)",
        params![
            Uuid::from_u128(OWNER).as_bytes().as_slice(),
            m,
            me,
            T0,
            T0 + 3_600_000_000
        ],
    )
    .expect("test setup");
    let ids: Vec<InstanceId> = (1..=4u128)
        .map(|i| InstanceId::from_uuid(Uuid::from_u128(i)))
        .collect();
    let (data, de, dl) = blob(&bag([("orders:total", 42i64)]));
    let (meta, me, ml) = blob(&bag([("site", "eu-1")]));
    let rows: [V1Row; 4] = [
        (0, 2, Some(OWNER), 1, false, None, T0, T0 + 5),
        (1, 2, None, 2, true, Some("Timeout"), T0 + 10, T0 + 20),
        (2, 3, None, 6, false, None, T0 + 30, T0 + 40),
        (3, 2, Some(DEAD_OWNER), 2, false, None, T0 + 50, T0 + 60),
    ];
    for (i, state, lock, status, suspended, exception, created, updated) in rows {
        let lock = lock.map(|o| Uuid::from_u128(o).as_bytes().to_vec());
        conn.execute(
            "insert into instances (id, state, lock_owner, last_lock_owner, lock_version, status, timer, ready_at, \
             suspended, suspension_reason, exception_name, exception_message, host_type, bookmarks, created_at, \
             updated_at, data, data_encoding, data_len, metadata, metadata_encoding, metadata_len) \
             values (?1, ?2, ?3, ?4, 1, ?5, null, null, ?6, ?7, ?8, ?9, 'orders', '[\"approve\"]', ?10, ?11, ?12, ?13, \
             ?14, ?15, ?16, ?17)",
            params![
                ids[i].as_uuid().as_bytes().as_slice(),
                state,
                lock,
                Uuid::from_u128(OWNER).as_bytes().as_slice(),
                status,
                suspended,
                suspended.then_some("fault"),
                exception,
                exception.map(|_| "too slow"),
                created,
                updated,
                data,
                de,
                dl,
                meta,
                me,
                ml,
            ],
        )
        .expect("test setup");
    }
    let (km, kme, _) = blob(&PropertyBag::new());
    conn.execute(
        "insert into keys values (?1, ?2, 1, ?3, ?4)",
        params![
            Uuid::from_u128(0x4e7).as_bytes().as_slice(),
            ids[0].as_uuid().as_bytes().as_slice(),
            km,
            kme
        ],
    )
    .expect("test setup");
    ids
}

async fn open(path: &Path, migrate: bool) -> Result<Arc<SqliteProvider>, StoreError> {
    let clock = ManualClock::new(Timestamp::from_micros(T0 + 1_000_000));
    SqliteProvider::open_with(
        path,
        SqliteOptions {
            migrate,
            ..SqliteOptions::default()
        },
        Arc::new(clock),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_file_is_migrated_and_its_instances_are_found_by_queries() {
    let dir = tempfile::tempdir().expect("test setup");
    let path = dir.path().join("v1.db");
    let ids = write_v1(&path);

    let refused = open(&path, false)
        .await
        .expect_err("an older schema needs migrate");
    assert!(
        format!("{refused:?}").contains("schema version 1"),
        "{refused:?}"
    );

    let p = open(&path, true).await.expect("migrated");
    let all = p
        .query(&InstanceFilter::all(), &PageRequest::default())
        .await
        .expect("query");
    let found: Vec<InstanceId> = all.items.iter().map(|i| i.id).collect();
    assert_eq!(found, vec![ids[3], ids[2], ids[1], ids[0]], "newest first");
    let first = &all.items[3];
    assert_eq!(first.created_at, Timestamp::from_micros(T0));
    assert_eq!(first.updated_at, Timestamp::from_micros(T0 + 5));
    assert_eq!(first.updated_by.as_deref(), Some("old-host"));
    assert_eq!(first.machine.as_deref(), Some("old-host"));
    assert_eq!(first.condition, Condition::Active);
    assert_eq!(first.locked_since, Some(Timestamp::from_micros(T0 + 5)));
    assert_eq!(
        first.keys.get(&KeyId::from_uuid(Uuid::from_u128(0x4e7))),
        Some(&KeyState::Associated)
    );
    assert_eq!(first.bookmarks, vec!["approve".to_owned()]);
    assert_eq!(all.items[2].condition, Condition::Exception);
    assert_eq!(all.items[1].condition, Condition::Terminated);
    assert_eq!(all.items[1].locked_since, None);
    // Locked by an owner that is gone: no machine of a live holder, the last writer's.
    assert_eq!(all.items[0].owner_machine, None);
    assert_eq!(all.items[0].machine.as_deref(), Some("old-host"));

    let count = |filter: InstanceFilter| {
        let p = p.clone();
        async move { p.count(&filter).await.expect("count") }
    };
    assert_eq!(
        count(InstanceFilter {
            status: vec![InstanceStatus::Running],
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(InstanceFilter {
            exception: Some("Timeout".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(InstanceFilter {
            key: Some(KeyId::from_uuid(Uuid::from_u128(0x4e7))),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        p.group_count(&InstanceFilter::all(), GroupBy::Status)
            .await
            .expect("groups"),
        vec![
            GroupCount {
                key: Some("Completed".into()),
                count: 1
            },
            GroupCount {
                key: Some("Running".into()),
                count: 2
            },
            GroupCount {
                key: Some("Suspended".into()),
                count: 1
            },
        ]
    );

    // The new tables work on the migrated file, and it reopens without migrating again.
    p.enqueue(ids[1], ControlCommand::Resume)
        .await
        .expect("enqueue");
    assert_eq!(p.queued(None, 10).await.expect("queued").len(), 1);
    p.renew_lease(
        instore::OwnerId::from_uuid(Uuid::from_u128(OWNER)),
        Duration::from_secs(60),
    )
    .await
    .expect("renew");
    drop(p);
    let again = open(&path, false)
        .await
        .expect("reopened at the new schema");
    assert_eq!(
        again
            .count(&InstanceFilter {
                has_pending_command: Some(true),
                ..Default::default()
            })
            .await
            .expect("count"),
        1
    );
}
