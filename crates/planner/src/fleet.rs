//! The cluster on a virtual clock: node groups launch instances in the EC2 simulator, each node runs the
//! daemon's pool ([`Agent`]), pods are created, scheduled, churned and deleted, and what the subnets and
//! EC2 go through is recorded.
//!
//! Events are processed in time order (ties in the order they were scheduled), so a run is a function of
//! the cluster file and its seed. A node whose pool wants nothing, with no pod waiting, is not asked again
//! until a pod comes or goes or one of the engine's timers runs out ([`Agent::next_timer`]); the answers
//! are the same as asking it every 5 s (a test checks it), and a day of 5,000 nodes runs in seconds.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use vpcni_ec2::sim::{SimConfig, Simulator, ThrottleConfig, VirtualClock};
use vpcni_ec2::{Ec2ErrorKind, Tags};
use vpcni_engine::{Decision, Millis, NoAddressReason};

use crate::agent::{Agent, CNI_ROLE_TAG, CYCLE_MS, Call};
use crate::cluster::{Cluster, NodeCount};
use crate::report::{
    BlockState, Cause, Ec2Report, GroupReport, PodReport, Report, Sample, SubnetMap, SubnetReport,
};

/// How to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Ask every node every cycle, even at rest (slow; the tests compare it with the default).
    pub every_cycle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Launch { group: usize },
    Boot { node: usize },
    Cycle { node: usize },
    Workload,
    Sample,
    Sweep { node: usize },
}

#[derive(Debug)]
struct NodeState {
    group: usize,
    instance_id: String,
    agent: Option<Agent>,
    booted_at: Millis,
    /// Running pods and pods waiting for an address, in arrival order.
    running: BTreeSet<usize>,
    waiting: VecDeque<usize>,
    /// When a Cycle event is queued for it.
    next_cycle: Option<Millis>,
    /// When it last cycled.
    last_cycle: Option<Millis>,
    max_app_pods: u32,
}

#[derive(Debug, Clone)]
struct PodState {
    node: Option<usize>,
    group: Option<usize>,
    created: Millis,
    running_since: Option<Millis>,
    deleted: bool,
    /// Why it has no address (code), while it waits.
    reason: Option<&'static str>,
    /// Bound to its node (pods_per_node): replaced there when churned.
    bound: bool,
}

#[derive(Debug, Default, Clone)]
struct SubnetTrack {
    id: String,
    external: u32,
    pod_addresses: u64,
    used_peak: u64,
    idle_peak: u64,
    exhausted_at: Option<Millis>,
    cause: Option<Cause>,
}

#[derive(Debug, Default, Clone)]
struct GroupTrack {
    nodes: Vec<usize>,
    launching: u32,
    launch_failures: u32,
    nodes_peak: u32,
    next_subnet: usize,
    next_launch_at: Millis,
    used_peak: u64,
    idle_peak: u64,
    calls: Ec2Report,
}

/// The cluster being simulated.
struct Fleet<'c> {
    cluster: &'c Cluster,
    options: RunOptions,
    clock: VirtualClock,
    sim: Simulator,
    vpc_id: String,
    subnets: Vec<SubnetTrack>,
    subnet_index: HashMap<String, usize>,
    groups: Vec<GroupTrack>,
    nodes: Vec<NodeState>,
    pods: Vec<PodState>,
    /// Live pods (not deleted), for picking churn victims; `live_at[pod]` is its place.
    live: Vec<usize>,
    live_at: Vec<usize>,
    unscheduled: VecDeque<usize>,
    /// Live pods not bound to a node (the scheduler's).
    floating: u64,
    /// Whether the workload has started.
    started: bool,
    /// Nodes taking pods, by load.
    schedulable: BTreeSet<(u32, usize)>,
    queue: BinaryHeap<Reverse<(Millis, u8, u64, Event)>>,
    seq: u64,
    rng: XorShiftRng,
    now: Millis,
    end: Millis,
    sample_every: Millis,
    ec2: Ec2Report,
    series: Vec<Sample>,
    calls_since_sample: (u64, u64),
}

/// Runs a cluster file's plan.
pub fn run(cluster: &Cluster, options: RunOptions) -> Report {
    let mut fleet = Fleet::new(cluster, options);
    fleet.run();
    fleet.report()
}

fn is_grow(decision: &Decision) -> bool {
    matches!(
        decision,
        Decision::AddIps { .. } | Decision::AddPrefixes { .. } | Decision::CreateEni { .. }
    )
}

