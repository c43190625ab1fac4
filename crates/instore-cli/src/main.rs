//! # instore — the command line of the instore workflow instance store
//!
//! One verb per operator task (SPEC §14): list, show, count and group instances with every query
//! filter; suspend, resume, terminate, cancel and remove them by id or by filter; list the
//! control queue, the error log and the owners; create, migrate and drop a store's schema; purge
//! old completed instances. Tables for people, `--json` for scripts.
//!
//! Exit codes: 0 success, 1 the store failed (or some instances of a bulk command did),
//! 2 bad usage — unknown flags, bad ids, dates, filters or store names, a broken configuration
//! file, or a bulk command refused for want of confirmation.

mod cli;
mod commands;
mod context;
mod failure;
mod filter;
mod prompt;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return failure::Failure::runtime(format!("cannot start the runtime: {e}")).exit()
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_well_formed() {
        super::cli::Cli::command().debug_assert();
    }
}
