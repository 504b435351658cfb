//! The soak: a storm on a lab, then an audit. Every node runs a kubelet-like worker that creates and
//! deletes pods through the real plugin (bursts of parallel ADDs included), while a chaos thread kills
//! ipamd with SIGKILL or SIGTERM at random moments and restarts it, and the simulator fails a share of EC2
//! calls with the errors EC2 returns. Failed sandboxes are DELeted again until the DEL succeeds, as kubelet
//! does. At the end the faults stop, every ipamd runs, and the lab is audited from every side until it is
//! clean or the settle deadline passes: EC2 (unattached ENIs, addresses ipamd does not know), each ipamd
//! (its pods against the live pods, its checkpoint against its memory), each node (veths, rules, routes,
//! SNAT chain), and the pods (connectivity across nodes).
//!
//! Randomness comes from the seed; the interleaving of threads and kills does not, which is the point of a
//! storm. Any violation it reports is a bug.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::Value;
use vpcni_ec2::sim::{FaultRule, SplitMix64, ThrottleConfig};

use crate::cmd::{netns_command, run};
use crate::pods::{self, PodFailure};
use crate::spec::INTROSPECTION;
use crate::state::{FabricReport, FaultSettings, LabState, NodeRecord, PodRecord, StatePaths};
use crate::{Lab, LabError};

/// How EC2 throttles during the storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Throttle {
    /// EC2's documented token buckets.
    Real,
    /// A tenth of them: throttling all the time.
    Tight,
    /// None.
    Off,
}

impl Throttle {
    fn config(self) -> ThrottleConfig {
        let real = ThrottleConfig::default();
        match self {
            Self::Real => real,
            Self::Off => ThrottleConfig {
                enabled: false,
                ..real
            },
            Self::Tight => {
                let tenth = |b: vpcni_ec2::sim::BucketSpec| vpcni_ec2::sim::BucketSpec {
                    capacity: (b.capacity / 10.0).max(1.0),
                    refill_per_second: b.refill_per_second / 10.0,
                };
                ThrottleConfig {
                    enabled: true,
                    non_mutating: tenth(real.non_mutating),
                    mutating: tenth(real.mutating),
                    resource_intensive: tenth(real.resource_intensive),
                    per_action: BTreeMap::new(),
                }
            }
        }
    }
}

/// What the storm does.
#[derive(Debug, Clone)]
pub struct SoakSpec {
    /// Pod operations (ADD and DEL) in all, over all nodes.
    pub ops: u64,
    /// Stop earlier after this long.
    pub duration: Option<Duration>,
    /// Seeds every random choice of the workers and of the chaos thread, and the simulator's faults.
    pub seed: u64,
    /// Kill one ipamd every this many operations (alternating SIGKILL and SIGTERM at random).
    pub kill_every: Option<u64>,
    /// Share of EC2 calls that fail with an error EC2 returns.
    pub ec2_fault_rate: f64,
    /// Throttling.
    pub throttle: Throttle,
    /// Live pods a node's worker keeps at most (it deletes when it has this many).
    pub pods_per_node: u32,
    /// The largest burst of parallel ADDs.
    pub max_burst: u32,
    /// How long the audit may wait for the lab to settle.
    pub settle_within: Duration,
}

impl Default for SoakSpec {
    fn default() -> Self {
        Self {
            ops: 1_000,
            duration: None,
            seed: 1,
            kill_every: Some(100),
            ec2_fault_rate: 0.2,
            throttle: Throttle::Real,
            pods_per_node: 20,
            max_burst: 6,
            settle_within: Duration::from_secs(180),
        }
    }
}

/// One invariant broken, where, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `double_assigned`, `leaked_address`, `leaked_eni`, `stale_host_state`, `no_connectivity`,
    /// `lost_allocation`, `checkpoint_mismatch`, `ipamd_down`.
    pub kind: String,
    /// `node-2`, `ec2`, a pod.
    pub at: String,
    /// What was seen.
    pub detail: String,
}

