//! The model-based test on SQLite: generated command sequences run on the SQLite provider and on
//! the memory provider (the oracle), every result compared. At least 10,000 steps per run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use instore::PersistenceProvider;
use instore_sqlite::{SqliteOptions, SqliteProvider};

#[test]
fn sqlite_matches_the_memory_oracle_over_ten_thousand_steps() {
    // One file per case, all in one directory removed when the test ends.
    let dir = tempfile::tempdir().expect("a temp dir");
    let cases = AtomicUsize::new(0);
    let report = instore_conformance::model::run_model(
        |clock| {
            let path = dir
                .path()
                .join(format!("case-{}.db", cases.fetch_add(1, Ordering::SeqCst)));
            async move {
                let provider =
                    SqliteProvider::open_with(path, SqliteOptions::default(), Arc::new(clock))
                        .await
                        .expect("open");
                provider as Arc<dyn PersistenceProvider>
            }
        },
        100,
        100,
    );
    println!("{report:?}");
    assert!(report.steps >= 10_000, "ran only {} steps", report.steps);
}
