//! The whole conformance suite on the SQLite provider (persistence, query and control sides),
//! each case on a fresh file in a temp dir.

use std::sync::Arc;

use instore::{ManualClock, Providers};
use instore_conformance::{TestProvider, WithHooks};
use instore_sqlite::{SqliteOptions, SqliteProvider};

async fn provider(clock: ManualClock) -> Arc<dyn TestProvider> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("instore.db");
    let provider = SqliteProvider::open_with(&path, SqliteOptions::default(), Arc::new(clock))
        .await
        .expect("open");
    let hooks = provider.clone();
    let keep_dir = Arc::new(dir);
    WithHooks::full(Providers::of(provider), move |instance| {
        let (hooks, _dir) = (hooks.clone(), keep_dir.clone());
        Box::pin(async move {
            assert!(
                hooks.corrupt_instance_data(instance).await.expect("damage"),
                "no instance {instance}"
            );
        })
    })
}

instore_conformance::provider_tests!(provider);
