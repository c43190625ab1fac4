//! The query and control sides of SQLite against the memory oracle: one seeded scenario (owners
//! on several machines and host types, instances in every condition, keys, promoted values,
//! dead owners, queued commands that fail, expire and are given up, deletes and purges) runs on
//! both providers at the provider level (no background tasks, so both see exactly the same
//! sequence), then every kind of filter is asked as pages, counts and group counts. The
//! answers must be equal once owner ids (random per provider) are replaced by their index.

use std::sync::Arc;
use std::time::Duration;

use instore::Clock;
use instore::{
    bag, promote, CommandFailure, CompletionAction, Condition, ControlCommand, Cursor,
    EncodingSettings, ExceptionInfo, ExecutionStatus, GroupBy, InstanceFilter, InstanceId,
    InstanceStatus, KeyId, ManualClock, MetadataChange, NewKey, NewOwner, OwnerId, PageRequest,
    Providers, QueueSettings, Save, SaveRequest, SaveRules, SuspendChange, Timestamp, Uuid, Value,
};
use instore_sqlite::{SqliteOptions, SqliteProvider};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PROMOTIONS: [&str; 2] = ["order:total", "order:region"];
const MACHINES: [&str; 4] = ["m0", "m1", "m2", "m3"];

struct World {
    p: Providers,
    clock: ManualClock,
    owners: Vec<OwnerId>,
    lines: Vec<String>,
}

impl World {
    /// Renews the leases of `owners`.
    async fn renew(&mut self, owners: &[usize]) {
        for o in owners {
            let r = self
                .p
                .persistence
                .renew_lease(self.owners[*o], Duration::from_secs(60))
                .await;
            self.note(r.map(|_| ()));
        }
    }

    fn note(&mut self, what: impl std::fmt::Debug) {
        self.lines.push(format!("{what:?}"));
    }

    async fn save(&mut self, owner: usize, instance: InstanceId, save: Save, delete_all: bool) {
        let names: Vec<String> = PROMOTIONS.iter().map(|s| s.to_string()).collect();
        let promoted = save.data.as_ref().map(|d| promote(&names, d));
        let request = SaveRequest {
            instance,
            held_version: None,
            busy: Vec::new(),
            save,
            rules: SaveRules {
                max_payload_bytes: 1 << 20,
                encoding: EncodingSettings::default(),
                completion: if delete_all {
                    CompletionAction::DeleteAll
                } else {
                    CompletionAction::Keep
                },
            },
            promoted,
        };
        let result = self.p.persistence.save(self.owners[owner], request).await;
        self.note(result.map(|s| (s.instance, s.state, s.lock_version)));
    }
}

fn id(rng: &mut StdRng) -> Uuid {
    Uuid::from_u128(rng.gen())
}