impl<'c> Fleet<'c> {
    fn new(cluster: &'c Cluster, options: RunOptions) -> Self {
        let clock = VirtualClock::new(0);
        let config = SimConfig {
            seed: cluster.simulation.seed,
            throttle: ThrottleConfig {
                enabled: cluster.simulation.throttling,
                ..ThrottleConfig::default()
            },
            ..SimConfig::default()
        };
        let sim = Simulator::new(config, Arc::new(clock.clone()));
        let vpc_id = sim.admin(|account, _| {
            let id = account
                .create_vpc(cluster.vpc_cidrs[0], Tags::new())
                .expect("the cluster file's VPC CIDR was checked");
            for cidr in &cluster.vpc_cidrs[1..] {
                account.add_vpc_cidr(&id, *cidr).expect("checked: no overlap");
            }
            id
        });
        let mut subnets = Vec::new();
        let mut subnet_index = HashMap::new();
        for spec in &cluster.subnets {
            let id = sim.admin(|account, _| {
                let mut tags = Tags::new();
                tags.insert("Name".into(), spec.name.clone());
                if spec.pod_subnet {
                    tags.insert(CNI_ROLE_TAG.into(), "1".into());
                }
                let id = account
                    .create_subnet(&vpc_id, spec.cidr, &spec.zone, tags)
                    .expect("the cluster file's subnets were checked");
                let subnet = account.subnets.get_mut(&id).expect("just created");
                for ip in &spec.in_use {
                    let _ = subnet.addresses.claim_ip(*ip);
                }
                for reservation in &spec.prefix_reservations {
                    let _ = subnet.addresses.reserve_for_prefixes(*reservation);
                }
                id
            });
            subnet_index.insert(id.clone(), subnets.len());
            subnets.push(SubnetTrack {
                id,
                external: spec.in_use.len() as u32,
                ..SubnetTrack::default()
            });
        }
        let end = cluster.workload.start_ms + cluster.workload.duration_ms;
        let sample_every = (end / 600).max(10_000).div_ceil(1_000) * 1_000;
        let mut fleet = Self {
            cluster,
            options,
            clock,
            sim,
            vpc_id,
            subnets,
            subnet_index,
            groups: vec![GroupTrack::default(); cluster.node_groups.len()],
            nodes: Vec::new(),
            pods: Vec::new(),
            live: Vec::new(),
            live_at: Vec::new(),
            unscheduled: VecDeque::new(),
            floating: 0,
            started: false,
            schedulable: BTreeSet::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: XorShiftRng::seed_from_u64(cluster.simulation.seed),
            now: 0,
            end,
            sample_every,
            ec2: Ec2Report::default(),
            series: Vec::new(),
            calls_since_sample: (0, 0),
        };
        for (index, group) in cluster.node_groups.iter().enumerate() {
            let initial = match group.count {
                NodeCount::Fixed(n) => n,
                NodeCount::Autoscaled { min, .. } => min,
            };
            fleet.launch(index, initial);
        }
        fleet.schedule(cluster.workload.start_ms, Event::Workload);
        fleet.schedule(0, Event::Sample);
        fleet
    }

