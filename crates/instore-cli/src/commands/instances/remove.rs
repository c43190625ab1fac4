//! `instore remove`: delete instances at once, with everything that belongs to them.

use instore::ControlCommand;

use super::bulk::{self, Target};
use crate::context::Context;
use crate::failure::Failure;

#[derive(Debug, clap::Args)]
#[command(
    about = "Remove instances at once, with their keys, queued command and error-log entry",
    long_about = "Remove instances at once (not queued), with everything that belongs to them: \
        keys, promoted values, queued command, error-log entry. A host still holding one gets \
        LockLost on its next command. Choose the instances by id, or by filters (you are asked \
        to confirm the count; --yes skips the question).",
    after_help = "Examples:\n  \
        instore remove 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d\n  \
        instore remove --condition Faulted --modified-before 2026-01-01 --yes"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    bulk::run(ctx, args.target, ControlCommand::Delete).await
}
