//! What both plugin binaries (`vpcni`, `vpcni-egress`) share: the one writer of stdout, error results,
//! the version VERSION answers in, and the start of a call ([`start`]).

use std::io::{Read, Write};
use std::process::ExitCode;

use vpcni_cni::spec::{
    CniError, Command, Invocation, NetConf, SUPPORTED_VERSIONS, read_config_bytes, version_reply,
};

/// The newest version we speak: the answer's version when the caller's is not known.
const NEWEST: &str = "1.1.0";

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
        .unwrap_or_else(|| NEWEST.to_owned())
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

/// How both plugins start: the invocation from `CNI_*`, VERSION answered, and the configuration read from
/// stdin (at most [`vpcni_cni::spec::MAX_CONFIG_BYTES`]) and parsed; also returned unparsed, for a plugin with
/// fields of its own. `Err` is the exit code of a call already answered: VERSION, or an error result.
pub fn start() -> Result<(Invocation, NetConf, Vec<u8>), ExitCode> {
    // Without a configuration we do not know the caller's version; errors before it answer in the newest.
    let invocation =
        Invocation::from_env(|name| std::env::var(name).ok()).map_err(|error| fail(&error, NEWEST))?;
    if invocation.command == Command::Version {
        return Err(emit(&version_reply(&requested_version())));
    }
    let (config, bytes) = read_config_bytes(std::io::stdin().lock())
        .and_then(|bytes| Ok((NetConf::parse(&bytes)?, bytes)))
        .map_err(|error| fail(&error, NEWEST))?;
    Ok((invocation, config, bytes))
}
