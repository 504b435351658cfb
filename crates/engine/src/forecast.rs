//! A node in a vacuum: the engine's policy run against an EC2 that always says yes, in an unconstrained
//! subnet, on a virtual clock. `vpcnictl pool` uses it to show what a node will hold for given settings;
//! the tests use it to check the policy against worked examples.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::model::{Eni, EniFlags, Millis, PodInfo, PodKey};
use crate::policy::{Decision, NodeLimits, PoolConfig};
use crate::pool::{Assignment, NoAddress, Pool};

/// The pool manager's cycle (2.5 s grow/shrink + 2.5 s reconcile in the original).
pub const CYCLE_MS: Millis = 5_000;
/// The subnet the simulated node lives in: big enough never to run out.
const SUBNET: &str = "10.0.0.0/16";

/// One decision and when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Virtual time, ms since the node started.
    pub at_ms: Millis,
    /// Pods on the node then.
    pub pods: usize,
    /// The decision.
    pub decision: Decision,
}

/// A simulated node.
#[derive(Debug, Clone)]
pub struct ForecastNode {
    pool: Pool,
    now: Millis,
    next_ip: u32,
    next_prefix: u32,
    next_device: u32,
    pods: usize,
    trace: Vec<TraceEntry>,
}

impl ForecastNode {
    /// A fresh node: the primary ENI with only its primary address. With custom networking the primary ENI
    /// carries no pod addresses.
    pub fn new(config: PoolConfig, limits: NodeLimits, custom_networking: bool) -> Self {
        let subnet: Ipv4Net = SUBNET.parse().expect("constant subnet");
        let base = u32::from(subnet.network());
        let mut pool = Pool::new(config, limits);
        let flags = EniFlags {
            primary: true,
            excluded: custom_networking,
            ..EniFlags::default()
        };
        let primary = Eni::new("eni-primary", 0, flags, subnet, Ipv4Addr::from(base + 10), 0);
        // A fresh pool accepts its first ENI.
        let _ = pool.add_eni(primary.with_subnet_id("subnet-forecast"));
        Self {
            pool,
            now: 0,
            next_ip: base + 11,
            // Prefixes come from the upper half of the subnet, aligned, so they never meet single addresses.
            next_prefix: base + (1 << 15),
            next_device: 1,
            pods: 0,
            trace: Vec::new(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool, to assign and release addresses for keys of the caller's choosing.
    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// Moves the virtual clock forward.
    pub fn advance(&mut self, ms: Millis) {
        self.now += ms;
    }

    /// Virtual time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Every decision taken so far.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    fn new_cidrs(&mut self, count: u32, prefixes: bool) -> Vec<Ipv4Net> {
        (0..count)
            .map(|_| {
                if prefixes {
                    let net = Ipv4Net::new(Ipv4Addr::from(self.next_prefix), 28).expect("valid /28");
                    self.next_prefix += 16;
                    net
                } else {
                    let net = Ipv4Net::new(Ipv4Addr::from(self.next_ip), 32).expect("valid /32");
                    self.next_ip += 1;
                    net
                }
            })
            .collect()
    }

    /// Runs one cycle: decide, carry the decision out as EC2 would, advance the clock.
    pub fn step(&mut self) -> Decision {
        let decision = self.pool.decide(self.now);
        match &decision {
            Decision::Nothing { .. } => {}
            Decision::AddIps { eni_id, count } => {
                let cidrs = self.new_cidrs(*count, false);
                let _ = self.pool.add_cidrs(eni_id, &cidrs);
            }
            Decision::AddPrefixes { eni_id, count } => {
                let cidrs = self.new_cidrs(*count, true);
                let _ = self.pool.add_cidrs(eni_id, &cidrs);
            }
            Decision::CreateEni { ips, prefixes } => {
                let device = self.next_device;
                self.next_device += 1;
                let primary = self.new_cidrs(1, false)[0].addr();
                let subnet: Ipv4Net = SUBNET.parse().expect("constant subnet");
                let eni = Eni::new(
                    format!("eni-{device}"),
                    device,
                    EniFlags::default(),
                    subnet,
                    primary,
                    self.now,
                );
                let id = eni.id.clone();
                let _ = self.pool.add_eni(eni.with_subnet_id("subnet-forecast"));
                let cidrs = if *prefixes > 0 {
                    self.new_cidrs(*prefixes, true)
                } else {
                    self.new_cidrs(*ips, false)
                };
                let _ = self.pool.add_cidrs(&id, &cidrs);
            }
            Decision::Release { cidrs } => {
                for (eni_id, net) in cidrs {
                    let _ = self.pool.remove_cidrs(eni_id, &[*net]);
                }
                self.pool.record_release(self.now);
            }
            Decision::FreeEni { eni_id } => {
                let _ = self.pool.remove_eni(eni_id);
            }
        }
        self.trace.push(TraceEntry {
            at_ms: self.now,
            pods: self.pods,
            decision: decision.clone(),
        });
        self.now += CYCLE_MS;
        decision
    }

    /// Runs cycles until the policy wants nothing, even after every timer (cooldown, ENI lifetime, release
    /// interval) has run out. Returns the cycles run; stops after `max_cycles`.
    pub fn converge(&mut self, max_cycles: usize) -> usize {
        let config = self.pool.config().clone();
        let quiet = config
            .ip_cooldown_ms
            .max(config.min_eni_lifetime_ms)
            .max(config.release_interval_ms)
            + CYCLE_MS;
        let mut cycles = 0;
        while cycles < max_cycles {
            cycles += 1;
            if matches!(self.step(), Decision::Nothing { .. }) {
                // Let every timer expire, then ask again.
                self.now += quiet;
                if matches!(self.pool.decide(self.now), Decision::Nothing { .. }) {
                    // Drop the probe's "nothing" so the trace only shows real work.
                    return cycles;
                }
            }
        }
        cycles
    }

    /// Adds a pod, letting the pool converge first if it has no usable address yet.
    pub fn add_pod(&mut self) -> Result<Assignment, NoAddress> {
        let key = PodKey::new("vpcni", format!("pod{}", self.pods), "eth0");
        let pod = PodInfo {
            namespace: "default".into(),
            name: format!("pod-{}", self.pods),
        };
        let result = match self.pool.assign(&key, &pod, self.now) {
            Ok(assignment) => Ok(assignment),
            Err(_) => {
                self.converge(1_000);
                self.pool.assign(&key, &pod, self.now)
            }
        };
        if result.is_ok() {
            self.pods += 1;
        }
        result
    }

    /// Removes the most recently added pod.
    pub fn remove_pod(&mut self) -> Option<Assignment> {
        let index = self.pods.checked_sub(1)?;
        let released = self
            .pool
            .unassign(&PodKey::new("vpcni", format!("pod{index}"), "eth0"), self.now);
        if released.is_some() {
            self.pods = index;
        }
        released
    }

    /// Pods on the node.
    pub fn pods(&self) -> usize {
        self.pods
    }
}