    /// Queues an event. At one instant, launches, boots and pod changes come first, then the nodes'
    /// cycles in node order, then the sample: the order never depends on when an event was queued, so a
    /// node woken by a pod cycles exactly when it would have cycled anyway.
    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        let (class, order) = match event {
            Event::Cycle { node } => (1, node as u64),
            Event::Sample => (2, self.seq),
            _ => (0, self.seq),
        };
        self.queue.push(Reverse((at, class, order, event)));
    }

    /// Queues `count` launches of a group, one per launch interval.
    fn launch(&mut self, group: usize, count: u32) {
        let interval = self.cluster.node_groups[group].launch_interval_ms;
        for _ in 0..count {
            let at = self.groups[group].next_launch_at.max(self.now);
            self.groups[group].next_launch_at = at + interval;
            self.groups[group].launching += 1;
            self.schedule(at, Event::Launch { group });
        }
    }

    fn run(&mut self) {
        while let Some(Reverse((at, _, _, event))) = self.queue.pop() {
            if at > self.end {
                break;
            }
            if at > self.now {
                self.clock.advance(at - self.now);
                self.now = at;
            }
            match event {
                Event::Launch { group } => self.on_launch(group),
                Event::Boot { node } => self.on_boot(node),
                Event::Cycle { node } => self.on_cycle(node),
                Event::Workload => self.on_workload(),
                Event::Sample => self.on_sample(),
                Event::Sweep { node } => self.on_sweep(node),
            }
        }
        if self.now < self.end {
            self.clock.advance(self.end - self.now);
            self.now = self.end;
        }
        self.on_sample_at_end();
    }

    fn note_exhaustion(&mut self, subnet: usize, code: &'static str, message: String) {
        let track = &mut self.subnets[subnet];
        if track.exhausted_at.is_none() {
            track.exhausted_at = Some(self.now);
            track.cause = Some(Cause {
                code: code.to_owned(),
                message,
            });
        }
    }

    fn usage(&self, subnet: usize) -> (u64, u64) {
        let id = &self.subnets[subnet].id;
        self.sim.inspect(|account| {
            let addresses = &account.subnets[id].addresses;
            let usable = (1u64 << (32 - u32::from(addresses.cidr().prefix_len()))) - 5;
            (usable, usable - u64::from(addresses.available()))
        })
    }

    fn exhaustion_message(&self, subnet: usize, fragmented: bool) -> String {
        let (usable, used) = self.usage(subnet);
        let track = &self.subnets[subnet];
        let idle = used.saturating_sub(track.pod_addresses + u64::from(track.external));
        if fragmented {
            format!(
                "fragmented: {} addresses are free but no whole aligned /28 is, and prefix delegation needs one per prefix \
                 ({used} of {usable} taken, {idle} of them by nodes but no pod); a subnet CIDR reservation of type prefix keeps /28s whole",
                usable - used
            )
        } else {
            format!(
                "no free address: {used} of {usable} usable addresses taken, {} by pods, {idle} held by nodes and their warm pools \
                 but used by no pod, {} by other things",
                track.pod_addresses, track.external
            )
        }
    }

    fn on_launch(&mut self, group: usize) {
        let spec = &self.cluster.node_groups[group];
        self.groups[group].launching = self.groups[group].launching.saturating_sub(1);
        let count = spec.subnets.len();
        let mut launched = None;
        let mut failures = Vec::new();
        for attempt in 0..count {
            let subnet = spec.subnets[(self.groups[group].next_subnet + attempt) % count];
            let subnet_id = self.subnets[subnet].id.clone();
            // The autoscaler launches instances, not the CNI: no API call of the daemons' is spent on it.
            let result = self.sim.admin(|account, now| {
                account.run_instance(&spec.instance_type, &subnet_id, None, Tags::new(), now)
            });
            match result {
                Ok(id) => {
                    launched = Some((id, subnet));
                    self.groups[group].next_subnet = (self.groups[group].next_subnet + attempt + 1) % count;
                    break;
                }
                Err(error) => failures.push((subnet, error)),
            }
        }
        for (subnet, error) in failures {
            if error.kind == Ec2ErrorKind::InsufficientFreeAddressesInSubnet {
                let message = format!(
                    "{} (a node of group {} could not launch: no address for its primary IP)",
                    self.exhaustion_message(subnet, false),
                    spec.name
                );
                self.note_exhaustion(subnet, "SUBNET_EXHAUSTED", message);
            }
        }
        let Some((instance_id, _subnet)) = launched else {
            self.groups[group].launch_failures += 1;
            return;
        };
        let limits = vpcni_limits::builtin()
            .get(&spec.instance_type)
            .expect("instance type checked");
        let settings = &self.cluster.pool_settings;
        let kubelet_max = spec.max_pods.unwrap_or_else(|| {
            let options = vpcni_limits::max_pods::MaxPodsOptions {
                prefix_delegation: settings.prefix_delegation && limits.supports_prefix_delegation(),
                custom_networking: settings.custom_networking,
                max_eni: settings.max_eni,
                ..Default::default()
            };
            vpcni_limits::max_pods::max_pods(limits, &options).max_pods
        });
        let node = self.nodes.len();
        self.nodes.push(NodeState {
            group,
            instance_id,
            agent: None,
            booted_at: 0,
            running: BTreeSet::new(),
            waiting: VecDeque::new(),
            next_cycle: None,
            last_cycle: None,
            // kubelet's max pods counts the two host-network pods (aws-node, kube-proxy).
            max_app_pods: kubelet_max.saturating_sub(2),
        });
        self.groups[group].nodes.push(node);
        let up = self.groups[group].nodes.len() as u32;
        self.groups[group].nodes_peak = self.groups[group].nodes_peak.max(up);
        self.schedule(self.now + spec.boot_ms, Event::Boot { node });
    }

    fn record_calls(&mut self, group: usize, calls: Vec<Call>) {
        for call in calls {
            self.ec2.add(call.action, call.throttled);
            self.groups[group].calls.add(call.action, call.throttled);
            self.calls_since_sample.0 += 1;
            self.calls_since_sample.1 += u64::from(call.throttled);
        }
    }

    fn on_boot(&mut self, node: usize) {
        let group = self.nodes[node].group;
        let spec = &self.cluster.node_groups[group];
        let started = Agent::start(
            &self.sim,
            &self.nodes[node].instance_id,
            &self.cluster.pool_settings,
            spec.max_pods,
            self.now,
        );
        match started {
            Ok((agent, calls)) => {
                self.record_calls(group, calls);
                self.nodes[node].agent = Some(agent);
                self.nodes[node].booted_at = self.now;
                self.schedule(self.now, Event::Cycle { node });
                self.nodes[node].next_cycle = Some(self.now);
                if !self.cluster.pool_settings.disable_leaked_eni_cleanup {
                    let delay = self.rng.next_u64() % 300_000;
                    self.schedule(self.now + delay, Event::Sweep { node });
                }
                self.schedulable.insert((0, node));
                if let Some(per_node) = self.cluster.workload.pods_per_node
                    && self.started
                {
                    for _ in 0..per_node {
                        self.create_pod(Some(node), true);
                    }
                }
                self.place_unscheduled();
            }
            Err(_) => {
                // DescribeInstances throttled: the daemon retries its start-up.
                self.record_calls(
                    group,
                    vec![Call {
                        action: "DescribeInstances",
                        throttled: true,
                    }],
                );
                self.schedule(self.now + CYCLE_MS, Event::Boot { node });
            }
        }
    }

    /// The hourly leaked-ENI sweep: one DescribeNetworkInterfaces per node (nothing leaks in a plan, so
    /// the page is empty); it counts against the account's Describe budget like the real one.
    fn on_sweep(&mut self, node: usize) {
        let group = self.nodes[node].group;
        let result = self.sim.call("DescribeNetworkInterfaces", |_, _, _| Ok(()));
        self.record_calls(
            group,
            vec![Call {
                action: "DescribeNetworkInterfaces",
                throttled: result.is_err(),
            }],
        );
        let delay = self.rng.next_u64() % 300_000;
        self.schedule(self.now + 3_600_000 + delay, Event::Sweep { node });
    }

    fn wake(&mut self, node: usize) {
        let state = &self.nodes[node];
        if state.agent.is_none() {
            return;
        }
        let mut grid = next_grid(state.booted_at, self.now);
        if state.last_cycle == Some(grid) {
            grid += CYCLE_MS;
        }
        if state.next_cycle.is_none_or(|at| at > grid) {
            self.nodes[node].next_cycle = Some(grid);
            self.schedule(grid, Event::Cycle { node });
        }
    }

    fn on_cycle(&mut self, node: usize) {
        if self.nodes[node].next_cycle != Some(self.now) {
            return; // superseded by an earlier wake
        }
        self.nodes[node].next_cycle = None;
        self.nodes[node].last_cycle = Some(self.now);
        let group = self.nodes[node].group;
        let Some(agent) = self.nodes[node].agent.as_mut() else {
            return;
        };
        let (decision, acted) = agent.cycle(&self.sim, self.now);
        let calls = agent.take_calls();
        let failure = (is_grow(&decision) && !acted).then(|| agent.pool.why_no_address(self.now).reason);
        self.record_calls(group, calls);
        if let Some(reason) = failure {
            self.note_grow_failure(node, reason);
        }
        self.serve_waiting(node);
        let state = &self.nodes[node];
        let agent = state.agent.as_ref().expect("booted");
        let busy = self.options.every_cycle
            || !state.waiting.is_empty()
            || !matches!(decision, Decision::Nothing { .. });
        let next = if busy {
            Some(self.now + CYCLE_MS)
        } else {
            agent.next_timer(self.now).map(|t| next_grid(state.booted_at, t))
        };
        if let Some(at) = next {
            self.nodes[node].next_cycle = Some(at);
            self.schedule(at, Event::Cycle { node });
        }
    }

    /// After a failed growth: if EC2 said the subnet is out of addresses or of whole /28s, the subnet is
    /// exhausted from now on, with that cause.
    fn note_grow_failure(&mut self, node: usize, reason: NoAddressReason) {
        let failure = match reason {
            NoAddressReason::SubnetExhausted => Some(false),
            NoAddressReason::NoFreePrefix => Some(true),
            _ => None,
        };
        let Some(fragmented) = failure else { return };
        let subnets: Vec<usize> = self.failed_subnets(node);
        for subnet in subnets {
            let message = self.exhaustion_message(subnet, fragmented);
            let code = if fragmented {
                "NO_FREE_PREFIX"
            } else {
                "SUBNET_EXHAUSTED"
            };
            self.note_exhaustion(subnet, code, message);
        }
    }

    /// The subnet a node's last growth failed in (its ENIs' subnets, where subnet discovery may have tried).
    fn failed_subnets(&self, node: usize) -> Vec<usize> {
        let Some(agent) = self.nodes[node].agent.as_ref() else {
            return Vec::new();
        };
        let message = agent.pool.why_no_address(self.now).message;
        self.subnets
            .iter()
            .enumerate()
            .filter(|(_, s)| message.contains(&s.id))
            .map(|(i, _)| i)
            .collect()
    }

    /// Gives addresses to the node's waiting pods, in order, while it has some.
    fn serve_waiting(&mut self, node: usize) {
        while let Some(&pod) = self.nodes[node].waiting.front() {
            let agent = self.nodes[node].agent.as_mut().expect("booted");
            match agent.add_pod(&pod_name(pod), self.now) {
                Ok(assignment) => {
                    let subnet = agent.pool.eni(&assignment.eni_id).map(|e| e.subnet_id.clone());
                    self.nodes[node].waiting.pop_front();
                    self.nodes[node].running.insert(pod);
                    self.count_pod_address(subnet, true);
                    self.pods[pod].running_since = Some(self.now);
                    self.pods[pod].reason = None;
                }
                Err(refusal) => {
                    let code = reason_code(refusal.reason);
                    for waiting in &self.nodes[node].waiting {
                        self.pods[*waiting].reason = Some(code);
                    }
                    break;
                }
            }
        }
    }

    fn count_pod_address(&mut self, subnet_id: Option<String>, add: bool) {
        if let Some(index) = subnet_id.and_then(|id| self.subnet_index.get(&id).copied()) {
            let count = &mut self.subnets[index].pod_addresses;
            *count = if add { *count + 1 } else { count.saturating_sub(1) };
        }
    }

    fn create_pod(&mut self, node: Option<usize>, bound: bool) {
        let pod = self.pods.len();
        self.pods.push(PodState {
            node: None,
            group: None,
            created: self.now,
            running_since: None,
            deleted: false,
            reason: None,
            bound,
        });
        self.live_at.push(self.live.len());
        self.live.push(pod);
        if !bound {
            self.floating += 1;
        }
        match node {
            Some(node) => self.bind(pod, node),
            None => {
                if let Some(node) = self.pick_node() {
                    self.bind(pod, node);
                } else {
                    self.pods[pod].reason = Some("UNSCHEDULABLE");
                    self.unscheduled.push_back(pod);
                }
            }
        }
    }

    fn load(&self, node: usize) -> u32 {
        (self.nodes[node].running.len() + self.nodes[node].waiting.len()) as u32
    }

    /// The least loaded node with room under kubelet's max pods.
    fn pick_node(&self) -> Option<usize> {
        self.schedulable
            .iter()
            .find(|(load, node)| *load < self.nodes[*node].max_app_pods)
            .map(|(_, node)| *node)
    }

    fn bind(&mut self, pod: usize, node: usize) {
        let load = self.load(node);
        self.schedulable.remove(&(load, node));
        self.pods[pod].node = Some(node);
        self.pods[pod].group = Some(self.nodes[node].group);
        self.nodes[node].waiting.push_back(pod);
        self.schedulable.insert((load + 1, node));
        // CNI ADD right away; a pod that gets nothing waits for the pool to grow.
        if self.nodes[node].waiting.len() == 1 {
            self.serve_waiting(node);
        }
        // The pool changed (or a pod waits): the daemon's next cycle sees it.
        self.wake(node);
    }

    fn place_unscheduled(&mut self) {
        while let Some(&pod) = self.unscheduled.front() {
            let Some(node) = self.pick_node() else { break };
            self.unscheduled.pop_front();
            self.pods[pod].reason = None;
            self.bind(pod, node);
        }
    }

    fn delete_pod(&mut self, pod: usize) {
        if self.pods[pod].deleted {
            return;
        }
        self.pods[pod].deleted = true;
        if !self.pods[pod].bound {
            self.floating -= 1;
        }
        let at = self.live_at[pod];
        let last = *self.live.last().expect("the pod is live");
        self.live.swap_remove(at);
        if last != pod {
            self.live_at[last] = at;
        }
        let Some(node) = self.pods[pod].node else {
            self.unscheduled.retain(|p| *p != pod);
            return;
        };
        let load = self.load(node);
        self.schedulable.remove(&(load, node));
        if self.nodes[node].running.remove(&pod) {
            let agent = self.nodes[node].agent.as_mut().expect("booted");
            if let Some(released) = agent.del_pod(&pod_name(pod), self.now) {
                let subnet = agent.pool.eni(&released.eni_id).map(|e| e.subnet_id.clone());
                self.count_pod_address(subnet, false);
            }
        } else {
            self.nodes[node].waiting.retain(|p| *p != pod);
        }
        self.schedulable.insert((load - 1, node));
        self.wake(node);
    }

    fn target_pods(&self) -> Option<u64> {
        let workload = &self.cluster.workload;
        let elapsed = self.now.saturating_sub(workload.start_ms);
        let bursts: u64 = workload
            .bursts
            .iter()
            .filter(|b| elapsed >= b.at_ms && elapsed < b.at_ms + b.duration_ms)
            .map(|b| u64::from(b.pods))
            .sum();
        let base = workload.pods.map(|pods| {
            let hour = ((self.now / 3_600_000) % 24) as usize;
            let factor = workload.daily_curve.as_ref().map_or(1.0, |curve| curve[hour]);
            (f64::from(pods) * factor).round() as u64
        });
        match (base, workload.pods_per_node) {
            (Some(base), _) => Some(base + bursts),
            (None, _) => Some(bursts),
        }
    }

    fn on_workload(&mut self) {
        let workload = &self.cluster.workload;
        if !self.started {
            self.started = true;
            if let Some(per_node) = workload.pods_per_node {
                let booted: Vec<usize> = (0..self.nodes.len())
                    .filter(|n| self.nodes[*n].agent.is_some())
                    .collect();
                for node in booted {
                    for _ in 0..per_node {
                        self.create_pod(Some(node), true);
                    }
                }
            }
        }
        // Churn: that share of the live pods per hour, replaced at once.
        if workload.churn_per_hour > 0.0 && !self.live.is_empty() {
            let expected = workload.churn_per_hour * self.live.len() as f64 / 60.0;
            let mut count = expected.floor() as usize;
            let fraction = expected - expected.floor();
            if (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= fraction {
                count += 1;
            }
            for _ in 0..count.min(self.live.len()) {
                let pod = self.live[(self.rng.next_u64() % self.live.len() as u64) as usize];
                let node = self.pods[pod].node;
                let bound = self.pods[pod].bound;
                self.delete_pod(pod);
                self.create_pod(if bound { node } else { None }, bound);
            }
        }
        // Scale the free-floating pods to the target (pods × the daily curve, plus bursts).
        if let Some(target) = self.target_pods() {
            let floating = self.floating;
            if floating < target {
                for _ in floating..target {
                    self.create_pod(None, false);
                }
            } else if floating > target {
                // As a ReplicaSet scales down: pods without a node or address first, then the newest.
                let mut victims: Vec<usize> = self
                    .live
                    .iter()
                    .copied()
                    .filter(|p| !self.pods[*p].bound)
                    .collect();
                victims.sort_unstable_by_key(|p| Reverse((self.pods[*p].running_since.is_none(), *p)));
                for pod in victims.into_iter().take((floating - target) as usize) {
                    self.delete_pod(pod);
                }
            }
        }
        self.place_unscheduled();
        self.autoscale();
        let next = self.now + 60_000;
        self.schedule(next, Event::Workload);
    }

    /// Scales out node groups with min/max while pods find no node, as cluster-autoscaler would.
    fn autoscale(&mut self) {
        let mut waiting = self.unscheduled.len() as u64;
        for (index, spec) in self.cluster.node_groups.iter().enumerate() {
            let NodeCount::Autoscaled { max, .. } = spec.count else {
                continue;
            };
            if waiting == 0 {
                break;
            }
            let limits = vpcni_limits::builtin().get(&spec.instance_type).expect("checked");
            let per_node = u64::from(
                spec.max_pods
                    .unwrap_or_else(|| vpcni_limits::max_pods::max_pods(limits, &Default::default()).max_pods)
                    .saturating_sub(2)
                    .max(1),
            );
            let track = &self.groups[index];
            let coming = u64::from(track.launching)
                + track
                    .nodes
                    .iter()
                    .filter(|n| self.nodes[**n].agent.is_none())
                    .count() as u64;
            let have = track.nodes.len() as u64 + u64::from(track.launching);
            let wanted = waiting.div_ceil(per_node).saturating_sub(coming);
            let room = u64::from(max).saturating_sub(have);
            let launch = wanted.min(room);
            waiting = waiting.saturating_sub((launch + coming) * per_node);
            if launch > 0 {
                self.launch(index, launch as u32);
            }
        }
    }

    fn on_sample(&mut self) {
        self.take_sample();
        let next = self.now + self.sample_every;
        if next <= self.end {
            self.schedule(next, Event::Sample);
        }
    }

    fn on_sample_at_end(&mut self) {
        if self.series.last().is_none_or(|s| s.at_ms < self.end) {
            self.take_sample();
        }
    }

    fn take_sample(&mut self) {
        let mut used = Vec::new();
        let mut idle = Vec::new();
        for index in 0..self.subnets.len() {
            let (usable, in_use) = self.usage(index);
            let track = &mut self.subnets[index];
            let idle_now = in_use.saturating_sub(track.pod_addresses + u64::from(track.external));
            track.used_peak = track.used_peak.max(in_use);
            track.idle_peak = track.idle_peak.max(idle_now);
            if in_use >= usable && track.exhausted_at.is_none() {
                let message = self.exhaustion_message(index, false);
                self.note_exhaustion(index, "SUBNET_EXHAUSTED", message);
            }
            used.push(in_use);
            idle.push(idle_now);
        }
        for index in 0..self.groups.len() {
            let (held, pods) = self.groups[index]
                .nodes
                .iter()
                .map(|n| node_addresses(&self.nodes[*n]))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let track = &mut self.groups[index];
            track.used_peak = track.used_peak.max(held);
            track.idle_peak = track.idle_peak.max(held - pods);
        }
        let pending = self
            .live
            .iter()
            .filter(|p| self.pods[**p].running_since.is_none())
            .count() as u64;
        let running = self.live.len() as u64 - pending;
        self.series.push(Sample {
            at_ms: self.now,
            used,
            idle,
            pods_running: running,
            pods_pending: pending,
            ec2_calls: self.calls_since_sample.0,
            ec2_throttled: self.calls_since_sample.1,
        });
        self.calls_since_sample = (0, 0);
    }

    fn pod_report(&self, group: Option<usize>) -> PodReport {
        let mut report = PodReport::default();
        let mut waits: Vec<Millis> = Vec::new();
        for pod in &self.pods {
            if group.is_some() && pod.group != group {
                continue;
            }
            report.requested += 1;
            match pod.running_since {
                Some(at) => waits.push(at - pod.created),
                None if !pod.deleted => waits.push(self.end - pod.created),
                None => {}
            }
            if pod.deleted {
                continue;
            }
            if pod.running_since.is_some() {
                report.running_end += 1;
            } else {
                report.pending_end += 1;
                *report
                    .pending_reasons
                    .entry(pod.reason.unwrap_or("WAITING").to_owned())
                    .or_default() += 1;
            }
        }
        waits.sort_unstable();
        report.wait_p99_s = waits
            .get((waits.len() * 99).div_ceil(100).saturating_sub(1))
            .map_or(0.0, |w| *w as f64 / 1000.0);
        report
    }

    fn report(&self) -> Report {
        let mut subnets = Vec::new();
        for (index, spec) in self.cluster.subnets.iter().enumerate() {
            let track = &self.subnets[index];
            let map = self.subnet_map(index);
            let (usable, used_end) = self.usage(index);
            subnets.push(SubnetReport {
                name: spec.name.clone(),
                cidr: spec.cidr.to_string(),
                zone: spec.zone.clone(),
                usable,
                used_peak: track.used_peak.max(used_end),
                used_end,
                idle_peak: track.idle_peak,
                whole_prefixes_free_end: map
                    .blocks
                    .iter()
                    .filter(|b| **b == BlockState::Free || **b == BlockState::Reserved)
                    .count() as u64,
                exhausted: track.exhausted_at.is_some(),
                exhausted_at_s: track.exhausted_at.map(|at| at as f64 / 1000.0),
                cause: track.cause.clone(),
                map,
            });
        }
        let node_groups = self
            .cluster
            .node_groups
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let track = &self.groups[index];
                let (held, pods) = track
                    .nodes
                    .iter()
                    .map(|n| node_addresses(&self.nodes[*n]))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                GroupReport {
                    name: spec.name.clone(),
                    instance_type: spec.instance_type.clone(),
                    nodes_end: track.nodes.len() as u32,
                    nodes_peak: track.nodes_peak,
                    launch_failures: track.launch_failures,
                    used_peak: track.used_peak.max(held),
                    used_end: held,
                    idle_peak: track.idle_peak.max(held - pods),
                    idle_end: held - pods,
                    pods: self.pod_report(Some(index)),
                    ec2: track.calls.clone(),
                }
            })
            .collect();
        Report {
            subnets,
            pods: self.pod_report(None),
            ec2: self.ec2.clone(),
            node_groups,
            settings: self.cluster.settings.clone(),
            warnings: self.cluster.warnings.clone(),
            duration_s: self.cluster.workload.duration_ms as f64 / 1000.0,
            seed: self.cluster.simulation.seed,
            series: self.series.clone(),
            sample_every_s: self.sample_every as f64 / 1000.0,
            vpc_id: self.vpc_id.clone(),
        }
    }

    /// Every /28 of a subnet at the end: free, partly used, used (by single addresses or a delegated
    /// prefix), or kept whole by a prefix reservation.
    fn subnet_map(&self, index: usize) -> SubnetMap {
        let id = &self.subnets[index].id;
        self.sim.inspect(|account| {
            let subnet = &account.subnets[id];
            let addresses = &subnet.addresses;
            let cidr = addresses.cidr();
            let prefixes: BTreeSet<Ipv4Net> = account
                .enis
                .values()
                .filter(|e| &e.subnet_id == id)
                .flat_map(|e| e.prefixes.keys().copied())
                .collect();
            let first = u32::from(cidr.network());
            let size = 1u32 << (32 - u32::from(cidr.prefix_len()));
            let blocks = (0..size / 16)
                .map(|block| {
                    let base = first + block * 16;
                    let net = Ipv4Net::new(Ipv4Addr::from(base), 28).expect("valid /28");
                    if prefixes.contains(&net) {
                        return BlockState::Prefix;
                    }
                    let taken = (base..base + 16)
                        .filter(|a| addresses.is_aws_reserved(*a) || addresses.is_used(Ipv4Addr::from(*a)))
                        .count();
                    let reserved = addresses.prefix_reservations().iter().any(|r| r.contains(&net));
                    match taken {
                        0 if reserved => BlockState::Reserved,
                        0 => BlockState::Free,
                        16 => BlockState::Used,
                        _ => BlockState::Partial,
                    }
                })
                .collect();
            SubnetMap {
                cidr: cidr.to_string(),
                blocks,
            }
        })
    }
}

