//! The whole conformance suite on the memory provider.

use std::sync::Arc;

use instore::{ManualClock, MemoryProvider};
use instore_conformance::TestProvider;

async fn provider(clock: ManualClock) -> Arc<dyn TestProvider> {
    MemoryProvider::with_clock(Arc::new(clock))
}

instore_conformance::provider_tests!(provider);
