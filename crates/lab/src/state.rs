//! What the lab keeps on disk: its state file (spec, nodes, pods, process ids), the fabric's report, and
//! the layout of the state directory. Writers take an exclusive lock, so two `vpcnictl lab pods add` runs
//! never lose each other's pods.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::spec::LabSpec;

/// The state directory's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// The directory.
    pub dir: PathBuf,
}

impl StatePaths {
    /// Layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The lab's state (`lab.json`).
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    /// Lock taken while the state changes.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lab.lock")
    }

    /// The fabric's report (`fabric.json`).
    pub fn fabric_file(&self) -> PathBuf {
        self.dir.join("fabric.json")
    }

    /// The fabric's log.
    pub fn fabric_log(&self) -> PathBuf {
        self.dir.join("fabric.log")
    }

    /// The internet service's log.
    pub fn internet_log(&self) -> PathBuf {
        self.dir.join("internet.log")
    }

    /// The simulator's saved account.
    pub fn ec2_dir(&self) -> PathBuf {
        self.dir.join("ec2")
    }

    /// Faults and throttling for the running fabric ([`FaultSettings`]).
    pub fn ec2_faults_file(&self) -> PathBuf {
        self.dir.join("ec2-faults.json")
    }

    /// The simulator's account file inside [`Self::ec2_dir`].
    pub fn ec2_state_file(&self) -> PathBuf {
        self.ec2_dir().join("ec2-state.json")
    }

    /// Everything about one node: ipamd's socket, checkpoint and log, the plugin's log, the CNI config.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    /// Custom networking: the ENIConfig objects and node labels every ipamd reads (VPCNI_ENI_CONFIG_DIR).
    pub fn eni_config_dir(&self) -> PathBuf {
        self.dir.join("eniconfigs")
    }

    /// The CNI configuration directory of a node (`10-vpcni.conflist`).
    pub fn cni_conf_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("net.d")
    }

    /// Entries the lab creates directly under the state directory; `down` removes exactly these.
    pub fn owned_entries(&self) -> Vec<PathBuf> {
        [
            "lab.json",
            "lab.json.tmp",
            "lab.lock",
            "fabric.json",
            "fabric.json.tmp",
            "fabric.log",
            "internet.log",
            "topology.toml",
            "ec2",
            "nodes",
            "eniconfigs",
        ]
        .iter()
        .map(|name| self.dir.join(name))
        .collect()
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// 1-based index.
    pub index: u32,
    /// `node-<index>`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// EC2 instance id (known once the fabric has created the instance).
    pub instance_id: String,
    /// Primary ENI's primary address.
    pub primary_ip: Ipv4Addr,
    /// Address the internet gateway translates it to.
    pub public_ip: Ipv4Addr,
    /// The subnet it lives in.
    pub subnet: Ipv4Net,
    /// ipamd's process id while it runs.
    pub ipamd_pid: Option<u32>,
    /// IPv6 labs: the primary ENI's IPv6 address (known once the fabric has assigned it).
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// `pod-<n>`.
    pub name: String,
    /// Node name.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// The container id given to the plugin.
    pub container_id: String,
    /// Its IPv4 address: its VPC address in an IPv4 lab; in an IPv6 lab its node-local egress address
    /// (the same as `egress_ipv4`), or 0.0.0.0 when it has none.
    pub ip: Ipv4Addr,
    /// The plugin chain's ADD result, passed back as `prevResult` on DEL.
    pub result: serde_json::Value,
    /// IPv6 labs: its VPC IPv6 address, from its node's /80.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// IPv6 labs: its node-local IPv4 egress address (from 169.254.172.0/22), SNATed to the node's.
    #[serde(default)]
    pub egress_ipv4: Option<Ipv4Addr>,
}

/// The lab's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// What was asked for.
    pub spec: LabSpec,
    /// Nodes, in index order.
    pub nodes: Vec<NodeRecord>,
    /// Pods, in creation order.
    pub pods: Vec<PodRecord>,
    /// Number of the next pod.
    pub next_pod: u32,
    /// The fabric's process id.
    pub fabric_pid: Option<u32>,
    /// The internet service's process id.
    pub internet_pid: Option<u32>,
}

impl LabState {
    /// Reads the state file; `Ok(None)` when there is none.
    pub fn load(paths: &StatePaths) -> Result<Option<Self>, LabError> {
        read_json(&paths.state_file())
    }

