//! One node driven step by step, for comparing the planner with a running daemon: pods are added and
//! removed by name, the pool cycles on a virtual clock, and its size is read after each step.

use std::sync::Arc;

use ipnet::Ipv4Net;
use vpcni_ec2::Tags;
use vpcni_ec2::sim::{SimConfig, Simulator, VirtualClock};
use vpcni_engine::settings::PoolSettings;
use vpcni_engine::{Assignment, Decision, Millis, NoAddress, Stats};

use crate::agent::{Agent, CYCLE_MS};

/// A node of the given type in a subnet of its own, running the daemon's pool.
#[derive(Debug)]
pub struct SingleNode {
    clock: VirtualClock,
    sim: Simulator,
    agent: Agent,
}

impl SingleNode {
    /// Launches the instance and starts the daemon on it (no cycle run yet).
    pub fn new(instance_type: &str, subnet: Ipv4Net, settings: &PoolSettings) -> Result<Self, String> {
        let clock = VirtualClock::new(0);
        let sim = Simulator::new(SimConfig::default(), Arc::new(clock.clone()));
        let instance = sim.admin(|account, now| {
            let vpc = account
                .create_vpc(
                    Ipv4Net::new(subnet.network(), 16.min(subnet.prefix_len()))
                        .map_err(|e| e.to_string())?
                        .trunc(),
                    Tags::new(),
                )
                .map_err(|e| e.to_string())?;
            let subnet_id = account
                .create_subnet(&vpc, subnet, "us-west-2a", Tags::new())
                .map_err(|e| e.to_string())?;
            account
                .run_instance(instance_type, &subnet_id, None, Tags::new(), now)
                .map_err(|e| e.to_string())
        })?;
        let (agent, _) = Agent::start(&sim, &instance, settings, None, 0).map_err(|e| e.to_string())?;
        Ok(Self { clock, sim, agent })
    }

    /// Virtual time.
    pub fn now(&self) -> Millis {
        self.sim.now_ms()
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: Millis) {
        self.clock.advance(ms);
    }

    /// One pool cycle, then the clock moves on by a cycle.
    pub fn cycle(&mut self) -> Decision {
        let (decision, _) = self.agent.cycle(&self.sim, self.now());
        self.advance(CYCLE_MS);
        decision
    }

    /// Cycles until the pool wants nothing (at most `max_cycles`); returns the cycles run.
    pub fn settle(&mut self, max_cycles: usize) -> usize {
        for cycle in 1..=max_cycles {
            if matches!(self.cycle(), Decision::Nothing { .. }) {
                return cycle;
            }
        }
        max_cycles
    }

    /// Settles as a daemon left alone does: cycles until the pool wants nothing, then lets every timer
    /// (cooldown, ENI age, release interval, grow back-off) run out and settles again, until nothing
    /// changes. Returns the virtual time it took.
    pub fn settle_fully(&mut self) -> Millis {
        let started = self.now();
        loop {
            self.settle(1_000);
            let before = (self.stats(), self.enis());
            let quiet = self
                .agent
                .next_timer(self.now())
                .map_or(0, |t| t.saturating_sub(self.now()));
            self.advance(quiet + CYCLE_MS);
            self.settle(1_000);
            if (self.stats(), self.enis()) == before && self.agent.next_timer(self.now()).is_none() {
                return self.now() - started;
            }
        }
    }

    /// CNI ADD for a pod.
    pub fn add_pod(&mut self, name: &str) -> Result<Assignment, NoAddress> {
        let now = self.now();
        self.agent.add_pod(name, now)
    }

    /// CNI DEL for a pod.
    pub fn del_pod(&mut self, name: &str) -> Option<Assignment> {
        let now = self.now();
        self.agent.del_pod(name, now)
    }

    /// The pool's counts now.
    pub fn stats(&self) -> Stats {
        self.agent.pool.stats(self.now())
    }

    /// ENIs in the pool.
    pub fn enis(&self) -> usize {
        self.agent.pool.enis().count()
    }
}
