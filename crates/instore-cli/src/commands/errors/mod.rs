//! `instore errors …`: the error log of control commands given up.

pub mod list;
