//! The conformance suite every instore persistence provider must pass: one async function per
//! rule of SPEC §3–§10 and §12, named as a sentence, grouped by module. [`provider_tests!`] turns the whole
//! suite into named tests for a provider:
//!
//! ```ignore
//! // crates/instore-sqlite/tests/conformance.rs — the whole file
//! async fn provider(clock: instore::ManualClock) -> std::sync::Arc<dyn instore_conformance::TestProvider> {
//!     let p = instore_sqlite::SqliteProvider::open_temp(clock).await.unwrap();
//!     let hooks = p.clone();
//!     // persistence, query and control sides; `WithHooks::new(p, ..)` for persistence alone
//!     instore_conformance::WithHooks::full(instore::Providers::of(p), move |id| {
//!         let hooks = hooks.clone();
//!         Box::pin(async move { hooks.corrupt_instance_data(id).await })
//!     })
//! }
//! instore_conformance::provider_tests!(provider);
//! ```
//!
//! The test crate needs `tokio` with the `macros` and `rt-multi-thread` features: every case is a
//! multi-threaded tokio test.
//!
//! Time moves through the manual clock only. `docs/design.md` maps every rule to its cases.

pub mod cases;
mod faults;
pub mod harness;
pub mod model;

pub use harness::{Env, Faults, TestProvider, WithHooks, T};

/// Emits one `#[tokio::test]` per case: `case!(make, module::name)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __case {
    ($make:path, $module:ident :: $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let env = $crate::Env::new($make).await;
            $crate::cases::$module::$name(&env).await;
        }
    };
}

/// Turns the whole suite into named tests for a provider factory
/// `async fn(ManualClock) -> Arc<dyn TestProvider>`.
#[macro_export]
macro_rules! provider_tests {
    ($make:path) => {
        mod values {
            #[allow(unused_imports)]
            use super::*;
            $crate::values_cases!($make);
        }
        mod races {
            #[allow(unused_imports)]
            use super::*;
            $crate::races_cases!($make);
        }
        mod owners {
            #[allow(unused_imports)]
            use super::*;
            $crate::owners_cases!($make);
        }
        mod locks {
            #[allow(unused_imports)]
            use super::*;
            $crate::locks_cases!($make);
        }
        mod load {
            #[allow(unused_imports)]
            use super::*;
            $crate::load_cases!($make);
        }
        mod keys {
            #[allow(unused_imports)]
            use super::*;
            $crate::keys_cases!($make);
        }
        mod save {
            #[allow(unused_imports)]
            use super::*;
            $crate::save_cases!($make);
        }
        mod runnable {
            #[allow(unused_imports)]
            use super::*;
            $crate::runnable_cases!($make);
        }
        mod events {
            #[allow(unused_imports)]
            use super::*;
            $crate::events_cases!($make);
        }
        mod suspension {
            #[allow(unused_imports)]
            use super::*;
            $crate::suspension_cases!($make);
        }
        mod runtime {
            #[allow(unused_imports)]
            use super::*;
            $crate::runtime_cases!($make);
        }
        mod query {
            #[allow(unused_imports)]
            use super::*;
            $crate::query_cases!($make);
        }
        mod control {
            #[allow(unused_imports)]
            use super::*;
            $crate::control_cases!($make);
        }
    };
}
