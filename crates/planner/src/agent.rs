//! One node's daemon, as the planner runs it: the engine's [`Pool`] decides, and each [`Decision`] is
//! carried out against the EC2 simulator the way `vpcni-ipamd` carries it out (`pool_loop.rs`, `enis.rs`):
//! the same calls in the same order, the same subnet choice, the same bookkeeping of failures, releases
//! and cooldowns. The differences are where the daemon waits on the world: here an attached ENI is set up
//! at once, a delete EC2 refuses is retried at the next cycle instead of after a sleep, and reconcile
//! (which asks EC2 only when instance metadata and the pool disagree, never the case here) only re-adds
//! addresses whose release EC2 refused, as the daemon's reconcile would once their 60 s are over.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::task::{Context, Poll, Waker};

use ipnet::Ipv4Net;
use vpcni_ec2::sim::Simulator;
use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error,
    Ec2ErrorKind, Filter,
};
use vpcni_engine::settings::PoolSettings;
use vpcni_engine::{
    Assignment, Decision, Eni, EniFlags, GrowFailure, Millis, NoAddress, NodeLimits, PodInfo, PodKey, Pool,
};

/// The daemon's pool cycle (2.5 s grow/shrink + 2.5 s reconcile in the original).
pub const CYCLE_MS: Millis = 5_000;
/// Reconcile leaves a freed address alone this long (the original's `ipReconcileCooldown`).
const RECONCILE_COOLDOWN_MS: Millis = 60_000;
pub use vpcni_engine::subnets::CNI_ROLE_TAG;
use vpcni_engine::subnets::{subnet_eligible, subnet_excluded};

/// Runs a simulator call: it answers at once, so one poll completes it.
pub(crate) fn at_once<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the EC2 simulator answers every call at once"),
    }
}

/// One EC2 call made by a daemon: the action and whether EC2 throttled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// EC2 action.
    pub action: &'static str,
    /// Refused with RequestLimitExceeded.
    pub throttled: bool,
}

/// Where the node is: what the daemon learns at start-up.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `i-…`.
    pub instance_id: String,
    /// The VPC.
    pub vpc_id: String,
    /// Availability zone.
    pub zone: String,
    /// The primary ENI's subnet.
    pub subnet_id: String,
    /// Its CIDR.
    pub subnet_cidr: Ipv4Net,
}

/// One node's daemon.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The engine's pool.
    pub pool: Pool,
    identity: Identity,
    settings: PoolSettings,
    /// Addresses given back to EC2 while cooling, with when their pod released them (ipamd's `cooldown.rs`).
    returned: HashMap<Ipv4Addr, Millis>,
    /// Addresses out of the pool whose release EC2 refused: reconcile adds them back after 60 s.
    unreleased: Vec<(Millis, String, Vec<Ipv4Net>)>,
    /// ENIs out of the pool that EC2 has not deleted yet.
    undeleted: Vec<String>,
    /// Calls made since the last [`Agent::take_calls`].
    calls: Vec<Call>,
    /// The last release to EC2 and the last failure to grow (the engine's timers start there).
    last_release: Option<Millis>,
    last_failure: Option<Millis>,
}

fn grow_failure(error: &Ec2Error, subnet: &str) -> GrowFailure {
    match error.kind {
        Ec2ErrorKind::InsufficientFreeAddressesInSubnet => GrowFailure::SubnetExhausted(subnet.to_owned()),
        Ec2ErrorKind::InsufficientCidrBlocks => GrowFailure::NoFreePrefix(subnet.to_owned()),
        Ec2ErrorKind::Throttled => GrowFailure::Throttled,
        _ => GrowFailure::Other(error.to_string()),
    }
}

