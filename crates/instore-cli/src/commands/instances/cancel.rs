//! `instore cancel`: queue a Cancel command for instances, by id or by filter.

use instore::ControlCommand;

use super::bulk::{self, Target};
use crate::context::Context;
use crate::failure::Failure;

#[derive(Debug, clap::Args)]
#[command(
    about = "Cancel instances: queue a Cancel command so their hosts run their cancellation logic",
    long_about = "Cancel instances: queue a Cancel command, which the management service executes: it records the cancellation and makes the instance runnable, so a host of its type runs its cancellation logic. Choose the instances by id, or by filters (you are asked to confirm the count; --yes skips the question). An instance whose queued command is being executed or retried is reported and skipped; the others go ahead.",
    after_help = "Examples:\n  \
        instore cancel 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d\n  \
        instore cancel --host-type orders --created-before 2026-11-01 --yes"
)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    bulk::run(ctx, args.target, ControlCommand::Cancel).await
}
