//! Errors as the API answers them: a status code and `{"error": "<what is wrong and what to do>"}`.
//! Bad input is always a 4xx; only storage failures are 5xx.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use instore::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong and what to do about it.
    pub error: String,
}

/// An error answer: a status and a message.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// A message with its chain of sources on one line (the store's errors keep details there).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::Invalid { .. } => StatusCode::BAD_REQUEST,
            StoreError::InstanceNotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::CommandLocked { .. }
            | StoreError::CommandPending { .. }
            | StoreError::InstanceComplete { .. }
            | StoreError::InstanceLocked { .. } => StatusCode::CONFLICT,
            StoreError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Storage(s) if s.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut message = chain(&e);
        if let Some(rest) = message.strip_prefix("invalid: ") {
            message = rest.to_owned();
        }
        if status.is_server_error() {
            tracing::warn!(code = e.code(), error = %message, "store failure");
            message = format!("{message}; the store failed, retry later or check the server's log");
        }
        ApiError::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}
