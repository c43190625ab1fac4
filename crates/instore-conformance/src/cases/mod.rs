//! The cases, one module per area of the spec. Each module ends with a `<module>_cases!`
//! macro listing its cases, which [`crate::provider_tests!`] expands.

pub mod values;
pub mod owners;
pub mod locks;
pub mod load;
pub mod keys;
pub mod save;
pub mod runnable;
pub mod events;
pub mod suspension;
pub mod runtime;
