//! Bearer tokens and roles. With tokens configured every API call needs one (`401` without or
//! with an unknown one); `reader` tokens may query, `admin` tokens may also steer (`403` for a
//! reader's control command). With no tokens configured every caller is an admin — which is
//! why [`crate::Server::serve`] refuses to listen on anything but a loopback address then.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Queries only.
    Reader,
    /// Queries and control commands.
    Admin,
}

impl Role {
    /// `reader` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

impl From<instore_config::ServerRole> for Role {
    fn from(r: instore_config::ServerRole) -> Self {
        match r {
            instore_config::ServerRole::Reader => Role::Reader,
            instore_config::ServerRole::Admin => Role::Admin,
        }
    }
}

/// A token the server accepts, and its role.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The secret the caller sends as `Authorization: Bearer <token>`.
    pub token: String,
    /// What it may do.
    pub role: Role,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<secret>")
            .field("role", &self.role)
            .finish()
    }
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role of a request's `Authorization` header, or why it has none.
pub(crate) fn role_of(tokens: &[ApiToken], header: Option<&HeaderValue>) -> Result<Role, ApiError> {
    if tokens.is_empty() {
        return Ok(Role::Admin);
    }
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let Some(header) = header else {
        return Err(unauthorized(
            "this server requires a token; send 'Authorization: Bearer <token>' with a token from the server's configuration ([[server.tokens]])",
        ));
    };
    let presented = header
        .to_str()
        .ok()
        .and_then(|h| {
            let (scheme, rest) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or_else(|| {
            unauthorized(
                "the Authorization header is not 'Bearer <token>'; send the token that way",
            )
        })?;
    tokens
        .iter()
        .find(|t| same(t.token.as_bytes(), presented.as_bytes()))
        .map(|t| t.role)
        .ok_or_else(|| unauthorized("the token is not one this server accepts; check it against the server's configuration"))
}

/// Middleware: finds the caller's role (or answers 401) and leaves it in the request.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match role_of(&state.tokens, request.headers().get(AUTHORIZATION)) {
        Ok(role) => {
            request.extensions_mut().insert(role);
            next.run(request).await
        }
        Err(e) => {
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The caller's role (any role may read).
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Role);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Role>()
            .copied()
            .map(Caller)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no credentials were checked for this route",
                )
            })
    }
}

/// A caller with the admin role; a reader gets 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Role::Admin => Ok(Admin),
            Role::Reader => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this token has the reader role, which may only query; control commands need an admin token",
            )),
        }
    }
}