    /// Writes the state file atomically.
    pub fn save(&self, paths: &StatePaths) -> Result<(), LabError> {
        write_json(&paths.state_file(), self)
    }

    /// A node by name (`node-2`) or index (`2`).
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        let wanted = name
            .parse::<u32>()
            .map_or_else(|_| name.to_owned(), crate::spec::node_name);
        self.nodes.iter().find(|n| n.name == wanted)
    }
}

/// One ENI the fabric has plugged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluggedEni {
    /// Node name.
    pub node: String,
    /// `eni-…`.
    pub eni_id: String,
    /// Its MAC, also the node-side link's.
    pub mac: String,
    /// Network card index.
    pub card: u32,
    /// Device index.
    pub device: u32,
    /// The router's end of the link.
    pub router_link: String,
    /// The node's end (`eth<device>`).
    pub node_link: String,
    /// The ENI's primary address.
    pub primary_ip: Ipv4Addr,
    /// Secondary addresses and prefixes routed to it.
    pub routed: Vec<Ipv4Net>,
    /// IPv6 addresses (as /128s) and /80 prefixes routed to it.
    #[serde(default)]
    pub routed_v6: Vec<Ipv6Net>,
}

/// An instance the fabric created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricInstance {
    /// Node name.
    pub name: String,
    /// `i-…`.
    pub instance_id: String,
    /// Primary address.
    pub primary_ip: Ipv4Addr,
    /// The primary ENI's IPv6 address, in IPv6 labs.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
}

/// What the fabric reports (`fabric.json`), rewritten whenever it changes something.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricReport {
    /// The fabric's process id.
    pub pid: u32,
    /// VPC id.
    pub vpc_id: String,
    /// The VPC's IPv6 /56, in IPv6 labs.
    #[serde(default)]
    pub vpc_ipv6_cidr: Option<Ipv6Net>,
    /// Instances, one per node.
    pub instances: Vec<FabricInstance>,
    /// Every node's primary ENI is plugged and configured.
    pub ready: bool,
    /// ENIs currently plugged.
    pub plugged: Vec<PluggedEni>,
    /// The last error of the sync loop, if its last pass failed.
    pub last_error: Option<String>,
    /// What EC2 has seen and holds, for the soak's accounting.
    #[serde(default)]
    pub ec2: Ec2Summary,
}

/// EC2's side of the lab: calls, errors, injected faults, and ENIs nobody has attached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ec2Summary {
    /// API calls answered.
    pub calls: u64,
    /// Errors returned, per `Action/Code`.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Of those, injected by fault rules.
    pub injected: std::collections::BTreeMap<String, u64>,
    /// ENIs ipamd created (description `aws-K8S-…`) that are attached to nothing.
    pub unattached_enis: Vec<String>,
}

/// Faults and throttling the fabric applies to its simulator while it runs (`ec2-faults.json`; the soak
/// writes it, the fabric picks changes up within one sync pass).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Fault rules.
    pub faults: Vec<vpcni_ec2::sim::FaultRule>,
    /// Request throttling.
    pub throttle: vpcni_ec2::sim::ThrottleConfig,
}

impl FaultSettings {
    /// Reads `ec2-faults.json`, if there is one.
    pub fn load(paths: &StatePaths) -> Result<Option<Self>, LabError> {
        read_json(&paths.ec2_faults_file())
    }

    /// Writes `ec2-faults.json` atomically.
    pub fn save(&self, paths: &StatePaths) -> Result<(), LabError> {
        write_json(&paths.ec2_faults_file(), self)
    }
}

impl FabricReport {
    /// Reads `fabric.json`.
    pub fn load(paths: &StatePaths) -> Result<Option<Self>, LabError> {
        read_json(&paths.fabric_file())
    }

    /// Writes `fabric.json` atomically.
    pub fn save(&self, paths: &StatePaths) -> Result<(), LabError> {
        write_json(&paths.fabric_file(), self)
    }
}

/// An exclusive lock on the state; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Waits for the lock.
    pub fn acquire(paths: &StatePaths) -> Result<Self, LabError> {
        let path = paths.lock_file();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LabError::io(&path))?;
        file.lock().map_err(LabError::io(&path))?;
        Ok(Self { _file: file })
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LabError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::State {
                path: path.to_owned(),
                detail: format!("not a lab state file: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io(path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| LabError::State {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).map_err(LabError::io(&temp))?;
    std::fs::rename(&temp, path).map_err(LabError::io(path))
}
