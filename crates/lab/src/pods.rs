//! Pods: network namespaces wired by the real `vpcni` plugin through the CNI protocol, run inside the node's
//! namespace as a container runtime would run it. A refusal comes back with ipamd's reason; "try again
//! later" answers are retried for a bounded time while the pool grows, as kubelet retries a sandbox.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vpcni_rpc::{FailureReason, Outlook};

use crate::LabError;
use crate::cmd::{NETNS_DIR, ip, netns_add, netns_command, netns_exists};
use crate::node::{CNI_VERSION, conflist};
use crate::spec::Names;
use crate::state::{FabricReport, LabState, NodeRecord, PodRecord, StatePaths};

/// CNI's "try again later".
pub const TRY_AGAIN_LATER: u32 = 11;

/// Why a pod got no network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    /// Pod name.
    pub pod: String,
    /// Node name.
    pub node: String,
    /// CNI error code (11 = try again later); 0 when the lab itself failed.
    pub code: u32,
    /// The plugin's message (ipamd's sentence on a refusal).
    pub message: String,
    /// The plugin's details (`ipamd reason NODE_MAX_PODS`).
    pub details: String,
    /// How many attempts were made.
    pub attempts: u32,
}

impl PodFailure {
    /// ipamd's stable reason code, when ipamd refused.
    pub fn reason(&self) -> Option<&str> {
        self.details.strip_prefix("ipamd reason ")
    }

    /// Whether waiting may help (and the lab retries). Reasons only pods leaving can fix
    /// ([`Outlook::UntilPodsLeave`]) kubelet would keep retrying; the lab reports them at once.
    pub fn retryable(&self) -> bool {
        let outlook = self
            .reason()
            .and_then(FailureReason::from_str_name)
            .map(FailureReason::outlook);
        self.code == TRY_AGAIN_LATER && matches!(outlook, None | Some(Outlook::Passing))
    }
}

impl fmt::Display for PodFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pod.is_empty() {
            // The lab failed before a pod was named (unknown node, unreadable state).
            return write!(f, "{}", self.message);
        }
        write!(f, "{} on {}: {}", self.pod, self.node, self.message)?;
        match self.reason() {
            Some(reason) => write!(f, " (ipamd reason {reason}")?,
            None if self.details.is_empty() => write!(f, " (")?,
            None => write!(f, " ({}", self.details)?,
        }
        if self.code != 0 {
            write!(f, "; CNI error {}", self.code)?;
        }
        if self.attempts > 1 {
            write!(f, "; {} attempts", self.attempts)?;
        }
        write!(f, ")")
    }
}

/// Some pods could not be created.
#[derive(Debug, thiserror::Error)]
#[error("{failure}{}", if *.not_attempted > 0 { format!("; {} more not attempted", .not_attempted) } else { String::new() })]
pub struct PodsError {
    /// Pods created before the failure.
    pub created: Vec<PodRecord>,
    /// The failure that stopped the run.
    pub failure: Box<PodFailure>,
    /// Pods asked for but not attempted after it.
    pub not_attempted: u32,
}

/// The single-plugin configuration a runtime passes on stdin: the conflist's plugin with the network's
/// name and version, and `prevResult` on DEL.
fn network_config(paths: &StatePaths, node: &str, prev_result: Option<&Value>) -> Value {
    let list = conflist(paths, node);
    let mut config = list["plugins"][0].clone();
    config["cniVersion"] = json!(CNI_VERSION);
    config["name"] = list["name"].clone();
    if let Some(prev) = prev_result {
        config["prevResult"] = prev.clone();
    }
    config
}

struct PluginRun {
    ok: bool,
    output: Value,
}

/// One CNI call for one pod.
struct Call<'a> {
    command: &'a str,
    pod: &'a str,
    container_id: &'a str,
    netns: &'a str,
    prev_result: Option<&'a Value>,
}

