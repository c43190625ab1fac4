//! `instore terminate`: queue a Terminate command for instances, by id or by filter.

use instore::ControlCommand;

use super::bulk::{self, Target};
use crate::context::Context;
use crate::failure::Failure;

#[derive(Debug, clap::Args)]
#[command(
    about = "Terminate instances: queue a Terminate command (they complete as Terminated)",
    long_about = "Terminate instances: queue a Terminate command, which the management service executes; the instance completes with status Terminated and never runs again. Choose the instances by id, or by filters (you are asked to confirm the count; --yes skips the question). An instance whose queued command is being executed or retried is reported and skipped; the others go ahead.",
    after_help = "Examples:\n  \
        instore terminate 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d --reason \"order withdrawn\"\n  \
        instore terminate --host-type orders --status Running --reason \"order withdrawn\" --yes"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,

    /// Why (recorded with the command)
    #[arg(long, default_value = "")]
    pub reason: String,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    bulk::run(
        ctx,
        args.target,
        ControlCommand::Terminate {
            reason: args.reason,
        },
    )
    .await
}
