//! Runs the real `instore` binary in a temporary directory, on the default SQLite store
//! (`instore.db` there), after seeding that store through the library.

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, ControlProvider, CreateOwner, ExceptionInfo, InstanceId, InstanceStore, KeyId, NewKey,
    OwnerId, PersistenceProvider, Save, StoreSettings, SuspendChange, Timestamp, Uuid,
};
use instore_sqlite::SqliteProvider;
use serde_json::Value as Json;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A temporary working directory to run the binary in.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success, showing the output otherwise.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts a usage error (exit 2) whose message contains every one of `parts`.
    #[track_caller]
    pub fn usage_error(&self, parts: &[&str]) -> &Self {
        assert_eq!(self.code, 2, "expected exit code 2: {self:#?}");
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}: {self:#?}"
            );
        }
        self
    }

    /// Asserts a runtime failure (exit 1) whose message contains every one of `parts`.
    #[track_caller]
    pub fn failure(&self, parts: &[&str]) -> &Self {
        assert_eq!(self.code, 1, "expected exit code 1: {self:#?}");
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}: {self:#?}"
            );
        }
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// The instances [`Sandbox::seed`] creates (all of host type `orders`, `orders:total` promoted).
#[derive(Debug, Clone)]
pub struct Seeded {
    pub owner: OwnerId,
    /// Three running, idle instances with totals 10, 20, 30; the first has `key`, the second a
    /// timer, in order of creation.
    pub running: Vec<InstanceId>,
    pub key: KeyId,
    /// Suspended with a `PaymentDeclined` exception.
    pub suspended: InstanceId,
    /// Completed.
    pub completed: InstanceId,
}

impl Seeded {
    /// Every instance, in order of creation.
    pub fn all(&self) -> Vec<InstanceId> {
        let mut all = self.running.clone();
        all.push(self.suspended);
        all.push(self.completed);
        all
    }
}

pub fn settings() -> StoreSettings {
    StoreSettings {
        promotions: vec!["orders:total".to_owned()],
        ..StoreSettings::default()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The default store's file.
    pub fn db(&self) -> PathBuf {
        self.path("instore.db")
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write a file");
    }

    /// Runs `instore ARGS` here, without `$INSTORE_URL`/`$INSTORE_CONFIG` and without a terminal.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_instore"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("INSTORE_URL")
            .env_remove("INSTORE_CONFIG")
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().expect("run the instore binary");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Opens the default store's file through the library.
    pub async fn provider(&self) -> Arc<SqliteProvider> {
        self.provider_at(&self.db()).await
    }

    pub async fn provider_at(&self, path: &Path) -> Arc<SqliteProvider> {
        SqliteProvider::open(path)
            .await
            .expect("open the SQLite store")
    }

    /// Creates the instances of [`Seeded`] in the default store.
    pub async fn seed(&self) -> Seeded {
        self.seed_at(&self.db()).await
    }

    pub async fn seed_at(&self, path: &Path) -> Seeded {
        let provider = self.provider_at(path).await;
        let store = InstanceStore::builder(provider.clone())
            .settings(settings())
            .machine("seeder")
            .build()
            .expect("a store");
        let owner_handle = store.create_handle();
        let view = store
            .execute(&owner_handle, CreateOwner::host_type("orders"), TIMEOUT)
            .await
            .expect("create an owner");
        let owner = view.owner.expect("an owner");
        let key = KeyId::derive(Uuid::nil(), "order-10");

        let mut saved = Vec::new();
        let save = |s: Save| {
            let store = store.clone();
            async move {
                let id = InstanceId::new();
                let handle = store.create_handle_for(Some(owner), Some(id));
                store.execute(&handle, s, TIMEOUT).await.expect("save");
                // Distinct creation times, so "newest first" is one order.
                tokio::time::sleep(Duration::from_millis(5)).await;
                id
            }
        };
        let total = |n: i64| bag([("orders:total", n)]);
        saved.push(
            save(Save {
                keys_to_associate: vec![NewKey::from(key)],
                ..Save::data(total(10)).and_unlock()
            })
            .await,
        );
        let in_a_day = Timestamp::from_system_time(std::time::SystemTime::now())
            .plus(Duration::from_secs(86_400));
        saved.push(save(Save::data(total(20)).with_timer(in_a_day).and_unlock()).await);
        saved.push(save(Save::data(total(30)).and_unlock()).await);
        let suspended = save(Save {
            suspend: SuspendChange::Suspend {
                reason: "payment failed".to_owned(),
                exception: Some(ExceptionInfo {
                    name: "PaymentDeclined".to_owned(),
                    message: "card expired".to_owned(),
                }),
            },
            ..Save::data(total(40)).and_unlock()
        })
        .await;
        let completed = save(Save::data(total(50)).and_complete()).await;
        store.shutdown().await;
        drop(store);
        assert!(provider.owners().await.expect("owners").len() == 1);
        drop(provider);
        Seeded {
            owner,
            running: saved,
            key,
            suspended,
            completed,
        }
    }

    /// Takes the oldest queued commands as a management service would, and gives them up at once
    /// (one allowed attempt), so each lands in the error log.
    pub async fn fail_queued_commands(&self) -> Vec<InstanceId> {
        let provider = self.provider().await;
        let settings = instore::QueueSettings {
            max_attempts: 1,
            ..instore::QueueSettings::default()
        };
        let batch = provider
            .read_batch(&settings, "test-machine")
            .await
            .expect("read the queue");
        let mut failed = Vec::new();
        for queued in batch {
            provider
                .abandon(
                    queued.instance,
                    queued.lock,
                    instore::CommandFailure {
                        code: "instance_locked".to_owned(),
                        message: "the host did not answer".to_owned(),
                        machine: "test-machine".to_owned(),
                    },
                    &settings,
                )
                .await
                .expect("abandon");
            failed.push(queued.instance);
        }
        failed
    }

    /// Takes the queued commands and keeps them locked (a management service executing them).
    pub async fn lock_queued_commands(&self) -> Vec<InstanceId> {
        let provider = self.provider().await;
        provider
            .read_batch(&instore::QueueSettings::default(), "test-machine")
            .await
            .expect("read the queue")
            .into_iter()
            .map(|q| q.instance)
            .collect()
    }
}

/// The ids in a JSON array of objects with an "id" (or "instance") field.
pub fn ids(items: &Json) -> Vec<InstanceId> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| {
            i.get("id")
                .or_else(|| i.get("instance"))
                .and_then(Json::as_str)
                .expect("an id string")
                .parse()
                .expect("a UUID")
        })
        .collect()
}
