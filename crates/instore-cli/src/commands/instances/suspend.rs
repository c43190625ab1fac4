//! `instore suspend`: queue a Suspend command for instances, by id or by filter.

use instore::ControlCommand;

use super::bulk::{self, Target};
use crate::context::Context;
use crate::failure::Failure;

#[derive(Debug, clap::Args)]
#[command(
    about = "Suspend instances: queue a Suspend command for the management service",
    long_about = "Suspend instances: queue a Suspend command, which the management service executes (through the instance's host if one holds it, else in the store). A suspended instance never runs until it is resumed. Choose the instances by id, or by filters (you are asked to confirm the count; --yes skips the question). An instance whose queued command is being executed or retried is reported and skipped; the others go ahead.",
    after_help = "Examples:\n  \
        instore suspend 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d --reason \"maintenance\"\n  \
        instore suspend --host-type orders --status Running --reason \"maintenance\" --yes"
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
        ControlCommand::Suspend {
            reason: args.reason,
        },
    )
    .await
}
