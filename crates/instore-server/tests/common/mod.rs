//! A memory store with a few instances, a server over it, and request helpers.

#![allow(dead_code)] // each test file uses part of it
#![allow(clippy::unwrap_used)] // test support: a failed setup should stop the test

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use instore::{
    bag, CreateOwner, ExceptionInfo, InstanceId, InstanceStore, Load, MemoryProvider, Providers,
    Save, SuspendChange,
};
use instore_server::{ApiToken, Server};
use serde_json::Value;
use tower::ServiceExt;

pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const READER: &str = "reader-token-0123456789";
pub const ADMIN: &str = "admin-token-0123456789ab";

pub struct Fixture {
    pub store: InstanceStore,
    pub providers: Providers,
    pub running: InstanceId,
    pub suspended: InstanceId,
    pub completed: InstanceId,
}

/// A store with one running (idle), one suspended and one completed instance of host type
/// `orders`, saved by an owner that then left.
pub async fn fixture() -> Fixture {
    let providers = Providers::of(MemoryProvider::new());
    let store = InstanceStore::builder(providers.persistence.clone())
        .build()
        .unwrap();
    let host = store.create_handle_for(None, None);
    store
        .execute(&host, CreateOwner::host_type("orders"), TIMEOUT)
        .await
        .unwrap();
    let save = |id: InstanceId, save: Save| {
        let store = store.clone();
        let owner = host.owner();
        async move {
            let h = store.create_handle_for(owner, Some(id));
            store.execute(&h, save, TIMEOUT).await.unwrap();
        }
    };
    let running = InstanceId::new();
    let mut s = Save::data(bag([("step", 1i64)])).and_unlock();
    s.bookmarks = vec!["payment".into()];
    save(running, s).await;
    let suspended = InstanceId::new();
    let mut s = Save::data(bag([("step", 2i64)])).and_unlock();
    s.suspend = SuspendChange::Suspend {
        reason: "fraud check".into(),
        exception: Some(ExceptionInfo {
            name: "PaymentTimeout".into(),
            message: "no answer".into(),
        }),
    };
    save(suspended, s).await;
    let completed = InstanceId::new();
    save(
        completed,
        Save::data(bag([("step", 3i64)]))
            .and_unlock()
            .and_complete(),
    )
    .await;
    store
        .execute(&host, instore::Command::DeleteOwner, TIMEOUT)
        .await
        .ok();
    Fixture {
        store,
        providers,
        running,
        suspended,
        completed,
    }
}

impl Fixture {
    /// A server without a management service (commands stay queued) and without tokens.
    pub fn router(&self) -> Router {
        self.server(Vec::new(), false).router()
    }

    pub fn server(&self, tokens: Vec<ApiToken>, management: bool) -> Server {
        Server::builder_for("test", self.store.clone(), self.providers.clone())
            .tokens(tokens)
            .management(management)
            .build()
            .unwrap()
    }

    /// A server with a reader and an admin token.
    pub fn router_with_tokens(&self) -> Router {
        self.server(
            vec![
                ApiToken {
                    token: READER.into(),
                    role: instore_server::Role::Reader,
                },
                ApiToken {
                    token: ADMIN.into(),
                    role: instore_server::Role::Admin,
                },
            ],
            false,
        )
        .router()
    }

    /// Holds `id` locked by a live owner (so another owner's load conflicts).
    pub async fn lock(&self, id: InstanceId) -> instore::InstanceHandle {
        let host = self.store.create_handle_for(None, None);
        self.store
            .execute(&host, CreateOwner::host_type("orders"), TIMEOUT)
            .await
            .unwrap();
        let h = self.store.create_handle_for(host.owner(), Some(id));
        self.store
            .execute(&h, Load::default(), TIMEOUT)
            .await
            .unwrap();
        h
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error message of a 4xx/5xx answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.text))
            .to_owned()
    }
}

pub async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub async fn get(router: &Router, uri: &str) -> Answer {
    call(router, Method::GET, uri, None, None).await
}
