//! `vpcni`: the CNI plugin binary. The container runtime runs it once per CNI command with the network
//! configuration on stdin and `CNI_*` in the environment; it prints a result or an error result on stdout.
//!
//! Nothing but the result ever goes to stdout: logs go to the configured plugin log file.

#![forbid(unsafe_code)]
// Only `emit` writes to stdout (clippy.toml disallows `std::io::stdout` everywhere else in this crate).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod cli;

use std::process::ExitCode;

use cli::{emit, fail, start};

fn main() -> ExitCode {
    let (invocation, config, _) = match start() {
        Ok(started) => started,
        Err(answered) => return answered,
    };
    vpcni_cni::logging::init(&config.plugin_log_file, &config.plugin_log_level);
    tracing::info!(
        command = ?invocation.command,
        container = %invocation.container_id,
        netns = invocation.netns.as_deref().unwrap_or(""),
        pod = %format!("{}/{}", invocation.args.pod_namespace, invocation.args.pod_name),
        version = %config.cni_version,
        "CNI call"
    );
    let version = config.cni_version.clone();
    match vpcni_cni::commands::run(&invocation, &config) {
        Ok(Some(output)) => emit(&output),
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(command = ?invocation.command, container = %invocation.container_id, "{error}");
            fail(&error, &version)
        }
    }
}
