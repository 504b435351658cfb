//! The network configuration on stdin: the standard fields, the original's plugin fields (`vethPrefix`,
//! `mtu`, `podSGEnforcingMode`, `pluginLogFile`, `pluginLogLevel`) and vpcni's `ipamdSocket` and `stateDir`.

use std::io::Read;

use serde_json::{Map, Value};

use super::env::{truncate, validate_container_id, validate_ifname};
use super::error::{CniError, ErrorCode};
use super::result::CniResult;
use super::version::Version;

/// Largest configuration read from stdin. A conflist entry is a few hundred bytes; a prevResult of a pod
/// with many interfaces a few kilobytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Default host veth prefix, as the original's.
pub const DEFAULT_VETH_PREFIX: &str = "eni";
/// Default pod MTU, as the original's (AWS_VPC_ENI_MTU).
pub const DEFAULT_MTU: u32 = 9001;
/// Default ipamd socket.
pub const DEFAULT_IPAMD_SOCKET: &str = "/var/run/vpcni/ipamd.sock";
/// Default plugin log file.
pub const DEFAULT_LOG_FILE: &str = "/var/log/vpcni/plugin.log";

/// One attachment the runtime still knows (GC's `cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAttachment {
    /// Container id.
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// Settings the runtime passes per call through `runtimeConfig` (capabilities).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// The raw object, passed through to chained plugins unchanged.
    pub raw: Map<String, Value>,
}

/// The validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion` as written.
    pub cni_version: String,
    /// Parsed version.
    pub version: Version,
    /// Network name (part of ipamd's allocation key).
    pub name: String,
    /// Host veth name prefix (at most 4 characters).
    pub veth_prefix: String,
    /// Pod interface MTU.
    pub mtu: u32,
    /// `strict` or `standard` (security groups for pods).
    pub pod_sg_enforcing_mode: String,
    /// Where the plugin logs; never stdout, which carries the result.
    pub plugin_log_file: String,
    /// `debug`, `info`, `warn` or `error`.
    pub plugin_log_level: String,
    /// ipamd's unix socket.
    pub ipamd_socket: String,
    /// Where ADD keeps one small record per attachment for CHECK and for a DEL that has neither ipamd nor
    /// a `prevResult` (see [`crate::record`]). Default: `cni` next to ipamd's socket, so every node (and
    /// every test node) has its own.
    pub state_dir: String,
    /// The previous plugin's result (chaining; DEL and CHECK get ours back).
    pub prev_result: Option<CniResult>,
    /// `prevResult` exactly as received, to pass through.
    pub prev_result_raw: Option<Value>,
    /// `runtimeConfig`.
    pub runtime_config: RuntimeConfig,
    /// GC only: the attachments to keep.
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn invalid(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg, details)
}

/// Reads at most [`MAX_CONFIG_BYTES`] from `input` and parses it.
pub fn read_config(input: impl Read) -> Result<NetConf, CniError> {
    NetConf::parse(&read_config_bytes(input)?)
}

