//! SPEC §12: the query provider — filters, counts, groupings, keyset pages, `InstanceInfo`,
//! `blocked_on`, retention purge (decision 0007).

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! query_cases {
    ($make:path) => {};
}
