//! The cases, one module per area of the spec. Each module ends with a `<module>_cases!`
//! macro listing its cases, which [`crate::provider_tests!`] expands.

pub mod control;
pub mod events;
pub mod keys;
pub mod load;
pub mod locks;
pub mod owners;
pub mod query;
pub mod races;
pub mod runnable;
pub mod runtime;
pub mod save;
pub mod suspension;
pub mod values;
