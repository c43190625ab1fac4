//! SPEC §10 rules 1–8: the control provider — Delete at once, the FIFO queue of one command per
//! instance, locked batches, retries, the error log, handover metadata (decision 0007).

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! control_cases {
    ($make:path) => {};
}