/// One ipamd's resources at the end.
#[derive(Debug, Clone, Serialize)]
pub struct IpamdResources {
    /// Node.
    pub node: String,
    /// Its pid.
    pub pid: u32,
    /// Resident memory, KiB (VmRSS).
    pub rss_kib: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Operations it served since its last restart is not tracked; this is the node's pod count at the end.
    pub pods: u64,
}

/// What the storm did and what the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Nodes.
    pub nodes: u32,
    /// Seed.
    pub seed: u64,
    /// Pod operations done (ADDs and DELs).
    pub ops: u64,
    /// ADDs that gave a pod an address.
    pub adds_ok: u64,
    /// ADDs refused, by ipamd's reason (or the plugin's error).
    pub adds_refused: BTreeMap<String, u64>,
    /// DELs that succeeded the first time.
    pub dels_ok: u64,
    /// DELs that failed and were sent again until they succeeded, as kubelet does.
    pub dels_retried: u64,
    /// Parallel ADD bursts.
    pub bursts: u64,
    /// ipamd restarts after a kill.
    pub ipamd_restarts: u64,
    /// Of those, after SIGKILL.
    pub ipamd_sigkills: u64,
    /// EC2 calls.
    pub ec2_calls: u64,
    /// EC2 errors injected.
    pub ec2_faults_injected: u64,
    /// EC2 errors returned in all (injected and throttling), per `Action/Code`.
    pub ec2_errors: BTreeMap<String, u64>,
    /// Connectivity probes between pods on different nodes, during the storm and at the end.
    pub connectivity_checks: u64,
    /// Addresses given to two live pods.
    pub double_assigned: u64,
    /// Addresses held for no live pod, or held by EC2 for the node but unknown to its ipamd.
    pub leaked_addresses: u64,
    /// ENIs ipamd created that are attached to nothing, or attached but unknown to ipamd.
    pub leaked_enis: u64,
    /// Veths, rules and routes with no pod; duplicated SNAT chains.
    pub stale_host_state: u64,
    /// Pods that could not reach a pod on another node.
    pub pods_without_connectivity: u64,
    /// Live pods at the end.
    pub pods_at_end: u64,
    /// Wall time of the storm, seconds.
    pub wall_s: f64,
    /// Time the audit waited for the lab to settle, seconds.
    pub settle_s: f64,
    /// Each ipamd's memory and descriptors at the end.
    pub ipamd: Vec<IpamdResources>,
    /// Every violation, with what was seen where.
    pub violations: Vec<Violation>,
}

