//! `vpcni-egress`: the chained egress plugin binary (the original's `egress-cni`), run by the container
//! runtime after `vpcni` with the previous result in the configuration. See [`vpcni_cni::egress`].
//!
//! Nothing but the result ever goes to stdout: logs go to the configured plugin log file.

#![forbid(unsafe_code)]
// Only `emit` writes to stdout (clippy.toml disallows `std::io::stdout` everywhere else in this crate).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod cli;

use std::process::ExitCode;

use cli::{emit, fail, start};
use vpcni_cni::egress::EgressConf;
use vpcni_cni::spec::{CniError, ErrorCode};

fn main() -> ExitCode {
    let (invocation, config, bytes) = match start() {
        Ok(started) => started,
        Err(answered) => return answered,
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
