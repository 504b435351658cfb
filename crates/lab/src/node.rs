//! Node namespaces: what the AMI sets (IP forwarding), what the original's init container sets (loose
//! reverse-path filtering on the primary interface), a real `vpcni-ipamd`, and the CNI configuration for
//! the real `vpcni` plugin.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd::{LabProcess, netns_add, netns_command, pid_alive, sysctl, tail};
use crate::internet::http_get;
use crate::spec::{EGRESS_PLUGIN, EGRESS_V4_RANGE, ENI_MTU, INTROSPECTION, LabSpec};
use crate::state::StateLock;
use crate::state::{LabState, NodeRecord, StatePaths};
use crate::{Lab, LabError};

pub use vpcni_layout::{CONFLIST_FILE, NETWORK_NAME};
/// CNI version of the conflist: the newest containerd 1.6 (Debian 12) understands.
pub const CNI_VERSION: &str = "1.0.0";
/// How long ipamd may take to start.
const IPAMD_START: Duration = Duration::from_secs(45);

/// Creates the node's namespace and directory.
pub fn create(paths: &StatePaths, spec: &LabSpec, node: &NodeRecord) -> Result<(), LabError> {
    netns_add(&node.netns)?;
    sysctl(
        &node.netns,
        &[("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0")],
    )?;
    if spec.ipv6 {
        // The node's IPv6 address and default route are configured statically (the lab has no router
        // advertisements); nothing else may add addresses or routes behind the lab's back.
        sysctl(
            &node.netns,
            &[
                ("net.ipv6.conf.all.disable_ipv6", "0"),
                ("net.ipv6.conf.default.accept_ra", "0"),
                ("net.ipv6.conf.all.accept_ra", "0"),
            ],
        )?;
    }
    let dir = paths.node_dir(&node.name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(LabError::io(&dir))?;
    // The directory holds ipamd's socket: root only, even if it existed with wider permissions.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(LabError::io(&dir))?;
    write_cni_config(paths, spec, node)
}

/// The node's conflist, as a container runtime would read it from the CNI configuration directory. IPv6
/// labs chain the egress plugin after `vpcni`, as the original chains `egress-cni`, with its host-local
/// data under the node's own directory (not /run/cni) so that labs never share it.
pub fn conflist(paths: &StatePaths, spec: &LabSpec, node: &NodeRecord) -> Value {
    let dir = paths.node_dir(&node.name);
    let mut plugins = vec![json!({
        "type": "vpcni",
        "vethPrefix": "eni",
        "mtu": ENI_MTU.to_string(),
        "podSGEnforcingMode": "strict",
        "pluginLogFile": dir.join("plugin.log").display().to_string(),
        "pluginLogLevel": "debug",
        "ipamdSocket": dir.join("ipamd.sock").display().to_string(),
    })];
    if spec.ipv6 {
        plugins.push(json!({
            "type": EGRESS_PLUGIN,
            "name": vpcni_layout::egress::PLUGIN_NAME,
            "enabled": "true",
            "mtu": ENI_MTU.to_string(),
            "randomizeSNAT": "prng",
            "nodeIP": node.primary_ip.to_string(),
            "pluginLogFile": dir.join("egress-plugin.log").display().to_string(),
            "pluginLogLevel": "debug",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": EGRESS_V4_RANGE.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                // The original's directory name, under the node's own directory.
                "dataDir": dir
                    .join(
                        std::path::Path::new(vpcni_layout::egress::V4_DATA_DIR)
                            .file_name()
                            .unwrap_or_default(),
                    )
                    .display()
                    .to_string(),
            },
        }));
    }
    json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "disableCheck": true,
        "plugins": plugins,
    })
}

/// Writes the node's conflist into its CNI configuration directory.
pub(crate) fn write_cni_config(
    paths: &StatePaths,
    spec: &LabSpec,
    node: &NodeRecord,
) -> Result<(), LabError> {
    let dir = paths.cni_conf_dir(&node.name);
    std::fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    let path = dir.join(CONFLIST_FILE);
    let text = serde_json::to_string_pretty(&conflist(paths, spec, node)).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(LabError::io(path))
}

