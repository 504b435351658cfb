//! [`Lab`]: bring a lab up, open a running one, add and delete pods, run commands in its namespaces,
//! stop and start a node's ipamd, and take it all down again.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use crate::cmd::{LabProcess, find_tool, in_netns, is_root, netns_add, netns_command, netns_list, tail};
use crate::down::{DownReport, down_at};
use crate::internet::{http_get, service_url, service_url_v6};
use crate::pods::{self, PodsError};
use crate::spec::{INTERNET_IP, INTERNET_IP_V6, INTERNET_PORT, LabSpec, Names, node_name};
use crate::state::{FabricReport, LabState, NodeRecord, PodRecord, StateLock, StatePaths};
use crate::status::{self, LabStatus};
use crate::{LabError, node, router};

/// How long the fabric may take to create the instances and plug their primary ENIs.
const FABRIC_START: Duration = Duration::from_secs(30);
/// How long `up` waits for the nodes' warm pools.
const POOL_SETTLE: Duration = Duration::from_secs(10);
/// The binaries a lab runs.
pub const BINARIES: [&str; 3] = ["vpcnictl", "vpcni-ipamd", "vpcni"];

/// A namespace of the lab, by the name users give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A pod (`pod-3`).
    Pod(String),
    /// A node (`node-1`).
    Node(String),
    /// The VPC router.
    Router,
    /// The internet.
    Internet,
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    pub(crate) paths: StatePaths,
    pub(crate) state: LabState,
    /// Processes this `Lab` started, by role (`fabric`, `internet`, `ipamd/node-1`), so they are reaped.
    pub(crate) processes: BTreeMap<String, LabProcess>,
}

/// Checks what `up` needs before anything is created.
pub fn preflight(spec: &LabSpec) -> Result<(), LabError> {
    spec.validate()?;
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("iptables-restore", "iptables"),
    ] {
        if find_tool(tool).is_none() {
            return Err(LabError::MissingTool {
                tool: tool.into(),
                package: package.into(),
            });
        }
    }
    let missing: Vec<String> = spec
        .binaries()
        .iter()
        .filter(|b| !spec.bin_dir.join(b).is_file())
        .map(|b| (*b).to_owned())
        .collect();
    if spec.ipv6 && find_tool("ip6tables-restore").is_none() {
        return Err(LabError::MissingTool {
            tool: "ip6tables-restore".into(),
            package: "iptables".into(),
        });
    }
    if !missing.is_empty() {
        return Err(LabError::MissingBinaries {
            dir: spec.bin_dir.clone(),
            missing,
        });
    }
    Ok(())
}

impl Lab {
    /// Brings a lab up: namespaces, fabric, internet, one ipamd per node. On failure everything created so
    /// far is removed again and the error says what went wrong.
    pub fn up(spec: LabSpec) -> Result<Self, LabError> {
        preflight(&spec)?;
        let paths = StatePaths::new(&spec.state_dir);
        let names = Names::new(&spec.prefix);
        if paths.state_file().exists() {
            return Err(LabError::AlreadyUp {
                state_dir: paths.dir.clone(),
                status: crate::lab_command(&paths.dir, &spec.prefix, "status"),
                down: crate::lab_command(&paths.dir, &spec.prefix, "down"),
            });
        }
        let leftovers: Vec<String> = netns_list().into_iter().filter(|n| names.owns(n)).collect();
        if !leftovers.is_empty() {
            return Err(LabError::Leftovers {
                namespaces: leftovers,
                down: crate::lab_command(&paths.dir, &spec.prefix, "down"),
            });
        }
        std::fs::create_dir_all(&paths.dir).map_err(LabError::io(&paths.dir))?;
        let _lock = StateLock::acquire(&paths)?;
        let nodes = (1..=spec.nodes)
            .map(|index| NodeRecord {
                index,
                name: node_name(index),
                netns: names.node(index),
                instance_id: String::new(),
                primary_ip: spec.planned_primary_ip(index).unwrap_or(Ipv4Addr::UNSPECIFIED),
                public_ip: spec.public_ip(index),
                subnet: spec.subnet_of(index),
                ipamd_pid: None,
                ipv6: None,
            })
            .collect();
        let state = LabState {
            spec,
            nodes,
            pods: Vec::new(),
            next_pod: 1,
            fabric_pid: None,
            internet_pid: None,
        };
        state.save(&paths)?;
        let mut lab = Self {
            paths,
            state,
            processes: BTreeMap::new(),
        };
        match lab.build() {
            Ok(()) => Ok(lab),
            Err(error) => {
                let _ = lab.take_down();
                Err(error)
            }
        }
    }

