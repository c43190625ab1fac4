//! SPEC §9: suspension and the suspension extension.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! suspension_cases {
    ($make:path) => {};
}
