//! The pool: ENIs and addresses of one node, assignment to pods, and the bookkeeping the policy reads.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::ipv6::Ipv6Block;
use crate::model::{Cidr, Eni, Millis, PodInfo, PodKey};
use crate::policy::{NodeLimits, PoolConfig};

/// How much an address is preferred within an ENI: fuller CIDR, reused before fresh, lower address.
type Preference = (usize, bool, std::cmp::Reverse<u32>);

/// An address given to a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// ENI holding it.
    pub eni_id: String,
    /// That ENI's device number.
    pub device_number: u32,
    /// That ENI's route table.
    pub route_table_id: u32,
    /// When it was assigned.
    pub assigned_at: Millis,
}

/// Why the pool could not give an address, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoAddressReason {
    /// The node holds as many addresses as its max pods allows and all are taken.
    NodeMaxPods,
    /// The subnet has no free address (EC2 said InsufficientFreeAddressesInSubnet).
    SubnetExhausted,
    /// The subnet has no free aligned /28 (EC2 said InsufficientCidrBlocks).
    NoFreePrefix,
    /// EC2 is throttling the account.
    Ec2Throttled,
    /// A new ENI is being attached.
    EniAttachInProgress,
    /// The pool is empty and the next cycle will grow it.
    PoolEmptyGrowing,
    /// Every free address is cooling down after a pod deletion.
    AllCoolingDown,
    /// No ENI slot and no address slot left on the node.
    NodeAddressLimit,
    /// EC2 answered with another error.
    Ec2Error,
    /// Custom networking: the node's ENIConfig is missing or unusable, so no pod ENI is created.
    EniConfigUnavailable,
}

/// A refusal: the reason and one sentence for the pod's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct NoAddress {
    /// Stable code.
    pub reason: NoAddressReason,
    /// Explanation naming the limit or resource.
    pub message: String,
}

/// The last failure to grow the pool, as EC2 reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum GrowFailure {
    /// InsufficientFreeAddressesInSubnet, with the subnet.
    SubnetExhausted(String),
    /// InsufficientCidrBlocks, with the subnet.
    NoFreePrefix(String),
    /// RequestLimitExceeded.
    Throttled,
    /// Any other EC2 error, with its text.
    Other(String),
    /// Custom networking: no usable ENIConfig, with the reason (naming the ENIConfig and what chose it).
    NoEniConfig(String),
}

impl GrowFailure {
    /// Whether the original backs off growth for two minutes after it.
    pub fn backs_off(&self) -> bool {
        matches!(self, Self::SubnetExhausted(_) | Self::NoFreePrefix(_))
    }
}

/// Errors applying EC2 results to the pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// No such ENI in the pool.
    #[error("ENI {0} is not in the pool")]
    UnknownEni(String),
    /// The ENI is already in the pool.
    #[error("ENI {0} is already in the pool")]
    DuplicateEni(String),
    /// An address is already on an ENI of the pool.
    #[error("{0} is already in the pool")]
    DuplicateCidr(Ipv4Net),
    /// A CIDR or ENI still has pods.
    #[error("{0} still holds pod addresses")]
    InUse(String),
    /// An address is not in the pool.
    #[error("{0} is not in the pool")]
    UnknownAddress(Ipv4Addr),
    /// A checkpointed key is listed again with another address: it keeps the one restored first.
    #[error("{container} already holds {held}, so not {ip} as well")]
    KeyHoldsAnother {
        /// The container.
        container: String,
        /// The address it holds.
        held: Ipv4Addr,
        /// The other address listed for it.
        ip: Ipv4Addr,
    },
    /// A checkpointed key holds an address another key holds.
    #[error("{ip} is held by two keys ({first} and {second})")]
    DoubleAssignment {
        /// The address.
        ip: Ipv4Addr,
        /// One container.
        first: String,
        /// The other.
        second: String,
    },
    /// An IPv6 allocation could not be restored.
    #[error(transparent)]
    Ipv6(#[from] crate::ipv6::Ipv6Error),
}

/// Address counts, over the addresses of the current mode on ENIs that carry pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Addresses.
    pub total: usize,
    /// Held by pods.
    pub assigned: usize,
    /// `total − assigned` (cooling addresses count, as in the original).
    pub available: usize,
    /// Free but cooling down.
    pub cooling: usize,
    /// Delegated prefixes.
    pub total_prefixes: usize,
    /// Prefixes with no pod.
    pub free_prefixes: usize,
    /// ENIs in the pool.
    pub enis: usize,
}

