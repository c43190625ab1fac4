//! The query side and the control queue on PostgreSQL, beyond the conformance suite: the schema's
//! `condition` column against `Condition::of` for every combination, readers sharing a queue
//! never taking the same command, and a store created by schema version 1 migrating to version 2
//! with its instances intact.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, Condition, ControlCommand, ControlProvider, ExceptionInfo, ExecutionStatus, GroupBy,
    GroupCount, InstanceFilter, InstanceId, InstanceState, InstanceStatus, KeyId, LoadGuards,
    LoadRequest, LoadTarget, ManualClock, NewOwner, OwnerId, PageRequest, PersistenceProvider,
    QueryProvider, QueueSettings, Save, SaveRequest, SaveRules, StoreError, StoreSettings,
    Suspension, Value,
};
use instore_postgres::{PgClock, PgOptions, PgProvider};

fn new_owner(machine: &str) -> NewOwner {
    NewOwner {
        host_type: Some("orders".into()),
        metadata: bag([("host", "a")]),
        lease: Duration::from_secs(600),
        machine: machine.into(),
    }
}

fn rules() -> SaveRules {
    SaveRules {
        max_payload_bytes: 1 << 20,
        encoding: Default::default(),
        completion: StoreSettings::default().completion,
    }
}

/// Creates an initialized, unlocked instance.
async fn create(p: &PgProvider, owner: OwnerId) -> InstanceId {
    let id = InstanceId::new();
    p.save(
        owner,
        SaveRequest {
            instance: id,
            held_version: None,
            busy: Vec::new(),
            save: Save::data(bag([("step", 1i64)])).and_unlock(),
            rules: rules(),
            promoted: None,
        },
    )
    .await
    .expect("create an instance");
    id
}

