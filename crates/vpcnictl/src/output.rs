//! Output helpers shared by subcommands.

use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

/// How a subcommand prints its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Exit code for bad usage or unknown input, as clap uses for usage errors.
pub const USAGE_ERROR: u8 = 2;

/// Reports a user error on stderr and returns the usage exit code.
pub fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("vpcnictl: {message}");
    ExitCode::from(USAGE_ERROR)
}
