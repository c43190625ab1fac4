//! The whole conformance suite on the PostgreSQL provider, each case in a fresh schema that is
//! dropped when the case ends.

mod support;

use std::sync::Arc;

use instore::{ManualClock, Providers};
use instore_conformance::{TestProvider, WithHooks};

async fn provider(clock: ManualClock) -> Arc<dyn TestProvider> {
    let (provider, guard) = support::provider(clock).await;
    let hooks = provider.clone();
    WithHooks::full(Providers::of(provider), move |instance| {
        let (hooks, _guard) = (hooks.clone(), guard.clone());
        Box::pin(async move {
            assert!(
                hooks.corrupt_instance_data(instance).await.expect("damage"),
                "no instance {instance}"
            );
        })
    })
}

instore_conformance::provider_tests!(provider);
