//! `instore store …`: the configured stores and their schemas.

pub mod drop;
pub mod init;
pub mod list;
pub mod migrate;
mod report;
