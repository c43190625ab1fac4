//! `instore suspend|resume|terminate|cancel|remove`, `commands list`, `errors list`: the
//! control queue through the binary, on a seeded SQLite store.

mod support;

use instore::InstanceId;
use serde_json::Value as Json;
use support::{ids, Sandbox, Seeded};

async fn seeded() -> (Sandbox, Seeded) {
    let sandbox = Sandbox::new();
    let seeded = sandbox.seed().await;
    (sandbox, seeded)
}

fn queue(s: &Sandbox) -> Json {
    s.run(&["--json", "commands", "list"]).ok().json()
}

#[tokio::test]
async fn suspend_by_id_queues_a_command_with_its_reason() {
    let (s, seeded) = seeded().await;
    let id = seeded.running[0].to_string();
    let run = s.run(&["suspend", &id, "--reason", "maintenance"]);
    assert!(
        run.ok()
            .stdout
            .contains("Queued Suspend (maintenance) for 1 instance"),
        "{run:#?}"
    );
    let queue = queue(&s);
    assert_eq!(ids(&queue), [seeded.running[0]]);
    assert_eq!(
        queue[0]["command"],
        serde_json::json!({"type": "Suspend", "reason": "maintenance"})
    );
    assert_eq!(queue[0]["attempts"], 0);
    let table = s.run(&["commands", "list"]);
    assert!(
        table.ok().stdout.contains(&id) && table.stdout.contains("Suspend"),
        "{table:#?}"
    );
    // The queued command shows on the instance, and as a filter.
    let listed = s
        .run(&["--json", "instances", "list", "--has-command"])
        .ok()
        .json();
    assert_eq!(ids(&listed["items"]), [seeded.running[0]]);
    assert_eq!(
        listed["items"][0]["pending_command"]["command"]["type"],
        "Suspend"
    );
}

