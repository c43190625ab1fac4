//! SPEC §6 (general), §6.7, §9: one command per handle, timeouts, unsupported commands, extensions.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! runtime_cases {
    ($make:path) => {};
}