    fn build(&mut self) -> Result<(), LabError> {
        let names = Names::new(&self.state.spec.prefix);
        let (router_ns, internet_ns) = (names.router(), names.internet());
        netns_add(&router_ns)?;
        netns_add(&internet_ns)?;
        for node in &self.state.nodes {
            node::create(&self.paths, &self.state.spec, node)?;
        }
        router::setup(&self.state, &router_ns, &internet_ns)?;

        let bin = self.state.spec.bin_dir.join("vpcnictl");
        let mut fabric = netns_command(&router_ns, &bin);
        fabric.args(["lab", "fabric", "--state"]).arg(&self.paths.dir);
        let fabric = LabProcess::spawn(fabric, &self.paths.fabric_log())?;
        self.state.fabric_pid = Some(fabric.pid);
        self.processes.insert("fabric".into(), fabric);
        let mut internet = netns_command(&internet_ns, &bin);
        internet
            .args(["lab", "internet", "--listen"])
            .arg(SocketAddr::from((INTERNET_IP, INTERNET_PORT)).to_string());
        if self.state.spec.ipv6 {
            internet
                .arg("--listen")
                .arg(SocketAddr::from((INTERNET_IP_V6, INTERNET_PORT)).to_string());
        }
        internet.arg("--state").arg(&self.paths.dir);
        let internet = LabProcess::spawn(internet, &self.paths.internet_log())?;
        self.state.internet_pid = Some(internet.pid);
        self.processes.insert("internet".into(), internet);
        self.state.save(&self.paths)?;

        let report = self.wait_for_fabric()?;
        for node in &mut self.state.nodes {
            if let Some(instance) = report.instances.iter().find(|i| i.name == node.name) {
                node.instance_id.clone_from(&instance.instance_id);
                node.primary_ip = instance.primary_ip;
                node.ipv6 = instance.ipv6;
            }
        }
        router::install_gateway(&self.state, &router_ns, report.vpc_ipv6_cidr)?;
        self.state.save(&self.paths)?;
        if self.state.spec.ipv6 {
            // The egress plugin's nodeIP is the node's primary address, known now.
            for node in &self.state.nodes {
                node::write_cni_config(&self.paths, &self.state.spec, node)?;
            }
        }
        if self.state.spec.custom_networking {
            self.write_eni_configs()?;
        }

        let mut waiting = Vec::new();
        for node in &self.state.nodes {
            waiting.push((
                node.name.clone(),
                node::spawn_ipamd(&self.paths, &self.state, node)?,
            ));
        }
        for (name, mut process) in waiting {
            let ready = node::wait_ipamd(&self.paths, self.node(&name)?, &mut process);
            let pid = process.pid;
            self.processes.insert(format!("ipamd/{name}"), process);
            ready?;
            if let Some(node) = self.state.nodes.iter_mut().find(|n| n.name == name) {
                node.ipamd_pid = Some(pid);
            }
        }
        self.state.save(&self.paths)?;
        self.check_gateway()?;
        self.settle();
        Ok(())
    }

