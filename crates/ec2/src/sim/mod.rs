//! An EC2 simulator that enforces the rules vpcni depends on: ENI limits per network card, address slots
//! per ENI (secondary addresses and prefixes alike), subnet exhaustion, /28 alignment and fragmentation,
//! prefix reservations, attach delay, DeleteOnTermination, leaks on termination, request throttling,
//! injected faults and instance metadata that lags behind EC2.
//!
//! Deterministic given a seed and a [`VirtualClock`]; also runs on the [`WallClock`]. No async runtime:
//! the [`Ec2`](crate::Ec2) methods compute and return at once.

mod addressing;
mod clock;
mod ec2_impl;
mod imds;
mod ipv6;
mod rng;
mod state;
mod throttle;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use addressing::ReservationType;
pub use clock::{Clock, VirtualClock, WallClock};
pub use imds::SimImds;
pub use ipv6::SubnetIpv6;
pub use rng::SplitMix64;
pub use state::{AccountState, CidrReservation};
pub use throttle::{ActionClass, BucketSpec, ThrottleConfig};

use crate::{Ec2Error, Instance, Tags};

/// An injected fault: calls to `action` (any action if `None`) fail with `code` with this probability,
/// at most `remaining` times if set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// EC2 action name, e.g. `AssignPrivateIpAddresses`.
    #[serde(default)]
    pub action: Option<String>,
    /// EC2 error code to answer with.
    pub code: String,
    /// Probability per call, 0 to 1.
    #[serde(default = "always")]
    pub probability: f64,
    /// How many more times it may fire.
    #[serde(default)]
    pub remaining: Option<u32>,
}

fn always() -> f64 {
    1.0
}

/// Simulator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Seed for identifiers and fault rolls.
    pub seed: u64,
    /// Region the account lives in.
    pub region: String,
    /// How long AttachNetworkInterface takes to reach `attached`.
    pub attach_delay_ms: u64,
    /// How long instance metadata lags behind EC2.
    pub imds_lag_ms: u64,
    /// Latency added to every call, per action (`*` for any).
    pub latency_ms: BTreeMap<String, u64>,
    /// Request throttling.
    pub throttle: ThrottleConfig,
    /// Injected faults.
    pub faults: Vec<FaultRule>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            region: "us-west-2".to_owned(),
            attach_delay_ms: 0,
            imds_lag_ms: 0,
            latency_ms: BTreeMap::new(),
            throttle: ThrottleConfig::default(),
            faults: Vec::new(),
        }
    }
}

/// Calls made and errors returned, per action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Calls per action.
    pub calls: BTreeMap<String, u64>,
    /// Errors per action and code (`Action/Code`).
    pub errors: BTreeMap<String, u64>,
    /// Of those, the ones injected by fault rules (`Action/Code`).
    #[serde(default)]
    pub injected: BTreeMap<String, u64>,
}

impl Counters {
    /// Calls to one action.
    pub fn calls_to(&self, action: &str) -> u64 {
        self.calls.get(action).copied().unwrap_or(0)
    }

    /// All calls.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// All errors injected by fault rules.
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }
}

#[derive(Debug)]
struct Inner {
    account: AccountState,
    config: SimConfig,
    throttle: throttle::Throttle,
    counters: Counters,
}

/// A cheaply cloneable handle to one simulated account.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

