//! `vpcni-egress`: the chained egress plugin binary (the original's `egress-cni`), run by the container
//! runtime after `vpcni` with the previous result in the configuration. See [`vpcni_cni::egress`].
//!
//! Nothing but the result ever goes to stdout: logs go to the configured plugin log file.

#![forbid(unsafe_code)]
// Only `emit` writes to stdout (clippy.toml disallows `std::io::stdout` everywhere else in this crate).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod cli;

use std::process::ExitCode;

use cli::{emit, fail, read_stdin, requested_version};
use vpcni_cni::egress::EgressConf;
use vpcni_cni::spec::{CniError, Command, ErrorCode, Invocation, NetConf, version_reply};

fn main() -> ExitCode {
    let invocation = match Invocation::from_env(|name| std::env::var(name).ok()) {
        Ok(invocation) => invocation,
        Err(error) => return fail(&error, "1.1.0"),
    };
    if invocation.command == Command::Version {
        return emit(&version_reply(&requested_version()));
    }
    let (bytes, config) = match read_stdin().and_then(|bytes| Ok((NetConf::parse(&bytes)?, bytes))) {
        Ok((config, bytes)) => (bytes, config),
        // Without a configuration we do not know the caller's version; answer in the newest.
        Err(error) => return fail(&error, "1.1.0"),
    };
    let egress = match egress_fields(&bytes) {
        Ok(egress) => egress,
        Err(error) => return fail(&error, &config.cni_version),
    };
    vpcni_cni::logging::init(&config.plugin_log_file, &config.plugin_log_level);
    tracing::info!(
        command = ?invocation.command,
        container = %invocation.container_id,
        netns = invocation.netns.as_deref().unwrap_or(""),
        enabled = egress.enabled,
        version = %config.cni_version,
        "egress CNI call"
    );
    match vpcni_cni::egress::run(&invocation, &config, &egress) {
        Ok(Some(output)) => emit(&output),
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(command = ?invocation.command, container = %invocation.container_id, "{error}");
            fail(&error, &config.cni_version)
        }
    }
}

/// The egress plugin's own fields (the common ones are read as the main plugin reads them).
fn egress_fields(bytes: &[u8]) -> Result<EgressConf, CniError> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            ErrorCode::DecodeFailure,
            "network configuration is not a JSON object",
            e.to_string(),
        )
    })?;
    EgressConf::parse(&object)
}
