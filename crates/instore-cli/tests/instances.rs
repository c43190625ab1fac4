//! `instore instances list|show|count|group` on a seeded SQLite store, in tables and JSON.

mod support;

use std::collections::BTreeSet;

use instore::InstanceId;
use serde_json::Value as Json;
use support::{ids, Sandbox, Seeded};

async fn seeded() -> (Sandbox, Seeded) {
    let sandbox = Sandbox::new();
    let seeded = sandbox.seed().await;
    (sandbox, seeded)
}

fn set(ids: impl IntoIterator<Item = InstanceId>) -> BTreeSet<InstanceId> {
    ids.into_iter().collect()
}

/// `instances list --json FILTERS` → the ids listed.
fn listed(s: &Sandbox, filters: &[&str]) -> BTreeSet<InstanceId> {
    let mut args = vec!["--json", "instances", "list"];
    args.extend_from_slice(filters);
    let run = s.run(&args);
    set(ids(&run.ok().json()["items"]))
}

#[tokio::test]
async fn the_json_list_parses_and_round_trips_the_ids_newest_first() {
    let (s, seeded) = seeded().await;
    let run = s.run(&["instances", "list", "--json"]);
    let json = run.ok().json();
    let mut expected = seeded.all();
    expected.reverse();
    assert_eq!(ids(&json["items"]), expected);
    assert_eq!(json["next"], Json::Null);
    let first = &json["items"][0];
    assert_eq!(first["status"], "Completed");
    assert_eq!(first["host_type"], "orders");
    assert_eq!(first["promoted"]["orders:total"], 50);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_table_shows_every_instance_and_its_status() {
    let (s, seeded) = seeded().await;
    let run = s.run(&["instances", "list"]);
    run.ok();
    for id in seeded.all() {
        assert!(run.stdout.contains(&id.to_string()), "{}", run.stdout);
    }
    for word in [
        "STATUS",
        "Running",
        "Suspended",
        "Completed",
        "payment failed",
    ] {
        assert!(run.stdout.contains(word), "{word}: {}", run.stdout);
    }
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let (s, seeded) = seeded().await;
    let first = s.run(&["--json", "instances", "list", "--max", "2"]);
    let json = first.ok().json();
    let next = json["next"].as_str().expect("a next cursor").to_owned();
    let mut seen = ids(&json["items"]);
    let table = s.run(&["instances", "list", "--max", "2"]);
    assert!(
        table.ok().stderr.contains(&format!("--cursor {next}")),
        "{table:#?}"
    );
    let mut cursor = next;
    loop {
        let page = s.run(&[
            "--json",
            "instances",
            "list",
            "--max",
            "2",
            "--cursor",
            &cursor,
        ]);
        let json = page.ok().json();
        seen.extend(ids(&json["items"]));
        match json["next"].as_str() {
            Some(n) => cursor = n.to_owned(),
            None => break,
        }
    }
    let mut expected = seeded.all();
    expected.reverse();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn every_filter_narrows_the_list() {
    let (s, seeded) = seeded().await;
    let running = set(seeded.running.clone());
    assert_eq!(listed(&s, &["--status", "Running"]), running);
    assert_eq!(
        listed(&s, &["--status", "Running,Suspended"]),
        set(seeded.all().into_iter().filter(|i| *i != seeded.completed))
    );
    assert_eq!(
        listed(&s, &["--condition", "Exception"]),
        set([seeded.suspended])
    );
    assert_eq!(
        listed(&s, &["--condition", "Idle", "--condition", "Successful"]),
        set(seeded.running.iter().copied().chain([seeded.completed]))
    );
    assert_eq!(
        listed(&s, &["--exception", "PaymentDeclined"]),
        set([seeded.suspended])
    );
    assert_eq!(listed(&s, &["--host-type", "orders"]), set(seeded.all()));
    assert!(listed(&s, &["--host-type", "billing"]).is_empty());
    assert_eq!(listed(&s, &["--machine", "seeder"]), set(seeded.all()));
    assert_eq!(
        listed(&s, &["--key", &seeded.key.to_string()]),
        set([seeded.running[0]])
    );
    assert_eq!(
        listed(&s, &["--where", "orders:total=20"]),
        set([seeded.running[1]])
    );
    assert!(listed(&s, &["--where", "orders:total=21"]).is_empty());
    let (a, b) = (seeded.running[0].to_string(), seeded.completed.to_string());
    assert_eq!(
        listed(&s, &["--id", &a, "--id", &b]),
        set([seeded.running[0], seeded.completed])
    );
    assert_eq!(
        listed(&s, &["--created-after", "1h ago"]),
        set(seeded.all())
    );
    assert_eq!(
        listed(&s, &["--modified-after", "2000-01-01"]),
        set(seeded.all())
    );
    assert!(listed(&s, &["--created-before", "2000-01-01T00:00:00Z"]).is_empty());
    assert!(listed(&s, &["--modified-before", "2000-01-01"]).is_empty());
    assert!(listed(&s, &["--owner", &seeded.owner.to_string()]).is_empty());
    assert!(listed(&s, &["--has-command"]).is_empty());
    assert_eq!(listed(&s, &["--has-command=false"]), set(seeded.all()));
    assert!(listed(&s, &["--has-error"]).is_empty());
    assert_eq!(listed(&s, &["--has-error=false"]), set(seeded.all()));
}

#[tokio::test]
async fn count_counts_what_list_lists() {
    let (s, _) = seeded().await;
    assert_eq!(s.run(&["instances", "count"]).ok().stdout.trim(), "5");
    assert_eq!(
        s.run(&["instances", "count", "--status", "Running"])
            .ok()
            .stdout
            .trim(),
        "3"
    );
    let json = s
        .run(&["instances", "count", "--json", "--status", "Completed"])
        .ok()
        .json();
    assert_eq!(json, serde_json::json!({ "count": 1 }));
}

#[tokio::test]
async fn group_counts_per_status_condition_host_type_machine_and_exception() {
    let (s, _) = seeded().await;
    let groups = |by: &str| -> Vec<(Option<String>, u64)> {
        let json = s
            .run(&["--json", "instances", "group", "--by", by])
            .ok()
            .json();
        assert_eq!(json["by"], by);
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["key"].as_str().map(str::to_owned),
                    g["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let some = |k: &str, n| (Some(k.to_owned()), n);
    assert_eq!(
        groups("status"),
        [
            some("Completed", 1),
            some("Running", 3),
            some("Suspended", 1)
        ]
    );
    assert_eq!(
        groups("condition"),
        [some("Exception", 1), some("Idle", 3), some("Successful", 1)]
    );
    assert_eq!(groups("host-type"), [some("orders", 5)]);
    assert_eq!(groups("machine"), [some("seeder", 5)]);
    assert_eq!(groups("exception"), [(None, 4), some("PaymentDeclined", 1)]);
    let table = s.run(&[
        "instances",
        "group",
        "--by",
        "status",
        "--status",
        "Running",
    ]);
    assert!(table.ok().stdout.contains("Running"), "{table:#?}");
    assert!(!table.stdout.contains("Completed"), "{table:#?}");
}

#[tokio::test]
async fn show_tells_everything_about_one_instance() {
    let (s, seeded) = seeded().await;
    let id = seeded.suspended.to_string();
    let run = s.run(&["instances", "show", &id]);
    for word in [
        &id[..],
        "Suspended",
        "PaymentDeclined",
        "card expired",
        "orders:total = 40",
        "seeder",
    ] {
        assert!(run.ok().stdout.contains(word), "{word}: {}", run.stdout);
    }
    let json = s.run(&["--json", "instances", "show", &id]).ok().json();
    assert_eq!(json["id"], id);
    assert_eq!(json["condition"], "Exception");
    assert_eq!(json["blocked_on"]["kind"], "suspended");
    assert_eq!(json["suspension"]["exception"]["name"], "PaymentDeclined");

    let keyed = s
        .run(&[
            "--json",
            "instances",
            "show",
            &seeded.running[0].to_string(),
        ])
        .ok()
        .json();
    assert_eq!(keyed["keys"][seeded.key.to_string()], "Associated");
    let timed = s
        .run(&[
            "--json",
            "instances",
            "show",
            &seeded.running[1].to_string(),
        ])
        .ok()
        .json();
    assert_eq!(timed["blocked_on"]["kind"], "timer");
}

#[tokio::test]
async fn show_of_an_unknown_instance_is_a_failure() {
    let (s, _) = seeded().await;
    let missing = InstanceId::new().to_string();
    s.run(&["instances", "show", &missing])
        .failure(&["no instance", &missing]);
}
