//! SPEC §7: the key lifecycle and its errors.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! keys_cases {
    ($make:path) => {};
}
