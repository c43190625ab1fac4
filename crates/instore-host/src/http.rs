//! The control endpoint over HTTP: `POST /control/{instance}` with a `ControlCommand` as JSON
//! (`{"type":"Suspend","reason":"audit"}`). `204 No Content` once the effect is durable; an
//! error answers `{"code","message"}` (the store error's code) with `409 Conflict` for
//! conditions a retry may clear, `404` for a missing instance, `400` for a bad request, and
//! `500` otherwise. `instore_management::HttpEndpointResolver` is the client.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use instore::{ControlCommand, InstanceId, PropertyBag, StoreError};
use instore_management::ControlEndpoint;

/// A router serving `endpoint` at `POST /control/{instance}`.
pub fn control_router(endpoint: Arc<dyn ControlEndpoint>) -> Router {
    Router::new()
        .route("/control/{instance}", post(control))
        .with_state(endpoint)
}

async fn control(
    State(endpoint): State<Arc<dyn ControlEndpoint>>,
    Path(instance): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(instance) = instance.parse::<InstanceId>() else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the path names no instance id",
        );
    };
    let command: ControlCommand = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("the body is not a control command: {e}"),
            )
        }
    };
    match endpoint
        .execute(instance, &command, &PropertyBag::new())
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let status = match &e {
                StoreError::InstanceNotReady { .. } | StoreError::InstanceNotFound { .. } => {
                    StatusCode::NOT_FOUND
                }
                StoreError::Invalid { .. } | StoreError::CommandNotSupported { .. } => {
                    StatusCode::BAD_REQUEST
                }
                e if e.is_transient() => StatusCode::CONFLICT,
                StoreError::InstanceComplete { .. } | StoreError::LockLost { .. } => {
                    StatusCode::CONFLICT
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            failure(status, e.code(), &e.to_string())
        }
    }
}

fn failure(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}
