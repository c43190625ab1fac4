//! Activating hosts (SPEC §10): the service watches which host types have runnable instances but
//! no live owner ([`instore::PersistenceProvider::activatable`]) and calls the activation hook
//! configured for each — a command, or an HTTP URL — at most once per debounce interval.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use instore::{Activatable, PersistenceProvider, SharedClock, Timestamp};

use crate::execution::chain;
use crate::http::HttpUrl;
use crate::stats::{Counter, ServiceStats};

/// Environment variable a command hook gets: the host type to start.
pub const ENV_HOST_TYPE: &str = "INSTORE_HOST_TYPE";
/// Environment variable a command hook gets: how many of its instances are runnable.
pub const ENV_RUNNABLE_COUNT: &str = "INSTORE_RUNNABLE_COUNT";

/// Why an activation hook failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The command could not be started.
    #[error("could not start activation command {program:?}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command ended unsuccessfully.
    #[error("activation command {program:?} ended with {status}")]
    Exit {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The HTTP request failed, or was answered with a status other than 2xx.
    #[error("activation request to {url} failed: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The hook did not finish within the service's `hook_timeout`.
    #[error("activation hook did not finish in time")]
    Timeout,
    /// The hook is configured wrongly.
    #[error("invalid activation hook: {0}")]
    Invalid(String),
}

/// Starts hosts of a host type that has runnable instances and no live host.
#[async_trait::async_trait]
pub trait ActivationHook: fmt::Debug + Send + Sync + 'static {
    /// Asks for a host of `request.host_type` to be started. The service bounds the call's time
    /// and never calls it for the same host type more often than its debounce interval.
    async fn activate(&self, request: &Activatable) -> Result<(), HookError>;
}

/// Runs a command with [`ENV_HOST_TYPE`] and [`ENV_RUNNABLE_COUNT`] set, and waits for it to
/// exit (successfully: exit status 0). A launcher should start the host in the background and
/// return; a command still running when the hook times out is left running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHook {
    program: String,
    args: Vec<String>,
}

impl CommandHook {
    /// Runs `program` with `args` (no shell).
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// Runs `line` with `sh -c` (so it can use `$INSTORE_HOST_TYPE`, redirections, ...).
    pub fn shell(line: impl Into<String>) -> Self {
        Self::new("sh", ["-c".to_owned(), line.into()])
    }
}

#[async_trait::async_trait]
impl ActivationHook for CommandHook {
    async fn activate(&self, request: &Activatable) -> Result<(), HookError> {
        let status = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env(ENV_HOST_TYPE, &request.host_type)
            .env(ENV_RUNNABLE_COUNT, request.runnable_count.to_string())
            .stdin(std::process::Stdio::null())
            .status()
            .await
            .map_err(|source| HookError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(HookError::Exit {
                program: self.program.clone(),
                status,
            })
        }
    }
}

/// `POST`s `{"host_type": ..., "runnable_count": ...}` to an `http://` URL; any 2xx answer is
/// success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHook {
    url: HttpUrl,
}

impl HttpHook {
    /// A hook posting to `url` (`http://` only).
    pub fn new(url: &str) -> Result<Self, HookError> {
        Ok(Self {
            url: HttpUrl::parse(url).map_err(HookError::Invalid)?,
        })
    }
}

#[async_trait::async_trait]
impl ActivationHook for HttpHook {
    async fn activate(&self, request: &Activatable) -> Result<(), HookError> {
        let body = serde_json::to_vec(request).map_err(|e| HookError::Invalid(e.to_string()))?;
        let fail = |message: String| HookError::Http {
            url: self.url.to_string(),
            message,
        };
        let status = self
            .url
            .post_json(&body)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(fail(format!("answered with status {status}")))
        }
    }
}

/// A hook from its configured form: an `http://` URL posts to it; anything else is a shell
/// command line. `https://` is refused (not supported).
pub fn hook_from_spec(spec: &str) -> Result<Arc<dyn ActivationHook>, HookError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(HookError::Invalid(
            "the hook is empty; give an http:// URL or a command line".into(),
        ));
    }
    let lower = spec.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(Arc::new(HttpHook::new(spec)?))
    } else {
        Ok(Arc::new(CommandHook::shell(spec)))
    }
}