fn run_plugin(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    call: &Call<'_>,
) -> Result<PluginRun, LabError> {
    let Call {
        command,
        pod,
        container_id,
        netns,
        prev_result,
    } = *call;
    let config = network_config(paths, &node.name, prev_result);
    let mut process = netns_command(&node.netns, state.spec.bin_dir.join("vpcni"));
    process
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", format!("{NETNS_DIR}/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &state.spec.bin_dir)
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container_id}"
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let failed = |detail: String| LabError::Command {
        command: format!("CNI_COMMAND={command} vpcni (pod {pod} on {})", node.name),
        detail,
    };
    let mut child = process.spawn().map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.to_string().as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let parsed = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).map_err(|e| {
            failed(format!(
                "not a CNI result ({e}): {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        })?
    };
    Ok(PluginRun {
        ok: output.status.success(),
        output: parsed,
    })
}

fn random_container_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = urandom.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates pod `name` on `node`: its namespace, then CNI ADD, retried while the answer is "try again
/// later" for a reason waiting can fix, up to `retry_for`.
pub(crate) fn add(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    name: &str,
    retry_for: Duration,
) -> Result<PodRecord, PodFailure> {
    add_with_id(paths, state, node, name, &random_container_id(), retry_for)
}

/// [`add`] with the sandbox's container id chosen by the caller (the soak DELs a failed sandbox again
/// by it, as kubelet does).
pub(crate) fn add_with_id(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    name: &str,
    container_id: &str,
    retry_for: Duration,
) -> Result<PodRecord, PodFailure> {
    let netns = Names::new(&state.spec.prefix).pod(name);
    let container_id = container_id.to_owned();
    let lab_failure = |error: LabError, attempts| PodFailure {
        pod: name.to_owned(),
        node: node.name.clone(),
        code: 0,
        message: error.to_string(),
        details: String::new(),
        attempts,
    };
    netns_add(&netns).map_err(|e| lab_failure(e, 0))?;
    let deadline = Instant::now() + retry_for;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut call = Call {
            command: "ADD",
            pod: name,
            container_id: &container_id,
            netns: &netns,
            prev_result: None,
        };
        let run = run_plugin(paths, state, node, &call);
        let failure = match run {
            Ok(PluginRun { ok: true, output }) => match result_ip(&output) {
                Some(ip) if routed_by_the_vpc(paths, &node.name, ip) => {
                    return Ok(PodRecord {
                        name: name.to_owned(),
                        node: node.name.clone(),
                        netns,
                        container_id,
                        ip,
                        result: output,
                    });
                }
                Some(ip) => lab_failure(
                    LabError::Spec(format!(
                        "the VPC fabric did not route {ip} to {}'s ENIs within {} s; see {}",
                        node.name,
                        ROUTED_WITHIN.as_secs(),
                        paths.fabric_log().display()
                    )),
                    attempts,
                ),
                None => lab_failure(
                    LabError::Spec(format!("the plugin's result has no IPv4 address: {output}")),
                    attempts,
                ),
            },
            Ok(PluginRun { ok: false, output }) => PodFailure {
                pod: name.to_owned(),
                node: node.name.clone(),
                code: output["code"].as_u64().unwrap_or(0) as u32,
                message: output["msg"].as_str().unwrap_or("the plugin failed").to_owned(),
                details: output["details"].as_str().unwrap_or_default().to_owned(),
                attempts,
            },
            Err(error) => lab_failure(error, attempts),
        };
        // As kubelet does after a failed sandbox: DEL before trying again (or giving up).
        call.command = "DEL";
        let _ = run_plugin(paths, state, node, &call);
        if !failure.retryable() || Instant::now() >= deadline {
            let _ = ip(None, &["netns", "del", &netns]);
            return Err(failure);
        }
        tracing::debug!("{failure}; retrying");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How long the fabric may take to route an address EC2 assigned to an ENI: it follows the simulator
/// every 50 ms, so this only bounds a broken fabric (generous, for a machine busy with builds).
const ROUTED_WITHIN: Duration = Duration::from_secs(30);

/// Waits until the fabric routes `ip` to one of `node`'s ENIs. EC2 makes an assigned address reachable as
/// soon as the call returns; the fabric follows the simulator every 50 ms, so a pod given an address
/// ipamd has just obtained would otherwise be unreachable for that long.
fn routed_by_the_vpc(paths: &StatePaths, node: &str, ip: Ipv4Addr) -> bool {
    let deadline = Instant::now() + ROUTED_WITHIN;
    loop {
        let routed = FabricReport::load(paths).ok().flatten().is_some_and(|report| {
            report.plugged.iter().any(|eni| {
                eni.node == node && (eni.primary_ip == ip || eni.routed.iter().any(|net| net.contains(&ip)))
            })
        });
        if routed {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pod's address from a CNI result.
fn result_ip(result: &Value) -> Option<Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .find_map(|cidr| cidr.split('/').next()?.parse().ok())
}

/// CNI DEL of a sandbox whose ADD failed (no `prevResult`), as kubelet sends it until it succeeds; its
/// namespace is already gone.
pub(crate) fn del_sandbox(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    name: &str,
    container_id: &str,
) -> Result<(), PodFailure> {
    let netns = Names::new(&state.spec.prefix).pod(name);
    let call = Call {
        command: "DEL",
        pod: name,
        container_id,
        netns: &netns,
        prev_result: None,
    };
    match run_plugin(paths, state, node, &call) {
        Ok(PluginRun { ok: true, .. }) => Ok(()),
        Ok(PluginRun { output, .. }) => Err(PodFailure {
            pod: name.to_owned(),
            node: node.name.clone(),
            code: output["code"].as_u64().unwrap_or(0) as u32,
            message: output["msg"].as_str().unwrap_or("DEL failed").to_owned(),
            details: output["details"].as_str().unwrap_or_default().to_owned(),
            attempts: 1,
        }),
        Err(error) => Err(PodFailure {
            pod: name.to_owned(),
            node: node.name.clone(),
            code: 0,
            message: error.to_string(),
            details: String::new(),
            attempts: 1,
        }),
    }
}

/// Deletes a pod: CNI DEL with its ADD result as `prevResult`, then its namespace.
pub(crate) fn del(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    pod: &PodRecord,
) -> Result<(), PodFailure> {
    let call = Call {
        command: "DEL",
        pod: &pod.name,
        container_id: &pod.container_id,
        netns: &pod.netns,
        prev_result: Some(&pod.result),
    };
    let run = run_plugin(paths, state, node, &call);
    let failure = match run {
        Ok(PluginRun { ok: true, .. }) => None,
        Ok(PluginRun { output, .. }) => Some(PodFailure {
            pod: pod.name.clone(),
            node: node.name.clone(),
            code: output["code"].as_u64().unwrap_or(0) as u32,
            message: output["msg"].as_str().unwrap_or("DEL failed").to_owned(),
            details: output["details"].as_str().unwrap_or_default().to_owned(),
            attempts: 1,
        }),
        Err(error) => Some(PodFailure {
            pod: pod.name.clone(),
            node: node.name.clone(),
            code: 0,
            message: error.to_string(),
            details: String::new(),
            attempts: 1,
        }),
    };
    if netns_exists(&pod.netns) {
        let _ = ip(None, &["netns", "del", &pod.netns]);
    }
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: u32, details: &str) -> PodFailure {
        PodFailure {
            pod: "pod-1".into(),
            node: "node-1".into(),
            code,
            message: String::new(),
            details: details.into(),
            attempts: 1,
        }
    }

    #[test]
    fn only_refusals_that_waiting_fixes_are_retried() {
        assert!(failure(11, "ipamd reason ENI_ATTACH_IN_PROGRESS").retryable());
        assert!(failure(11, "ipamd reason POOL_EMPTY_GROWING").retryable());
        // ipamd unreachable: no reason, try again later.
        assert!(failure(11, "connection refused; is vpcni-ipamd running on this node?").retryable());
        for full in [
            "NODE_MAX_PODS",
            "NODE_ADDRESS_LIMIT",
            "SUBNET_EXHAUSTED",
            "NO_FREE_PREFIX",
        ] {
            assert!(
                !failure(11, &format!("ipamd reason {full}")).retryable(),
                "{full}"
            );
        }
        assert!(!failure(100, "ipamd reason EC2_ERROR").retryable());
        assert!(!failure(100, "wiring failed").retryable());
    }
}