/// Per-ENI counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniStats {
    /// ENI id.
    pub eni_id: String,
    /// Device number.
    pub device_number: u32,
    /// Addresses.
    pub total: usize,
    /// Held by pods.
    pub assigned: usize,
    /// Cooling down.
    pub cooling: usize,
    /// Prefixes.
    pub prefixes: usize,
}

/// One node's pool.
#[derive(Debug, Clone)]
pub struct Pool {
    pub(crate) config: PoolConfig,
    pub(crate) limits: NodeLimits,
    pub(crate) enis: BTreeMap<String, Eni>,
    index: HashMap<PodKey, (String, Ipv4Net, Ipv4Addr)>,
    pub(crate) last_release_at: Option<Millis>,
    pub(crate) last_grow_failure: Option<(GrowFailure, Millis)>,
    pub(crate) eni_attach_in_progress: bool,
    /// IPv6 mode: the node's /80 and its pods (`None` in IPv4 mode).
    ipv6: Option<Ipv6Block>,
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig, limits: NodeLimits) -> Self {
        Self {
            config,
            limits,
            enis: BTreeMap::new(),
            index: HashMap::new(),
            last_release_at: None,
            last_grow_failure: None,
            eni_attach_in_progress: false,
            ipv6: None,
        }
    }

    /// IPv6 mode: sets the node's /80 (replacing any block held before, with its pods).
    pub fn set_ipv6_block(&mut self, block: Ipv6Block) {
        self.ipv6 = Some(block);
    }

    /// IPv6 mode's block, `None` in IPv4 mode.
    pub fn ipv6_block(&self) -> Option<&Ipv6Block> {
        self.ipv6.as_ref()
    }

    /// IPv6 mode's block, to assign and release.
    pub fn ipv6_block_mut(&mut self) -> Option<&mut Ipv6Block> {
        self.ipv6.as_mut()
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The limits.
    pub fn limits(&self) -> &NodeLimits {
        &self.limits
    }

    /// Replaces the limits (max pods learned later, MAX_ENI changed, a trunk ENI appeared).
    pub fn set_limits(&mut self, limits: NodeLimits) {
        self.limits = limits;
    }

    /// ENIs, by id.
    pub fn enis(&self) -> impl Iterator<Item = &Eni> {
        self.enis.values()
    }

    /// One ENI.
    pub fn eni(&self, id: &str) -> Option<&Eni> {
        self.enis.get(id)
    }

    /// Whether the CIDR belongs to the mode in use (prefixes in prefix mode, /32s otherwise). CIDRs of the
    /// other mode keep their pods but get no new ones and are released once empty.
    pub(crate) fn in_current_mode(&self, cidr: &Cidr) -> bool {
        cidr.is_prefix == self.config.prefix_delegation
    }

    /// Counts over current-mode addresses on ENIs that carry pods.
    pub fn stats(&self, now: Millis) -> Stats {
        let cooldown = self.config.ip_cooldown_ms;
        let mut stats = Stats {
            enis: self.enis.len(),
            ..Stats::default()
        };
        for eni in self.enis.values().filter(|e| e.carries_pods()) {
            for cidr in eni.cidrs.values().filter(|c| self.in_current_mode(c)) {
                let assigned = cidr.assigned();
                stats.total += cidr.slots.len();
                stats.assigned += assigned;
                stats.cooling += cidr.cooling(now, cooldown);
                if cidr.is_prefix {
                    stats.total_prefixes += 1;
                    if assigned == 0 {
                        stats.free_prefixes += 1;
                    }
                }
            }
        }
        stats.available = stats.total - stats.assigned;
        stats
    }

    /// Counts per ENI (every CIDR, whatever its mode).
    pub fn eni_stats(&self, now: Millis) -> Vec<EniStats> {
        let cooldown = self.config.ip_cooldown_ms;
        let mut enis: Vec<&Eni> = self.enis.values().collect();
        enis.sort_by_key(|e| (e.network_card, e.device_number));
        enis.into_iter()
            .map(|eni| EniStats {
                eni_id: eni.id.clone(),
                device_number: eni.device_number,
                total: eni.cidrs.values().map(|c| c.slots.len()).sum(),
                assigned: eni.assigned(),
                cooling: eni.cidrs.values().map(|c| c.cooling(now, cooldown)).sum(),
                prefixes: eni.slots_used(true),
            })
            .collect()
    }

    /// Every allocation: key, pod, assignment.
    pub fn allocations(&self) -> Vec<(PodKey, PodInfo, Assignment)> {
        let mut all: Vec<_> = self
            .index
            .iter()
            .filter_map(|(key, (eni_id, net, ip))| {
                let eni = self.enis.get(eni_id)?;
                let slot = eni.cidrs.get(net)?.slots.iter().find(|s| s.ip == *ip)?;
                let (_, pod, at) = slot.holder.as_ref()?;
                Some((key.clone(), pod.clone(), assignment(eni, *ip, *at)))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The address a key holds.
    pub fn lookup(&self, key: &PodKey) -> Option<Assignment> {
        let (eni_id, net, ip) = self.index.get(key)?;
        let eni = self.enis.get(eni_id)?;
        let at = eni
            .cidrs
            .get(net)?
            .slots
            .iter()
            .find(|s| s.ip == *ip)?
            .holder
            .as_ref()?
            .2;
        Some(assignment(eni, *ip, at))
    }

    /// Gives `key` an address: the one it holds already, or a usable one on the fullest ENI and CIDR, so
    /// that the emptiest ones drain and can be released.
    pub fn assign(&mut self, key: &PodKey, pod: &PodInfo, now: Millis) -> Result<Assignment, NoAddress> {
        if let Some(existing) = self.lookup(key) {
            return Ok(existing);
        }
        let cooldown = self.config.ip_cooldown_ms;
        let mut order: Vec<&Eni> = self
            .enis
            .values()
            .filter(|e| e.carries_pods() && !e.is_full())
            .collect();
        order.sort_by_key(|e| (std::cmp::Reverse(e.assigned()), e.network_card, e.device_number));
        let mut best: Option<(Preference, String, Ipv4Net, Ipv4Addr)> = None;
        for eni in order {
            for cidr in eni.cidrs.values().filter(|c| self.in_current_mode(c)) {
                // Within a CIDR, an address used before and past its cooldown first (the original's choice),
                // then the lowest never-used one.
                let pick = cidr
                    .slots
                    .iter()
                    .filter(|s| s.is_usable(now, cooldown))
                    .min_by_key(|s| (s.unassigned_at.is_none(), s.ip));
                let Some(slot) = pick else { continue };
                let rank = (
                    cidr.assigned(),
                    slot.unassigned_at.is_some(),
                    std::cmp::Reverse(u32::from(slot.ip)),
                );
                if best.as_ref().is_none_or(|(r, ..)| rank > *r) {
                    best = Some((rank, eni.id.clone(), cidr.net, slot.ip));
                }
            }
            // The fullest ENI with a usable address wins; emptier ones are left to drain.
            if best.is_some() {
                break;
            }
        }
        let Some((_, eni_id, net, ip)) = best else {
            return Err(self.why_no_address(now));
        };
        let eni = self.enis.get_mut(&eni_id).expect("candidate ENI exists");
        let slot = eni
            .cidrs
            .get_mut(&net)
            .and_then(|c| c.slots.iter_mut().find(|s| s.ip == ip))
            .expect("candidate slot exists");
        slot.holder = Some((key.clone(), pod.clone(), now));
        eni.assigned_count += 1;
        self.index.insert(key.clone(), (eni_id.clone(), net, ip));
        Ok(assignment(&self.enis[&eni_id], ip, now))
    }

    /// Releases the key's address into cooldown. `None` if the key held none (DEL of an unknown pod is fine).
    pub fn unassign(&mut self, key: &PodKey, now: Millis) -> Option<Assignment> {
        let (eni_id, net, ip) = self.index.remove(key)?;
        let eni = self.enis.get_mut(&eni_id)?;
        let slot = eni.cidrs.get_mut(&net)?.slots.iter_mut().find(|s| s.ip == ip)?;
        let (_, _, at) = slot.holder.take()?;
        slot.unassigned_at = Some(now);
        eni.assigned_count -= 1;
        Some(assignment(eni, ip, at))
    }

    /// Why there is no usable address right now, most specific cause first.
    pub fn why_no_address(&self, now: Millis) -> NoAddress {
        let stats = self.stats(now);
        let no = |reason, message: String| NoAddress { reason, message };
        if stats.total >= self.limits.max_pods as usize && stats.cooling == 0 {
            return no(
                NoAddressReason::NodeMaxPods,
                format!(
                    "node max pods reached ({}): all {} addresses are in use",
                    self.limits.max_pods, stats.total
                ),
            );
        }
        if let Some((failure, at)) = &self.last_grow_failure {
            let recent = now < at.saturating_add(self.config.grow_backoff_ms);
            match failure {
                GrowFailure::SubnetExhausted(subnet) if recent => {
                    return no(
                        NoAddressReason::SubnetExhausted,
                        format!("subnet {subnet} has no free addresses"),
                    );
                }
                GrowFailure::NoFreePrefix(subnet) if recent => {
                    return no(
                        NoAddressReason::NoFreePrefix,
                        format!("subnet {subnet} has no free /28 block for a prefix (fragmented)"),
                    );
                }
                GrowFailure::Throttled if recent => {
                    return no(
                        NoAddressReason::Ec2Throttled,
                        "EC2 is throttling this account; ipamd is backing off".into(),
                    );
                }
                GrowFailure::NoEniConfig(text) if recent => {
                    return no(
                        NoAddressReason::EniConfigUnavailable,
                        format!("custom networking: no pod ENI can be created: {text}"),
                    );
                }
                GrowFailure::Other(text) if recent => {
                    return no(
                        NoAddressReason::Ec2Error,
                        format!("EC2 refused to add addresses: {text}"),
                    );
                }
                _ => {}
            }
        }
        if self.eni_attach_in_progress {
            return no(
                NoAddressReason::EniAttachInProgress,
                "a new ENI is being attached; addresses arrive when it is".into(),
            );
        }
        if stats.cooling > 0 && stats.available == stats.cooling {
            return no(
                NoAddressReason::AllCoolingDown,
                format!(
                    "all {} free addresses are cooling down after pod deletions (IP_COOLDOWN_PERIOD {} s)",
                    stats.cooling,
                    self.config.ip_cooldown_ms / 1000
                ),
            );
        }
        if !self.can_grow() {
            let enis = self.enis.len();
            return if self.limits.max_eni_configured {
                no(
                    NoAddressReason::NodeAddressLimit,
                    format!(
                        "node address limit reached: MAX_ENI={} and all {} addresses of {enis} ENIs are in use",
                        self.limits.max_enis, stats.total
                    ),
                )
            } else {
                no(
                    NoAddressReason::NodeMaxPods,
                    format!(
                        "node max pods reached ({}): all {} addresses of {enis} ENIs are in use",
                        self.limits.max_pods, stats.total
                    ),
                )
            };
        }
        no(
            NoAddressReason::PoolEmptyGrowing,
            "no free address yet; ipamd is adding addresses".into(),
        )
    }

    /// Whether any ENI has a free slot or another ENI can be attached.
    pub fn can_grow(&self) -> bool {
        self.eni_with_room().is_some() || self.has_room_for_eni()
    }

    /// The first ENI (by device) that carries pods and has a free EC2 address slot.
    pub(crate) fn eni_with_room(&self) -> Option<&Eni> {
        let mut enis: Vec<&Eni> = self.enis.values().filter(|e| e.carries_pods()).collect();
        enis.sort_by_key(|e| (e.network_card, e.device_number));
        enis.into_iter()
            .find(|e| (e.all_slots_used() as u32) < self.limits.slots_per_eni)
    }

    /// Whether another ENI may be attached: `ENIs + unmanaged + trunk slot < max ENIs`.
    pub fn has_room_for_eni(&self) -> bool {
        let trunk_present = self.enis.values().any(|e| e.flags.trunk);
        let reserved = u32::from(self.limits.reserve_trunk_slot && !trunk_present);
        (self.enis.len() as u32) + self.limits.unmanaged_enis + reserved < self.limits.max_enis
    }

    /// Adds an ENI (just attached, or found at start-up).
    pub fn add_eni(&mut self, mut eni: Eni) -> Result<(), PoolError> {
        if self.enis.contains_key(&eni.id) {
            return Err(PoolError::DuplicateEni(eni.id));
        }
        for net in eni.cidrs.keys() {
            self.check_new_cidr(*net)?;
        }
        // An ENI may arrive with holders (a copy of another pool's): index them like restored ones.
        let held: Vec<(PodKey, Ipv4Net, Ipv4Addr)> = eni
            .cidrs
            .values()
            .flat_map(|c| {
                c.slots
                    .iter()
                    .filter_map(move |s| s.holder.as_ref().map(|(k, _, _)| (k.clone(), c.net, s.ip)))
            })
            .collect();
        if let Some((key, _, ip)) = held.iter().find(|(key, ..)| self.index.contains_key(key)) {
            return Err(PoolError::DoubleAssignment {
                ip: *ip,
                first: self.index[key].2.to_string(),
                second: key.container_id.clone(),
            });
        }
        for (key, net, ip) in held {
            self.index.insert(key, (eni.id.clone(), net, ip));
        }
        eni.recount();
        self.enis.insert(eni.id.clone(), eni);
        Ok(())
    }

    fn check_new_cidr(&self, net: Ipv4Net) -> Result<(), PoolError> {
        let overlaps = self
            .enis
            .values()
            .flat_map(|e| e.cidrs.keys())
            .any(|n| n.contains(&net) || net.contains(n));
        if overlaps {
            Err(PoolError::DuplicateCidr(net))
        } else {
            Ok(())
        }
    }

    /// Adds secondary addresses (/32) or prefixes (/28) EC2 assigned to an ENI.
    pub fn add_cidrs(&mut self, eni_id: &str, nets: &[Ipv4Net]) -> Result<(), PoolError> {
        if !self.enis.contains_key(eni_id) {
            return Err(PoolError::UnknownEni(eni_id.to_owned()));
        }
        for net in nets {
            self.check_new_cidr(net.trunc())?;
            let eni = self.enis.get_mut(eni_id).expect("checked above");
            eni.cidrs.insert(net.trunc(), Cidr::new(*net));
            eni.recount();
        }
        Ok(())
    }

    /// Removes CIDRs about to be released to EC2. Refuses (and removes nothing) if any holds a pod.
    pub fn remove_cidrs(&mut self, eni_id: &str, nets: &[Ipv4Net]) -> Result<(), PoolError> {
        let eni = self
            .enis
            .get_mut(eni_id)
            .ok_or_else(|| PoolError::UnknownEni(eni_id.to_owned()))?;
        for net in nets {
            if eni.cidrs.get(net).is_some_and(|c| c.assigned() > 0) {
                return Err(PoolError::InUse(net.to_string()));
            }
        }
        for net in nets {
            eni.cidrs.remove(net);
        }
        eni.recount();
        Ok(())
    }

    /// Removes an ENI about to be freed. Refuses if it holds a pod.
    pub fn remove_eni(&mut self, eni_id: &str) -> Result<Eni, PoolError> {
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| PoolError::UnknownEni(eni_id.to_owned()))?;
        if eni.assigned() > 0 {
            return Err(PoolError::InUse(eni_id.to_owned()));
        }
        Ok(self.enis.remove(eni_id).expect("checked above"))
    }

    /// Removes an ENI that vanished from the instance, with whatever pods it held; returns their keys.
    pub fn force_remove_eni(&mut self, eni_id: &str) -> Vec<PodKey> {
        let Some(eni) = self.enis.remove(eni_id) else {
            return Vec::new();
        };
        let keys: Vec<PodKey> = eni
            .cidrs
            .values()
            .flat_map(|c| c.slots.iter())
            .filter_map(|s| s.holder.as_ref().map(|(k, _, _)| k.clone()))
            .collect();
        for key in &keys {
            self.index.remove(key);
        }
        keys
    }

    /// Removes CIDRs EC2 no longer lists on an ENI, with their pods; returns those pods' keys.
    pub fn force_remove_cidrs(&mut self, eni_id: &str, nets: &[Ipv4Net]) -> Vec<PodKey> {
        let Some(eni) = self.enis.get_mut(eni_id) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for net in nets {
            if let Some(cidr) = eni.cidrs.remove(net) {
                keys.extend(cidr.slots.into_iter().filter_map(|s| s.holder.map(|(k, _, _)| k)));
            }
        }
        eni.recount();
        for key in &keys {
            self.index.remove(key);
        }
        keys
    }

    /// Marks `ip` as held by `key` again (restart from a checkpoint).
    pub fn restore(
        &mut self,
        key: &PodKey,
        pod: &PodInfo,
        ip: Ipv4Addr,
        assigned_at: Millis,
    ) -> Result<Assignment, PoolError> {
        if let Some(existing) = self.lookup(key) {
            if existing.ip == ip {
                return Ok(existing);
            }
            // One key, one address: a second one would be held with no key to release it.
            return Err(PoolError::KeyHoldsAnother {
                container: key.container_id.clone(),
                held: existing.ip,
                ip,
            });
        }
        let found = self.enis.iter().find_map(|(id, eni)| {
            eni.cidrs
                .values()
                .find(|c| c.net.contains(&ip))
                .map(|c| (id.clone(), c.net))
        });
        let (eni_id, net) = found.ok_or(PoolError::UnknownAddress(ip))?;
        let slot = self
            .enis
            .get_mut(&eni_id)
            .and_then(|e| e.cidrs.get_mut(&net))
            .and_then(|c| c.slots.iter_mut().find(|s| s.ip == ip))
            .ok_or(PoolError::UnknownAddress(ip))?;
        if let Some((other, _, _)) = &slot.holder
            && other != key
        {
            return Err(PoolError::DoubleAssignment {
                ip,
                first: other.container_id.clone(),
                second: key.container_id.clone(),
            });
        }
        let newly_held = slot.holder.is_none();
        slot.holder = Some((key.clone(), pod.clone(), assigned_at));
        if newly_held && let Some(eni) = self.enis.get_mut(&eni_id) {
            eni.assigned_count += 1;
        }
        self.index.insert(key.clone(), (eni_id.clone(), net, ip));
        Ok(assignment(&self.enis[&eni_id], ip, assigned_at))
    }

    /// Restores a cooldown that began before a restart.
    pub fn restore_cooldown(&mut self, ip: Ipv4Addr, unassigned_at: Millis) {
        for eni in self.enis.values_mut() {
            for cidr in eni.cidrs.values_mut().filter(|c| c.net.contains(&ip)) {
                for slot in cidr.slots.iter_mut().filter(|s| s.ip == ip && s.holder.is_none()) {
                    slot.unassigned_at = Some(unassigned_at);
                }
            }
        }
    }

    /// Addresses released less than the cooldown ago, with when (for the checkpoint).
    pub fn cooling_addresses(&self, now: Millis) -> Vec<(Ipv4Addr, Millis)> {
        let cooldown = self.config.ip_cooldown_ms;
        self.enis
            .values()
            .flat_map(|e| e.cidrs.values())
            .flat_map(|c| c.slots.iter())
            .filter(|s| s.is_cooling(now, cooldown))
            .filter_map(|s| s.unassigned_at.map(|at| (s.ip, at)))
            .collect()
    }

    /// Records that an ENI attach started or ended (ADDs meanwhile are told so).
    pub fn set_eni_attach_in_progress(&mut self, in_progress: bool) {
        self.eni_attach_in_progress = in_progress;
    }

    /// Records a failure to grow the pool.
    pub fn record_grow_failure(&mut self, failure: GrowFailure, now: Millis) {
        self.last_grow_failure = Some((failure, now));
    }

    /// Records a successful grow: earlier failures no longer explain anything.
    pub fn record_grow_success(&mut self) {
        self.last_grow_failure = None;
    }

    /// Records a release to EC2 (shrinks are spaced by the release interval).
    pub fn record_release(&mut self, now: Millis) {
        self.last_release_at = Some(now);
    }

    /// Whether `ip` is held by any key (for invariant checks).
    pub fn holder_of(&self, ip: Ipv4Addr) -> Option<PodKey> {
        self.enis
            .values()
            .flat_map(|e| e.cidrs.values())
            .flat_map(|c| c.slots.iter())
            .find(|s| s.ip == ip)
            .and_then(|s| s.holder.as_ref().map(|(k, _, _)| k.clone()))
    }
}

fn assignment(eni: &Eni, ip: Ipv4Addr, at: Millis) -> Assignment {
    Assignment {
        ip,
        eni_id: eni.id.clone(),
        device_number: eni.device_number,
        route_table_id: eni.route_table_id(),
        assigned_at: at,
    }
}
