//! The JSON API through the router, without a socket: every endpoint, good and bad input.

mod common;

use axum::http::{Method, StatusCode};
use common::{call, fixture, get};
use instore::{ControlCommand, InstanceFilter, PageRequest};
use serde_json::json;

#[tokio::test]
async fn instances_are_listed_newest_first_with_every_field() {
    let f = fixture().await;
    let r = f.router();
    let a = get(&r, "/api/v1/instances").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.content_type.starts_with("application/json"));
    let page = a.json();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], f.completed.to_string());
    assert!(page["next"].is_null());
    let running = &items[2];
    assert_eq!(running["status"], "Running");
    assert_eq!(running["blocked_on"]["kind"], "bookmarks");
    assert_eq!(running["bookmarks"], json!(["payment"]));
    for key in ["pending_command", "error", "timer", "owner", "suspension"] {
        assert!(running.get(key).is_some(), "{key} missing");
    }
}

#[tokio::test]
async fn instances_read_as_the_cli_writes_them() {
    let f = fixture().await;
    let r = f.router();
    f.providers
        .control
        .enqueue(f.suspended, ControlCommand::Resume)
        .await
        .unwrap();
    let page = f
        .providers
        .query
        .query(&InstanceFilter::all(), &PageRequest::default())
        .await
        .unwrap();
    let api = get(&r, "/api/v1/instances").await.json();
    let cli = instore_config::json::page(&page);
    assert_eq!(api, cli);
}

#[tokio::test]
async fn every_filter_narrows_the_query() {
    let f = fixture().await;
    let r = f.router();
    let ids = |uri: &str| {
        let r = r.clone();
        let uri = uri.to_owned();
        async move {
            let a = get(&r, &uri).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text);
            a.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let s = f.suspended.to_string();
    assert_eq!(
        ids("/api/v1/instances?status=Suspended").await,
        vec![s.clone()]
    );
    assert_eq!(
        ids("/api/v1/instances?status=suspended").await,
        vec![s.clone()]
    );
    assert_eq!(
        ids("/api/v1/instances?status=Suspended,Completed")
            .await
            .len(),
        2
    );
    assert_eq!(
        ids("/api/v1/instances?status=Running&status=Completed")
            .await
            .len(),
        2
    );
    assert_eq!(
        ids("/api/v1/instances?condition=Exception").await,
        vec![s.clone()]
    );
    assert_eq!(
        ids("/api/v1/instances?exception=PaymentTimeout").await,
        vec![s.clone()]
    );
    assert_eq!(
        ids(&format!("/api/v1/instances?id={s}")).await,
        vec![s.clone()]
    );
    assert_eq!(ids("/api/v1/instances?host_type=orders").await.len(), 3);
    assert_eq!(ids("/api/v1/instances?host-type=nobody").await.len(), 0);
    assert_eq!(
        ids("/api/v1/instances?created_after=1h%20ago").await.len(),
        3
    );
    assert_eq!(
        ids("/api/v1/instances?created_before=2000-01-01")
            .await
            .len(),
        0
    );
    assert_eq!(
        ids("/api/v1/instances?modified_after=2000-01-01T00:00:00Z")
            .await
            .len(),
        3
    );
    assert_eq!(ids("/api/v1/instances?has_command=true").await.len(), 0);
    assert_eq!(ids("/api/v1/instances?has_error=false").await.len(), 3);
    assert_eq!(
        ids("/api/v1/instances?status=").await.len(),
        3,
        "empty = absent"
    );
    assert_eq!(
        ids("/api/v1/instances?where=step=2").await.len(),
        0,
        "not promoted"
    );
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let f = fixture().await;
    let r = f.router();
    let first = get(&r, "/api/v1/instances?max=2").await.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let second = get(&r, &format!("/api/v1/instances?max=2&cursor={next}"))
        .await
        .json();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["id"], f.running.to_string());
    assert!(second["next"].is_null());
}

