//! The command tree: global options and one subcommand per verb (each verb's arguments, help
//! and example live in its own file under `commands/`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{errors, instances, owners, queue, service, store};

#[derive(Debug, Parser)]
#[command(
    name = "instore",
    version,
    about = "Find, steer and manage the workflow instances of an instore store",
    long_about = "Find, steer and manage the workflow instances of an instore store.\n\n\
        Stores are named in instore.toml (or the file given with --config); without one, the \
        store is $INSTORE_URL, else the SQLite file instore.db in the working directory.\n\n\
        Exit codes: 0 success; 1 the store failed, or some instances of a bulk command did; \
        2 bad usage (flags, ids, dates, filters, store names, configuration).",
    after_help = "Examples:\n  \
        instore instances list --status Suspended\n  \
        instore instances show 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d\n  \
        instore suspend --host-type orders --reason \"maintenance\" --yes\n  \
        instore --store shared --json instances count --condition Exception"
)]
pub struct Cli {
    /// Configuration file [default: ./instore.toml if there is one]
    #[arg(long, global = true, env = "INSTORE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The store to use, by its name in the configuration [default: the configuration's default]
    #[arg(long, global = true, value_name = "NAME")]
    pub store: Option<String>,

    /// Print JSON for scripts instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, show, count and group instances
    #[command(subcommand)]
    Instances(InstancesCommand),
    Suspend(instances::suspend::Args),
    Resume(instances::resume::Args),
    Terminate(instances::terminate::Args),
    Cancel(instances::cancel::Args),
    Remove(instances::remove::Args),
    Purge(instances::purge::Args),
    Manage(service::manage::Args),
    Serve(service::serve::Args),
    /// The control queue: commands waiting for the management service
    #[command(subcommand, visible_alias = "queue")]
    Commands(QueueCommand),
    /// The error log: control commands given up
    #[command(subcommand)]
    Errors(ErrorsCommand),
    /// Instance owners: the hosts registered with the store
    #[command(subcommand)]
    Owners(OwnersCommand),
    /// The configured stores and their schemas
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    List(instances::list::Args),
    Show(instances::show::Args),
    Count(instances::count::Args),
    Group(instances::group::Args),
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    List(queue::list::Args),
}

#[derive(Debug, Subcommand)]
pub enum ErrorsCommand {
    List(errors::list::Args),
}

#[derive(Debug, Subcommand)]
pub enum OwnersCommand {
    List(owners::list::Args),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    List(store::list::Args),
    Init(store::init::Args),
    Migrate(store::migrate::Args),
    Drop(store::drop::Args),
}
