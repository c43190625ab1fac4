//! Query latency at volume (a measurement, not a timed assertion; ignored by default):
//!
//! ```sh
//! INSTORE_VOLUME=1000000 cargo test -p instore-postgres --release --test volume -- --ignored \
//!     --nocapture
//! ```
//!
//! (`cargo test`: filling takes longer than nextest's 180 s limit.) `INSTORE_VOLUME_SCHEMA=NAME`
//! keeps the filled store in schema NAME and reuses it when it is already filled.
//!
//! Fills a fresh schema with `INSTORE_VOLUME` instances (default 1,000,000) straight in SQL —
//! 70 % completed, 25 % running, 3 % suspended (half with an exception), 1 % locked, one key and
//! one promoted value each, 1,000 queued commands and 500 error-log entries — then times each
//! query through the provider (50 runs: p50, p99, max). Targets (issue 5): a filtered page and
//! the next page p99 ≤ 20 ms, a group count by status ≤ 100 ms.

mod support;

use std::time::{Duration, Instant};

use instore::{
    Condition, Cursor, GroupBy, InstanceFilter, InstanceStatus, PageRequest, QueryProvider,
};
use instore_postgres::{PgClock, PgOptions, PgProvider};

const RUNS: usize = 50;

fn fill_sql(s: &str, n: u64) -> String {
    // Every promoted row holds the same typed value (the text is what queries filter on).
    let value: String = instore::encoding::encode_entry(
        "orders:customer",
        &instore::InstanceValue::from(instore::Value::String("c".into())),
    )
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    format!(
        "insert into {s}.owners (id, host_type, metadata, metadata_encoding, machine, created_at,
             lease_expires_at)
         select gen_random_uuid(), 'type' || (g % 5), '\\x00', 1, 'm' || (g % 20), 0,
                case when g % 2 = 0 then 9000000000000000 else 1 end
         from generate_series(1, 100) g;
         create temp table volume_owners as
             select row_number() over () as n, id from {s}.owners;
         insert into {s}.instances (id, state, lock_owner, last_lock_owner, lock_version, status,
             suspended, suspension_reason, exception_name, exception_message, host_type,
             created_at, updated_at, updated_by, locked_since)
         select gen_random_uuid(), x.state,
                case when x.locked then (select id from volume_owners o where o.n = 1 + g % 100) end,
                null, 1,
                case when x.state = 3 then (array[3,3,3,3,3,3,4,5,6,3])[1 + g % 10]
                     else (array[1,2,2,2])[1 + g % 4] end,
                x.susp, case when x.susp then 'r' end,
                case when x.susp and g % 2 = 0 then 'Ex' || (g % 7) end,
                case when x.susp and g % 2 = 0 then 'msg' end,
                'type' || (g % 5),
                1700000000000000 + g * 2500000::bigint, 1700000000000000 + g * 2500000::bigint + 1000000,
                'm' || (g % 20),
                case when x.locked then 1700000000000000 + g * 2500000::bigint end
         from generate_series(1, {n}) g,
         lateral (select (case when g % 100 < 70 then 3 when g % 100 < 95 then 2 else 1 end)::smallint
                             as state,
                         (g % 100 >= 70 and g % 100 < 73) as susp,
                         (g % 100 = 80) as locked) x;
         insert into {s}.instance_data (id, data, data_encoding, data_len, data_md5, metadata)
         select id, '\\x00', 1, 1, md5('\\x00'::bytea), '{{}}'::jsonb from {s}.instances;
         insert into {s}.keys (id, instance, state, metadata, metadata_encoding)
         select gen_random_uuid(), id, case when state = 3 then 2 else 1 end, '\\x00', 1
         from {s}.instances;
         insert into {s}.promoted (instance, name, text_value, value)
         select id, 'orders:customer', 'c' || (abs(hashtext(id::text)) % 10000),
                '\\x{value}'::bytea
         from {s}.instances;
         insert into {s}.control_queue (instance, position, command, reason, enqueued_at)
         select id, nextval('{s}.control_position'), 1, 'x', created_at from {s}.instances
         where state = 2 limit 1000;
         insert into {s}.error_log (instance, command, reason, code, message, last_attempt_at,
             machine, attempts)
         select id, 3, 'y', 'instance_locked', 'locked', created_at, 'm1', 5 from {s}.instances
         where state = 2 offset 5000 limit 500;"
    )
}

