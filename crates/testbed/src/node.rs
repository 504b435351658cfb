//! [`TestNode`]: one node (namespace, simulator, ipamd, hot-plug watcher) and its builder.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;

use ipnet::Ipv4Net;

use crate::TestNodeBuilder;
use crate::binaries::binary;
use crate::hotplug::Watcher;
use crate::ipamd::{START_DEADLINE, check_alive, is_serving, spawn_in, wait_until};
use crate::netns::{create_netns, delete_netns, in_netns, ip, list_netns};
use crate::sim_state::SimState;
use crate::{Result, setup_error};

/// EC2 API inside the node namespace.
pub const EC2_LISTEN: &str = "127.0.0.1:8787";
/// Instance metadata inside the node namespace.
pub const IMDS_LISTEN: &str = "127.0.0.1:8788";
/// ipamd's introspection inside the node namespace.
pub const INTROSPECTION_LISTEN: &str = "127.0.0.1:61679";
/// ipamd's metrics inside the node namespace.
pub const METRICS_LISTEN: &str = "127.0.0.1:61678";

#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    instance_id: String,
    instance_type: String,
    primary_eni_id: String,
    primary_mac: String,
    primary_ip: Option<Ipv4Addr>,
    subnet_cidr: Option<Ipv4Net>,
    vpc_cidr: Option<Ipv4Net>,
}

/// A running test node. See the crate documentation.
#[derive(Debug)]
pub struct TestNode {
    name: String,
    companion: String,
    dir: PathBuf,
    identity: Identity,
    ipamd_env: Vec<(String, String)>,
    pub(crate) ipamd: Mutex<Option<Child>>,
    sim: Mutex<Option<Child>>,
    watcher: Mutex<Option<Watcher>>,
}

