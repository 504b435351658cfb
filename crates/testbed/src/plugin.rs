//! Running CNI plugins the way a container runtime does: the configuration on stdin, `CNI_*` in a clean
//! environment, inside the node's namespace; and a conflist the way libcni chains it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde_json::Value;

use crate::netns::PodNetns;
use crate::{Result, setup_error};

/// One plugin invocation.
#[derive(Debug, Clone)]
pub struct PluginCall {
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (`None` sends it empty).
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// Bytes on stdin.
    pub stdin: Vec<u8>,
    /// Variables to set (`Some`) or leave out (`None`) after the ones above.
    pub env: Vec<(String, Option<String>)>,
    /// The binary (default: `vpcni`).
    pub binary: Option<PathBuf>,
}

impl PluginCall {
    /// A call with `config` on stdin, for a pod named `pod` (container id = the pod name, `CNI_ARGS` as
    /// containerd sends them).
    pub fn new(command: &str, netns: Option<&str>, pod: &str, config: &str) -> Self {
        Self {
            command: command.to_owned(),
            container_id: pod.to_owned(),
            netns: netns.map(str::to_owned),
            ifname: "eth0".to_owned(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={pod}"
            ),
            stdin: config.as_bytes().to_vec(),
            env: Vec::new(),
            binary: None,
        }
    }

    /// ADD for `pod` in `netns`.
    pub fn add(netns: &PodNetns, pod: &str, config: &str) -> Self {
        Self::new("ADD", Some(netns.path()), pod, config)
    }

    /// DEL for `pod` in `netns`.
    pub fn del(netns: &PodNetns, pod: &str, config: &str) -> Self {
        Self::new("DEL", Some(netns.path()), pod, config)
    }

    /// CHECK for `pod` in `netns`.
    pub fn check(netns: &PodNetns, pod: &str, config: &str) -> Self {
        Self::new("CHECK", Some(netns.path()), pod, config)
    }

    /// Sets a variable (overrides the `CNI_*` fields too).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), Some(value.to_owned())));
        self
    }

    /// Leaves a variable out of the environment.
    pub fn without_env(mut self, name: &str) -> Self {
        self.env.push((name.to_owned(), None));
        self
    }

    /// Replaces stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// Runs another binary.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    fn environment(&self, cni_path: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("CNI_COMMAND", self.command.as_str()),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", self.netns.as_deref().unwrap_or("")),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", cni_path),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in &self.env {
            env.retain(|(k, _)| k != name);
            if let Some(value) = value {
                env.push((name.clone(), value.clone()));
            }
        }
        env
    }
}

/// What a plugin printed and how it exited.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// stdout (the result or error result).
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl PluginOutput {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }

    /// The error result's `code`.
    pub fn error_code(&self) -> Option<u64> {
        self.json().get("code").and_then(Value::as_u64)
    }

    /// The error result's `msg`.
    pub fn error_msg(&self) -> String {
        self.json()
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

impl fmt::Display for PluginOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {}; stdout: {}; stderr: {}",
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// Runs one plugin inside `netns`.
pub(crate) fn execute(netns: &str, binary: &Path, call: &PluginCall, cni_path: &str) -> Result<PluginOutput> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(binary)
        .env_clear()
        .envs(call.environment(cni_path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| setup_error(format!("starting {}", binary.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may refuse before reading all of stdin: a broken pipe is its answer, not ours.
        let _ = stdin.write_all(&call.stdin);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| setup_error(format!("waiting for {}", binary.display()), e))?;
    Ok(PluginOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs a conflist as libcni does: ADD and CHECK in order, DEL in reverse; each plugin gets the list's
/// `cniVersion` and `name`, and `prevResult` (ADD: the previous plugin's result; DEL and CHECK:
/// `prev_result`, the list's cached ADD result). Plugins are looked up by `type` in `plugin_dirs`. Stops at
/// the first failure and returns that plugin's output; otherwise the last plugin's.
pub fn run_conflist(
    netns: &str,
    plugin_dirs: &[PathBuf],
    conflist: &Value,
    call: &PluginCall,
    prev_result: Option<&Value>,
) -> Result<PluginOutput> {
    let plugins = conflist
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| setup_error("conflist", "no plugins array"))?;
    let version = conflist.get("cniVersion").cloned().unwrap_or(Value::Null);
    let name = conflist.get("name").cloned().unwrap_or(Value::Null);
    let cni_path = plugin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut order: Vec<&Value> = plugins.iter().collect();
    if call.command == "DEL" {
        order.reverse();
    }
    let mut prev = prev_result.cloned();
    let mut last = None;
    for plugin in order {
        let kind = plugin
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| setup_error("conflist", "a plugin has no type"))?;
        let binary = plugin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| setup_error(format!("plugin {kind}"), format!("not found in {cni_path}")))?;
        let mut config = plugin.clone();
        if let Some(object) = config.as_object_mut() {
            object.insert("cniVersion".into(), version.clone());
            object.insert("name".into(), name.clone());
            if let Some(prev) = &prev {
                object.insert("prevResult".into(), prev.clone());
            }
        }
        let output = execute(netns, &binary, &call.clone().stdin(config.to_string()), &cni_path)?;
        if !output.success() {
            return Ok(output);
        }
        if call.command == "ADD" {
            prev = Some(output.json());
        }
        last = Some(output);
    }
    last.ok_or_else(|| setup_error("conflist", "empty plugins array"))
}
