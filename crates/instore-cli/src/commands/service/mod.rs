//! `instore manage`: run services against the store in the foreground.

pub mod manage;