async fn all(p: &PgProvider, filter: &InstanceFilter) -> BTreeSet<InstanceId> {
    let page = p
        .query(filter, &PageRequest::first(1000))
        .await
        .expect("query");
    assert!(page.next.is_none(), "one page holds them all");
    page.items.iter().map(|i| i.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_condition_column_mirrors_condition_of_for_every_combination() {
    let (p, _guard) = support::provider(ManualClock::starting_now()).await;
    let owner = p.create_owner(new_owner("m")).await.expect("owner").id;
    // Every other instance without a host type (its creator has none).
    let typeless = p
        .create_owner(NewOwner {
            host_type: None,
            ..new_owner("m")
        })
        .await
        .expect("owner")
        .id;
    let mut creators = [owner, typeless].into_iter().cycle();
    let suspensions = [
        None,
        Some(Suspension {
            reason: "by hand".into(),
            exception: None,
        }),
        Some(Suspension {
            reason: "faulted".into(),
            exception: Some(ExceptionInfo {
                name: "Boom".into(),
                message: "it broke".into(),
            }),
        }),
    ];
    let statuses = [
        ExecutionStatus::Executing,
        ExecutionStatus::Idle,
        ExecutionStatus::Closed,
        ExecutionStatus::Faulted,
        ExecutionStatus::Canceled,
        ExecutionStatus::Terminated,
    ];
    let states = [
        InstanceState::Uninitialized,
        InstanceState::Initialized,
        InstanceState::Completed,
    ];
    let admin = support::admin().await;
    let mut expected: BTreeMap<Condition, BTreeSet<InstanceId>> = BTreeMap::new();
    for state in states {
        for status in statuses {
            for suspension in &suspensions {
                let id = create(&p, creators.next().expect("cycle")).await;
                let exception = suspension.as_ref().and_then(|s| s.exception.as_ref());
                admin
                    .execute(
                        &format!(
                            "update \"{}\".instances set state = $2, status = $3, \
                             suspended = $4, exception_name = $5 where id = $1",
                            p.schema()
                        ),
                        &[
                            &id.as_uuid(),
                            &state.code(),
                            &status.code(),
                            &suspension.is_some(),
                            &exception.map(|e| e.name.clone()),
                        ],
                    )
                    .await
                    .expect("set the fields");
                expected
                    .entry(Condition::of(state, status, suspension.as_ref()))
                    .or_default()
                    .insert(id);
            }
        }
    }
    for condition in Condition::ALL {
        let filter = InstanceFilter {
            condition: vec![condition],
            ..InstanceFilter::all()
        };
        let found = all(&p, &filter).await;
        assert_eq!(
            found,
            expected.get(&condition).cloned().unwrap_or_default(),
            "{condition}"
        );
        let page = p.query(&filter, &PageRequest::first(1000)).await.unwrap();
        assert!(page.items.iter().all(|i| i.condition == condition));
    }
    for status in InstanceStatus::ALL {
        let filter = InstanceFilter {
            status: vec![status],
            ..InstanceFilter::all()
        };
        let want: BTreeSet<InstanceId> = expected
            .iter()
            .filter(|(c, _)| c.status() == status)
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        assert_eq!(all(&p, &filter).await, want, "{status}");
    }
    // Counts by condition alone come from the maintained totals; any other filter counts rows.
    // Both agree, before and after the pending deltas are folded into the totals, and after a
    // delete.
    let counted_rows = InstanceFilter {
        created_after: Some(instore::Timestamp::from_micros(0)),
        ..InstanceFilter::all()
    };
    let check = |expected: BTreeMap<Condition, BTreeSet<InstanceId>>| {
        let p = p.clone();
        let counted_rows = counted_rows.clone();
        async move {
            let mut want: Vec<GroupCount> = expected
                .iter()
                .filter(|(_, ids)| !ids.is_empty())
                .map(|(c, ids)| GroupCount {
                    key: Some(c.name().to_owned()),
                    count: ids.len() as u64,
                })
                .collect();
            want.sort_by(|a, b| a.key.cmp(&b.key));
            // Every grouping, from the totals and from the rows, with and without a host type.
            for by in GroupBy::ALL {
                for host_type in [None, Some("orders".to_owned())] {
                    let f = |base: &InstanceFilter| InstanceFilter {
                        host_type: host_type.clone(),
                        ..base.clone()
                    };
                    let from_totals = p.group_count(&f(&InstanceFilter::all()), by).await;
                    let from_rows = p.group_count(&f(&counted_rows), by).await;
                    assert_eq!(
                        from_totals.expect("group"),
                        from_rows.expect("group"),
                        "{by:?} {host_type:?}"
                    );
                }
            }
            for filter in [InstanceFilter::all(), counted_rows.clone()] {
                let groups = p
                    .group_count(&filter, GroupBy::Condition)
                    .await
                    .expect("group");
                assert_eq!(groups, want, "{filter:?}");
                let total: usize = expected.values().map(BTreeSet::len).sum();
                assert_eq!(p.count(&filter).await.expect("count"), total as u64);
                let suspended = InstanceFilter {
                    status: vec![InstanceStatus::Suspended],
                    ..filter.clone()
                };
                let want_suspended: usize = expected
                    .iter()
                    .filter(|(c, _)| c.status() == InstanceStatus::Suspended)
                    .map(|(_, ids)| ids.len())
                    .sum();
                assert_eq!(
                    p.count(&suspended).await.expect("count"),
                    want_suspended as u64
                );
            }
        }
    };
    check(expected.clone()).await;
    let deleted = *expected[&Condition::Exception].iter().next().expect("one");
    p.delete(deleted).await.expect("delete");
    expected
        .get_mut(&Condition::Exception)
        .expect("exception")
        .remove(&deleted);
    check(expected.clone()).await;
    admin
        .query(
            &format!("select \"{}\".fold_instance_counts(0)", p.schema()),
            &[],
        )
        .await
        .expect("fold the deltas");
    let pending: i64 = admin
        .query_one(
            &format!(
                "select count(*) from \"{}\".instance_count_deltas",
                p.schema()
            ),
            &[],
        )
        .await
        .expect("deltas")
        .get(0);
    assert_eq!(pending, 0, "folding empties the deltas");
    check(expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_sharing_a_queue_never_take_the_same_command() {
    let clock = ManualClock::starting_now();
    let (p, _guard) = support::provider(clock.clone()).await;
    let owner = p.create_owner(new_owner("m")).await.expect("owner").id;
    let mut ids = BTreeSet::new();
    for _ in 0..120 {
        let id = create(&p, owner).await;
        p.enqueue(id, ControlCommand::Cancel)
            .await
            .expect("enqueue");
        ids.insert(id);
    }
    // Four readers, each with its own connections, reading and completing at once.
    let mut readers = Vec::new();
    for n in 0..4 {
        let reader = PgProvider::open_with(
            &support::store_url(p.schema()),
            PgOptions {
                pool_size: 2,
                ..PgOptions::default()
            },
            PgClock::Pinned(Arc::new(clock.clone())),
        )
        .await
        .expect("open a reader");
        readers.push(tokio::spawn(async move {
            let settings = QueueSettings {
                batch_size: 7,
                ..QueueSettings::default()
            };
            let mut taken = Vec::new();
            loop {
                let batch = reader
                    .read_batch(&settings, &format!("reader-{n}"))
                    .await
                    .expect("read");
                if batch.is_empty() {
                    return taken;
                }
                for command in batch {
                    reader
                        .complete(command.instance, command.lock)
                        .await
                        .expect("a command read is this reader's to complete");
                    taken.push(command.instance);
                }
            }
        }));
    }
    let mut seen = Vec::new();
    for reader in readers {
        seen.extend(reader.await.expect("reader"));
    }
    let distinct: BTreeSet<InstanceId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), distinct.len(), "a command was taken twice");
    assert_eq!(distinct, ids, "every command was taken once");
    assert!(p.queued(None, 1000).await.expect("queue").is_empty());
}

/// FNV-1a, 64 bits: the schema's migration checksum (schema.rs).
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_store_migrates_to_version_2_and_keeps_its_instances() {
    let schema = support::fresh_schema();
    let _guard = support::SchemaGuard(schema.clone());
    let v1 = include_str!("../src/migrations/0001_initial.sql");
    let s = format!("\"{schema}\"");
    let admin = support::admin().await;
    admin
        .batch_execute(&format!(
            "create schema {s}; create table {s}.instore_schema (version int primary key, \
             checksum text not null, applied_at timestamptz not null default now()); {}",
            v1.replace("{{s}}", &s)
                .replace("{{channel}}", &format!("'instore_{schema}'"))
        ))
        .await
        .expect("a version 1 store");
    admin
        .execute(
            &format!("insert into {s}.instore_schema (version, checksum) values (1, $1)"),
            &[&checksum(v1)],
        )
        .await
        .expect("record version 1");

    // Instances written by version 1's functions: one locked, one unlocked with a key, one
    // completed (terminated), one suspended with an exception.
    let owner = uuid::Uuid::new_v4();
    admin
        .execute(
            &format!(
                "select {s}.create_owner(null, $1, 'orders', '\\x00'::bytea, 1::int2, \
                 'old-box', 600000000)"
            ),
            &[&owner],
        )
        .await
        .expect("owner");
    let [locked, keyed, done, suspended] = [(); 4].map(|_| uuid::Uuid::new_v4());
    for id in [locked, keyed, done, suspended] {
        admin
            .execute(
                &format!(
                    "select {s}.load(null, $1, null, $2, null, true, '{{}}', '{{}}', '{{}}', \
                     '{{}}', false)"
                ),
                &[&owner, &id],
            )
            .await
            .expect("create by load");
    }
    for id in [keyed, done, suspended] {
        admin
            .execute(&format!("select {s}.unlock(null, $1, $2)"), &[&owner, &id])
            .await
            .expect("unlock");
    }
    let key = uuid::Uuid::new_v4();
    admin
        .batch_execute(&format!(
            "insert into {s}.keys values ('{key}', '{keyed}', 1, '\\x00'::bytea, 1); \
             update {s}.instances set state = 3, status = 6 where id = '{done}'; \
             update {s}.instances set state = 2, suspended = true, suspension_reason = 'r', \
                 exception_name = 'Boom', exception_message = 'm' where id = '{suspended}'"
        ))
        .await
        .expect("shape the rows");

    // Without leave to migrate, the store is refused unchanged.
    let refused = PgProvider::open_with(
        &support::store_url(&schema),
        PgOptions::default(),
        PgClock::Server,
    )
    .await;
    let e = refused.expect_err("an old schema needs leave to migrate");
    assert!(
        e.to_string().contains("migrate") || format!("{e:?}").contains("migrate"),
        "{e:?}"
    );

    let p = PgProvider::open_with(
        &support::store_url(&schema),
        PgOptions {
            migrate: true,
            pool_size: 2,
            ..PgOptions::default()
        },
        PgClock::Server,
    )
    .await
    .expect("migrate to version 2");

    let page = p
        .query(&InstanceFilter::all(), &PageRequest::first(10))
        .await
        .expect("query");
    let info: BTreeMap<uuid::Uuid, &instore::InstanceInfo> =
        page.items.iter().map(|i| (i.id.as_uuid(), i)).collect();
    assert_eq!(info.len(), 4, "every instance is still there");
    let l = info[&locked];
    assert_eq!(l.owner, Some(OwnerId::from_uuid(owner)));
    assert!(l.locked_since.is_some(), "a held lock has a start");
    assert_eq!(l.updated_by.as_deref(), Some("old-box"));
    assert_eq!(l.machine.as_deref(), Some("old-box"));
    assert_eq!(l.status, InstanceStatus::Running);
    assert!(info[&keyed].locked_since.is_none());
    assert!(info[&keyed].keys.contains_key(&KeyId::from_uuid(key)));
    assert_eq!(info[&done].condition, Condition::Terminated);
    assert_eq!(info[&suspended].condition, Condition::Exception);
    let by_exception = InstanceFilter {
        exception: Some("Boom".into()),
        ..InstanceFilter::all()
    };
    assert_eq!(
        all(&p, &by_exception).await,
        BTreeSet::from([InstanceId::from_uuid(suspended)])
    );
    let by_key = InstanceFilter {
        key: Some(KeyId::from_uuid(key)),
        ..InstanceFilter::all()
    };
    assert_eq!(
        all(&p, &by_key).await,
        BTreeSet::from([InstanceId::from_uuid(keyed)])
    );
    let groups = p
        .group_count(&InstanceFilter::all(), GroupBy::Status)
        .await
        .expect("group");
    let count = |k: &str| {
        groups
            .iter()
            .find(|g| g.key.as_deref() == Some(k))
            .map_or(0, |g| g.count)
    };
    assert_eq!(
        (count("Running"), count("Suspended"), count("Completed")),
        (2, 1, 1)
    );

    // The migrated store works on: a new owner takes the unlocked instance and saves it with a
    // promoted value; commands queue; delete removes.
    let fresh = p
        .create_owner(new_owner("new-box"))
        .await
        .expect("owner")
        .id;
    let loaded = p
        .load(
            fresh,
            LoadRequest {
                target: LoadTarget::Id {
                    instance: InstanceId::from_uuid(keyed),
                    accept_uninitialized: true,
                },
                held_version: None,
                busy: Vec::new(),
                guards: LoadGuards::default(),
            },
        )
        .await
        .expect("load a migrated instance");
    p.save(
        fresh,
        SaveRequest {
            instance: InstanceId::from_uuid(keyed),
            held_version: Some(loaded.lock_version),
            busy: Vec::new(),
            save: Save::data(bag([("orders:total", 42i64)])).and_unlock(),
            rules: rules(),
            promoted: Some(BTreeMap::from([("orders:total".into(), Value::Int(42))])),
        },
    )
    .await
    .expect("save it");
    let by_total = InstanceFilter {
        promoted: vec![("orders:total".into(), "42".into())],
        ..InstanceFilter::all()
    };
    let page = p
        .query(&by_total, &PageRequest::first(10))
        .await
        .expect("query");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].updated_by.as_deref(), Some("new-box"));
    assert_eq!(
        page.items[0].promoted.get("orders:total"),
        Some(&Value::Int(42))
    );
    p.enqueue(InstanceId::from_uuid(keyed), ControlCommand::Resume)
        .await
        .expect("enqueue");
    p.delete(InstanceId::from_uuid(locked))
        .await
        .expect("delete");
    let gone = p.delete(InstanceId::from_uuid(locked)).await;
    assert!(
        matches!(gone, Err(StoreError::InstanceNotFound { .. })),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_machine_follow_the_live_lock_holder() {
    let clock = ManualClock::starting_now();
    let (p, _guard) = support::provider(clock.clone()).await;
    let owner = |machine: &str, lease: u64| NewOwner {
        lease: Duration::from_secs(lease),
        ..new_owner(machine)
    };
    let writer = p.create_owner(owner("a", 600)).await.expect("owner").id;
    let ids = [
        create(&p, writer).await,
        create(&p, writer).await,
        create(&p, writer).await,
    ];
    let lock = |o: OwnerId, id: InstanceId| {
        let p = p.clone();
        async move {
            p.load(
                o,
                LoadRequest {
                    target: LoadTarget::Id {
                        instance: id,
                        accept_uninitialized: false,
                    },
                    held_version: None,
                    busy: Vec::new(),
                    guards: LoadGuards::default(),
                },
            )
            .await
            .expect("lock")
        }
    };
    // A live owner on b holds the first; an owner on c whose lease ends holds the second; a
    // live owner on a holds the third.
    let on_b = p.create_owner(owner("b", 600)).await.expect("owner").id;
    let on_c = p.create_owner(owner("c", 10)).await.expect("owner").id;
    let on_a = p.create_owner(owner("a", 600)).await.expect("owner").id;
    lock(on_b, ids[0]).await;
    lock(on_c, ids[1]).await;
    lock(on_a, ids[2]).await;
    clock.advance(Duration::from_secs(20));

    let counted_rows = InstanceFilter {
        created_after: Some(instore::Timestamp::from_micros(0)),
        ..InstanceFilter::all()
    };
    let want = vec![
        GroupCount {
            key: Some("a".into()),
            count: 2,
        },
        GroupCount {
            key: Some("b".into()),
            count: 1,
        },
    ];
    for filter in [InstanceFilter::all(), counted_rows] {
        let groups = p
            .group_count(&filter, GroupBy::Machine)
            .await
            .expect("group");
        assert_eq!(groups, want, "{filter:?}");
        for (machine, n) in [("a", 2), ("b", 1), ("c", 0)] {
            let on = InstanceFilter {
                machine: Some(machine.into()),
                ..filter.clone()
            };
            assert_eq!(
                p.count(&on).await.expect("count"),
                n,
                "{machine} {filter:?}"
            );
            assert_eq!(all(&p, &on).await.len() as u64, n, "{machine} {filter:?}");
            let by_status = p.group_count(&on, GroupBy::Status).await.expect("group");
            assert_eq!(
                by_status.iter().map(|g| g.count).sum::<u64>(),
                n,
                "{machine} {filter:?}"
            );
        }
    }
}

/// A count that folds the count deltas leaves them deleted, dead rows every later count would
/// read until a vacuum; the provider vacuums the deltas itself (a server with autovacuum off
/// made counts at 1M instances take 80 ms instead of under one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_fold_the_deltas_vacuum_them() {
    let (p, guard) = support::provider(ManualClock::starting_now()).await;
    let owner = p.create_owner(new_owner("m")).await.expect("owner").id;
    for _ in 0..1_050 {
        create(&p, owner).await;
    }
    let filter = InstanceFilter {
        status: vec![InstanceStatus::Running],
        ..InstanceFilter::default()
    };
    assert_eq!(p.count(&filter).await.expect("count (folds)"), 1_050);
    let admin = support::admin().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let row = admin
            .query_one(
                "select coalesce(vacuum_count, 0) from pg_stat_user_tables \
                 where schemaname = $1 and relname = 'instance_count_deltas'",
                &[&guard.0],
            )
            .await
            .expect("table statistics");
        if row.get::<_, i64>(0) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the folded deltas were never vacuumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(p.count(&filter).await.expect("count"), 1_050);
}

/// The background vacuum of the count deltas never waits for a lock: a `drop schema` (or a
/// migration) racing it deadlocked with it in CI. Here another session holds a lock that
/// conflicts with vacuum; the provider's vacuum must skip rather than queue behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_deltas_vacuum_never_waits_for_a_lock() {
    let (p, guard) = support::provider(ManualClock::starting_now()).await;
    let owner = p.create_owner(new_owner("m")).await.expect("owner").id;
    create(&p, owner).await;
    let mut holder = support::admin().await;
    let tx = holder.transaction().await.expect("begin");
    tx.batch_execute(&format!(
        "lock table \"{}\".instance_count_deltas in share update exclusive mode",
        guard.0
    ))
    .await
    .expect("hold a lock vacuum conflicts with");
    let filter = InstanceFilter {
        status: vec![InstanceStatus::Running],
        ..InstanceFilter::default()
    };
    assert_eq!(p.count(&filter).await.expect("count"), 1);
    let watcher = support::admin().await;
    let pattern = format!("vacuum%{}%instance_count_deltas%", guard.0);
    for _ in 0..20 {
        let waiting: i64 = watcher
            .query_one(
                "select count(*) from pg_stat_activity \
                 where query ilike $1 and wait_event_type = 'Lock'",
                &[&pattern],
            )
            .await
            .expect("activity")
            .get(0);
        assert_eq!(waiting, 0, "the vacuum waits for a lock held elsewhere");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tx.rollback().await.expect("release");
}
