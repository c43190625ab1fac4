//! `instore commands …`: the control queue (the directory is `queue` so it is not confused
//! with the CLI's own commands).

pub mod list;