impl SoakReport {
    /// Whether the audit found nothing.
    pub fn clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The fault rules for a failure rate: throttling and server errors on any call, and the capacity errors
/// EC2 answers to the calls that ask for addresses or ENIs.
pub fn fault_rules(rate: f64) -> Vec<FaultRule> {
    if rate <= 0.0 {
        return Vec::new();
    }
    let rule = |action: Option<&str>, code: &str, share: f64| FaultRule {
        action: action.map(str::to_owned),
        code: code.to_owned(),
        probability: (rate * share).min(1.0),
        remaining: None,
    };
    vec![
        rule(None, "RequestLimitExceeded", 0.35),
        rule(None, "InternalError", 0.25),
        rule(None, "Unavailable", 0.15),
        rule(
            Some("AssignPrivateIpAddresses"),
            "InsufficientFreeAddressesInSubnet",
            0.25,
        ),
        rule(
            Some("CreateNetworkInterface"),
            "InsufficientFreeAddressesInSubnet",
            0.25,
        ),
        rule(Some("AttachNetworkInterface"), "AttachmentLimitExceeded", 0.25),
    ]
}

/// Counters the threads share.
#[derive(Debug, Default)]
struct Tally {
    ops: AtomicU64,
    adds_ok: AtomicU64,
    dels_ok: AtomicU64,
    dels_retried: AtomicU64,
    bursts: AtomicU64,
    restarts: AtomicU64,
    sigkills: AtomicU64,
    connectivity_checks: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<Vec<Violation>>,
}

impl Tally {
    fn violation(&self, kind: &str, at: &str, detail: String) {
        tracing::error!(kind, at, "{detail}");
        lock(&self.violations).push(Violation {
            kind: kind.to_owned(),
            at: at.to_owned(),
            detail,
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Live pods and sandboxes still to DEL, shared by the workers.
#[derive(Debug, Default)]
struct World {
    pods: BTreeMap<String, PodRecord>,
    /// Sandboxes whose ADD failed, or pods whose DEL failed: (node, pod name, container id, prevResult).
    to_delete: Vec<(String, String, String, Option<Value>)>,
}

/// Runs the storm on a lab that is up, then audits it.
pub fn run_soak(lab: Lab, spec: &SoakSpec) -> Result<SoakReport, LabError> {
    let paths = lab.paths.clone();
    let state = lab.state.clone();
    FaultSettings {
        faults: fault_rules(spec.ec2_fault_rate),
        throttle: spec.throttle.config(),
    }
    .save(&paths)?;
    let started = Instant::now();
    let tally = Arc::new(Tally::default());
    let world = Arc::new(Mutex::new(World::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let lab = Arc::new(Mutex::new(lab));
    let names = Arc::new(AtomicU64::new(0));

    let chaos = spec.kill_every.map(|every| {
        let (lab, tally, stop, seed) = (lab.clone(), tally.clone(), stop.clone(), spec.seed);
        let nodes: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
        std::thread::spawn(move || chaos(&lab, &tally, &stop, &nodes, every, seed))
    });
    let workers: Vec<_> = state
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let context = Worker {
                paths: paths.clone(),
                state: state.clone(),
                node: node.clone(),
                tally: tally.clone(),
                world: world.clone(),
                stop: stop.clone(),
                names: names.clone(),
                rng: SplitMix64::new(spec.seed ^ ((index as u64 + 1) << 32)),
                spec: spec.clone(),
                started,
            };
            std::thread::spawn(move || context.run())
        })
        .collect();
    for worker in workers {
        if worker.join().is_err() {
            tally.violation("soak", "worker", "a worker thread panicked".into());
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(chaos) = chaos
        && chaos.join().is_err()
    {
        tally.violation("soak", "chaos", "the chaos thread panicked".into());
    }
    let wall_s = started.elapsed().as_secs_f64();

    // Settle: no more faults, every ipamd up, every pending DEL through, then audit until clean.
    FaultSettings {
        faults: Vec::new(),
        throttle: spec.throttle.config(),
    }
    .save(&paths)?;
    let mut lab = Arc::try_unwrap(lab)
        .map_err(|_| LabError::Spec("the soak's threads still hold the lab".into()))?
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for node in &state.nodes {
        let running = lab.node(&node.name)?.ipamd_pid.is_some_and(crate::cmd::pid_alive);
        if !running {
            if restart(&mut lab, &node.name) {
                tally.restarts.fetch_add(1, Ordering::SeqCst);
            } else {
                tally.violation(
                    "ipamd_down",
                    &node.name,
                    format!("ipamd did not start in {RESTARTS} attempts"),
                );
            }
        }
    }
    let settle_started = Instant::now();
    let deadline = settle_started + spec.settle_within;
    let mut world = Arc::try_unwrap(world)
        .map_err(|_| LabError::Spec("the soak's threads still hold its pods".into()))?
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let audit = loop {
        retry_deletes(&paths, &state, &mut world, &tally);
        let audit = audit(&lab, &paths, &state, &world, &tally);
        if (audit.is_empty() && world.to_delete.is_empty()) || Instant::now() >= deadline {
            break audit;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let settle_s = settle_started.elapsed().as_secs_f64();
    let mut violations = std::mem::take(&mut *lock(&tally.violations));
    violations.extend(audit);
    for (node, pod, _, _) in &world.to_delete {
        violations.push(Violation {
            kind: "stale_host_state".into(),
            at: node.clone(),
            detail: format!("DEL of {pod} never succeeded"),
        });
    }
    let count = |kind: &str| violations.iter().filter(|v| v.kind == kind).count() as u64;
    let fabric = FabricReport::load(&paths)?.unwrap_or_default();
    let ipamd = state
        .nodes
        .iter()
        .filter_map(|node| {
            let pid = lab.node(&node.name).ok()?.ipamd_pid?;
            Some(IpamdResources {
                node: node.name.clone(),
                pid,
                rss_kib: rss_kib(pid),
                open_fds: open_fds(pid),
                pods: world.pods.values().filter(|p| p.node == node.name).count() as u64,
            })
        })
        .collect();
    Ok(SoakReport {
        nodes: state.nodes.len() as u32,
        seed: spec.seed,
        ops: tally.ops.load(Ordering::SeqCst),
        adds_ok: tally.adds_ok.load(Ordering::SeqCst),
        adds_refused: lock(&tally.refused).clone(),
        dels_ok: tally.dels_ok.load(Ordering::SeqCst),
        dels_retried: tally.dels_retried.load(Ordering::SeqCst),
        bursts: tally.bursts.load(Ordering::SeqCst),
        ipamd_restarts: tally.restarts.load(Ordering::SeqCst),
        ipamd_sigkills: tally.sigkills.load(Ordering::SeqCst),
        ec2_calls: fabric.ec2.calls,
        ec2_faults_injected: fabric.ec2.injected.values().sum(),
        ec2_errors: fabric.ec2.errors,
        connectivity_checks: tally.connectivity_checks.load(Ordering::SeqCst),
        double_assigned: count("double_assigned"),
        leaked_addresses: count("leaked_address"),
        leaked_enis: count("leaked_eni"),
        stale_host_state: count("stale_host_state"),
        pods_without_connectivity: count("no_connectivity"),
        pods_at_end: world.pods.len() as u64,
        wall_s,
        settle_s,
        ipamd,
        violations,
    })
}

/// One node's kubelet.
struct Worker {
    paths: StatePaths,
    state: LabState,
    node: NodeRecord,
    tally: Arc<Tally>,
    world: Arc<Mutex<World>>,
    stop: Arc<AtomicBool>,
    names: Arc<AtomicU64>,
    rng: SplitMix64,
    spec: SoakSpec,
    started: Instant,
}

/// How long one ADD is retried while ipamd says "try again later" (kubelet retries for ever).
const ADD_RETRY: Duration = Duration::from_secs(10);

impl Worker {
    fn done(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
            || self.tally.ops.load(Ordering::SeqCst) >= self.spec.ops
            || self.spec.duration.is_some_and(|d| self.started.elapsed() >= d)
    }

    fn run(mut self) {
        while !self.done() {
            let mine: Vec<String> = lock(&self.world)
                .pods
                .values()
                .filter(|p| p.node == self.node.name)
                .map(|p| p.name.clone())
                .collect();
            let roll = self.rng.next_f64();
            let full = mine.len() as u32 >= self.spec.pods_per_node;
            if !mine.is_empty() && (full || roll < 0.4) {
                let victim = mine[(self.rng.next_u64() % mine.len() as u64) as usize].clone();
                self.del(&victim);
            } else if roll < 0.55 && self.spec.max_burst > 1 {
                let size = 2 + (self.rng.next_u64() % u64::from(self.spec.max_burst - 1)) as u32;
                self.burst(size.min(self.spec.pods_per_node.saturating_sub(mine.len() as u32).max(1)));
            } else {
                let probe = self.rng.next_f64() < 0.2;
                let ids = self.new_sandbox();
                if let Some(pod) = self.add(ids)
                    && probe
                {
                    self.probe(&pod);
                }
            }
            if self.rng.next_f64() < 0.05 {
                retry_deletes_of(
                    &self.paths,
                    &self.state,
                    &self.world,
                    &self.tally,
                    &self.node.name,
                );
            }
        }
    }

    fn new_sandbox(&mut self) -> (String, String) {
        let n = self.names.fetch_add(1, Ordering::SeqCst);
        (
            // `pod-N`, so `lab down` knows these namespaces as the lab's (the soak's lab has no other pods).
            format!("pod-{n}"),
            format!("{:016x}{:016x}", self.rng.next_u64(), n),
        )
    }

    /// One ADD through the plugin; the pod, if it got one.
    fn add(&self, (name, container_id): (String, String)) -> Option<PodRecord> {
        self.tally.ops.fetch_add(1, Ordering::SeqCst);
        match pods::add_with_id(
            &self.paths,
            &self.state,
            &self.node,
            &name,
            &container_id,
            ADD_RETRY,
        ) {
            Ok(pod) => {
                self.tally.adds_ok.fetch_add(1, Ordering::SeqCst);
                let mut world = lock(&self.world);
                if let Some(other) = world.pods.values().find(|p| p.ip == pod.ip) {
                    self.tally.violation(
                        "double_assigned",
                        &pod.node,
                        format!(
                            "{} got {}, which {} on {} holds",
                            pod.name, pod.ip, other.name, other.node
                        ),
                    );
                }
                world.pods.insert(pod.name.clone(), pod.clone());
                Some(pod)
            }
            Err(failure) => {
                *lock(&self.tally.refused)
                    .entry(refusal_key(&failure))
                    .or_default() += 1;
                // As kubelet: the failed sandbox is DELeted until the DEL succeeds.
                lock(&self.world)
                    .to_delete
                    .push((self.node.name.clone(), name, container_id, None));
                None
            }
        }
    }

    fn burst(&mut self, size: u32) {
        self.tally.bursts.fetch_add(1, Ordering::SeqCst);
        let sandboxes: Vec<_> = (0..size).map(|_| self.new_sandbox()).collect();
        std::thread::scope(|scope| {
            for ids in sandboxes {
                let this = &*self;
                scope.spawn(move || this.add(ids));
            }
        });
    }

    fn del(&self, name: &str) {
        let Some(pod) = lock(&self.world).pods.remove(name) else {
            return;
        };
        self.tally.ops.fetch_add(1, Ordering::SeqCst);
        match pods::del(&self.paths, &self.state, &self.node, &pod) {
            Ok(()) => {
                self.tally.dels_ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(failure) => {
                tracing::debug!("{failure}; DEL again later");
                lock(&self.world).to_delete.push((
                    self.node.name.clone(),
                    pod.name.clone(),
                    pod.container_id.clone(),
                    Some(pod.result.clone()),
                ));
            }
        }
    }

    /// Pings a pod on another node from `pod`.
    fn probe(&mut self, pod: &PodRecord) {
        let target = {
            let world = lock(&self.world);
            let others: Vec<PodRecord> = world
                .pods
                .values()
                .filter(|p| p.node != pod.node)
                .cloned()
                .collect();
            if others.is_empty() {
                return;
            }
            others[(self.rng.next_u64() % others.len() as u64) as usize].clone()
        };
        self.tally.connectivity_checks.fetch_add(1, Ordering::SeqCst);
        if reaches(&pod.netns, target.ip) {
            return;
        }
        // Only a violation if both pods still exist: either may have been deleted meanwhile.
        let world = lock(&self.world);
        if world.pods.contains_key(&pod.name) && world.pods.contains_key(&target.name) {
            self.tally.violation(
                "no_connectivity",
                &pod.name,
                format!(
                    "{} ({}) cannot reach {} ({}) on {}",
                    pod.name, pod.ip, target.name, target.ip, target.node
                ),
            );
        }
    }
}

/// One ping, retried a few times (neighbour resolution on a busy machine), from a pod's namespace.
fn reaches(netns: &str, ip: Ipv4Addr) -> bool {
    (0..5).any(|_| {
        let mut ping = netns_command(netns, "ping");
        ping.args(["-c", "1", "-W", "1", &ip.to_string()]);
        run(&mut ping).is_ok()
    })
}

fn refusal_key(failure: &PodFailure) -> String {
    if let Some(reason) = failure.reason() {
        return reason.to_owned();
    }
    if failure.details.contains("is vpcni-ipamd running")
        || failure.message.contains("ipamd") && failure.code == 11
    {
        return "IPAMD_UNREACHABLE".to_owned();
    }
    format!("CNI_ERROR_{}", failure.code)
}

fn retry_deletes(paths: &StatePaths, state: &LabState, world: &mut World, tally: &Tally) {
    let pending = std::mem::take(&mut world.to_delete);
    for (node_name, pod, container_id, prev) in pending {
        let Some(node) = state.nodes.iter().find(|n| n.name == node_name) else {
            continue;
        };
        if del_again(paths, state, node, &pod, &container_id, prev.as_ref()) {
            tally.dels_retried.fetch_add(1, Ordering::SeqCst);
        } else {
            world.to_delete.push((node_name, pod, container_id, prev));
        }
    }
}

fn retry_deletes_of(
    paths: &StatePaths,
    state: &LabState,
    world: &Mutex<World>,
    tally: &Tally,
    node_name: &str,
) {
    let mine: Vec<_> = {
        let mut world = lock(world);
        let (mine, rest) = std::mem::take(&mut world.to_delete)
            .into_iter()
            .partition(|(node, ..)| node == node_name);
        world.to_delete = rest;
        mine
    };
    let Some(node) = state.nodes.iter().find(|n| n.name == node_name) else {
        return;
    };
    for (n, pod, container_id, prev) in mine {
        if del_again(paths, state, node, &pod, &container_id, prev.as_ref()) {
            tally.dels_retried.fetch_add(1, Ordering::SeqCst);
        } else {
            lock(world).to_delete.push((n, pod, container_id, prev));
        }
    }
}

fn del_again(
    paths: &StatePaths,
    state: &LabState,
    node: &NodeRecord,
    pod: &str,
    container_id: &str,
    prev: Option<&Value>,
) -> bool {
    match prev {
        Some(result) => {
            let record = PodRecord {
                name: pod.to_owned(),
                node: node.name.clone(),
                netns: crate::spec::Names::new(&state.spec.prefix).pod(pod),
                container_id: container_id.to_owned(),
                ip: Ipv4Addr::UNSPECIFIED,
                result: result.clone(),
                ipv6: None,
                egress_ipv4: None,
            };
            pods::del(paths, state, node, &record).is_ok()
        }
        None => pods::del_sandbox(paths, state, node, pod, container_id).is_ok(),
    }
}

/// Kills a random node's ipamd every `every` operations, SIGKILL or SIGTERM at random, and restarts it.
fn chaos(lab: &Mutex<Lab>, tally: &Tally, stop: &AtomicBool, nodes: &[String], every: u64, seed: u64) {
    let mut rng = SplitMix64::new(seed ^ 0xC4A0_5000);
    let mut next = every;
    while !stop.load(Ordering::SeqCst) {
        if tally.ops.load(Ordering::SeqCst) < next {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        next += every;
        let node = &nodes[(rng.next_u64() % nodes.len() as u64) as usize];
        let sigkill = rng.next_f64() < 0.6;
        let mut lab = lock(lab);
        let killed = if sigkill {
            lab.kill_ipamd(node)
        } else {
            lab.stop_ipamd(node)
        };
        match killed {
            Ok(()) if sigkill => {
                tally.sigkills.fetch_add(1, Ordering::SeqCst);
            }
            Ok(()) => {}
            // Not running: its last start failed; start it below.
            Err(error) => tracing::warn!(node, "stopping ipamd: {error}"),
        }
        // Down for a moment, as a DaemonSet restart is: ADDs meanwhile are refused and retried.
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 300));
        if restart(&mut lab, node) {
            tally.restarts.fetch_add(1, Ordering::SeqCst);
        } else {
            tally.violation(
                "ipamd_down",
                node,
                format!("ipamd did not start in {RESTARTS} attempts"),
            );
        }
    }
}

/// How often a DaemonSet-like restart is tried before the soak calls the node down.
const RESTARTS: u32 = 5;

/// Starts a node's ipamd, trying again as kubelet restarts a crashed container.
fn restart(lab: &mut Lab, node: &str) -> bool {
    for attempt in 1..=RESTARTS {
        match lab.start_ipamd(node) {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(node, attempt, "starting ipamd: {error}");
                std::thread::sleep(Duration::from_secs(u64::from(attempt)));
            }
        }
    }
    false
}

/// Everything wrong with the lab now.
fn audit(lab: &Lab, paths: &StatePaths, state: &LabState, world: &World, tally: &Tally) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut violation = |kind: &str, at: &str, detail: String| {
        found.push(Violation {
            kind: kind.to_owned(),
            at: at.to_owned(),
            detail,
        });
    };
    let fabric = match FabricReport::load(paths) {
        Ok(Some(report)) => report,
        _ => {
            violation("soak", "ec2", "no fabric report".into());
            return found;
        }
    };
    for eni in &fabric.ec2.unattached_enis {
        violation(
            "leaked_eni",
            "ec2",
            format!("{eni} was created by ipamd and is attached to nothing"),
        );
    }
    let pending: BTreeSet<&str> = world.to_delete.iter().map(|(_, _, c, _)| c.as_str()).collect();
    let mut holders: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for node in &state.nodes {
        let live: BTreeMap<&str, &PodRecord> = world
            .pods
            .values()
            .filter(|p| p.node == node.name)
            .map(|p| (p.container_id.as_str(), p))
            .collect();
        let get = |path: &str| -> Option<Value> {
            let url = format!("http://{INTROSPECTION}{path}");
            let body = lab
                .http_get(&node.name, &url, Duration::from_secs(5))
                .ok()?
                .ok()?;
            serde_json::from_str(&body).ok()
        };
        let (Some(pods), Some(enis)) = (get("/v1/pods"), get("/v1/enis")) else {
            violation("ipamd_down", &node.name, "introspection does not answer".into());
            continue;
        };
        // ipamd's allocations against the live pods.
        let mut held: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        for pod in pods.as_array().into_iter().flatten() {
            let container = pod["containerID"].as_str().unwrap_or_default().to_owned();
            let Some(ip) = pod["ipv4"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            holders
                .entry(ip)
                .or_default()
                .push(format!("{}/{container}", node.name));
            match live.get(container.as_str()) {
                Some(record) if record.ip == ip => {}
                Some(record) => violation(
                    "double_assigned",
                    &node.name,
                    format!(
                        "ipamd holds {ip} for {}, whose pod has {}",
                        record.name, record.ip
                    ),
                ),
                None if pending.contains(container.as_str()) => {}
                None => violation(
                    "leaked_address",
                    &node.name,
                    format!("{ip} is held for {container}, which is gone"),
                ),
            }
            held.insert(container, ip);
        }
        for (container, record) in &live {
            if !held.contains_key(*container) {
                violation(
                    "lost_allocation",
                    &node.name,
                    format!(
                        "{} uses {} but ipamd holds nothing for it",
                        record.name, record.ip
                    ),
                );
            }
        }
        // The checkpoint holds what ipamd holds.
        match checkpoint_allocations(paths, &node.name) {
            Some(recorded) if recorded == held => {}
            Some(recorded) => violation(
                "checkpoint_mismatch",
                &node.name,
                format!("checkpoint {} allocations, ipamd {}", recorded.len(), held.len()),
            ),
            None => violation(
                "checkpoint_mismatch",
                &node.name,
                "the checkpoint is unreadable".into(),
            ),
        }
        // EC2's addresses and ENIs for this node against ipamd's pool.
        let pool_cidrs: BTreeMap<String, BTreeSet<Ipv4Net>> = enis["0"]["ENIs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(id, eni)| {
                let cidrs = eni["AvailableIPv4Cidrs"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(cidr, _)| cidr.parse().ok())
                    .collect();
                (id.clone(), cidrs)
            })
            .collect();
        for plugged in fabric.plugged.iter().filter(|p| p.node == node.name) {
            let Some(cidrs) = pool_cidrs.get(&plugged.eni_id) else {
                violation(
                    "leaked_eni",
                    &node.name,
                    format!(
                        "{} is attached at device {} but not in ipamd's pool",
                        plugged.eni_id, plugged.device
                    ),
                );
                continue;
            };
            for net in plugged.routed.iter().filter(|net| !cidrs.contains(*net)) {
                violation(
                    "leaked_address",
                    &node.name,
                    format!(
                        "EC2 assigned {net} to {} but ipamd's pool does not hold it",
                        plugged.eni_id
                    ),
                );
            }
        }
        host_state(node, &live, &mut violation);
    }
    for (ip, who) in holders.iter().filter(|(_, who)| who.len() > 1) {
        violation(
            "double_assigned",
            "ipamd",
            format!("{ip} is held for {}", who.join(", ")),
        );
    }
    // Every live pod reaches a pod on another node.
    for pod in world.pods.values() {
        let Some(target) = world.pods.values().find(|p| p.node != pod.node) else {
            break;
        };
        tally.connectivity_checks.fetch_add(1, Ordering::SeqCst);
        if !reaches(&pod.netns, target.ip) {
            violation(
                "no_connectivity",
                &pod.name,
                format!(
                    "{} ({}) cannot reach {} ({})",
                    pod.name, pod.ip, target.name, target.ip
                ),
            );
        }
    }
    found
}

/// The node's veths, rules and routes against its live pods, and its SNAT chain.
fn host_state(
    node: &NodeRecord,
    live: &BTreeMap<&str, &PodRecord>,
    violation: &mut impl FnMut(&str, &str, String),
) {
    let ips: BTreeSet<Ipv4Addr> = live.values().map(|p| p.ip).collect();
    let veths: BTreeSet<&str> = live
        .values()
        .filter_map(|p| p.result["interfaces"][0]["name"].as_str())
        .collect();
    let output = |args: &[&str]| crate::cmd::ip(Some(&node.netns), args).unwrap_or_default();
    for line in output(&["-o", "link", "show"]).lines() {
        // `7: enic440f455693@if2: <…`
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else {
            continue;
        };
        if name.starts_with("eni") && name.len() == 14 && !veths.contains(name) {
            violation("stale_host_state", &node.name, format!("veth {name} has no pod"));
        }
    }
    for line in output(&["-4", "rule", "show"]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let priority = words.first().map(|p| p.trim_end_matches(':'));
        let address = match (priority, words.get(1), words.get(2)) {
            (Some("512"), Some(&"from"), Some(&"all")) => words.get(4),
            (Some("1536"), Some(&"from"), address) => address,
            _ => None,
        };
        if let Some(ip) = address.and_then(|a| a.parse::<Ipv4Addr>().ok())
            && !ips.contains(&ip)
        {
            violation(
                "stale_host_state",
                &node.name,
                format!("rule `{line}` has no pod"),
            );
        }
    }
    for line in output(&["-4", "route", "show", "table", "main"]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let (Some(ip), Some(&"dev"), Some(dev)) = (words.first(), words.get(1), words.get(2))
            && dev.starts_with("eni")
            && ip.parse::<Ipv4Addr>().is_ok_and(|ip| !ips.contains(&ip))
        {
            violation(
                "stale_host_state",
                &node.name,
                format!("route `{line}` has no pod"),
            );
        }
    }
    let mut save = netns_command(&node.netns, "iptables-save");
    save.args(["-t", "nat"]);
    let nat = run(&mut save).unwrap_or_default();
    let jumps = nat
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING") && l.contains("-j AWS-SNAT-CHAIN-0"))
        .count();
    if jumps != 1 {
        violation(
            "stale_host_state",
            &node.name,
            format!("{jumps} jumps to AWS-SNAT-CHAIN-0 in POSTROUTING"),
        );
    }
}

/// The allocations in a node's checkpoint, container id → address.
fn checkpoint_allocations(paths: &StatePaths, node: &str) -> Option<BTreeMap<String, Ipv4Addr>> {
    let text = std::fs::read_to_string(paths.node_dir(node).join("ipam.json")).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    Some(
        value["allocations"]
            .as_array()?
            .iter()
            .filter_map(|a| {
                Some((
                    a["containerID"].as_str()?.to_owned(),
                    a["ipv4"].as_str()?.parse().ok()?,
                ))
            })
            .collect(),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}