    /// Custom networking: one ENIConfig per zone naming that zone's pod subnet, and each node's Node object
    /// labelled with its zone, in the directory every ipamd reads (VPCNI_ENI_CONFIG_DIR). The subnets' ids
    /// come from the simulator's account, which the fabric has written by now.
    fn write_eni_configs(&self) -> Result<(), LabError> {
        let spec = &self.state.spec;
        let dir = self.paths.eni_config_dir();
        std::fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
        let path = self.paths.ec2_state_file();
        let deadline = Instant::now() + FABRIC_START;
        let subnets = loop {
            let ids: Option<Vec<String>> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<vpcni_ec2::sim::AccountState>(&text).ok())
                .and_then(|account| {
                    spec.pod_subnets
                        .iter()
                        .map(|cidr| {
                            account
                                .subnets
                                .values()
                                .find(|s| s.addresses.cidr() == *cidr)
                                .map(|s| s.id.clone())
                        })
                        .collect()
                });
            if let Some(ids) = ids {
                break ids;
            }
            if Instant::now() > deadline {
                return Err(LabError::State {
                    path: path.clone(),
                    detail: format!(
                        "the pod subnets {:?} never appeared in the simulator's account",
                        spec.pod_subnets
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for (i, subnet_id) in subnets.iter().enumerate() {
            let zone = spec.zone(i).unwrap_or_default();
            let text = format!(
                "# Written by vpcnictl lab up --custom-networking: pods of nodes in {zone} go to {} ({subnet_id}).\n\
                 apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: {zone}\nspec:\n  subnet: {subnet_id}\n",
                spec.pod_subnets[i]
            );
            let file = dir.join(format!("{zone}.yaml"));
            std::fs::write(&file, text).map_err(LabError::io(&file))?;
        }
        for node in &self.state.nodes {
            let zone = spec.eni_config_of(node.index).unwrap_or_default();
            let text = format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels:\n    {}: {zone}\n",
                node.name,
                crate::spec::ZONE_LABEL
            );
            let file = dir.join(format!("{}.yaml", node.name));
            std::fs::write(&file, text).map_err(LabError::io(&file))?;
        }
        Ok(())
    }

    /// Gives each ipamd a moment to fill its warm pool, as a node becomes Ready once its CNI can serve a
    /// pod. Best effort: warm targets of zero legitimately leave a node with no spare address.
    fn settle(&self) {
        let deadline = Instant::now() + POOL_SETTLE;
        while Instant::now() < deadline {
            let ipv6 = self.state.spec.ipv6;
            let filled = self.status().is_ok_and(|status| {
                status.nodes.iter().all(|n| {
                    if ipv6 {
                        n.enis.iter().any(|e| !e.ipv6_prefixes.is_empty())
                    } else {
                        n.enis.iter().any(|e| e.pod_addresses() > 0)
                    }
                })
            });
            if filled {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole path to the internet works: node-1 asks who it is and hears its public address; in an
    /// IPv6 lab it also asks over IPv6 and hears its own IPv6 address.
    fn check_gateway(&self) -> Result<(), LabError> {
        let node = &self.state.nodes[0];
        let mut checks = vec![(service_url(), node.public_ip.to_string())];
        if self.state.spec.ipv6 {
            let own = node.ipv6.map(|ip| ip.to_string()).unwrap_or_default();
            checks.push((service_url_v6(), own));
        }
        for (url, expected) in checks {
            let seen = in_netns(&node.netns, {
                let url = url.clone();
                move || Ok(http_get(&url, Duration::from_secs(3)))
            })?;
            match seen {
                Ok(body) if body.trim() == expected => {}
                other => {
                    return Err(LabError::Process {
                        what: "the internet gateway".into(),
                        detail: format!(
                            "{} asked {url} who it is and got {other:?} instead of its address {expected:?}",
                            node.name
                        ),
                        log: self.paths.internet_log(),
                        log_tail: tail(&self.paths.internet_log(), 10),
                    });
                }
            }
        }
        Ok(())
    }

    /// What is not running that should be (fabric, internet service, a node's ipamd), with where to look.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let down = |pid: Option<u32>| !pid.is_some_and(crate::cmd::pid_alive);
        if down(self.state.fabric_pid) {
            problems.push(format!(
                "the fabric (EC2 simulator, ENI plumbing) is not running: see {}; recreate the lab with `vpcnictl lab down` and `vpcnictl lab up`",
                self.paths.fabric_log().display()
            ));
        }
        if down(self.state.internet_pid) {
            problems.push(format!(
                "the internet service is not running: see {}",
                self.paths.internet_log().display()
            ));
        }
        for node in &self.state.nodes {
            if down(node.ipamd_pid) {
                problems.push(format!(
                    "vpcni-ipamd on {} is not running: see {}",
                    node.name,
                    self.paths.node_dir(&node.name).join("ipamd.log").display()
                ));
            }
        }
        problems
    }

    fn wait_for_fabric(&mut self) -> Result<FabricReport, LabError> {
        let deadline = Instant::now() + FABRIC_START;
        let log = self.paths.fabric_log();
        let failed = |detail: String| LabError::Process {
            what: "the VPC fabric (EC2 simulator and router sync)".into(),
            detail,
            log: log.clone(),
            log_tail: tail(&log, 15),
        };
        loop {
            if let Some(report) = FabricReport::load(&self.paths)?
                && report.ready
            {
                return Ok(report);
            }
            let alive = self.processes.get_mut("fabric").is_some_and(LabProcess::alive);
            if !alive {
                return Err(failed("it exited".into()));
            }
            if Instant::now() > deadline {
                let last = FabricReport::load(&self.paths)?.and_then(|r| r.last_error);
                return Err(failed(format!(
                    "the nodes' primary ENIs were not plugged within {} s{}",
                    FABRIC_START.as_secs(),
                    last.map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens the lab whose state is in `state_dir`.
    pub fn open(state_dir: impl AsRef<Path>) -> Result<Self, LabError> {
        let paths = StatePaths::new(state_dir.as_ref());
        let state = LabState::load(&paths)?.ok_or_else(|| LabError::NotUp(paths.dir.clone()))?;
        Ok(Self {
            paths,
            state,
            processes: BTreeMap::new(),
        })
    }

    /// The lab's state as last read or written.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The state directory's layout.
    pub fn paths(&self) -> &StatePaths {
        &self.paths
    }

    /// Rereads the state (another `vpcnictl` may have added pods).
    pub fn reload(&mut self) -> Result<(), LabError> {
        self.state = LabState::load(&self.paths)?.ok_or_else(|| LabError::NotUp(self.paths.dir.clone()))?;
        Ok(())
    }

    /// A node by name (`node-2`) or number (`2`).
    pub fn node(&self, name: &str) -> Result<&NodeRecord, LabError> {
        self.state.node(name).ok_or_else(|| LabError::UnknownTarget {
            name: name.to_owned(),
            known: self
                .state
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The directory a container runtime should read this node's CNI configuration from.
    pub fn cni_conf_dir(&self, node: &str) -> Result<PathBuf, LabError> {
        Ok(self.paths.cni_conf_dir(&self.node(node)?.name))
    }

    /// The directory holding the `vpcni` plugin (a runtime's CNI bin dir).
    pub fn bin_dir(&self) -> &Path {
        &self.state.spec.bin_dir
    }

    /// A node's ipamd socket.
    pub fn ipamd_socket(&self, node: &str) -> Result<PathBuf, LabError> {
        Ok(self.paths.node_dir(&self.node(node)?.name).join("ipamd.sock"))
    }

    /// What the fabric last reported (plugged ENIs, routes).
    pub fn fabric_report(&self) -> Result<FabricReport, LabError> {
        Ok(FabricReport::load(&self.paths)?.unwrap_or_default())
    }

    /// Creates `count` pods on `node`, one after another; stops at the first that gets no network.
    pub fn add_pods(
        &mut self,
        node: &str,
        count: u32,
        retry_for: Duration,
    ) -> Result<Vec<PodRecord>, PodsError> {
        let lab_failure = |error: LabError| PodsError {
            created: Vec::new(),
            failure: Box::new(pods::PodFailure {
                pod: String::new(),
                node: node.to_owned(),
                code: 0,
                message: error.to_string(),
                details: String::new(),
                attempts: 0,
            }),
            not_attempted: count,
        };
        let node = self
            .node(node)
            .map_err(|e| PodsError {
                not_attempted: 0,
                ..lab_failure(e)
            })?
            .clone();
        let mut created = Vec::new();
        for i in 0..count {
            let reserved = (|| {
                let _lock = StateLock::acquire(&self.paths)?;
                self.reload()?;
                let name = format!("pod-{}", self.state.next_pod);
                self.state.next_pod += 1;
                self.state.save(&self.paths)?;
                Ok::<_, LabError>(name)
            })();
            let name = match reserved {
                Ok(name) => name,
                Err(error) => {
                    let mut e = lab_failure(error);
                    e.created = created;
                    e.not_attempted = count - i;
                    return Err(e);
                }
            };
            match pods::add(&self.paths, &self.state, &node, &name, retry_for) {
                Ok(pod) => {
                    let saved = (|| {
                        let _lock = StateLock::acquire(&self.paths)?;
                        self.reload()?;
                        self.state.pods.push(pod.clone());
                        self.state.save(&self.paths)
                    })();
                    if let Err(error) = saved {
                        let mut e = lab_failure(error);
                        e.created = created;
                        e.not_attempted = count - i - 1;
                        return Err(e);
                    }
                    created.push(pod);
                }
                Err(failure) => {
                    return Err(PodsError {
                        created,
                        failure: Box::new(failure),
                        not_attempted: count - i - 1,
                    });
                }
            }
        }
        Ok(created)
    }

    /// Deletes pods by name (CNI DEL, then their namespaces).
    pub fn del_pods(&mut self, names: &[String]) -> Result<Vec<String>, LabError> {
        let _lock = StateLock::acquire(&self.paths)?;
        self.reload()?;
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for name in names {
            let Some(pod) = self.state.pods.iter().find(|p| &p.name == name).cloned() else {
                return Err(self.unknown(name));
            };
            let node = self.node(&pod.node)?.clone();
            match pods::del(&self.paths, &self.state, &node, &pod) {
                Ok(()) => {}
                Err(failure) => failures.push(failure.to_string()),
            }
            // The namespace is gone either way; ipamd reclaims an address whose DEL failed.
            self.state.pods.retain(|p| p.name != pod.name);
            deleted.push(pod.name);
        }
        self.state.save(&self.paths)?;
        if failures.is_empty() {
            Ok(deleted)
        } else {
            Err(LabError::Spec(format!(
                "pods deleted, but the plugin's DEL failed: {}",
                failures.join("; ")
            )))
        }
    }

    /// The lab's status (pods, nodes, ENIs).
    pub fn status(&self) -> Result<LabStatus, LabError> {
        status::collect(&self.paths, &self.state)
    }

    /// Takes the lab down: every process, namespace and file it made.
    pub fn down(mut self) -> Result<DownReport, LabError> {
        self.take_down()
    }

    fn take_down(&mut self) -> Result<DownReport, LabError> {
        let mut report = DownReport::default();
        // ipamd first (it may still call EC2), then the fabric and the internet.
        let mut roles: Vec<String> = self.processes.keys().cloned().collect();
        roles.sort_by_key(|r| !r.starts_with("ipamd/"));
        for role in roles {
            if let Some(mut process) = self.processes.remove(&role)
                && process.alive()
            {
                process.stop(Duration::from_secs(3));
                report.processes += 1;
            }
        }
        let rest = down_at(&self.paths.dir, &self.state.spec.prefix)?;
        report.processes += rest.processes;
        report.namespaces = rest.namespaces;
        report.state_removed = rest.state_removed;
        Ok(report)
    }
}
