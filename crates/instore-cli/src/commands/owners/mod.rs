//! `instore owners …`: the instance owners registered with the store.

pub mod list;