/// Reads at most [`MAX_CONFIG_BYTES`] from `input`, unparsed (for a plugin that reads fields of its own too).
pub fn read_config_bytes(mut input: impl Read) -> Result<Vec<u8>, CniError> {
    let mut bytes = Vec::new();
    input
        .by_ref()
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

impl NetConf {
    /// Parses and validates a configuration.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                ErrorCode::DecodeFailure,
                "network configuration is not valid JSON",
                e.to_string(),
            )
        })?;
        let Value::Object(object) = value else {
            return Err(CniError::new(
                ErrorCode::DecodeFailure,
                "network configuration is not a JSON object",
                "",
            ));
        };

        let cni_version = required_string(&object, "cniVersion")?;
        let version = Version::parse(&cni_version)?;
        let name = required_string(&object, "name")?;
        if name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(invalid(
                format!("network name {:?} is not valid", truncate(&name)),
                "1 to 253 letters, digits, '_', '.' or '-'",
            ));
        }

        let veth_prefix =
            optional_string(&object, "vethPrefix")?.unwrap_or_else(|| DEFAULT_VETH_PREFIX.to_owned());
        validate_veth_prefix(&veth_prefix)?;

        let mtu = match object.get("mtu") {
            None | Some(Value::Null) => DEFAULT_MTU,
            // The original writes mtu as a string in its conflist; accept both forms.
            Some(Value::String(text)) => parse_mtu(text)?,
            Some(Value::Number(number)) => parse_mtu(&number.to_string())?,
            Some(other) => return Err(wrong_type("mtu", "a number from 576 to 9001", other)),
        };

        let pod_sg_enforcing_mode =
            optional_string(&object, "podSGEnforcingMode")?.unwrap_or_else(|| "strict".to_owned());
        if !matches!(pod_sg_enforcing_mode.as_str(), "strict" | "standard") {
            return Err(invalid(
                format!(
                    "podSGEnforcingMode {:?} is not valid",
                    truncate(&pod_sg_enforcing_mode)
                ),
                "expected strict or standard",
            ));
        }

        let plugin_log_file =
            optional_string(&object, "pluginLogFile")?.unwrap_or_else(|| DEFAULT_LOG_FILE.to_owned());
        if plugin_log_file == "stdout" {
            return Err(invalid(
                "pluginLogFile cannot be stdout",
                "stdout carries the CNI result; use stderr or a path",
            ));
        }
        if plugin_log_file != "stderr" && !is_clean_absolute_path(&plugin_log_file) {
            return Err(invalid(
                format!(
                    "pluginLogFile {:?} is not an absolute path",
                    truncate(&plugin_log_file)
                ),
                "expected stderr or an absolute path without '..'",
            ));
        }
        let plugin_log_level = optional_string(&object, "pluginLogLevel")?
            .unwrap_or_else(|| "debug".to_owned())
            .to_ascii_lowercase();
        if !matches!(
            plugin_log_level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            return Err(invalid(
                format!("pluginLogLevel {:?} is not valid", truncate(&plugin_log_level)),
                "expected trace, debug, info, warn or error",
            ));
        }

        let ipamd_socket =
            optional_string(&object, "ipamdSocket")?.unwrap_or_else(|| DEFAULT_IPAMD_SOCKET.to_owned());
        if !is_clean_absolute_path(&ipamd_socket) {
            return Err(invalid(
                format!(
                    "ipamdSocket {:?} is not an absolute path",
                    truncate(&ipamd_socket)
                ),
                "expected a unix socket path such as /var/run/vpcni/ipamd.sock",
            ));
        }

        let state_dir = match optional_string(&object, "stateDir")? {
            Some(dir) => dir,
            None => default_state_dir(&ipamd_socket),
        };
        if !is_clean_absolute_path(&state_dir) {
            return Err(invalid(
                format!("stateDir {:?} is not an absolute path", truncate(&state_dir)),
                "expected a directory such as /var/run/vpcni/cni",
            ));
        }

        let prev_result_raw = object.get("prevResult").filter(|v| !v.is_null()).cloned();
        let prev_result = match &prev_result_raw {
            None => None,
            Some(raw) => Some(CniResult::from_value(raw).map_err(|why| {
                CniError::new(ErrorCode::DecodeFailure, "prevResult is not a CNI result", why)
            })?),
        };

        let runtime_config = match object.get("runtimeConfig") {
            None | Some(Value::Null) => RuntimeConfig::default(),
            Some(Value::Object(raw)) => RuntimeConfig { raw: raw.clone() },
            Some(other) => return Err(wrong_type("runtimeConfig", "an object", other)),
        };

        let valid_attachments = match object.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.iter().map(parse_attachment).collect::<Result<_, _>>()?),
            Some(other) => return Err(wrong_type("cni.dev/valid-attachments", "an array", other)),
        };

        Ok(Self {
            cni_version,
            version,
            name,
            veth_prefix,
            mtu,
            pod_sg_enforcing_mode,
            plugin_log_file,
            plugin_log_level,
            ipamd_socket,
            state_dir,
            prev_result,
            prev_result_raw,
            runtime_config,
            valid_attachments,
        })
    }
}

/// The original's rule (AWS_VPC_K8S_CNI_VETHPREFIX): at most 4 characters, not `eth`, `lo` or `vlan`, which
/// would collide with the node's own interfaces.
pub fn validate_veth_prefix(prefix: &str) -> Result<(), CniError> {
    let valid_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if prefix.is_empty() || prefix.len() > 4 || !valid_chars || matches!(prefix, "eth" | "lo" | "vlan") {
        return Err(invalid(
            format!("vethPrefix {:?} is not valid", truncate(prefix)),
            "1 to 4 letters, digits, '_' or '-', and not eth, lo or vlan",
        ));
    }
    Ok(())
}

/// `cni` in the directory of ipamd's socket (`/var/run/vpcni/cni` by default).
fn default_state_dir(ipamd_socket: &str) -> String {
    let parent = ipamd_socket.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{parent}/cni")
}

fn parse_mtu(text: &str) -> Result<u32, CniError> {
    match text.trim().parse::<u32>() {
        Ok(mtu) if (576..=9001).contains(&mtu) => Ok(mtu),
        _ => Err(invalid(
            format!("mtu {:?} is not valid", truncate(text)),
            "expected a number from 576 to 9001",
        )),
    }
}

fn parse_attachment(value: &Value) -> Result<ValidAttachment, CniError> {
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(container_id), Some(ifname)) = (field("containerID"), field("ifname")) else {
        return Err(invalid(
            "cni.dev/valid-attachments entry lacks containerID or ifname",
            truncate(&value.to_string()),
        ));
    };
    validate_container_id(&container_id).map_err(|e| invalid(e.msg, "in cni.dev/valid-attachments"))?;
    validate_ifname(&ifname)
        .map_err(|why| invalid(format!("cni.dev/valid-attachments ifname {ifname:?} {why}"), ""))?;
    Ok(ValidAttachment { container_id, ifname })
}

fn is_clean_absolute_path(path: &str) -> bool {
    path.starts_with('/') && path.len() <= 4096 && !path.contains('\0') && !path.split('/').any(|p| p == "..")
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> CniError {
    invalid(
        format!("{field} must be {expected}, not {}", json_type(found)),
        "",
    )
}

fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, CniError> {
    match object.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        None | Some(Value::Null) => Err(invalid(
            format!("{field} is missing from the network configuration"),
            "",
        )),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, CniError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}