impl Agent {
    /// Starts the daemon on an instance: reads the instance from EC2 (DescribeInstances, as start-up
    /// does) and builds the pool with the primary ENI, as `startup.rs` does.
    pub fn start(
        ec2: &Simulator,
        instance_id: &str,
        settings: &PoolSettings,
        max_pods: Option<u32>,
        now: Millis,
    ) -> Result<(Self, Vec<Call>), Ec2Error> {
        let mut calls = Vec::new();
        let result = at_once(ec2.describe_instance(instance_id));
        calls.push(Call {
            action: "DescribeInstances",
            throttled: result.as_ref().is_err_and(|e| e.kind == Ec2ErrorKind::Throttled),
        });
        let instance = result?;
        let limits = vpcni_limits::builtin()
            .get(&instance.instance_type)
            .map_err(|e| Ec2Error::new("InvalidParameterValue", e.to_string()))?;
        let primary = instance
            .network_interfaces
            .iter()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0))
            .ok_or_else(|| Ec2Error::new("InvalidInstanceID.NotFound", "no primary ENI"))?;
        let subnet_cidr = ec2
            .inspect(|account| {
                account
                    .subnets
                    .get(&primary.subnet_id)
                    .map(|s| s.addresses.cidr())
            })
            .ok_or_else(|| Ec2Error::new("InvalidSubnetID.NotFound", "no subnet"))?;
        let mut config = settings.pool_config();
        if config.prefix_delegation && !limits.supports_prefix_delegation() {
            // The daemon logs a warning and uses secondary IPs.
            config.prefix_delegation = false;
        }
        let mut node_limits = NodeLimits::for_instance(limits, settings.max_eni, settings.pod_eni);
        if let Some(max_pods) = max_pods {
            node_limits.max_pods = max_pods;
        }
        let mut pool = Pool::new(config, node_limits);
        let flags = EniFlags {
            primary: true,
            excluded: settings.custom_networking,
            ..EniFlags::default()
        };
        let eni = Eni::new(
            &primary.network_interface_id,
            0,
            flags,
            subnet_cidr,
            primary.private_ip,
            now,
        )
        .with_subnet_id(&primary.subnet_id);
        let mut cidrs: Vec<Ipv4Net> = primary
            .secondary_ips
            .iter()
            .map(|ip| Ipv4Net::from(*ip))
            .collect();
        cidrs.extend(primary.ipv4_prefixes.iter().copied());
        pool.add_eni(eni)
            .and_then(|()| pool.add_cidrs(&primary.network_interface_id, &cidrs))
            .map_err(|e| Ec2Error::new("InvalidParameterValue", e.to_string()))?;
        let identity = Identity {
            instance_id: instance.instance_id.clone(),
            vpc_id: instance.vpc_id.clone(),
            zone: instance.availability_zone.clone(),
            subnet_id: primary.subnet_id.clone(),
            subnet_cidr,
        };
        Ok((
            Self {
                pool,
                identity,
                settings: settings.clone(),
                returned: HashMap::new(),
                unreleased: Vec::new(),
                undeleted: Vec::new(),
                calls: Vec::new(),
                last_release: None,
                last_failure: None,
            },
            calls,
        ))
    }

    /// Where the node is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The calls made since the last time they were taken.
    pub fn take_calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    fn record<T>(&mut self, action: &'static str, result: &Result<T, Ec2Error>) {
        self.calls.push(Call {
            action,
            throttled: result.as_ref().is_err_and(|e| e.kind == Ec2ErrorKind::Throttled),
        });
    }

    /// CNI ADD: an address for the pod, or why not.
    pub fn add_pod(&mut self, name: &str, now: Millis) -> Result<Assignment, NoAddress> {
        let key = PodKey::new("vpcni", name, "eth0");
        let pod = PodInfo {
            namespace: "default".into(),
            name: name.to_owned(),
        };
        self.pool.assign(&key, &pod, now)
    }

    /// CNI DEL: the pod's address goes into cooldown.
    pub fn del_pod(&mut self, name: &str, now: Millis) -> Option<Assignment> {
        self.pool.unassign(&PodKey::new("vpcni", name, "eth0"), now)
    }

    /// One pool cycle: reconcile's part first (addresses EC2 kept), then the engine's decision, carried
    /// out. Returns the decision and whether it was carried out.
    pub fn cycle(&mut self, ec2: &Simulator, now: Millis) -> (Decision, bool) {
        self.retry_deletes(ec2);
        self.reconcile_unreleased(now);
        let decision = self.pool.decide(now);
        if self.settings.disable_provisioning || self.settings.imds_only {
            return (decision, false);
        }
        let done = match &decision {
            Decision::Nothing { .. } => return (decision, false),
            Decision::AddIps { eni_id, count } => self.add_ips(ec2, eni_id, *count, now),
            Decision::AddPrefixes { eni_id, count } => self.add_prefixes(ec2, eni_id, *count, now),
            Decision::CreateEni { ips, prefixes } => self.create_eni(ec2, *ips, *prefixes, now),
            Decision::Release { cidrs } => self.release(ec2, cidrs, now),
            Decision::FreeEni { eni_id } => self.free_eni(ec2, eni_id, now),
        };
        (decision, done)
    }

    /// The earliest time after `now` at which the engine's answer may change with nothing else happening
    /// (a cooldown ending, an ENI coming of age, the release interval or a grow back-off running out), so
    /// a node at rest need not be asked every cycle. `None`: nothing pending.
    pub fn next_timer(&self, now: Millis) -> Option<Millis> {
        let config = self.pool.config();
        let mut times: Vec<Millis> = Vec::new();
        for eni in self.pool.enis() {
            times.push(eni.created_at.saturating_add(config.min_eni_lifetime_ms));
            for cidr in eni.cidrs.values() {
                for slot in &cidr.slots {
                    if let Some(at) = slot.unassigned_at {
                        times.push(at.saturating_add(config.ip_cooldown_ms));
                    }
                }
            }
        }
        times.extend(
            self.last_release
                .map(|at| at.saturating_add(config.release_interval_ms)),
        );
        times.extend(
            self.last_failure
                .map(|at| at.saturating_add(config.grow_backoff_ms)),
        );
        times.extend(
            self.unreleased
                .iter()
                .map(|(at, ..)| at.saturating_add(RECONCILE_COOLDOWN_MS)),
        );
        if !self.undeleted.is_empty() {
            times.push(now + 1);
        }
        times.into_iter().filter(|t| *t > now).min()
    }

    fn grow_failed(&mut self, failure: GrowFailure, now: Millis) {
        self.pool.record_grow_failure(failure, now);
        self.last_failure = Some(now);
    }

    fn grew(&mut self) {
        self.pool.record_grow_success();
        self.last_failure = None;
    }

    /// The last failure to grow the pool, as the engine explains it to pods.
    pub fn last_failure_at(&self) -> Option<Millis> {
        self.last_failure
    }

    fn subnet_of(&self, eni_id: &str) -> String {
        self.pool
            .eni(eni_id)
            .map_or_else(|| self.identity.subnet_id.clone(), |e| e.subnet_id.clone())
    }

    fn record_grow(&mut self, result: &Result<Vec<Ipv4Net>, Ec2Error>, eni_id: &str, now: Millis) {
        match result {
            Ok(cidrs) => {
                let _ = self.pool.add_cidrs(eni_id, cidrs);
                self.reapply_cooldowns(now);
                self.grew();
            }
            Err(error) => {
                let subnet = self.subnet_of(eni_id);
                self.grow_failed(grow_failure(error, &subnet), now);
            }
        }
    }

    fn add_ips(&mut self, ec2: &Simulator, eni_id: &str, count: u32, now: Millis) -> bool {
        let result = at_once(ec2.assign_private_ip_addresses(eni_id, &AddressRequest::Count(count)))
            .map(|ips| ips.into_iter().map(Ipv4Net::from).collect::<Vec<_>>());
        self.record("AssignPrivateIpAddresses", &result);
        self.record_grow(&result, eni_id, now);
        result.is_ok()
    }

    fn add_prefixes(&mut self, ec2: &Simulator, eni_id: &str, count: u32, now: Millis) -> bool {
        let result = at_once(ec2.assign_ipv4_prefixes(eni_id, &AddressRequest::Count(count)));
        self.record("AssignPrivateIpAddresses", &result);
        self.record_grow(&result, eni_id, now);
        result.is_ok()
    }

    /// Subnets a new ENI may go to, best first, by the engine's rules as ipamd's `candidate_subnets`
    /// applies them (the planner models no CLUSTER_NAME: cluster tags are not checked). An error is the
    /// refusal ipamd gives when the node's subnet is excluded and nothing else is eligible.
    fn candidate_subnets(&mut self, ec2: &Simulator) -> Result<Vec<(String, Ipv4Net)>, Ec2Error> {
        let primary = vec![(self.identity.subnet_id.clone(), self.identity.subnet_cidr)];
        let no_subnet = |why: &str| Ec2Error::new("NoEligibleSubnet", why);
        if self.settings.subnet_discovery {
            let filters = [
                Filter::new("vpc-id", &self.identity.vpc_id),
                Filter::new("availability-zone", &self.identity.zone),
            ];
            let result = at_once(ec2.describe_subnets(&[], &filters));
            self.record("DescribeSubnets", &result);
            if let Ok(mut subnets) = result {
                subnets.retain(|s| subnet_eligible(&s.subnet_id, &s.tags, &self.identity.subnet_id, ""));
                subnets.sort_by_key(|s| std::cmp::Reverse(s.available_ip_address_count));
                if subnets.is_empty() {
                    return Err(no_subnet(vpcni_engine::subnets::NOTHING_ELIGIBLE));
                }
                return Ok(subnets.into_iter().map(|s| (s.subnet_id, s.cidr_block)).collect());
            }
        }
        let result = at_once(ec2.describe_subnets(std::slice::from_ref(&self.identity.subnet_id), &[]));
        self.record("DescribeSubnets", &result);
        match result {
            Ok(subnets) if subnets.iter().any(|s| subnet_excluded(&s.tags)) => {
                Err(no_subnet(vpcni_engine::subnets::NODE_SUBNET_EXCLUDED))
            }
            _ => Ok(primary),
        }
    }

    fn create_eni(&mut self, ec2: &Simulator, ips: u32, prefixes: u32, now: Millis) -> bool {
        let mut last: Option<(Ec2Error, String)> = None;
        let mut created = None;
        let subnets = match self.candidate_subnets(ec2) {
            Ok(subnets) => subnets,
            Err(error) => {
                let subnet = self.identity.subnet_id.clone();
                self.grow_failed(grow_failure(&error, &subnet), now);
                return false;
            }
        };
        for (subnet_id, subnet_cidr) in subnets {
            let mut tags = vpcni_ec2::Tags::new();
            tags.insert(
                "node.k8s.amazonaws.com/instance_id".into(),
                self.identity.instance_id.clone(),
            );
            let request = CreateNetworkInterfaceRequest {
                subnet_id: subnet_id.clone(),
                description: format!("aws-K8S-{}", self.identity.instance_id),
                tags,
                secondary_ip_count: ips,
                ipv4_prefix_count: prefixes,
                ..Default::default()
            };
            let result = at_once(ec2.create_network_interface(&request));
            self.record("CreateNetworkInterface", &result);
            match result {
                Ok(eni) => {
                    created = Some((eni, subnet_cidr));
                    break;
                }
                Err(error)
                    if matches!(
                        error.kind,
                        Ec2ErrorKind::InsufficientFreeAddressesInSubnet
                            | Ec2ErrorKind::InsufficientCidrBlocks
                    ) =>
                {
                    last = Some((error, subnet_id));
                }
                Err(error) => {
                    last = Some((error, subnet_id));
                    break;
                }
            }
        }
        let Some((eni, subnet_cidr)) = created else {
            let (error, subnet) = last.unwrap_or_else(|| {
                (
                    Ec2Error::unavailable("no subnet to create an ENI in"),
                    String::new(),
                )
            });
            self.grow_failed(grow_failure(&error, &subnet), now);
            return false;
        };
        let eni_id = eni.network_interface_id.clone();
        let described = at_once(ec2.describe_instance(&self.identity.instance_id));
        self.record("DescribeInstances", &described);
        let used: Vec<u32> = match described {
            Ok(instance) => instance
                .network_interfaces
                .iter()
                .filter_map(|e| e.attachment.as_ref())
                .filter(|a| a.network_card_index == 0)
                .map(|a| a.device_index)
                .collect(),
            Err(error) => {
                self.delete_after_failed_attach(ec2, &eni_id);
                self.grow_failed(grow_failure(&error, &eni.subnet_id), now);
                return false;
            }
        };
        let device = (1..100).find(|d| !used.contains(d)).unwrap_or(1);
        let attached = at_once(ec2.attach_network_interface(&eni_id, &self.identity.instance_id, device, 0));
        self.record("AttachNetworkInterface", &attached);
        let attachment = match attached {
            Ok(attachment) => attachment,
            Err(error) => {
                self.delete_after_failed_attach(ec2, &eni_id);
                self.grow_failed(grow_failure(&error, &eni.subnet_id), now);
                return false;
            }
        };
        let result = at_once(ec2.set_delete_on_termination(&eni_id, &attachment, true));
        self.record("ModifyNetworkInterfaceAttribute", &result);
        let mut cidrs: Vec<Ipv4Net> = eni.secondary_ips.iter().map(|ip| Ipv4Net::from(*ip)).collect();
        cidrs.extend(eni.ipv4_prefixes.iter().copied());
        let entry = Eni::new(
            &eni_id,
            device,
            EniFlags::default(),
            subnet_cidr,
            eni.private_ip,
            now,
        )
        .with_subnet_id(&eni.subnet_id);
        let _ = self
            .pool
            .add_eni(entry)
            .and_then(|()| self.pool.add_cidrs(&eni_id, &cidrs));
        self.reapply_cooldowns(now);
        self.grew();
        true
    }

    fn delete_after_failed_attach(&mut self, ec2: &Simulator, eni_id: &str) {
        let result = at_once(ec2.delete_network_interface(eni_id));
        self.record("DeleteNetworkInterface", &result);
        if result.is_err() {
            self.undeleted.push(eni_id.to_owned());
        }
    }

    fn remember_cooling<'a>(&mut self, cidrs: impl IntoIterator<Item = &'a vpcni_engine::Cidr>, now: Millis) {
        let cooldown = self.pool.config().ip_cooldown_ms;
        self.returned.retain(|_, at| now < at.saturating_add(cooldown));
        for cidr in cidrs {
            for slot in cidr.slots.iter().filter(|s| s.is_cooling(now, cooldown)) {
                if let Some(at) = slot.unassigned_at {
                    self.returned.insert(slot.ip, at);
                }
            }
        }
    }

    fn reapply_cooldowns(&mut self, now: Millis) {
        let cooldown = self.pool.config().ip_cooldown_ms;
        self.returned.retain(|_, at| now < at.saturating_add(cooldown));
        for (ip, at) in &self.returned {
            self.pool.restore_cooldown(*ip, *at);
        }
    }

    fn release(&mut self, ec2: &Simulator, cidrs: &[(String, Ipv4Net)], now: Millis) -> bool {
        let mut by_eni: BTreeMap<String, Vec<Ipv4Net>> = BTreeMap::new();
        for (eni, net) in cidrs {
            by_eni.entry(eni.clone()).or_default().push(*net);
        }
        let mut all_done = true;
        for (eni_id, nets) in by_eni {
            let leaving: Vec<vpcni_engine::Cidr> = self
                .pool
                .eni(&eni_id)
                .map(|eni| nets.iter().filter_map(|n| eni.cidrs.get(n).cloned()).collect())
                .unwrap_or_default();
            self.remember_cooling(&leaving, now);
            if self.pool.remove_cidrs(&eni_id, &nets).is_err() {
                continue;
            }
            self.pool.record_release(now);
            self.last_release = Some(now);
            let ips: Vec<Ipv4Addr> = nets
                .iter()
                .filter(|n| n.prefix_len() == 32)
                .map(|n| n.addr())
                .collect();
            let prefixes: Vec<Ipv4Net> = nets.iter().filter(|n| n.prefix_len() < 32).copied().collect();
            if !ips.is_empty() {
                let result = at_once(ec2.unassign_private_ip_addresses(&eni_id, &ips));
                self.record("UnassignPrivateIpAddresses", &result);
                if result.is_err() {
                    self.unreleased.push((now, eni_id.clone(), nets.clone()));
                    all_done = false;
                    // ipamd returns on the first error; the rest stays for the next cycle.
                    break;
                }
            }
            if !prefixes.is_empty() {
                let result = at_once(ec2.unassign_ipv4_prefixes(&eni_id, &prefixes));
                self.record("UnassignPrivateIpAddresses", &result);
                if result.is_err() {
                    self.unreleased.push((now, eni_id.clone(), prefixes));
                    all_done = false;
                    break;
                }
            }
        }
        all_done
    }

    /// Reconcile's part: addresses EC2 still lists on an ENI (their release failed) come back into the
    /// pool once the reconcile cooldown is over.
    fn reconcile_unreleased(&mut self, now: Millis) {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unreleased)
            .into_iter()
            .partition(|(at, ..)| now >= at.saturating_add(RECONCILE_COOLDOWN_MS));
        self.unreleased = waiting;
        for (_, eni_id, nets) in due {
            let _ = self.pool.add_cidrs(&eni_id, &nets);
        }
    }

    fn free_eni(&mut self, ec2: &Simulator, eni_id: &str, now: Millis) -> bool {
        let Ok(removed) = self.pool.remove_eni(eni_id) else {
            return true;
        };
        let cidrs: Vec<vpcni_engine::Cidr> = removed.cidrs.values().cloned().collect();
        self.remember_cooling(&cidrs, now);
        self.detach_and_delete(ec2, eni_id)
    }

    fn detach_and_delete(&mut self, ec2: &Simulator, eni_id: &str) -> bool {
        let described = at_once(
            ec2.describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                network_interface_ids: vec![eni_id.to_owned()],
                ..Default::default()
            }),
        );
        self.record("DescribeNetworkInterfaces", &described);
        match described {
            Ok(page) => {
                if let Some(attachment) = page
                    .network_interfaces
                    .first()
                    .and_then(|e| e.attachment.as_ref())
                {
                    let detached = at_once(ec2.detach_network_interface(&attachment.attachment_id, false));
                    self.record("DetachNetworkInterface", &detached);
                    if detached.is_err() {
                        self.undeleted.push(eni_id.to_owned());
                        return false;
                    }
                }
            }
            Err(error) if error.kind == Ec2ErrorKind::NotFound => return true,
            Err(_) => {
                self.undeleted.push(eni_id.to_owned());
                return false;
            }
        }
        let deleted = at_once(ec2.delete_network_interface(eni_id));
        self.record("DeleteNetworkInterface", &deleted);
        match deleted {
            Ok(()) => true,
            Err(error) if error.kind == Ec2ErrorKind::NotFound => true,
            Err(_) => {
                self.undeleted.push(eni_id.to_owned());
                false
            }
        }
    }

    fn retry_deletes(&mut self, ec2: &Simulator) {
        for eni_id in std::mem::take(&mut self.undeleted) {
            self.detach_and_delete(ec2, &eni_id);
        }
    }
}
