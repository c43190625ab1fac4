//! How a command fails: a usage error (exit 2) or a runtime failure (exit 1), with one message.

use std::error::Error;
use std::process::ExitCode;

use instore::StoreError;
use instore_config::ConfigError;

/// Exit code of bad usage: what clap uses for parse errors, and what we use for bad input found
/// after parsing (ids, dates, filters, store names, configuration, refused confirmations).
pub const USAGE: u8 = 2;
/// Exit code of a failure of the store, or of some instances of a bulk command.
pub const RUNTIME: u8 = 1;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The user asked for something wrong; the message says what to do instead.
    Usage(String),
    /// The store (or part of a bulk command) failed.
    Runtime(String),
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Failure::Runtime(message.into())
    }

    /// Prints the message to stderr and gives the exit code.
    pub fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Failure::Usage(m) => (USAGE, m),
            Failure::Runtime(m) => (RUNTIME, m),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

/// An error and its sources, joined with ": " (messages never repeat their source).
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The text of an `Invalid` error without its "invalid: " prefix.
pub fn invalid_text(e: &StoreError) -> String {
    match e {
        StoreError::Invalid { what } => what.clone(),
        other => chain(other),
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        if e.is_usage() {
            Failure::Usage(chain(&e))
        } else {
            Failure::Runtime(chain(&e))
        }
    }
}

impl From<StoreError> for Failure {
    /// `Invalid` answers come from what the user typed (filters, page sizes): usage errors.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid { what } => Failure::Usage(what),
            other => Failure::Runtime(chain(&other)),
        }
    }
}
