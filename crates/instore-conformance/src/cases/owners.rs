//! SPEC §4: owners and leases, renewal, loss and recovery, DeleteOwner, clean-up.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! owners_cases {
    ($make:path) => {};
}
