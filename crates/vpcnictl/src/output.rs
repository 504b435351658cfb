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

/// `println!` that ends quietly on a closed pipe (`vpcnictl max-pods --all | head`) instead of panicking.
macro_rules! say {
    () => { $crate::output::emit("\n") };
    ($($arg:tt)*) => { $crate::output::emit(&(format!($($arg)*) + "\n")) };
}
/// `print!`, the same way.
macro_rules! say_raw {
    ($($arg:tt)*) => { $crate::output::emit(&format!($($arg)*)) };
}
pub(crate) use {say, say_raw};

/// Writes to stdout; a reader that went away ends the output quietly.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Exit code for bad usage or unknown input, as clap uses for usage errors.
pub const USAGE_ERROR: u8 = 2;

/// Reports a user error on stderr and returns the usage exit code.
pub fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("vpcnictl: {message}");
    ExitCode::from(USAGE_ERROR)
}
