//! The runtime's environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`.

use std::collections::BTreeMap;

use super::error::{CniError, ErrorCode};

/// Longest container id accepted (runtimes use 64 hex characters).
const MAX_CONTAINER_ID: usize = 256;
/// Longest netns path accepted.
const MAX_NETNS_PATH: usize = 4096;
/// Longest `CNI_ARGS` accepted.
const MAX_CNI_ARGS: usize = 8192;
/// Linux interface names are at most 15 bytes (IFNAMSIZ − 1).
pub const MAX_IFNAME: usize = 15;

/// The CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it.
    Del,
    /// Verify the attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Report whether the plugin can serve ADD (1.1.0).
    Status,
    /// Release what is not in the valid attachment list (1.1.0).
    Gc,
}

impl Command {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            _ => return None,
        })
    }

    /// Whether the verb is about one container attachment (needs container id and interface name).
    fn is_per_attachment(self) -> bool {
        matches!(self, Self::Add | Self::Del | Self::Check)
    }
}

/// Kubernetes identity from `CNI_ARGS`, with defaults for runtimes that send less.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`, or `default`.
    pub pod_namespace: String,
    /// `K8S_POD_NAME`, or the container id when absent (so two unnamed containers never share a veth name).
    pub pod_name: String,
    /// `K8S_POD_INFRA_CONTAINER_ID`, or the container id.
    pub infra_container_id: String,
    /// `K8S_POD_UID`, if sent.
    pub pod_uid: Option<String>,
}

/// One validated plugin invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The verb.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS and GC).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when empty (DEL may come without one).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (empty for VERSION, STATUS and GC).
    pub ifname: String,
    /// Parsed `CNI_ARGS`.
    pub args: CniArgs,
}

fn invalid_env(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidEnvironment, msg, details)
}

impl Invocation {
    /// Reads and validates the environment through `lookup` (so tests pass a map).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command_text = lookup("CNI_COMMAND").unwrap_or_default();
        let command = Command::parse(&command_text).ok_or_else(|| {
            invalid_env(
                format!("CNI_COMMAND {:?} is not a CNI command", truncate(&command_text)),
                "expected ADD, DEL, CHECK, VERSION, STATUS or GC",
            )
        })?;
        if !command.is_per_attachment() {
            return Ok(Self {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                args: CniArgs::defaults(""),
            });
        }

        let container_id = lookup("CNI_CONTAINERID").unwrap_or_default();
        validate_container_id(&container_id)?;
        let ifname = lookup("CNI_IFNAME").unwrap_or_default();
        validate_ifname(&ifname)
            .map_err(|why| invalid_env(format!("CNI_IFNAME {:?} {why}", truncate(&ifname)), ""))?;
        let netns = match lookup("CNI_NETNS").unwrap_or_default() {
            path if path.is_empty() => None,
            path => {
                validate_netns_path(&path)?;
                Some(path)
            }
        };
        if netns.is_none() && command != Command::Del {
            return Err(invalid_env("CNI_NETNS is required for ADD and CHECK", ""));
        }
        let args = CniArgs::parse(&lookup("CNI_ARGS").unwrap_or_default(), &container_id)?;
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

impl CniArgs {
    fn defaults(container_id: &str) -> Self {
        Self {
            pod_namespace: "default".to_owned(),
            pod_name: container_id.to_owned(),
            infra_container_id: container_id.to_owned(),
            pod_uid: None,
        }
    }