#[tokio::test]
async fn each_control_verb_queues_its_command() {
    let (s, seeded) = seeded().await;
    let r = &seeded.running;
    s.run(&["resume", &seeded.suspended.to_string()]).ok();
    s.run(&["terminate", &r[0].to_string(), "--reason", "withdrawn"])
        .ok();
    s.run(&["cancel", &r[1].to_string()]).ok();
    s.run(&["suspend", &r[2].to_string()]).ok();
    let queue = queue(&s);
    let commands: Vec<(InstanceId, String)> = ids(&queue)
        .into_iter()
        .zip(
            queue
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["command"]["type"].as_str().unwrap().to_owned()),
        )
        .collect();
    assert_eq!(
        commands,
        [
            (seeded.suspended, "Resume".to_owned()),
            (r[0], "Terminate".to_owned()),
            (r[1], "Cancel".to_owned()),
            (r[2], "Suspend".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_filter_needs_confirmation_and_yes_gives_it() {
    let (s, seeded) = seeded().await;
    let refused = s.run(&["suspend", "--status", "Running", "--reason", "freeze"]);
    refused.usage_error(&["Suspend 3 instance(s)", "--yes"]);
    assert_eq!(
        queue(&s),
        serde_json::json!([]),
        "nothing may change without confirmation"
    );

    let run = s.run(&[
        "suspend", "--status", "Running", "--reason", "freeze", "--yes",
    ]);
    assert!(run.ok().stdout.contains("for 3 instance(s)"), "{run:#?}");
    let mut queued = ids(&queue(&s));
    queued.sort();
    let mut running = seeded.running.clone();
    running.sort();
    assert_eq!(queued, running);

    let none = s.run(&["cancel", "--host-type", "billing", "--yes"]);
    assert!(none.ok().stdout.contains("No instances match"), "{none:#?}");
}

#[tokio::test]
async fn all_acts_on_every_instance_and_reports_those_that_cannot_take_the_command() {
    let (s, seeded) = seeded().await;
    s.run(&["suspend", "--all"])
        .usage_error(&["5 instance(s)", "every instance", "--yes"]);
    let run = s.run(&["--json", "suspend", "--all", "--yes"]);
    assert_eq!(
        run.code, 1,
        "the completed instance cannot be suspended: {run:#?}"
    );
    let json = run.json();
    assert_eq!(json["matched"], 5);
    assert_eq!(json["done"].as_array().unwrap().len(), 4);
    assert_eq!(ids(&json["failed"]), [seeded.completed]);
    assert_eq!(json["failed"][0]["code"], "instance_complete");
}

#[tokio::test]
async fn per_instance_errors_are_reported_without_stopping() {
    let (s, seeded) = seeded().await;
    let missing = InstanceId::new().to_string();
    let completed = seeded.completed.to_string();
    let running = seeded.running[0].to_string();
    let run = s.run(&["terminate", &missing, &completed, &running]);
    run.failure(&[&missing, &completed, "2 of 3 instance(s) failed"]);
    assert!(run.stderr.contains("instance not found"), "{run:#?}");
    assert!(
        run.stdout.contains("Queued Terminate for 1 instance"),
        "{run:#?}"
    );
    assert_eq!(ids(&queue(&s)), [seeded.running[0]]);
}

#[tokio::test]
async fn a_command_being_executed_is_reported_as_locked() {
    let (s, seeded) = seeded().await;
    let a = seeded.running[0].to_string();
    let b = seeded.running[1].to_string();
    s.run(&["suspend", &a]).ok();
    assert_eq!(s.lock_queued_commands().await, [seeded.running[0]]);
    let run = s.run(&["--json", "resume", &a, &b]);
    assert_eq!(run.code, 1, "{run:#?}");
    let json = run.json();
    assert_eq!(json["failed"][0]["code"], "command_locked");
    assert_eq!(json["done"], serde_json::json!([b]));
}

#[tokio::test]
async fn commands_given_up_show_in_the_error_log() {
    let (s, seeded) = seeded().await;
    let empty = s.run(&["errors", "list"]);
    assert!(empty.ok().stdout.contains("empty"), "{empty:#?}");
    s.run(&["cancel", &seeded.running[2].to_string()]).ok();
    assert_eq!(s.fail_queued_commands().await, [seeded.running[2]]);
    let log = s.run(&["--json", "errors", "list"]).ok().json();
    assert_eq!(ids(&log), [seeded.running[2]]);
    assert_eq!(log[0]["command"]["type"], "Cancel");
    assert_eq!(log[0]["message"], "the host did not answer");
    assert_eq!(log[0]["machine"], "test-machine");
    assert_eq!(log[0]["attempts"], 1);
    let table = s.run(&["errors", "list"]);
    assert!(
        table.ok().stdout.contains("the host did not answer"),
        "{table:#?}"
    );
    let listed = s
        .run(&["--json", "instances", "list", "--has-error"])
        .ok()
        .json();
    assert_eq!(ids(&listed["items"]), [seeded.running[2]]);
    assert_eq!(listed["items"][0]["blocked_on"]["kind"], "command_failing");
}

#[tokio::test]
async fn remove_deletes_at_once_by_id_or_filter() {
    let (s, seeded) = seeded().await;
    let id = seeded.running[0].to_string();
    let run = s.run(&["remove", &id]);
    assert!(run.ok().stdout.contains("Removed 1 instance"), "{run:#?}");
    assert_eq!(s.run(&["instances", "count"]).ok().stdout.trim(), "4");
    s.run(&["remove", &id]).failure(&["instance not found"]);

    s.run(&["remove", "--status", "Completed"])
        .usage_error(&["Remove 1 instance(s)", "--yes"]);
    s.run(&["remove", "--status", "Completed", "--yes"]).ok();
    assert_eq!(s.run(&["instances", "count"]).ok().stdout.trim(), "3");
    assert_eq!(
        s.run(&["instances", "count", "--status", "Completed"])
            .ok()
            .stdout
            .trim(),
        "0"
    );
}

#[tokio::test]
async fn manage_drain_executes_the_queued_commands_and_stops() {
    let (s, seeded) = seeded().await;
    let id = seeded.running[0].to_string();
    s.run(&["suspend", &id, "--reason", "maintenance"]).ok();
    let run = s.run(&["--json", "manage", "--drain"]);
    assert_eq!(run.ok().json()["completed"], 1, "{run:#?}");
    assert_eq!(queue(&s), serde_json::json!([]));
    let shown = s.run(&["--json", "instances", "show", &id]).ok().json();
    assert_eq!(shown["status"], "Suspended", "{shown:#}");
    assert_eq!(shown["suspension"]["reason"], "maintenance", "{shown:#}");
}