/// The configured hooks: one per host type, and a fallback for the others.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) by_host_type: HashMap<String, Arc<dyn ActivationHook>>,
    pub(crate) fallback: Option<Arc<dyn ActivationHook>>,
}

impl Hooks {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_host_type.is_empty() && self.fallback.is_none()
    }

    fn for_host_type(&self, host_type: &str) -> Option<&Arc<dyn ActivationHook>> {
        self.by_host_type.get(host_type).or(self.fallback.as_ref())
    }
}

/// The least time between two looks triggered by wake-ups.
const WAKE_UP_GAP: Duration = Duration::from_secs(1);

/// The activation loop.
#[derive(Debug)]
pub(crate) struct Activator {
    pub(crate) provider: Arc<dyn PersistenceProvider>,
    pub(crate) clock: SharedClock,
    pub(crate) hooks: Hooks,
    pub(crate) interval: Duration,
    pub(crate) debounce: Duration,
    pub(crate) hook_timeout: Duration,
    pub(crate) stats: Arc<ServiceStats>,
    /// When each host type's hook was last called.
    pub(crate) last_called: Mutex<HashMap<String, Timestamp>>,
}

impl Activator {
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut wake_ups = Some(self.provider.wake_ups());
        let mut calls = JoinSet::new();
        loop {
            self.look(&mut calls).await;
            while calls.try_join_next().is_some() {}
            let next = self.clock.now().plus(self.interval);
            let woken = async {
                match wake_ups.as_mut() {
                    Some(w) => w.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.clock.sleep_until(next) => {}
                alive = woken => {
                    if !alive {
                        wake_ups = None; // the provider dropped its sender: poll only
                    }
                    let gap = self.clock.now().plus(WAKE_UP_GAP.min(self.interval));
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.clock.sleep_until(gap) => {}
                    }
                }
            }
        }
        calls.abort_all();
    }

    /// One look: call the hook of every activatable host type not called within the debounce
    /// interval.
    async fn look(self: &Arc<Self>, calls: &mut JoinSet<()>) {
        let activatable = match self.provider.activatable().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "could not look up activatable host types");
                return;
            }
        };
        let now = self.clock.now();
        for request in activatable {
            let Some(hook) = self.hooks.for_host_type(&request.host_type).cloned() else {
                continue;
            };
            {
                let mut last = self.last_called.lock().unwrap_or_else(|p| p.into_inner());
                match last.get(&request.host_type) {
                    Some(t) if now < t.plus(self.debounce) => continue,
                    _ => {}
                }
                last.insert(request.host_type.clone(), now);
            }
            let this = self.clone();
            let span = tracing::info_span!(
                "activation",
                host_type = %request.host_type,
                runnable = request.runnable_count
            );
            calls.spawn(async move { this.call(hook, request).await }.instrument(span));
        }
    }

    async fn call(&self, hook: Arc<dyn ActivationHook>, request: Activatable) {
        self.stats.add(Counter::HooksCalled, 1);
        let deadline = self.clock.now().plus(self.hook_timeout);
        let result = tokio::select! {
            r = hook.activate(&request) => r,
            _ = self.clock.sleep_until(deadline) => Err(HookError::Timeout),
        };
        match result {
            Ok(()) => tracing::info!("activation hook called"),
            Err(e) => {
                self.stats.add(Counter::HooksFailed, 1);
                tracing::warn!(error = %chain(&e), "activation hook failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_choose_the_hook_kind() {
        assert!(
            format!("{:?}", hook_from_spec("http://127.0.0.1:1/x").unwrap()).contains("HttpHook")
        );
        assert!(
            format!("{:?}", hook_from_spec("systemctl start orders").unwrap())
                .contains("CommandHook")
        );
        assert!(hook_from_spec("https://x/")
            .unwrap_err()
            .to_string()
            .contains("only http://"));
        assert!(hook_from_spec("  ").is_err());
    }
}
