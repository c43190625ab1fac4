//! Activation hooks (SPEC §10): called for a host type that has runnable instances and no live
//! owner, never while one lives, at most once per debounce interval; a command hook and an HTTP
//! hook, on the memory and SQLite providers.

// Test code (clippy's allow-unwrap-in-tests covers #[test] functions, not their helpers).
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use instore::{ExecutionStatus, PropertyBag, Save};
use instore_management::{
    CommandHook, HttpHook, ManagementService, ManagementSettings, ENV_HOST_TYPE, ENV_RUNNABLE_COUNT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::*;

on_each_provider!(
    a_command_hook_runs_once_the_host_type_has_runnable_instances_and_no_live_owner,
    an_http_hook_posts_the_host_type_and_its_runnable_count,
    a_failing_hook_is_called_again_after_the_debounce_interval,
);

/// Runnable instances of `host_type` whose host has gone: `count` of them, executing and
/// unlocked, their owner deleted.
async fn orphaned(f: &Fixture, host_type: &str, count: usize) {
    let owner = host(&f.store, host_type, PropertyBag::new()).await;
    for _ in 0..count {
        let save = Save::data(data())
            .with_status(ExecutionStatus::Executing)
            .and_unlock();
        instance(&f.store, owner, save).await;
    }
    delete_owner(&f.store, owner).await;
}

async fn a_command_hook_runs_once_the_host_type_has_runnable_instances_and_no_live_owner(
    f: Fixture,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("activated");
    let line = format!(
        "echo \"${ENV_HOST_TYPE} ${ENV_RUNNABLE_COUNT}\" >> '{}'",
        file.display()
    );
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let save = Save::data(data())
        .with_status(ExecutionStatus::Executing)
        .and_unlock();
    instance(&f.store, owner, save).await;

    let service = ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(quick())
        .activation_hook("orders", Arc::new(CommandHook::shell(line)))
        .activation_hook(
            "billing",
            Arc::new(CommandHook::shell(format!(
                "echo billing >> '{}'",
                file.display()
            ))),
        )
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);

    // A live host of the type: nothing to activate, however often the service looks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!file.exists(), "no hook while a host of the type lives");

    delete_owner(&f.store, owner).await;
    eventually("the hook writes its file", || async {
        std::fs::read_to_string(&file).is_ok_and(|s| !s.is_empty())
    })
    .await;
    // Several more looks within the debounce interval (30 s by default): no second call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "orders 1\n");
    let s = stats.snapshot();
    assert_eq!((s.hooks_called, s.hooks_failed), (1, 0));
    running.stop().await;
}

async fn an_http_hook_posts_the_host_type_and_its_runnable_count(f: Fixture) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        // Read the head, then as much body as Content-Length says.
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before sending its request");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .expect("a Content-Length header")
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    break;
                }
            }
        }
        socket
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(request).unwrap()
    });

    orphaned(&f, "orders", 2).await;
    let url = format!("http://127.0.0.1:{port}/hooks/activate");
    let service = ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(quick())
        .fallback_activation_hook(Arc::new(HttpHook::new(&url).unwrap()))
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);

    let request = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the hook posts within the timeout")
        .unwrap();
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("POST /hooks/activate HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{port}")),
        "{head}"
    );
    assert!(
        head.contains("\r\nContent-Type: application/json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "host_type": "orders", "runnable_count": 2 })
    );
    eventually("the call counts as a success", || async {
        stats.snapshot().hooks_called == 1
    })
    .await;
    running.stop().await;
    assert_eq!(stats.snapshot().hooks_failed, 0);
}

async fn a_failing_hook_is_called_again_after_the_debounce_interval(f: Fixture) {
    orphaned(&f, "orders", 1).await;
    let settings = ManagementSettings {
        activation_debounce: Duration::from_millis(100),
        ..quick()
    };
    let service = ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(settings)
        .activation_hook("orders", Arc::new(CommandHook::shell("exit 3")))
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);
    eventually("the hook is called again after failing", || async {
        stats.snapshot().hooks_failed >= 2
    })
    .await;
    running.stop().await;
}
