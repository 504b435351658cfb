//! Pods: network namespaces wired by the real `vpcni` plugin through the CNI protocol, run inside the node's
//! namespace as a container runtime would run it. A refusal comes back with ipamd's reason; "try again
//! later" answers are retried for a bounded time while the pool grows, as kubelet retries a sandbox.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// The configuration of plugin `index` of the node's conflist as a runtime passes it on stdin: the
/// plugin's entry with the network's name and version, and `prevResult` when there is one (the previous
/// plugin's result on ADD, the chain's cached result on DEL).
fn network_config(plugin: &Value, list: &Value, prev_result: Option<&Value>) -> Value {
    let mut config = plugin.clone();
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

/// Runs the node's plugin chain as a runtime does: ADD through every plugin in order, each given the
/// previous one's result, stopping at the first failure; DEL through every plugin in reverse order, each
/// given the cached result, reporting the first failure after all have run.
fn run_plugin(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    call: &Call<'_>,
) -> Result<PluginRun, LabError> {
    let list = conflist(paths, &state.spec, node);
    let plugins: Vec<Value> = list["plugins"].as_array().cloned().unwrap_or_default();
    if call.command == "DEL" {
        let mut first_failure = None;
        for plugin in plugins.iter().rev() {
            let config = network_config(plugin, &list, call.prev_result);
            let run = run_one(state, node, call, &config)?;
            if !run.ok && first_failure.is_none() {
                first_failure = Some(run);
            }
        }
        return Ok(first_failure.unwrap_or(PluginRun {
            ok: true,
            output: Value::Null,
        }));
    }
    let mut result: Option<Value> = call.prev_result.cloned();
    for plugin in &plugins {
        let config = network_config(plugin, &list, result.as_ref());
        let run = run_one(state, node, call, &config)?;
        if !run.ok {
            return Ok(run);
        }
        result = Some(run.output);
    }
    Ok(PluginRun {
        ok: true,
        output: result.unwrap_or(Value::Null),
    })
}

/// One plugin of the chain, run inside the node's namespace with the CNI environment.
fn run_one(
    state: &LabState,
    node: &NodeRecord,
    call: &Call<'_>,
    config: &Value,
) -> Result<PluginRun, LabError> {
    let Call {
        command,
        pod,
        container_id,
        netns,
        ..
    } = *call;
    let plugin = config["type"].as_str().unwrap_or("vpcni");
    let mut process = netns_command(&node.netns, state.spec.bin_dir.join(plugin));
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
        command: format!("CNI_COMMAND={command} {plugin} (pod {pod} on {})", node.name),
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
            Ok(PluginRun { ok: true, output }) => {
                let (v4, v6) = result_ips(&output);
                // The address the VPC must route: the IPv4 one, or in an IPv6 lab the IPv6 one (its
                // IPv4 address is the node-local egress one, which the VPC never sees).
                let vpc_ip: Option<IpAddr> = if state.spec.ipv6 {
                    v6.map(IpAddr::V6)
                } else {
                    v4.map(IpAddr::V4)
                };
                match vpc_ip {
                    Some(ip) if routed_by_the_vpc(paths, &node.name, ip) => {
                        let egress_ipv4 = if state.spec.ipv6 { v4 } else { None };
                        return Ok(PodRecord {
                            name: name.to_owned(),
                            node: node.name.clone(),
                            netns,
                            container_id,
                            ip: v4.unwrap_or(Ipv4Addr::UNSPECIFIED),
                            result: output,
                            ipv6: if state.spec.ipv6 { v6 } else { None },
                            egress_ipv4,
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
                        LabError::Spec(format!(
                            "the plugin's result has no {} address: {output}",
                            if state.spec.ipv6 { "IPv6" } else { "IPv4" }
                        )),
                        attempts,
                    ),
                }
            }
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
fn routed_by_the_vpc(paths: &StatePaths, node: &str, ip: IpAddr) -> bool {
    let deadline = Instant::now() + ROUTED_WITHIN;
    loop {
        let routed = FabricReport::load(paths).ok().flatten().is_some_and(|report| {
            report.plugged.iter().any(|eni| {
                eni.node == node
                    && match ip {
                        IpAddr::V4(ip) => {
                            eni.primary_ip == ip || eni.routed.iter().any(|net| net.contains(&ip))
                        }
                        IpAddr::V6(ip) => eni.routed_v6.iter().any(|net| net.contains(&ip)),
                    }
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

/// The pod's first IPv4 and first IPv6 address from a CNI result.
fn result_ips(result: &Value) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let addresses: Vec<IpAddr> = result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let v4 = addresses.iter().find_map(|ip| match ip {
        IpAddr::V4(ip) => Some(*ip),
        IpAddr::V6(_) => None,
    });
    let v6 = addresses.iter().find_map(|ip| match ip {
        IpAddr::V6(ip) => Some(*ip),
        IpAddr::V4(_) => None,
    });
    (v4, v6)
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
