//! The model-based test on PostgreSQL: generated command sequences run on the PostgreSQL provider
//! and on the memory provider (the oracle), every result compared. At least 10,000 steps per run,
//! each case in a fresh schema, all dropped when the test ends.

mod support;

use std::sync::{Arc, Mutex};

use instore::PersistenceProvider;

#[test]
fn postgres_matches_the_memory_oracle_over_ten_thousand_steps() {
    let guards = Mutex::new(Vec::new());
    let report = instore_conformance::model::run_model(
        |clock| {
            let guards = &guards;
            async move {
                let (provider, guard) = support::provider(clock).await;
                guards.lock().expect("guards").push(guard);
                provider as Arc<dyn PersistenceProvider>
            }
        },
        100,
        100,
    );
    println!("{report:?}");
    assert!(report.steps >= 10_000, "ran only {} steps", report.steps);
}