/// Starts the node's ipamd (after what the original's init container does).
pub fn spawn_ipamd(paths: &StatePaths, state: &LabState, node: &NodeRecord) -> Result<LabProcess, LabError> {
    // The original's init container sets loose reverse-path filtering on the primary interface: replies
    // to NodePort traffic or to pods on secondary ENIs are asymmetric.
    sysctl(&node.netns, &[("net.ipv4.conf.eth0.rp_filter", "2")])?;
    if state.spec.ipv6 {
        // And in IPv6 mode: IPv6 on, forwarding on, and router advertisements still accepted on the
        // primary interface although the node forwards (accept_ra=2).
        sysctl(
            &node.netns,
            &[
                ("net.ipv6.conf.all.disable_ipv6", "0"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv6.conf.eth0.accept_ra", "2"),
            ],
        )?;
    }
    let dir = paths.node_dir(&node.name);
    let _ = std::fs::remove_file(dir.join("ipamd.sock"));
    let mut command = netns_command(&node.netns, state.spec.bin_dir.join("vpcni-ipamd"));
    command.envs(state.spec.ipamd_environment(&dir));
    LabProcess::spawn(command, &dir.join("ipamd.log"))
}

/// Waits until a starting ipamd serves its socket and introspection; stops it if it does not in time.
pub fn wait_ipamd(paths: &StatePaths, node: &NodeRecord, process: &mut LabProcess) -> Result<(), LabError> {
    let dir = paths.node_dir(&node.name);
    let socket = dir.join("ipamd.sock");
    let log = dir.join("ipamd.log");
    let failed = |detail: String| LabError::Process {
        what: format!("vpcni-ipamd on {}", node.name),
        detail,
        log: log.clone(),
        log_tail: tail(&log, 15),
    };
    let deadline = Instant::now() + IPAMD_START;
    let introspection = format!("http://{INTROSPECTION}/v1/enis");
    loop {
        if !process.alive() {
            return Err(failed("it exited".into()));
        }
        if socket.exists() && introspection_answers(&node.netns, &introspection) {
            return Ok(());
        }
        if Instant::now() > deadline {
            process.stop(Duration::from_secs(2));
            return Err(failed(format!(
                "no socket at {} after {} s",
                socket.display(),
                IPAMD_START.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn introspection_answers(netns: &str, url: &str) -> bool {
    let url = url.to_owned();
    crate::cmd::in_netns(netns, move || {
        Ok(http_get(&url, Duration::from_millis(500)).is_ok())
    })
    .unwrap_or(false)
}

/// Stops a node's ipamd the way its DaemonSet would (SIGTERM, then SIGKILL after 10 s).
pub fn stop_ipamd(process: &mut LabProcess) {
    process.stop(Duration::from_secs(10));
}

/// Stopping, killing and starting a node's ipamd, for tests of restarts and crashes.
impl Lab {
    fn ipamd_process(&mut self, node: &str) -> Result<(String, LabProcess), LabError> {
        let record = self.node(node)?.clone();
        let key = format!("ipamd/{}", record.name);
        let process = match self.processes.remove(&key) {
            Some(process) => process,
            None => {
                let pid = record
                    .ipamd_pid
                    .ok_or_else(|| LabError::Spec(format!("ipamd is not running on {}", record.name)))?;
                LabProcess::adopt(pid)
            }
        };
        Ok((record.name, process))
    }

    fn forget_ipamd(&mut self, node: &str) -> Result<(), LabError> {
        let _lock = StateLock::acquire(&self.paths)?;
        self.reload()?;
        if let Some(n) = self.state.nodes.iter_mut().find(|n| n.name == node) {
            n.ipamd_pid = None;
        }
        self.state.save(&self.paths)
    }

    /// Stops a node's ipamd gracefully (SIGTERM).
    pub fn stop_ipamd(&mut self, node: &str) -> Result<(), LabError> {
        let (name, mut process) = self.ipamd_process(node)?;
        stop_ipamd(&mut process);
        self.forget_ipamd(&name)
    }

    /// Kills a node's ipamd (SIGKILL), as a crash would.
    pub fn kill_ipamd(&mut self, node: &str) -> Result<(), LabError> {
        let (name, mut process) = self.ipamd_process(node)?;
        process.kill();
        self.forget_ipamd(&name)
    }

    /// Starts a node's ipamd again and waits until it serves.
    pub fn start_ipamd(&mut self, node: &str) -> Result<(), LabError> {
        let record = self.node(node)?.clone();
        if record.ipamd_pid.is_some_and(pid_alive) {
            return Err(LabError::Spec(format!("ipamd already runs on {}", record.name)));
        }
        let mut process = spawn_ipamd(&self.paths, &self.state, &record)?;
        wait_ipamd(&self.paths, &record, &mut process)?;
        let pid = process.pid;
        self.processes.insert(format!("ipamd/{}", record.name), process);
        let _lock = StateLock::acquire(&self.paths)?;
        self.reload()?;
        if let Some(n) = self.state.nodes.iter_mut().find(|n| n.name == record.name) {
            n.ipamd_pid = Some(pid);
        }
        self.state.save(&self.paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeRecord {
        NodeRecord {
            index: 1,
            name: "node-1".into(),
            netns: "vpcni-node-1".into(),
            instance_id: "i-1".into(),
            primary_ip: "10.0.0.11".parse().unwrap(),
            public_ip: "198.51.100.11".parse().unwrap(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            ipamd_pid: None,
            ipv6: None,
        }
    }

    #[test]
    fn an_ipv4_lab_chains_only_vpcni() {
        let spec = LabSpec::new("/bin");
        let list = conflist(&StatePaths::new("/run/lab"), &spec, &node());
        let plugins = list["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 1, "{list}");
        assert_eq!(plugins[0]["type"], "vpcni");
    }

    #[test]
    fn an_ipv6_lab_chains_the_egress_plugin_with_the_nodes_address_and_its_own_data_dir() {
        let mut spec = LabSpec::new("/bin");
        spec.ipv6 = true;
        let list = conflist(&StatePaths::new("/run/lab"), &spec, &node());
        let plugins = list["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2, "{list}");
        let egress = &plugins[1];
        assert_eq!(egress["type"], EGRESS_PLUGIN);
        assert_eq!(egress["name"], "egress-cni");
        assert_eq!(egress["nodeIP"], "10.0.0.11");
        assert_eq!(egress["enabled"], "true");
        assert_eq!(egress["ipam"]["type"], "host-local");
        assert_eq!(egress["ipam"]["ranges"][0][0]["subnet"], "169.254.172.0/22");
        assert_eq!(egress["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(
            egress["ipam"]["dataDir"], "/run/lab/nodes/node-1/egress-v4-ipam",
            "under the lab's node directory, never /run/cni"
        );
    }
}