#[tokio::test]
async fn bad_query_input_is_a_400_that_says_what_to_do() {
    let f = fixture().await;
    let r = f.router();
    for (uri, says) in [
        ("/api/v1/instances?status=Sleeping", "unknown status"),
        ("/api/v1/instances?condition=x", "unknown condition"),
        (
            "/api/v1/instances?created_after=yesterday-ish",
            "not a date",
        ),
        (
            "/api/v1/instances?created_after=2026-01-02&created_before=2026-01-01",
            "earlier",
        ),
        ("/api/v1/instances?id=42", "not a valid instance id"),
        ("/api/v1/instances?owner=x", "owner id"),
        ("/api/v1/instances?key=x", "key id"),
        ("/api/v1/instances?where=novalue", "NAME=VALUE"),
        ("/api/v1/instances?has_error=maybe", "boolean"),
        ("/api/v1/instances?cursor=abc", "cursor"),
        ("/api/v1/instances?max=0", "out of range"),
        ("/api/v1/instances?max=1001", "out of range"),
        ("/api/v1/instances?max=lots", "whole number"),
        (
            "/api/v1/instances?stauts=Running",
            "unknown query parameter 'stauts'",
        ),
        ("/api/v1/instances?machine=a&machine=b", "more than once"),
        (
            "/api/v1/instances/count?cursor=abc",
            "unknown query parameter",
        ),
        ("/api/v1/instances/groups", "'by' is missing"),
        ("/api/v1/instances/groups?by=colour", "unknown grouping"),
        ("/api/v1/commands?max=0", "out of range"),
        ("/api/v1/commands?after=-1", "whole number"),
        ("/api/v1/errors?max=100000", "out of range"),
        ("/api/v1/instances/not-a-uuid", "not a valid instance id"),
    ] {
        let a = get(&r, uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text);
        assert!(a.content_type.starts_with("application/json"), "{uri}");
        assert!(a.error().contains(says), "{uri}: {}", a.error());
    }
}

