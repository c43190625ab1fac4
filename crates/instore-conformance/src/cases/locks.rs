//! SPEC §5: instance locks, lock epochs, takeover, conflicts, lock-retry policies, background unlock.

#[allow(unused_imports)]
use crate::harness::*;

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! locks_cases {
    ($make:path) => {};
}
