//! `instore resume`: queue a Resume command for instances, by id or by filter.

use instore::ControlCommand;

use super::bulk::{self, Target};
use crate::context::Context;
use crate::failure::Failure;

#[derive(Debug, clap::Args)]
#[command(
    about = "Resume suspended instances: queue a Resume command for the management service",
    long_about = "Resume suspended instances: queue a Resume command, which the management service executes; the instance becomes runnable again. Choose the instances by id, or by filters (you are asked to confirm the count; --yes skips the question). An instance whose queued command is being executed or retried is reported and skipped; the others go ahead.",
    after_help = "Examples:\n  \
        instore resume 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d\n  \
        instore resume --status Suspended --exception TimeoutException --yes"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    bulk::run(ctx, args.target, ControlCommand::Resume).await
}
