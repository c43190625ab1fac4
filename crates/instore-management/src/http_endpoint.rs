//! Control endpoints over HTTP: a host in another process serves `POST {url}/{instance}` with a
//! [`ControlCommand`] as JSON (the host runtime's `control_http`) and names `url`
//! (`http://HOST:PORT/control`) in its owner metadata; [`HttpEndpointResolver`] reaches it.
//!
//! The protocol: `2xx` once the effect is durable; otherwise a JSON body `{"code","message"}`
//! naming the store error (its [`StoreError::code`]), which the service records as the
//! attempt's failure. No answer (refused, reset, timed out) is a transient storage failure.

use std::sync::Arc;

use instore::{ControlCommand, InstanceId, PropertyBag, StorageError, StoreError};

use crate::endpoint::{ControlEndpoint, EndpointRegistry, EndpointResolver};
use crate::http::HttpUrl;

/// Resolves `http://` endpoint names to HTTP control endpoints, and every other name (or an
/// `http://` name a host of this process registered) through a fallback [`EndpointRegistry`].
#[derive(Debug, Clone, Default)]
pub struct HttpEndpointResolver {
    fallback: EndpointRegistry,
}

impl HttpEndpointResolver {
    /// A resolver for HTTP endpoints only (its fallback registry is empty).
    pub fn new() -> Self {
        Self::default()
    }

    /// A resolver for HTTP endpoints that first asks `registry` (hosts in this process, which
    /// are called directly even when they also serve HTTP).
    pub fn with_fallback(registry: EndpointRegistry) -> Self {
        HttpEndpointResolver { fallback: registry }
    }
}

impl EndpointResolver for HttpEndpointResolver {
    fn resolve(&self, name: &str) -> Option<Arc<dyn ControlEndpoint>> {
        if let Some(endpoint) = self.fallback.resolve(name) {
            return Some(endpoint);
        }
        let is_http = name
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
        if !is_http {
            return None;
        }
        match HttpUrl::parse(name) {
            Ok(url) => Some(Arc::new(HttpEndpoint { url })),
            Err(e) => {
                tracing::debug!(endpoint = name, error = %e, "an unusable HTTP control endpoint");
                None
            }
        }
    }
}

/// A host's control endpoint at an `http://` URL.
#[derive(Debug)]
struct HttpEndpoint {
    url: HttpUrl,
}

#[async_trait::async_trait]
impl ControlEndpoint for HttpEndpoint {
    async fn execute(
        &self,
        instance: InstanceId,
        command: &ControlCommand,
        _metadata: &PropertyBag,
    ) -> Result<(), StoreError> {
        let url = self.url.join(&instance.to_string());
        let body = serde_json::to_vec(command)
            .map_err(|e| StoreError::invalid(format!("the command does not serialize: {e}")))?;
        let (status, answer) = url.post_json_for_body(&body).await.map_err(|e| {
            StoreError::Storage(
                StorageError::unavailable(format!("control endpoint {url} did not answer"))
                    .with_source(e),
            )
        })?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(remote_error(instance, status, &answer, &url))
    }
}

/// The store error a failed answer names: the variants a caller acts on by kind, the rest as
/// a storage error carrying the remote code and message.
fn remote_error(instance: InstanceId, status: u16, answer: &[u8], url: &HttpUrl) -> StoreError {
    #[derive(serde::Deserialize)]
    struct Answer {
        code: String,
        message: String,
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(answer) else {
        return StoreError::Storage(StorageError::unavailable(format!(
            "control endpoint {url} answered status {status}"
        )));
    };
    match answer.code.as_str() {
        "instance_complete" => StoreError::InstanceComplete { instance },
        "instance_not_ready" => StoreError::InstanceNotReady { instance },
        "lock_lost" => StoreError::LockLost { instance },
        "timeout" => StoreError::Timeout,
        "invalid" => StoreError::invalid(format!("control endpoint {url}: {}", answer.message)),
        code => StoreError::Storage(StorageError::unavailable(format!(
            "control endpoint {url} failed: code={code} {}",
            answer.message
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;

    #[async_trait::async_trait]
    impl ControlEndpoint for Nothing {
        async fn execute(
            &self,
            _: InstanceId,
            _: &ControlCommand,
            _: &PropertyBag,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn http_names_resolve_over_http_and_the_rest_through_the_registry() {
        let registry = EndpointRegistry::new();
        let inproc = registry.register_unique(Arc::new(Nothing));
        let resolver = HttpEndpointResolver::with_fallback(registry.clone());
        assert!(resolver.resolve(&inproc).is_some());
        assert!(resolver.resolve("inproc:unknown").is_none());
        assert!(resolver.resolve("http://127.0.0.1:9/control").is_some());
        assert!(resolver.resolve("https://x/control").is_none());
        assert!(resolver.resolve("http://").is_none());
    }

    #[test]
    fn failed_answers_keep_the_remote_code() {
        let url = HttpUrl::parse("http://h/control").unwrap();
        let id = InstanceId::new();
        let e = remote_error(
            id,
            409,
            br#"{"code":"instance_complete","message":"x"}"#,
            &url,
        );
        assert!(matches!(e, StoreError::InstanceComplete { .. }));
        let e = remote_error(
            id,
            409,
            br#"{"code":"instance_locked","message":"held"}"#,
            &url,
        );
        assert!(
            e.is_transient() && format!("{e:?}").contains("instance_locked"),
            "{e:?}"
        );
        let e = remote_error(id, 502, b"<html>", &url);
        assert!(e.is_transient());
    }
}
