//! One module per noun, one file per verb. Each verb file holds its arguments (with its help and
//! an example) and `run`.

pub mod errors;
pub mod instances;
pub mod owners;
pub mod queue;
pub mod service;
pub mod store;

use crate::cli::{
    Cli, Command, ErrorsCommand, InstancesCommand, OwnersCommand, QueueCommand, StoreCommand,
};
use crate::context::Context;
use crate::failure::Failure;

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Context::load(&cli)?;
    match cli.command {
        Command::Instances(c) => match c {
            InstancesCommand::List(a) => instances::list::run(&ctx, a).await,
            InstancesCommand::Show(a) => instances::show::run(&ctx, a).await,
            InstancesCommand::Count(a) => instances::count::run(&ctx, a).await,
            InstancesCommand::Group(a) => instances::group::run(&ctx, a).await,
        },
        Command::Suspend(a) => instances::suspend::run(&ctx, a).await,
        Command::Resume(a) => instances::resume::run(&ctx, a).await,
        Command::Terminate(a) => instances::terminate::run(&ctx, a).await,
        Command::Cancel(a) => instances::cancel::run(&ctx, a).await,
        Command::Remove(a) => instances::remove::run(&ctx, a).await,
        Command::Purge(a) => instances::purge::run(&ctx, a).await,
        Command::Manage(a) => service::manage::run(&ctx, a).await,
        Command::Serve(a) => service::serve::run(&ctx, a).await,
        Command::Commands(QueueCommand::List(a)) => queue::list::run(&ctx, a).await,
        Command::Errors(ErrorsCommand::List(a)) => errors::list::run(&ctx, a).await,
        Command::Owners(OwnersCommand::List(a)) => owners::list::run(&ctx, a).await,
        Command::Store(c) => match c {
            StoreCommand::List(a) => store::list::run(&ctx, a).await,
            StoreCommand::Init(a) => store::init::run(&ctx, a).await,
            StoreCommand::Migrate(a) => store::migrate::run(&ctx, a).await,
            StoreCommand::Drop(a) => store::drop::run(&ctx, a).await,
        },
    }
}
