//! The CNI protocol: the runtime's environment and configuration in, a result or an error out.
//!
//! Every input is untrusted (the plugin runs as root): sizes are bounded, names and ids checked against the
//! characters the spec allows, and each failure maps to the spec's error code.

mod config;
mod env;
mod error;
mod result;
mod version;

pub use config::{MAX_CONFIG_BYTES, NetConf, RuntimeConfig, ValidAttachment, read_config, read_config_bytes};
pub use env::{CniArgs, Command, Invocation};
pub use error::{CniError, ErrorCode};
pub use result::{CniResult, Interface, IpConfig, Route};
pub use version::{SUPPORTED_VERSIONS, Version, version_reply};

#[cfg(test)]
mod tests;
