//! `vpcni`: the CNI plugin binary. The container runtime runs it once per CNI command with the network
//! configuration on stdin and `CNI_*` in the environment; it prints a result or an error result on stdout.
//!
//! Nothing but the result ever goes to stdout: logs go to the configured plugin log file.

#![forbid(unsafe_code)]
// Only `emit` writes to stdout (clippy.toml disallows `std::io::stdout` everywhere else in this crate).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::process::ExitCode;

use vpcni_cni::spec::{CniError, Command, Invocation, SUPPORTED_VERSIONS, read_config, version_reply};

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

/// VERSION answers in the version the runtime's stdin names, when we speak it; the newest otherwise.
fn requested_version() -> String {
    let mut text = String::new();
    // VERSION needs no stdin (the spec sends one, runtimes may not): unreadable means "not named".
    if std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .is_err()
    {
        text.clear();
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_owned())
}

/// The plugin's one writer of stdout: the result, or the error result.
#[allow(clippy::disallowed_methods)]
fn emit(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn fail(error: &CniError, version: &str) -> ExitCode {
    // If stdout is gone the runtime cannot read the error anyway; the exit code below still fails the call.
    emit(&error.to_json(version));
    // The spec asks for a non-zero exit; the code itself travels in the JSON.
    ExitCode::from(u8::try_from(error.code.code()).unwrap_or(1).max(1))
}