/// Addresses a node holds in its subnets (its own, its ENIs' and theirs) and those held by pods.
fn node_addresses(node: &NodeState) -> (u64, u64) {
    let Some(agent) = node.agent.as_ref() else {
        return (1, 0);
    };
    let mut held = 0u64;
    let mut pods = 0u64;
    for eni in agent.pool.enis() {
        held += 1 + eni.cidrs.values().map(|c| c.slots.len() as u64).sum::<u64>();
        pods += eni.assigned() as u64;
    }
    (held, pods)
}

/// The first point of a node's 5 s grid at or after `t`.
fn next_grid(base: Millis, t: Millis) -> Millis {
    if t <= base {
        return base;
    }
    base + (t - base).div_ceil(CYCLE_MS) * CYCLE_MS
}

fn pod_name(pod: usize) -> String {
    format!("pod-{pod}")
}

fn reason_code(reason: NoAddressReason) -> &'static str {
    match reason {
        NoAddressReason::NodeMaxPods => "NODE_MAX_PODS",
        NoAddressReason::SubnetExhausted => "SUBNET_EXHAUSTED",
        NoAddressReason::NoFreePrefix => "NO_FREE_PREFIX",
        NoAddressReason::Ec2Throttled => "EC2_THROTTLED",
        NoAddressReason::EniAttachInProgress => "ENI_ATTACH_IN_PROGRESS",
        NoAddressReason::PoolEmptyGrowing => "POOL_EMPTY_GROWING",
        NoAddressReason::AllCoolingDown => "ALL_COOLING_DOWN",
        NoAddressReason::NodeAddressLimit => "NODE_ADDRESS_LIMIT",
        NoAddressReason::Ec2Error => "EC2_ERROR",
        NoAddressReason::EniConfigUnavailable => "ENI_CONFIG_UNAVAILABLE",
    }
}
