//! `instore manage` and `instore serve`: run services against the store in the foreground.

pub mod demo;
pub mod manage;
pub mod serve;