async fn scenario(p: Providers, clock: ManualClock, seed: u64) -> (Vec<String>, Vec<OwnerId>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World {
        p,
        clock,
        owners: Vec::new(),
        lines: Vec::new(),
    };
    let host_types = [
        Some("orders"),
        Some("billing"),
        None,
        Some("orders"),
        Some("audit"),
    ];
    for (i, host_type) in host_types.iter().enumerate() {
        let owner =
            w.p.persistence
                .create_owner(NewOwner {
                    host_type: host_type.map(str::to_owned),
                    metadata: bag([("instore:control_endpoint", format!("http://m{i}/control"))]),
                    lease: Duration::from_secs(60),
                    machine: MACHINES[i % MACHINES.len()].to_owned(),
                })
                .await
                .expect("owner");
        w.owners.push(owner.id);
    }

    // Instances, created over time (several share a creation instant).
    let mut instances = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..80 {
        if rng.gen_bool(0.6) {
            w.clock
                .advance(Duration::from_millis(rng.gen_range(1..2000)));
        }
        w.renew(&[0, 1, 2, 3, 4]).await;
        let instance = InstanceId::from_uuid(id(&mut rng));
        instances.push(instance);
        let owner = rng.gen_range(0..w.owners.len());
        let total: Value = match rng.gen_range(0..4) {
            0 => Value::Int(42),
            1 => Value::Float(42.0),
            2 => Value::String("42".into()),
            _ => Value::Int(rng.gen_range(0..5)),
        };
        let region = ["eu", "us", "ap"][rng.gen_range(0..3)];
        let mut data = bag([("order:region", region)]);
        data.insert("order:total".into(), total.into());
        let mut save = Save::data(data).with_status(
            [
                ExecutionStatus::Executing,
                ExecutionStatus::Idle,
                ExecutionStatus::Closed,
                ExecutionStatus::Faulted,
                ExecutionStatus::Canceled,
                ExecutionStatus::Terminated,
            ][rng.gen_range(0..6)],
        );
        save.metadata_changes = vec![(
            "site".to_owned(),
            MetadataChange::Set(format!("site-{}", rng.gen_range(0..3)).into()),
        )]
        .into_iter()
        .collect();
        if rng.gen_bool(0.3) {
            save.timer = Some(
                w.clock
                    .now()
                    .plus(Duration::from_secs(rng.gen_range(0..600))),
            );
        }
        if rng.gen_bool(0.3) {
            save.bookmarks = vec![format!("b{}", rng.gen_range(0..3))];
        }
        if rng.gen_bool(0.4) {
            let key = KeyId::from_uuid(id(&mut rng));
            keys.push(key);
            save.keys_to_associate.push(NewKey::from(key));
        }
        match rng.gen_range(0..6) {
            0 => {
                save.suspend = SuspendChange::Suspend {
                    reason: "operator".into(),
                    exception: None,
                }
            }
            1 => {
                save.suspend = SuspendChange::Suspend {
                    reason: "fault".into(),
                    exception: Some(ExceptionInfo {
                        name: ["Timeout", "Overflow"][rng.gen_range(0..2)].into(),
                        message: "boom".into(),
                    }),
                }
            }
            _ => {}
        }
        match rng.gen_range(0..5) {
            0 => save.complete = true,
            1 | 2 => {}
            _ => {}
        }
        save.unlock = save.complete || rng.gen_bool(0.5);
        w.save(owner, instance, save, rng.gen_bool(0.05)).await;
    }

    // Later changes: metadata-only saves, takeovers (most fail: the holder lives), unlocks.
    for _ in 0..60 {
        w.clock
            .advance(Duration::from_millis(rng.gen_range(0..500)));
        w.renew(&[0, 1, 2, 3, 4]).await;
        let instance = instances[rng.gen_range(0..instances.len())];
        let owner = rng.gen_range(0..w.owners.len());
        match rng.gen_range(0..4) {
            0 => {
                let save = Save {
                    metadata_changes: vec![(
                        "site".to_owned(),
                        MetadataChange::Set("site-x".into()),
                    )],
                    unlock: rng.gen_bool(0.5),
                    ..Save::default()
                };
                w.save(owner, instance, save, false).await;
            }
            1 => {
                let save = Save {
                    suspend: SuspendChange::Unsuspend,
                    ..Save::default()
                };
                w.save(owner, instance, save, false).await;
            }
            2 => {
                let r = w.p.persistence.unlock(w.owners[owner], instance).await;
                w.note(r);
            }
            _ => {
                let mut data = bag([("order:total", 7i64)]);
                data.insert("other".into(), Value::Bool(true).into());
                let save = Save::data(data).with_status(ExecutionStatus::Executing);
                w.save(owner, instance, save, false).await;
            }
        }
    }

    // Owner 3 dies (its lease ends); the others renew.
    w.clock.advance(Duration::from_secs(30));
    w.renew(&[0, 1, 2, 4]).await;
    w.clock.advance(Duration::from_secs(40));
    w.renew(&[0, 1, 2, 4]).await;

    // The control queue.
    let settings = QueueSettings {
        lock_time: Duration::from_secs(10),
        max_attempts: 3,
        batch_size: 4,
    };
    let commands = [
        ControlCommand::Suspend {
            reason: "ops".into(),
        },
        ControlCommand::Resume,
        ControlCommand::Terminate {
            reason: "stop".into(),
        },
        ControlCommand::Cancel,
    ];
    for _ in 0..30 {
        let instance = if rng.gen_bool(0.05) {
            InstanceId::from_uuid(id(&mut rng))
        } else {
            instances[rng.gen_range(0..instances.len())]
        };
        let command = commands[rng.gen_range(0..commands.len())].clone();
        let r = w.p.control.enqueue(instance, command).await;
        w.note(r);
    }
    for round in 0..8 {
        w.clock.advance(Duration::from_secs(rng.gen_range(1..8)));
        let batch =
            w.p.control
                .read_batch(&settings, MACHINES[round % 4])
                .await
                .expect("read");
        for q in &batch {
            w.lines.push(format!(
                "read {:?} {:?} attempts={} at={:?} until={:?} metadata={:?}",
                q.instance, q.command, q.attempts, q.enqueued_at, q.locked_until, q.metadata
            ));
            let r = match rng.gen_range(0..4) {
                0 => w.p.control.complete(q.instance, q.lock).await,
                1 | 2 => {
                    w.p.control
                        .abandon(
                            q.instance,
                            q.lock,
                            CommandFailure {
                                code: "instance_locked".into(),
                                message: format!("round {round}"),
                                machine: MACHINES[round % 4].into(),
                            },
                            &settings,
                        )
                        .await
                }
                _ => Ok(()), // left to expire
            };
            w.note(r);
        }
        // A lock nobody holds any more.
        let r = w.p.control.complete(instances[0], Uuid::from_u128(7)).await;
        w.note(r);
        let r =
            w.p.control
                .enqueue(
                    instances[rng.gen_range(0..instances.len())],
                    ControlCommand::Cancel,
                )
                .await;
        w.note(r);
        let queued = w.p.control.queued(None, 100).await.expect("queued");
        w.note(queued);
    }
    let queued = w.p.control.queued(Some(5), 3).await.expect("queued");
    w.note(queued);
    let errors = w.p.control.error_log(100).await.expect("errors");
    w.note(errors);

    // Deletes and a purge.
    for _ in 0..4 {
        let instance = instances[rng.gen_range(0..instances.len())];
        let r = w.p.control.enqueue(instance, ControlCommand::Delete).await;
        w.note(r);
    }
    let r =
        w.p.control
            .delete(InstanceId::from_uuid(id(&mut rng)))
            .await;
    w.note(r);
    let purged =
        w.p.query
            .purge_completed(w.clock.now().minus(Duration::from_secs(75)), 3)
            .await;
    w.note(purged);

    // Every kind of filter.
    let now = w.clock.now();
    let mut filters = vec![InstanceFilter::all()];
    for s in InstanceStatus::ALL {
        filters.push(InstanceFilter {
            status: vec![s],
            ..Default::default()
        });
    }
    for c in Condition::ALL {
        filters.push(InstanceFilter {
            condition: vec![c],
            ..Default::default()
        });
    }
    filters.push(InstanceFilter {
        status: vec![InstanceStatus::Running, InstanceStatus::Completed],
        condition: vec![Condition::Idle, Condition::Terminated, Condition::Exception],
        ..Default::default()
    });
    filters.push(InstanceFilter {
        status: vec![InstanceStatus::Suspended],
        condition: vec![Condition::Idle],
        ..Default::default()
    });
    for h in ["orders", "billing", "audit", "nothing"] {
        filters.push(InstanceFilter {
            host_type: Some(h.into()),
            ..Default::default()
        });
        filters.push(InstanceFilter {
            host_type: Some(h.into()),
            status: vec![InstanceStatus::Running],
            ..Default::default()
        });
    }
    for m in MACHINES {
        filters.push(InstanceFilter {
            machine: Some(m.into()),
            ..Default::default()
        });
    }
    for o in &w.owners {
        filters.push(InstanceFilter {
            owner: Some(*o),
            ..Default::default()
        });
    }
    filters.push(InstanceFilter {
        ids: instances.iter().step_by(3).copied().collect(),
        status: vec![InstanceStatus::Running],
        ..Default::default()
    });
    for k in keys.iter().take(5) {
        filters.push(InstanceFilter {
            key: Some(*k),
            ..Default::default()
        });
    }
    for (name, text) in [
        ("order:total", "42"),
        ("order:total", "7"),
        ("order:total", "1"),
        ("order:region", "eu"),
        ("order:region", "42"),
        ("other", "true"),
    ] {
        filters.push(InstanceFilter {
            promoted: vec![(name.into(), text.into())],
            ..Default::default()
        });
    }
    filters.push(InstanceFilter {
        promoted: vec![
            ("order:total".into(), "42".into()),
            ("order:region".into(), "us".into()),
        ],
        ..Default::default()
    });
    for has in [true, false] {
        filters.push(InstanceFilter {
            has_pending_command: Some(has),
            ..Default::default()
        });
        filters.push(InstanceFilter {
            has_error: Some(has),
            ..Default::default()
        });
    }
    for e in ["Timeout", "Overflow"] {
        filters.push(InstanceFilter {
            exception: Some(e.into()),
            ..Default::default()
        });
    }
    let start = now.minus(Duration::from_secs(200));
    filters.push(InstanceFilter {
        created_after: Some(start.plus(Duration::from_secs(20))),
        created_before: Some(start.plus(Duration::from_secs(60))),
        ..Default::default()
    });
    filters.push(InstanceFilter {
        modified_after: Some(start.plus(Duration::from_secs(60))),
        host_type: Some("orders".into()),
        ..Default::default()
    });
    filters.push(InstanceFilter {
        modified_before: Some(start.plus(Duration::from_secs(60))),
        condition: vec![Condition::Active, Condition::Idle],
        ..Default::default()
    });

    for filter in &filters {
        w.lines.push(format!("filter {filter:?}"));
        for max in [1, 7, 1000] {
            let mut cursor: Option<Cursor> = None;
            loop {
                let page =
                    w.p.query
                        .query(filter, &PageRequest { max, cursor })
                        .await
                        .expect("query");
                let shown: Vec<String> = if max == 7 {
                    page.items.iter().map(|i| format!("{i:?}")).collect()
                } else {
                    page.items.iter().map(|i| format!("{:?}", i.id)).collect()
                };
                w.lines
                    .push(format!("page {max} {shown:?} next {:?}", page.next));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        let count = w.p.query.count(filter).await.expect("count");
        w.note(("count", count));
        for by in GroupBy::ALL {
            let groups = w.p.query.group_count(filter, by).await.expect("groups");
            w.note((by, groups));
        }
    }
    (w.lines, w.owners)
}

fn normalized(lines: Vec<String>, owners: &[OwnerId]) -> Vec<String> {
    lines
        .into_iter()
        .map(|mut line| {
            for (i, o) in owners.iter().enumerate() {
                line = line.replace(&o.to_string(), &format!("owner#{i}"));
            }
            line
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answers_queries_and_control_like_the_memory_oracle() {
    for seed in 0..6 {
        let start = Timestamp::from_micros(1_700_000_000_000_000);
        let clock = ManualClock::new(start);
        let memory = instore::MemoryProvider::with_clock(Arc::new(clock.clone()));
        let (expected, owners) = scenario(Providers::of(memory), clock, seed).await;
        let expected = normalized(expected, &owners);

        let dir = tempfile::tempdir().expect("a temp dir");
        let clock = ManualClock::new(start);
        let sqlite = SqliteProvider::open_with(
            dir.path().join("q.db"),
            SqliteOptions::default(),
            Arc::new(clock.clone()),
        )
        .await
        .expect("open");
        let (actual, owners) = scenario(Providers::of(sqlite), clock, seed).await;
        let actual = normalized(actual, &owners);

        if std::env::var("SHOW").is_ok() {
            for l in &expected {
                println!("{}", &l[..l.len().min(400)]);
            }
        }
        assert!(
            expected.len() > 500,
            "a scenario of {} lines",
            expected.len()
        );
        for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
            assert_eq!(e, a, "seed {seed}, line {i}:\n memory: {e}\n sqlite: {a}");
        }
        assert_eq!(expected.len(), actual.len(), "seed {seed}");
    }
}
