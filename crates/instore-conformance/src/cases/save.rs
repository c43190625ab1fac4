//! SPEC §6.4: Save and its effects, completion.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! save_cases {
    ($make:path) => {};
}
