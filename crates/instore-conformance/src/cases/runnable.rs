//! SPEC §6.5, §6.6, §8: the runnable set, TryLoadRunnable, QueryActivatable, recovery.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! runnable_cases {
    ($make:path) => {};
}
