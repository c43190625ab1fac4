//! SPEC §3: values, options (write-only, optional), bags, change bags, validation, size limit.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! values_cases {
    ($make:path) => {};
}
