//! The `instore` command line (SPEC §14).

fn main() {}
