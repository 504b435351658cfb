//! `vpcni`: the CNI plugin binary. The container runtime runs it once per CNI command with the network
//! configuration on stdin and `CNI_*` in the environment; it prints a result or an error result on stdout.
//!
//! Nothing but the result ever goes to stdout: logs go to the configured plugin log file.

#![forbid(unsafe_code)]
// Only `emit` writes to stdout (clippy.toml disallows `std::io::stdout` everywhere else in this crate).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod cli;

use std::process::ExitCode;

use cli::{emit, fail, requested_version};
use vpcni_cni::spec::{Command, Invocation, read_config, version_reply};

fn main() -> ExitCode {
    let invocation = match Invocation::from_env(|name| std::env::var(name).ok()) {
        Ok(invocation) => invocation,
        // Without a configuration we do not know the caller's version; answer in the newest.
        Err(error) => return fail(&error, "1.1.0"),
    };
    if invocation.command == Command::Version {
        return emit(&version_reply(&requested_version()));
    }
    let config = match read_config(std::io::stdin().lock()) {
        Ok(config) => config,
        Err(error) => return fail(&error, "1.1.0"),
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
