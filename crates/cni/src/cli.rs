//! What both plugin binaries (`vpcni`, `vpcni-egress`) share: the one writer of stdout, error results, and
//! the version VERSION answers in.

use std::io::{Read, Write};
use std::process::ExitCode;

use vpcni_cni::spec::{CniError, SUPPORTED_VERSIONS};

/// VERSION answers in the version the runtime's stdin names, when we speak it; the newest otherwise.
pub fn requested_version() -> String {
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
pub fn emit(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

pub fn fail(error: &CniError, version: &str) -> ExitCode {
    // If stdout is gone the runtime cannot read the error anyway; the exit code below still fails the call.
    emit(&error.to_json(version));
    // The spec asks for a non-zero exit; the code itself travels in the JSON.
    ExitCode::from(u8::try_from(error.code.code()).unwrap_or(1).max(1))
}

/// Reads at most [`vpcni_cni::spec::MAX_CONFIG_BYTES`] of stdin.
#[allow(dead_code)] // vpcni reads its configuration through read_config
pub fn read_stdin() -> Result<Vec<u8>, CniError> {
    use vpcni_cni::spec::{ErrorCode, MAX_CONFIG_BYTES};
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            CniError::new(
                ErrorCode::IoFailure,
                "could not read the network configuration from stdin",
                e.to_string(),
            )
        })?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(CniError::new(
            ErrorCode::DecodeFailure,
            "network configuration on stdin is too large",
            format!("more than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}