struct Timing {
    what: String,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn time<F, Fut, T>(what: &str, mut op: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    op().await; // warm-up
    let mut runs: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        op().await;
        runs.push(start.elapsed());
    }
    runs.sort();
    let at = |q: f64| runs[((runs.len() as f64 * q).ceil() as usize).clamp(1, runs.len()) - 1];
    Timing {
        what: what.to_owned(),
        p50: at(0.50),
        p99: at(0.99),
        max: runs[runs.len() - 1],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement at volume: minutes to fill; run with --run-ignored"]
async fn query_latency_at_volume() {
    let n: u64 = std::env::var("INSTORE_VOLUME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kept = std::env::var("INSTORE_VOLUME_SCHEMA").ok();
    let schema = kept.clone().unwrap_or_else(support::fresh_schema);
    let _guard = kept.is_none().then(|| support::SchemaGuard(schema.clone()));
    let p = PgProvider::open_with(
        &support::store_url(&schema),
        PgOptions {
            pool_size: 2,
            ..PgOptions::default()
        },
        PgClock::Server,
    )
    .await
    .expect("open");
    let admin = support::admin().await;
    let s = format!("\"{schema}\"");
    let stored: i64 = admin
        .query_one(&format!("select count(*) from {s}.instances"), &[])
        .await
        .expect("count")
        .get(0);
    if stored == 0 {
        let started = Instant::now();
        admin.batch_execute(&fill_sql(&s, n)).await.expect("fill");
        // The fill's count deltas folded into the totals, as readers do as they go.
        admin
            .batch_execute(&format!("select {s}.fold_instance_counts(0)"))
            .await
            .expect("fold the count deltas");
        admin
            .batch_execute(&format!(
                "vacuum analyze {s}.instances, {s}.instance_data, {s}.keys, {s}.promoted, \
                 {s}.control_queue, {s}.error_log, {s}.owners, {s}.instance_counts, \
                 {s}.instance_count_deltas"
            ))
            .await
            .expect("vacuum");
        eprintln!("filled {n} instances in {:?}", started.elapsed());
    }
    let n = u64::try_from(stored).ok().filter(|s| *s > 0).unwrap_or(n);

    let first = p
        .query(&InstanceFilter::all(), &PageRequest::default())
        .await
        .expect("page");
    assert_eq!(first.items.len(), 50);
    let middle = Cursor {
        created_at: instore::Timestamp::from_micros(
            1_700_000_000_000_000 + i64::try_from(n).unwrap_or(0) * 1_250_000,
        ),
        id: instore::InstanceId::from_uuid(uuid::Uuid::max()),
    };
    let suspended = InstanceFilter {
        status: vec![InstanceStatus::Suspended],
        ..InstanceFilter::all()
    };
    let filters: Vec<(&str, InstanceFilter)> = vec![
        ("all", InstanceFilter::all()),
        ("status=Suspended", suspended.clone()),
        (
            "condition=Exception",
            InstanceFilter {
                condition: vec![Condition::Exception],
                ..InstanceFilter::all()
            },
        ),
        (
            "status=Running,host_type=type3",
            InstanceFilter {
                status: vec![InstanceStatus::Running],
                host_type: Some("type3".into()),
                ..InstanceFilter::all()
            },
        ),
        (
            "exception=Ex2",
            InstanceFilter {
                exception: Some("Ex2".into()),
                ..InstanceFilter::all()
            },
        ),
        (
            "promoted orders:customer=c42",
            InstanceFilter {
                promoted: vec![("orders:customer".into(), "c42".into())],
                ..InstanceFilter::all()
            },
        ),
        (
            "machine=m7",
            InstanceFilter {
                machine: Some("m7".into()),
                ..InstanceFilter::all()
            },
        ),
        (
            "has_error",
            InstanceFilter {
                has_error: Some(true),
                ..InstanceFilter::all()
            },
        ),
        (
            "has_pending_command,status=Running",
            InstanceFilter {
                has_pending_command: Some(true),
                status: vec![InstanceStatus::Running],
                ..InstanceFilter::all()
            },
        ),
    ];
    let mut timings = Vec::new();
    for (name, filter) in &filters {
        let page = p
            .query(filter, &PageRequest::default())
            .await
            .expect("first page");
        timings.push(
            time(&format!("page  {name}"), || async {
                p.query(filter, &PageRequest::default())
                    .await
                    .expect("page")
            })
            .await,
        );
        if let Some(next) = page.next {
            let request = PageRequest {
                max: 50,
                cursor: Some(next),
            };
            timings.push(
                time(&format!("next  {name}"), || async {
                    p.query(filter, &request).await.expect("next page")
                })
                .await,
            );
        }
        let request = PageRequest {
            max: 50,
            cursor: Some(middle),
        };
        timings.push(
            time(&format!("mid   {name}"), || async {
                p.query(filter, &request).await.expect("page mid-way")
            })
            .await,
        );
    }
    for (name, filter) in [
        ("all", InstanceFilter::all()),
        ("status=Suspended", suspended),
    ] {
        timings.push(
            time(&format!("count {name}"), || async {
                p.count(&filter).await.expect("count")
            })
            .await,
        );
    }
    for by in GroupBy::ALL {
        timings.push(
            time(&format!("group {}", by.name()), || async {
                p.group_count(&InstanceFilter::all(), by)
                    .await
                    .expect("group")
            })
            .await,
        );
    }
    eprintln!(
        "\n{n} instances, {RUNS} runs each\n{:<48} {:>10} {:>10} {:>10}",
        "query", "p50", "p99", "max"
    );
    for t in &timings {
        eprintln!(
            "{:<48} {:>10.2?} {:>10.2?} {:>10.2?}",
            t.what, t.p50, t.p99, t.max
        );
    }
}
