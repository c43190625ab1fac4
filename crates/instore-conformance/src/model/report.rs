//! What a run reports, and the regression test printed for a shrunk failure.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::ops::{Op, Setup};

/// What [`run_model`](super::run_model) did.
#[derive(Debug, Clone, Default)]
pub struct ModelReport {
    /// The proptest seed (rerun with `PROPTEST_RNG_SEED=<seed>`); 0 for a replay.
    pub seed: u64,
    /// Cases run.
    pub cases: u32,
    /// Steps run in all (skipped ones included).
    pub steps: u64,
    /// Steps skipped: an owner over the cap of three live owners, a runnable tie.
    pub skipped: u64,
    /// How often each op ended how (`"Save: ok"`, `"Load: instance_locked"`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model: {} cases, {} steps ({} skipped) in {:.1?}",
            self.cases, self.steps, self.skipped, self.elapsed
        )?;
        if self.seed != 0 {
            write!(
                f,
                "; seed {} (rerun with PROPTEST_RNG_SEED={})",
                self.seed, self.seed
            )?;
        }
        writeln!(f)?;
        for (what, n) in &self.outcomes {
            writeln!(f, "  {n:>7}  {what}")?;
        }
        Ok(())
    }
}

pub(super) fn regression_test(setup: &Setup, ops: &[Op]) -> String {
    let mut s = String::new();
    s.push_str("#[test]\nfn model_regression() {\n");
    s.push_str("    use instore_conformance::model::{replay_with, Keys, Op, Setup};\n");
    s.push_str(&format!(
        "    replay_with(\n        provider, // your factory: Fn(ManualClock) -> impl Future<Output = Arc<dyn PersistenceProvider>>\n        {setup:?},\n        vec![\n"
    ));
    for op in ops {
        s.push_str(&format!("            Op::{op:?},\n"));
    }
    s.push_str("        ],\n    );\n}\n");
    // `Keys` may be unused in a sequence without key sets; keep the test warning-free.
    if !ops.iter().any(|op| format!("{op:?}").contains("Keys(")) {
        s = s.replace("{replay_with, Keys, Op, Setup}", "{replay_with, Op, Setup}");
    }
    s
}
