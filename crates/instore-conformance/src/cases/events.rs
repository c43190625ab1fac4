//! SPEC §8: HasRunnableWorkflow and wait_for_events, pushed wake-ups.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! events_cases {
    ($make:path) => {};
}