impl TestNode {
    /// A builder with the defaults (m5.large in 10.0.0.0/20).
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder::default()
    }

    /// A node with the defaults.
    pub fn start() -> Result<Self> {
        TestNodeBuilder::default().start()
    }

    /// A node with nothing made yet: dropping it removes whatever [`TestNode::bring_up`] got to make.
    pub(crate) fn empty(name: String, dir: PathBuf) -> Self {
        Self {
            companion: format!("{name}-w"),
            name,
            dir,
            identity: Identity::default(),
            ipamd_env: Vec::new(),
            ipamd: Mutex::new(None),
            sim: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    pub(crate) fn bring_up(&mut self, settings: &TestNodeBuilder) -> Result<()> {
        create_netns(&self.name)?;
        create_netns(&self.companion)?;
        let topology = self.dir.join("topology.toml");
        std::fs::write(&topology, settings.topology()).map_err(|e| setup_error("writing the topology", e))?;

        let sim_log = self.dir.join("sim.log");
        let args: Vec<String> = [
            "sim",
            "serve",
            "--topology",
            &topology.display().to_string(),
            "--ec2-listen",
            EC2_LISTEN,
            "--imds-listen",
            IMDS_LISTEN,
            "--state",
            &self.dir.join("sim").display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let path_env = vec![("PATH".to_owned(), "/usr/sbin:/usr/bin:/sbin:/bin".to_owned())];
        let mut sim = spawn_in(&self.name, &binary("vpcnictl")?, &args, &path_env, &sim_log)?;
        let ready = wait_until(
            "vpcnictl sim serve to print ready",
            START_DEADLINE,
            &sim_log,
            || check_alive(&mut sim, "vpcnictl sim serve", &sim_log),
            || std::fs::read_to_string(&sim_log).is_ok_and(|log| log.lines().any(|l| l == "ready")),
        );
        *self.sim.lock().map_err(|_| setup_error("sim", "lock poisoned"))? = Some(sim);
        ready?;

        self.identity = self.discover(settings, &sim_log)?;
        self.wire_eth0()?;
        if settings.hotplug {
            let watcher = Watcher::start(
                self.state_file(),
                self.identity.instance_id.clone(),
                self.name.clone(),
                self.companion.clone(),
            );
            *self
                .watcher
                .lock()
                .map_err(|_| setup_error("watcher", "lock poisoned"))? = Some(watcher);
        }
        self.ipamd_env = self.base_ipamd_env(settings);
        if settings.start_ipamd {
            self.start_ipamd()?;
        }
        Ok(())
    }

    fn discover(&self, settings: &TestNodeBuilder, sim_log: &Path) -> Result<Identity> {
        let log = std::fs::read_to_string(sim_log).unwrap_or_default();
        let state = SimState::read(&self.state_file())?;
        let instance_id = log
            .lines()
            .find_map(|l| {
                l.strip_prefix("instance node ")?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            })
            .or_else(|| state.instances.keys().next().cloned())
            .ok_or_else(|| setup_error("simulator", format!("no instance in the topology; log: {log}")))?;
        let instance = state
            .instances
            .get(&instance_id)
            .ok_or_else(|| setup_error("simulator", format!("{instance_id} not in its state")))?;
        let eni = state.enis.get(&instance.primary_eni).ok_or_else(|| {
            setup_error(
                "simulator",
                format!("primary ENI {} not in its state", instance.primary_eni),
            )
        })?;
        Ok(Identity {
            instance_id: instance_id.clone(),
            instance_type: instance.instance_type.clone(),
            primary_eni_id: eni.id.clone(),
            primary_mac: eni.mac.to_ascii_lowercase(),
            primary_ip: Some(eni.primary_ip),
            subnet_cidr: state.subnet_cidrs.get(&instance.subnet_id).copied(),
            vpc_cidr: Some(settings.vpc_cidr),
        })
    }

    /// eth0 as on EC2: the primary ENI's MAC and address, default route via the subnet's `.1`, which the
    /// companion namespace answers.
    fn wire_eth0(&self) -> Result<()> {
        let mac = &self.identity.primary_mac;
        ip(
            &self.companion,
            &[
                "link", "add", "u0", "type", "veth", "peer", "name", "eth0", "address", mac, "netns",
                &self.name,
            ],
        )?;
        let subnet = self.subnet_cidr();
        let prefix_len = subnet.prefix_len().to_string();
        ip(
            &self.name,
            &[
                "addr",
                "add",
                &format!("{}/{prefix_len}", self.primary_ip()),
                "dev",
                "eth0",
            ],
        )?;
        ip(&self.name, &["link", "set", "eth0", "up"])?;
        ip(
            &self.companion,
            &[
                "addr",
                "add",
                &format!("{}/{prefix_len}", self.subnet_gateway()),
                "dev",
                "u0",
            ],
        )?;
        ip(&self.companion, &["link", "set", "u0", "up"])?;
        ip(
            &self.name,
            &[
                "route",
                "add",
                "default",
                "via",
                &self.subnet_gateway().to_string(),
                "dev",
                "eth0",
            ],
        )?;
        // As the EKS AMI sets it: pods are routed through the node.
        in_netns(&self.name, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        })?
        .map_err(|e| setup_error("enabling ip_forward in the node", e))?;
        Ok(())
    }

    fn base_ipamd_env(&self, settings: &TestNodeBuilder) -> Vec<(String, String)> {
        let dir = self.dir.display();
        let mut env: Vec<(String, String)> = [
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
            ("VPCNI_EC2_BACKEND", "aws".to_owned()),
            ("AWS_EC2_ENDPOINT", format!("http://{EC2_LISTEN}")),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://{IMDS_LISTEN}"),
            ),
            ("AWS_REGION", "us-west-2".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testbed".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testbed".to_owned()),
            // Never read the machine's AWS configuration.
            ("AWS_CONFIG_FILE", format!("{dir}/no-aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", format!("{dir}/no-aws-credentials")),
            ("VPCNI_IPAMD_SOCKET", self.socket_path().display().to_string()),
            (
                "AWS_VPC_K8S_CNI_BACKING_STORE",
                self.checkpoint_path().display().to_string(),
            ),
            // Never the machine's /var/run/aws-node/ipam.json.
            (
                "VPCNI_IMPORT_CHECKPOINT",
                self.original_checkpoint_path().display().to_string(),
            ),
            ("INTROSPECTION_BIND_ADDRESS", INTROSPECTION_LISTEN.to_owned()),
            ("METRICS_BIND_ADDRESS", METRICS_LISTEN.to_owned()),
            ("AWS_VPC_K8S_CNI_LOG_FILE", "stderr".to_owned()),
            ("AWS_VPC_K8S_CNI_LOGLEVEL", "debug".to_owned()),
            ("RUST_BACKTRACE", "1".to_owned()),
            ("NO_COLOR", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (name, value) in &settings.ipamd_env {
            env.retain(|(k, _)| k != name);
            env.push((name.clone(), value.clone()));
        }
        env
    }

    /// The node namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`.
    pub fn netns_path(&self) -> PathBuf {
        crate::netns::netns_path(&self.name)
    }

    /// The companion namespace (peer ends of eth0 and the hot-plugged ENIs; holds the subnet gateway).
    pub fn companion_name(&self) -> &str {
        &self.companion
    }

    /// The node's private directory (topology, simulator state, socket, checkpoint, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// ipamd's gRPC socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("ipamd.sock")
    }

    /// ipamd's checkpoint (kept across restarts).
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("ipam.json")
    }

    /// Where ipamd looks for the original's checkpoint to import (instead of `/var/run/aws-node/ipam.json`).
    pub fn original_checkpoint_path(&self) -> PathBuf {
        self.dir.join("aws-node-ipam.json")
    }

    /// The simulator's saved account.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("sim").join("ec2-state.json")
    }

    /// ipamd's stdout and stderr, across restarts.
    pub fn ipamd_log_path(&self) -> PathBuf {
        self.dir.join("ipamd.log")
    }

    /// The plugin log file [`TestNode::cni_config`] names.
    pub fn plugin_log_path(&self) -> PathBuf {
        self.dir.join("plugin.log")
    }

    /// Instance id.
    pub fn instance_id(&self) -> &str {
        &self.identity.instance_id
    }

    /// Instance type.
    pub fn instance_type(&self) -> &str {
        &self.identity.instance_type
    }

    /// The primary ENI's id.
    pub fn primary_eni_id(&self) -> &str {
        &self.identity.primary_eni_id
    }

    /// The primary ENI's MAC (on eth0).
    pub fn primary_mac(&self) -> &str {
        &self.identity.primary_mac
    }

    /// The node's primary address (on eth0).
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.identity.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The node's subnet.
    pub fn subnet_cidr(&self) -> Ipv4Net {
        self.identity.subnet_cidr.unwrap_or_default()
    }

    /// The VPC's CIDR.
    pub fn vpc_cidr(&self) -> Ipv4Net {
        self.identity.vpc_cidr.unwrap_or_default()
    }

    /// The subnet's router, `.1`.
    pub fn subnet_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet_cidr().network()) + 1)
    }

    /// The EC2 endpoint's URL (reachable inside the node namespace only).
    pub fn ec2_endpoint(&self) -> String {
        format!("http://{EC2_LISTEN}")
    }

    /// The environment ipamd runs with.
    pub fn ipamd_env(&self) -> &[(String, String)] {
        &self.ipamd_env
    }

    /// The simulator's account as last saved.
    pub fn sim_state(&self) -> Result<SimState> {
        SimState::read(&self.state_file())
    }

    /// Device index → MAC of the ENI links plugged into the node so far.
    pub fn plugged_enis(&self) -> std::collections::BTreeMap<u32, String> {
        self.watcher
            .lock()
            .ok()
            .and_then(|w| w.as_ref().map(Watcher::plugged))
            .unwrap_or_default()
    }

    /// Links the watcher could not plug.
    pub fn hotplug_errors(&self) -> Vec<String> {
        self.watcher
            .lock()
            .ok()
            .and_then(|w| w.as_ref().map(Watcher::errors))
            .unwrap_or_default()
    }

    /// Runs a command in the node namespace.
    pub fn exec(&self, args: &[&str]) -> Result<std::process::Output> {
        crate::netns::exec_in(&self.name, args)
    }

    /// A pod namespace `<node>-pod-<pod>` (deleted on drop, and with the node).
    pub fn pod_netns(&self, pod: &str) -> Result<crate::PodNetns> {
        let valid = !pod.is_empty()
            && pod.len() <= 64
            && pod
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(setup_error(
                format!("pod name {pod:?}"),
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        crate::PodNetns::create(format!("{}-pod-{pod}", self.name))
    }

    /// GETs `path` from `address` inside the node namespace.
    pub fn http_get(&self, address: SocketAddr, path: &str) -> Result<crate::HttpResponse> {
        crate::http::get(&self.name, address, path)
    }

    /// GETs an introspection path (`/v1/enis`, ...).
    pub fn introspection(&self, path: &str) -> Result<crate::HttpResponse> {
        self.http_get(parse_listen(INTROSPECTION_LISTEN), path)
    }

    /// GETs `/metrics`.
    pub fn metrics(&self) -> Result<crate::HttpResponse> {
        self.http_get(parse_listen(METRICS_LISTEN), "/metrics")
    }

    pub(crate) fn ipamd_log_tail(&self) -> String {
        crate::ipamd::log_tail(&self.ipamd_log_path(), 40)
    }

    pub(crate) fn spawn_ipamd(&self) -> Result<Child> {
        spawn_in(
            &self.name,
            &binary("vpcni-ipamd")?,
            &[],
            &self.ipamd_env,
            &self.ipamd_log_path(),
        )
    }

    pub(crate) fn wait_serving(&self) -> Result<()> {
        let socket = self.socket_path();
        wait_until(
            "ipamd's health service to report SERVING",
            START_DEADLINE,
            &self.ipamd_log_path(),
            || match self.ipamd.lock().ok().as_deref_mut().and_then(Option::as_mut) {
                Some(child) => check_alive(child, "vpcni-ipamd", &self.ipamd_log_path()),
                None => Err(setup_error("vpcni-ipamd", "not started")),
            },
            || is_serving(&socket),
        )
    }
}

fn parse_listen(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // The watcher first, so it plugs nothing into namespaces being deleted.
        if let Ok(mut watcher) = self.watcher.lock() {
            watcher.take();
        }
        for process in [&self.ipamd, &self.sim] {
            if let Ok(mut guard) = process.lock()
                && let Some(mut child) = guard.take()
            {
                crate::ipamd::signal_and_wait(&mut child, nix::sys::signal::Signal::SIGKILL);
            }
        }
        for pod in list_netns(&format!("{}-pod-", self.name)) {
            delete_netns(&pod);
        }
        delete_netns(&self.name);
        delete_netns(&self.companion);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