    /// Parses `K=V;K=V`. Unknown keys are an error unless `IgnoreUnknown` is true, as in libcni.
    pub fn parse(text: &str, container_id: &str) -> Result<Self, CniError> {
        if text.len() > MAX_CNI_ARGS {
            return Err(invalid_env(
                "CNI_ARGS is too long",
                format!("{} bytes, at most {MAX_CNI_ARGS}", text.len()),
            ));
        }
        let mut pairs = BTreeMap::new();
        for pair in text.split(';').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                invalid_env(
                    format!("CNI_ARGS entry {:?} is not KEY=VALUE", truncate(pair)),
                    "",
                )
            })?;
            if pairs.insert(key, value).is_some() {
                return Err(invalid_env(format!("CNI_ARGS repeats {:?}", truncate(key)), ""));
            }
        }
        let ignore_unknown = match pairs.remove("IgnoreUnknown") {
            None => false,
            Some("1" | "true" | "True" | "TRUE" | "t") => true,
            Some("0" | "false" | "False" | "FALSE" | "f") => false,
            Some(other) => {
                return Err(invalid_env(
                    format!("CNI_ARGS IgnoreUnknown={:?} is not a boolean", truncate(other)),
                    "",
                ));
            }
        };
        let mut args = Self::defaults(container_id);
        for (key, value) in pairs {
            match key {
                "K8S_POD_NAMESPACE" => {
                    check_kubernetes_name(key, value, 63)?;
                    args.pod_namespace = value.to_owned();
                }
                "K8S_POD_NAME" => {
                    check_kubernetes_name(key, value, 253)?;
                    args.pod_name = value.to_owned();
                }
                "K8S_POD_INFRA_CONTAINER_ID" => {
                    validate_container_id(value).map_err(|_| {
                        invalid_env(
                            format!("CNI_ARGS {key}={:?} is not a container id", truncate(value)),
                            "",
                        )
                    })?;
                    args.infra_container_id = value.to_owned();
                }
                "K8S_POD_UID" => {
                    check_kubernetes_name(key, value, 128)?;
                    args.pod_uid = Some(value.to_owned());
                }
                _ if ignore_unknown => {}
                _ => {
                    return Err(invalid_env(
                        format!("CNI_ARGS has unknown key {:?}", truncate(key)),
                        "known: K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID; set IgnoreUnknown=1 to skip others",
                    ));
                }
            }
        }
        Ok(args)
    }
}

/// Names and namespaces as Kubernetes and podman allow them: letters, digits, `.`, `-`, `_`, not empty.
fn check_kubernetes_name(key: &str, value: &str, max: usize) -> Result<(), CniError> {
    let valid_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if value.is_empty() || value.len() > max || !valid_chars || value.starts_with('.') {
        return Err(invalid_env(
            format!("CNI_ARGS {key}={:?} is not a valid name", truncate(value)),
            format!("1 to {max} letters, digits, '.', '-' or '_'"),
        ));
    }
    Ok(())
}

/// The spec: container ids are alphanumeric plus `_`, `.`, `-`, starting alphanumeric.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let first_ok = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || id.len() > MAX_CONTAINER_ID {
        return Err(invalid_env(
            format!("CNI_CONTAINERID {:?} is not a valid container id", truncate(id)),
            format!(
                "1 to {MAX_CONTAINER_ID} letters, digits, '_', '.' or '-', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// The spec and Linux: 1–15 bytes, not `.` or `..`, no `/`, `:` or white space. Returns why not.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!("is longer than {MAX_IFNAME} bytes"));
    }
    if name == "." || name == ".." {
        return Err("is not a usable interface name".to_owned());
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
    {
        return Err("contains '/', ':', white space or a non-ASCII character".to_owned());
    }
    Ok(())
}

fn validate_netns_path(path: &str) -> Result<(), CniError> {
    let bad = |why: &str| {
        invalid_env(
            format!("CNI_NETNS {:?} {why}", truncate(path)),
            "expected an absolute path such as /var/run/netns/cni-…",
        )
    };
    if path.len() > MAX_NETNS_PATH {
        return Err(bad("is too long"));
    }
    if !path.starts_with('/') {
        return Err(bad("is not an absolute path"));
    }
    if path.split('/').any(|part| part == "..") || path.contains('\0') {
        return Err(bad("contains '..' or NUL"));
    }
    Ok(())
}

/// Keeps hostile input from flooding a message.
pub(crate) fn truncate(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