#[tokio::test]
async fn one_instance_is_shown_by_id_and_unknown_ids_are_404() {
    let f = fixture().await;
    let r = f.router();
    let a = get(&r, &format!("/api/v1/instances/{}", f.suspended)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let i = a.json();
    assert_eq!(i["status"], "Suspended");
    assert_eq!(i["condition"], "Exception");
    assert_eq!(i["suspension"]["exception"]["name"], "PaymentTimeout");
    assert_eq!(i["blocked_on"]["kind"], "suspended");
    let unknown = instore::InstanceId::new();
    let a = get(&r, &format!("/api/v1/instances/{unknown}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.error().contains(&unknown.to_string()), "{}", a.error());
}

#[tokio::test]
async fn counts_and_group_counts_follow_the_filters() {
    let f = fixture().await;
    let r = f.router();
    assert_eq!(
        get(&r, "/api/v1/instances/count").await.json(),
        json!({"count": 3})
    );
    assert_eq!(
        get(&r, "/api/v1/instances/count?status=Running")
            .await
            .json(),
        json!({"count": 1})
    );
    let g = get(&r, "/api/v1/instances/groups?by=status").await.json();
    assert_eq!(g["by"], "status");
    assert_eq!(
        g["groups"],
        json!([{"key": "Completed", "count": 1}, {"key": "Running", "count": 1}, {"key": "Suspended", "count": 1}])
    );
    let g = get(&r, "/api/v1/instances/groups?by=host-type&status=Running")
        .await
        .json();
    assert_eq!(g["groups"], json!([{"key": "orders", "count": 1}]));
}

#[tokio::test]
async fn commands_are_enqueued_and_listed() {
    let f = fixture().await;
    let r = f.router();
    let uri = format!("/api/v1/instances/{}/commands", f.running);
    let a = call(
        &r,
        Method::POST,
        &uri,
        None,
        Some(r#"{"command": "suspend", "reason": "audit"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(
        a.json(),
        json!({"instance": f.running.to_string(), "command": {"type": "Suspend", "reason": "audit"}})
    );
    // Not yet taken: replaced.
    let a = call(
        &r,
        Method::POST,
        &uri,
        None,
        Some(r#"{"command": "Cancel"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let q = get(&r, "/api/v1/commands").await.json();
    assert_eq!(q["items"].as_array().unwrap().len(), 1);
    assert_eq!(q["items"][0]["command"], json!({"type": "Cancel"}));
    assert_eq!(q["items"][0]["instance"], f.running.to_string());
    let i = get(&r, &format!("/api/v1/instances/{}", f.running))
        .await
        .json();
    assert_eq!(i["pending_command"]["command"]["type"], "Cancel");
    assert_eq!(
        get(&r, "/api/v1/instances/count?has_command=true")
            .await
            .json()["count"],
        1
    );
}

#[tokio::test]
async fn enqueue_conflicts_and_missing_instances_say_so() {
    let f = fixture().await;
    let r = f.router();
    let unknown = instore::InstanceId::new();
    let a = call(
        &r,
        Method::POST,
        &format!("/api/v1/instances/{unknown}/commands"),
        None,
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let a = call(
        &r,
        Method::POST,
        &format!("/api/v1/instances/{}/commands", f.completed),
        None,
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    // A command a management service has taken is locked.
    f.providers
        .control
        .enqueue(f.suspended, ControlCommand::Resume)
        .await
        .unwrap();
    let taken = f
        .providers
        .control
        .read_batch(&instore::QueueSettings::default(), "elsewhere")
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let a = call(
        &r,
        Method::POST,
        &format!("/api/v1/instances/{}/commands", f.suspended),
        None,
        Some(r#"{"command":"terminate","reason":"x"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.error().contains("being executed"), "{}", a.error());
}

#[tokio::test]
async fn bad_command_bodies_are_400s() {
    let f = fixture().await;
    let r = f.router();
    let uri = format!("/api/v1/instances/{}/commands", f.running);
    for (body, says) in [
        ("", "not a command"),
        ("{", "not a command"),
        (r#"{"command": "pause"}"#, "unknown variant"),
        (r#"{"command": "suspend", "why": "x"}"#, "unknown field"),
        (r#"{"reason": "x"}"#, "missing field"),
        (r#"{"command": "resume", "reason": "x"}"#, "takes no reason"),
        (r#"[1]"#, "not a command"),
    ] {
        let a = call(&r, Method::POST, &uri, None, Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        assert!(a.error().contains(says), "{body}: {}", a.error());
    }
    let a = call(
        &r,
        Method::POST,
        "/api/v1/instances/nope/commands",
        None,
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_removes_an_instance_at_once() {
    let f = fixture().await;
    let r = f.router();
    let uri = format!("/api/v1/instances/{}", f.completed);
    let a = call(&r, Method::DELETE, &uri, None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json(), json!({"instance": f.completed.to_string()}));
    assert_eq!(get(&r, &uri).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&r, Method::DELETE, &uri, None, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn errors_owners_health_and_history_answer() {
    let f = fixture().await;
    let r = f.router();
    assert_eq!(get(&r, "/api/v1/errors").await.json(), json!({"items": []}));
    let owners = get(&r, "/api/v1/owners").await.json();
    for o in owners["items"].as_array().unwrap() {
        assert_eq!(o["alive"], false);
    }
    let h = get(&r, "/api/v1/health").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["instances"], 3);
    assert_eq!(h["store"], "test");
    assert_eq!(
        get(&r, "/api/v1/counts/history").await.json(),
        json!({"items": []})
    );
    assert_eq!(
        get(&r, "/api/v1/whoami").await.json(),
        json!({"role": "admin", "tokens_required": false})
    );
}

#[tokio::test]
async fn the_error_log_shows_commands_given_up() {
    let f = fixture().await;
    let r = f.router();
    let settings = instore::QueueSettings {
        max_attempts: 1,
        ..Default::default()
    };
    f.providers
        .control
        .enqueue(f.running, ControlCommand::Cancel)
        .await
        .unwrap();
    let taken = f
        .providers
        .control
        .read_batch(&settings, "m1")
        .await
        .unwrap();
    let failure = instore::CommandFailure {
        code: "instance_locked".into(),
        message: "held".into(),
        machine: "m1".into(),
    };
    f.providers
        .control
        .abandon(f.running, taken[0].lock, failure, &settings)
        .await
        .unwrap();
    let log = get(&r, "/api/v1/errors?max=10").await.json();
    assert_eq!(log["items"][0]["instance"], f.running.to_string());
    assert_eq!(log["items"][0]["code"], "instance_locked");
    let i = get(&r, &format!("/api/v1/instances/{}", f.running))
        .await
        .json();
    assert_eq!(i["error"]["machine"], "m1");
    assert_eq!(i["blocked_on"]["kind"], "command_failing");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let f = fixture().await;
    let r = f.router();
    let a = get(&r, "/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/instances",
        "/api/v1/instances/count",
        "/api/v1/instances/groups",
        "/api/v1/instances/{id}",
        "/api/v1/instances/{id}/commands",
        "/api/v1/commands",
        "/api/v1/errors",
        "/api/v1/owners",
        "/api/v1/health",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(paths["/api/v1/instances/{id}"].get("delete").is_some());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("InstanceDto"));
    assert!(schemas.contains_key("BlockedOnDto"));
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    let f = fixture().await;
    let a = get(&f.router(), "/api/v2/nothing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.error().contains("/api/v1"));
}

#[tokio::test]
async fn the_management_service_executes_what_the_api_enqueues() {
    let f = fixture().await;
    let mut server = f.server(Vec::new(), true);
    let r = server.router();
    let stop = tokio_util::sync::CancellationToken::new();
    let background = server.start_background(stop.clone());
    let uri = format!("/api/v1/instances/{}/commands", f.suspended);
    let a = call(
        &r,
        Method::POST,
        &uri,
        None,
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let mut status = String::new();
    for _ in 0..500 {
        let i = get(&r, &format!("/api/v1/instances/{}", f.suspended))
            .await
            .json();
        status = i["status"].as_str().unwrap().to_owned();
        if status == "Running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(status, "Running");
    let h = get(&r, "/api/v1/health").await.json();
    assert_eq!(h["management"]["completed"], 1);
    stop.cancel();
    background.join().await;
}
