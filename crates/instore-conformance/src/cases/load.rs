//! SPEC §6.2–6.3: Load and LoadByKey.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! load_cases {
    ($make:path) => {};
}
