//! In-process fixtures: the EC2 simulator (as the `Ec2` and `Imds` traits), a node started on it with the
//! daemon's real start-up code, and a host that records what the daemon asks of it instead of touching one.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vpcni_dataplane::DataplaneError;
use vpcni_ec2::Tags;
use vpcni_ec2::sim::{SimConfig, Simulator, WallClock};
use vpcni_ipamd::config::Config;
use vpcni_ipamd::host::{Host, HostEni, NodeNetwork};
use vpcni_ipamd::metrics::Metrics;
use vpcni_ipamd::node::Node;
use vpcni_ipamd::pool_loop::PoolManager;

/// A host that remembers every request; ENI links appear when `links_ready` says so.
#[derive(Debug)]
pub struct RecordingHost {
    pub programmed: Mutex<Vec<NodeNetwork>>,
    pub set_up: Mutex<Vec<HostEni>>,
    pub torn_down: Mutex<Vec<(Ipv4Addr, u32)>>,
    pub missing_veths: Mutex<HashSet<String>>,
    pub removed_pod_rules: Mutex<Vec<(String, Ipv4Addr)>>,
    /// `Some(true)`: links appear; `Some(false)`: never (wait fails); `None`: the wait blocks until set.
    pub links_ready: tokio::sync::watch::Sender<Option<bool>>,
    /// How many waits for an ENI's link have begun (a test waits on it instead of polling).
    pub link_waits: tokio::sync::watch::Sender<usize>,
}

impl RecordingHost {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            programmed: Mutex::default(),
            set_up: Mutex::default(),
            torn_down: Mutex::default(),
            missing_veths: Mutex::default(),
            removed_pod_rules: Mutex::default(),
            links_ready: tokio::sync::watch::channel(Some(true)).0,
            link_waits: tokio::sync::watch::channel(0).0,
        })
    }
}

#[async_trait]
impl Host for RecordingHost {
    async fn program_node(&self, node: &NodeNetwork) -> Result<(), DataplaneError> {
        self.programmed.lock().unwrap().push(node.clone());
        Ok(())
    }

    async fn wait_for_eni(&self, mac: &str, _: Duration) -> Result<(), DataplaneError> {
        self.link_waits.send_modify(|n| *n += 1);
        let mut ready = self.links_ready.subscribe();
        loop {
            match *ready.borrow_and_update() {
                Some(true) => return Ok(()),
                Some(false) => {
                    return Err(DataplaneError::System(format!("no link with MAC {mac} appeared")));
                }
                None => {}
            }
            ready
                .changed()
                .await
                .map_err(|e| DataplaneError::System(e.to_string()))?;
        }
    }

    async fn setup_eni(&self, eni: &HostEni) -> Result<(), DataplaneError> {
        self.set_up.lock().unwrap().push(eni.clone());
        Ok(())
    }

    async fn teardown_eni(&self, primary_ip: Ipv4Addr, table: u32) -> Result<(), DataplaneError> {
        self.torn_down.lock().unwrap().push((primary_ip, table));
        Ok(())
    }

    async fn prune_eni_rules(&self, _: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        Ok(Vec::new())
    }

    async fn veth_exists(&self, name: &str) -> Result<bool, DataplaneError> {
        Ok(!self.missing_veths.lock().unwrap().contains(name))
    }

    async fn remove_pod_rules(&self, veth: &str, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.removed_pod_rules.lock().unwrap().push((veth.to_owned(), ip));
        Ok(())
    }
}

/// A simulated account with one VPC, one subnet and one instance.
pub struct World {
    pub sim: Simulator,
    pub instance: String,
    pub subnet: String,
    pub vpc: String,
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new(instance_type: &str, subnet: &str) -> Self {
        Self::with(instance_type, subnet, SimConfig::default())
    }

    pub fn with(instance_type: &str, subnet: &str, config: SimConfig) -> Self {
        Self::with_clock(instance_type, subnet, config, Arc::new(WallClock))
    }