impl Simulator {
    /// An empty account.
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let account = AccountState::new(config.seed, &config.region);
        Self::from_account(account, config, clock)
    }

    /// An account restored from saved state.
    pub fn from_account(mut account: AccountState, config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        account.reindex();
        Self {
            inner: Arc::new(Mutex::new(Inner {
                account,
                config,
                throttle: Default::default(),
                counters: Counters::default(),
            })),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every change is all-or-nothing).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Whether the simulator runs on a virtual clock (see [`Clock::is_virtual`]).
    pub fn clock_is_virtual(&self) -> bool {
        self.clock.is_virtual()
    }

    /// A copy of the account, for saving.
    pub fn snapshot(&self) -> AccountState {
        self.lock().account.clone()
    }

    /// Reads the account without making an API call (not counted, never throttled): what an operator's
    /// console would show, for the planner's reports and tests.
    pub fn inspect<T>(&self, read: impl FnOnce(&AccountState) -> T) -> T {
        read(&self.lock().account)
    }

    /// Changes the account without making an API call (not counted, never throttled), at the clock's
    /// time: for setting up a world (addresses taken by something else, instances launched by an
    /// autoscaler outside the simulated daemons).
    pub fn admin<T>(&self, change: impl FnOnce(&mut AccountState, u64) -> T) -> T {
        let now = self.clock.now_ms();
        change(&mut self.lock().account, now)
    }

    /// Calls and errors so far.
    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Replaces the settings (faults, throttling, delays) at run time.
    pub fn configure(&self, change: impl FnOnce(&mut SimConfig)) {
        change(&mut self.lock().config);
    }

    /// The settings.
    pub fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }

    /// The latency to add to a call of `action`.
    pub fn latency_ms(&self, action: &str) -> u64 {
        let inner = self.lock();
        inner
            .config
            .latency_ms
            .get(action)
            .or_else(|| inner.config.latency_ms.get("*"))
            .copied()
            .unwrap_or(0)
    }

    /// Runs one API call: counts it, applies throttling and injected faults, then `operation`.
    pub fn call<T>(
        &self,
        action: &str,
        operation: impl FnOnce(&mut AccountState, u64, &SimConfig) -> Result<T, Ec2Error>,
    ) -> Result<T, Ec2Error> {
        let latency = self.latency_ms(action);
        if latency > 0 {
            self.clock.spend(latency);
        }
        let now = self.clock.now_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        *inner.counters.calls.entry(action.to_owned()).or_default() += 1;
        let result =
            Self::admit(inner, action, now).and_then(|()| operation(&mut inner.account, now, &inner.config));
        if let Err(error) = &result {
            *inner
                .counters
                .errors
                .entry(format!("{action}/{}", error.code))
                .or_default() += 1;
        }
        result
    }

    fn admit(inner: &mut Inner, action: &str, now: u64) -> Result<(), Ec2Error> {
        if !inner.throttle.admit(&inner.config.throttle, action, now) {
            return Err(Ec2Error::new("RequestLimitExceeded", "Request limit exceeded."));
        }
        for fault in inner.config.faults.iter_mut() {
            if fault.action.as_deref().is_some_and(|a| a != action) || fault.remaining == Some(0) {
                continue;
            }
            if inner.account.rng.next_f64() < fault.probability {
                if let Some(remaining) = fault.remaining.as_mut() {
                    *remaining -= 1;
                }
                *inner
                    .counters
                    .injected
                    .entry(format!("{action}/{}", fault.code))
                    .or_default() += 1;
                return Err(Ec2Error::new(
                    fault.code.clone(),
                    format!("injected fault for {action}"),
                ));
            }
        }
        Ok(())
    }

    /// CreateVpc.
    pub fn create_vpc(&self, cidr: Ipv4Net, tags: Tags) -> Result<String, Ec2Error> {
        self.call("CreateVpc", |account, _, _| account.create_vpc(cidr, tags))
    }

    /// AssociateVpcCidrBlock.
    pub fn add_vpc_cidr(&self, vpc_id: &str, cidr: Ipv4Net) -> Result<(), Ec2Error> {
        self.call("AssociateVpcCidrBlock", |account, _, _| {
            account.add_vpc_cidr(vpc_id, cidr)
        })
    }

    /// AssociateVpcCidrBlock for IPv6: `None` asks for an Amazon-provided /56 (`AmazonProvidedIpv6CidrBlock`,
    /// chosen from the seed), `Some` gives the /56 (`Ipv6CidrBlock`). Returns the VPC's block.
    pub fn associate_vpc_ipv6_cidr(&self, vpc_id: &str, cidr: Option<Ipv6Net>) -> Result<Ipv6Net, Ec2Error> {
        self.call("AssociateVpcCidrBlock", |account, _, _| {
            account.associate_vpc_ipv6(vpc_id, cidr)
        })
    }

    /// A VPC's IPv6 /56, if it has one (admin view, not counted).
    pub fn vpc_ipv6_cidr(&self, vpc_id: &str) -> Option<Ipv6Net> {
        self.lock().account.vpcs.get(vpc_id).and_then(|v| v.ipv6_cidr)
    }

    /// CreateSubnet with an IPv6 /64 of the VPC's /56 (`Ipv6CidrBlock`).
    pub fn create_subnet_with_ipv6(
        &self,
        vpc_id: &str,
        cidr: Ipv4Net,
        ipv6_cidr: Ipv6Net,
        az: &str,
        tags: Tags,
    ) -> Result<String, Ec2Error> {
        self.call("CreateSubnet", |account, _, _| {
            account.create_subnet_with_ipv6(vpc_id, cidr, ipv6_cidr, az, tags)
        })
    }

    /// AssociateSubnetCidrBlock with `Ipv6CidrBlock`: a /64 of the VPC's /56.
    pub fn associate_subnet_ipv6_cidr(&self, subnet_id: &str, cidr: Ipv6Net) -> Result<(), Ec2Error> {
        self.call("AssociateSubnetCidrBlock", |account, _, _| {
            account.associate_subnet_ipv6(subnet_id, cidr)
        })
    }

    /// CreateSubnet.
    pub fn create_subnet(
        &self,
        vpc_id: &str,
        cidr: Ipv4Net,
        az: &str,
        tags: Tags,
    ) -> Result<String, Ec2Error> {
        self.call("CreateSubnet", |account, _, _| {
            account.create_subnet(vpc_id, cidr, az, tags)
        })
    }

    /// CreateSubnetCidrReservation of type `prefix`.
    pub fn create_subnet_cidr_reservation(&self, subnet_id: &str, cidr: Ipv4Net) -> Result<String, Ec2Error> {
        self.call("CreateSubnetCidrReservation", |account, _, _| {
            account.reserve_subnet_prefixes(subnet_id, cidr)
        })
    }

    /// CreateSubnetCidrReservation of either type.
    pub fn create_subnet_cidr_reservation_of(
        &self,
        subnet_id: &str,
        cidr: Ipv4Net,
        kind: ReservationType,
    ) -> Result<CidrReservation, Ec2Error> {
        self.call("CreateSubnetCidrReservation", |account, _, _| {
            account.reserve_subnet_cidr(subnet_id, cidr, kind)
        })
    }

    /// GetSubnetCidrReservations.
    pub fn get_subnet_cidr_reservations(&self, subnet_id: &str) -> Result<Vec<CidrReservation>, Ec2Error> {
        self.call("GetSubnetCidrReservations", |account, _, _| {
            account.subnet_cidr_reservations(subnet_id)
        })
    }

    /// DeleteSubnetCidrReservation.
    pub fn delete_subnet_cidr_reservation(&self, id: &str) -> Result<CidrReservation, Ec2Error> {
        self.call("DeleteSubnetCidrReservation", |account, _, _| {
            account.delete_subnet_cidr_reservation(id)
        })
    }

    /// RunInstances for one instance.
    pub fn run_instance(
        &self,
        instance_type: &str,
        subnet_id: &str,
        private_ip: Option<Ipv4Addr>,
        tags: Tags,
    ) -> Result<String, Ec2Error> {
        self.call("RunInstances", |account, now, _| {
            account.run_instance(instance_type, subnet_id, private_ip, tags, now)
        })
    }

    /// TerminateInstances.
    pub fn terminate_instance(&self, instance_id: &str) -> Result<(), Ec2Error> {
        self.call("TerminateInstances", |account, _, _| {
            account.terminate_instance(instance_id)
        })
    }

    /// DescribeInstances of every instance (admin view, not counted against throttling).
    pub fn instances(&self) -> Vec<Instance> {
        let now = self.now_ms();
        let inner = self.lock();
        inner
            .account
            .instances
            .keys()
            .filter_map(|id| inner.account.instance_view(id, now).ok())
            .collect()
    }

    /// VPCs: id and CIDRs.
    pub fn vpcs(&self) -> Vec<(String, Vec<Ipv4Net>)> {
        self.lock()
            .account
            .vpcs
            .values()
            .map(|v| (v.id.clone(), v.cidrs.clone()))
            .collect()
    }

    /// Instance metadata as `instance_id` sees it.
    pub fn imds_for(&self, instance_id: &str) -> SimImds {
        SimImds::new(self.clone(), instance_id)
    }
}
