//! Verbs on instances: finding them (list, show, count, group), steering them (suspend, resume,
//! terminate, cancel, remove — by id or by filter, through `bulk`), and purging old ones.

mod bulk;
pub mod cancel;
pub mod count;
pub mod group;
pub mod list;
pub mod purge;
pub mod remove;
pub mod resume;
pub mod show;
pub mod suspend;
pub mod terminate;
