//! Bearer tokens: readers query, admins steer; no token or an unknown one is a 401; without
//! tokens the server refuses non-loopback addresses.

mod common;

use axum::http::{Method, StatusCode};
use common::{call, fixture, ADMIN, READER};

#[tokio::test]
async fn without_a_token_every_api_call_is_401() {
    let f = fixture().await;
    let r = f.router_with_tokens();
    for uri in [
        "/api/v1/instances",
        "/api/v1/health",
        "/api/v1/whoami",
        "/metrics",
    ] {
        let a = call(&r, Method::GET, uri, None, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(a.error().contains("requires a token"), "{}", a.error());
    }
    let a = call(
        &r,
        Method::GET,
        "/api/v1/instances",
        Some("wrong-token-0123456789"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.error().contains("not one this server accepts"),
        "{}",
        a.error()
    );
}

#[tokio::test]
async fn a_malformed_authorization_header_is_401() {
    let f = fixture().await;
    let r = f.router_with_tokens();
    let request = axum::http::Request::builder()
        .uri("/api/v1/instances")
        .header("authorization", format!("Basic {READER}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(r, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn readers_query_but_may_not_steer() {
    let f = fixture().await;
    let r = f.router_with_tokens();
    let a = call(&r, Method::GET, "/api/v1/instances", Some(READER), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = call(&r, Method::GET, "/metrics", Some(READER), None).await;
    assert_eq!(a.status, StatusCode::OK);
    let who = call(&r, Method::GET, "/api/v1/whoami", Some(READER), None)
        .await
        .json();
    assert_eq!(
        who,
        serde_json::json!({"role": "reader", "tokens_required": true})
    );
    let uri = format!("/api/v1/instances/{}/commands", f.suspended);
    let a = call(
        &r,
        Method::POST,
        &uri,
        Some(READER),
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.error().contains("admin token"), "{}", a.error());
    let a = call(
        &r,
        Method::DELETE,
        &format!("/api/v1/instances/{}", f.suspended),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Nothing changed.
    let q = call(&r, Method::GET, "/api/v1/commands", Some(READER), None)
        .await
        .json();
    assert_eq!(q["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn admins_steer() {
    let f = fixture().await;
    let r = f.router_with_tokens();
    let uri = format!("/api/v1/instances/{}/commands", f.suspended);
    let a = call(
        &r,
        Method::POST,
        &uri,
        Some(ADMIN),
        Some(r#"{"command":"resume"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let a = call(
        &r,
        Method::DELETE,
        &format!("/api/v1/instances/{}", f.completed),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let who = call(&r, Method::GET, "/api/v1/whoami", Some(ADMIN), None)
        .await
        .json();
    assert_eq!(who["role"], "admin");
}

#[tokio::test]
async fn the_dashboard_pages_and_the_openapi_document_need_no_token() {
    let f = fixture().await;
    let r = f.router_with_tokens();
    for uri in [
        "/",
        "/queue",
        "/errors",
        "/assets/dashboard.js",
        "/openapi.json",
    ] {
        let a = call(&r, Method::GET, uri, None, None).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn without_tokens_only_loopback_addresses_are_served() {
    let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let err = instore_server::check_listen(any, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refusing to listen on 0.0.0.0:8080 without tokens"),
        "{err}"
    );
    assert!(
        err.contains("[[server.tokens]]") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(instore_server::check_listen(any, true).is_ok());
    assert!(instore_server::check_listen("127.0.0.1:0".parse().unwrap(), false).is_ok());
    assert!(instore_server::check_listen("[::1]:0".parse().unwrap(), false).is_ok());
}

#[tokio::test]
async fn serve_refuses_a_non_loopback_listener_without_tokens() {
    let f = fixture().await;
    // Binding 0.0.0.0 with port 0 is harmless: serve refuses before accepting anything.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = f
        .server(Vec::new(), false)
        .serve(listener, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, instore_server::ServerError::UnprotectedListen { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn serve_answers_over_a_socket_and_stops_on_shutdown() {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(f.server(Vec::new(), true).serve(listener, stop.clone()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /api/v1/instances/count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#"{"count":3}"#), "{text}");
    stop.cancel();
    serving.await.unwrap().unwrap();
}