    /// EC2 and instance metadata on `clock` (the daemon keeps the wall clock for its own timers).
    pub fn with_clock(
        instance_type: &str,
        subnet: &str,
        config: SimConfig,
        clock: Arc<dyn vpcni_ec2::sim::Clock>,
    ) -> Self {
        let sim = Simulator::new(config, clock);
        let vpc = sim
            .create_vpc("10.0.0.0/16".parse().unwrap(), Tags::new())
            .unwrap();
        let subnet = sim
            .create_subnet(&vpc, subnet.parse().unwrap(), "us-west-2a", Tags::new())
            .unwrap();
        Self::with_instance(sim, vpc, subnet, instance_type)
    }

    /// One instance of `instance_type` in `subnet`, with a fresh state directory.
    fn with_instance(sim: Simulator, vpc: String, subnet: String, instance_type: &str) -> Self {
        let instance = sim
            .run_instance(instance_type, &subnet, None, Tags::new())
            .unwrap();
        Self {
            sim,
            instance,
            subnet,
            vpc,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A dual-stack VPC (an Amazon-provided /56, the subnet with its first /64) and one instance.
    pub fn ipv6(instance_type: &str) -> Self {
        let sim = Simulator::new(SimConfig::default(), Arc::new(WallClock));
        let vpc = sim
            .create_vpc("10.0.0.0/16".parse().unwrap(), Tags::new())
            .unwrap();
        let block = sim.associate_vpc_ipv6_cidr(&vpc, None).unwrap();
        let first_64 = ipnet::Ipv6Net::new(block.network(), 64).unwrap();
        let subnet = sim
            .create_subnet_with_ipv6(
                &vpc,
                "10.0.0.0/24".parse().unwrap(),
                first_64,
                "us-west-2a",
                Tags::new(),
            )
            .unwrap();
        Self::with_instance(sim, vpc, subnet, instance_type)
    }

    pub fn checkpoint(&self) -> std::path::PathBuf {
        self.dir.path().join("ipam.json")
    }

    pub fn original_checkpoint(&self) -> std::path::PathBuf {
        self.dir.path().join("aws-node-ipam.json")
    }

    pub fn config(&self, env: &[(&str, &str)]) -> Config {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        // In process, EC2 is the simulator whatever this says; the daemon requires it.
        map.insert("VPCNI_EC2_BACKEND".into(), "aws".into());
        map.insert(
            "AWS_VPC_K8S_CNI_BACKING_STORE".into(),
            self.checkpoint().display().to_string(),
        );
        map.insert(
            "VPCNI_IMPORT_CHECKPOINT".into(),
            self.original_checkpoint().display().to_string(),
        );
        for (k, v) in env {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_lookup(|k| map.get(k).cloned()).unwrap()
    }

    pub async fn start(&self, env: &[(&str, &str)], host: Arc<RecordingHost>) -> Arc<Node> {
        let imds = self.sim.imds_for(&self.instance);
        vpcni_ipamd::startup::start(self.config(env), &self.sim, &imds, host, Arc::new(Metrics::new()))
            .await
            .unwrap()
    }

    pub fn manager(&self, node: &Arc<Node>) -> PoolManager {
        PoolManager {
            node: node.clone(),
            ec2: Arc::new(self.sim.clone()),
            imds: Arc::new(self.sim.imds_for(&self.instance)),
        }
    }

    /// The instance's ENIs as EC2 sees them.
    pub fn enis(&self) -> Vec<vpcni_ec2::NetworkInterface> {
        self.sim
            .instances()
            .into_iter()
            .find(|i| i.instance_id == self.instance)
            .unwrap()
            .network_interfaces
    }
}

/// A pod request for the address book.
pub fn pod(n: usize) -> vpcni_ipamd::server::PodRequest {
    vpcni_ipamd::server::PodRequest {
        key: vpcni_ipamd::server::PodKey {
            network_name: "aws-cni".into(),
            container_id: format!("container{n}"),
            if_name: "eth0".into(),
        },
        pod_namespace: "default".into(),
        pod_name: format!("pod-{n}"),
    }
}

/// Runs pool cycles until the engine wants nothing (at most 20: a pool that never settles is a failure).
pub async fn settle(world: &World, node: &Node) {
    for _ in 0..20 {
        if matches!(
            vpcni_ipamd::pool_loop::cycle(node, &world.sim).await.0,
            vpcni_engine::Decision::Nothing { .. }
        ) {
            return;
        }
    }
    panic!("the pool did not settle");
}
