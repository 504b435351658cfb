//! The warm-pool policy: from the pool's state to one decision per cycle, with the Amazon VPC CNI's semantics
//! so users keep their settings: the original's `pkg/ipamd/ipamd.go` and its documents
//! <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/docs/eni-and-ip-target.md> and
//! <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/docs/prefix-and-ip-target.md>.
//!
//! Where vpcni deliberately differs, it is to fix a known defect:
//! - An ENI is only freed if the pool is not "too low" without it, so WARM_ENI_TARGET=0 no longer makes
//!   ipamd attach and free an ENI in a loop (aws/amazon-vpc-cni-k8s#1775).
//! - Switching prefix delegation on or off releases the old mode's empty CIDRs in both directions, and
//!   again whenever one empties; the original's DEL-time cleanup only works when switching off.

use ipnet::Ipv4Net;
use serde::Serialize;
use vpcni_limits::InstanceLimits;

use crate::model::{Eni, Millis};
use crate::pool::{Pool, Stats};

/// Addresses in a /28 prefix.
const PREFIX_SIZE: usize = 16;

/// The warm-pool knobs, with the original's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolConfig {
    /// WARM_ENI_TARGET.
    pub warm_eni_target: u32,
    /// WARM_IP_TARGET (0 = unset).
    pub warm_ip_target: u32,
    /// MINIMUM_IP_TARGET (0 = unset).
    pub minimum_ip_target: u32,
    /// WARM_PREFIX_TARGET.
    pub warm_prefix_target: u32,
    /// ENABLE_PREFIX_DELEGATION.
    pub prefix_delegation: bool,
    /// IP_COOLDOWN_PERIOD.
    pub ip_cooldown_ms: Millis,
    /// An ENI younger than this is never freed.
    pub min_eni_lifetime_ms: Millis,
    /// Releases to EC2 are at least this far apart.
    pub release_interval_ms: Millis,
    /// No growth for this long after the subnet ran out of addresses or /28 blocks.
    pub grow_backoff_ms: Millis,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            warm_eni_target: 1,
            warm_ip_target: 0,
            minimum_ip_target: 0,
            warm_prefix_target: 1,
            prefix_delegation: false,
            ip_cooldown_ms: 30_000,
            min_eni_lifetime_ms: 60_000,
            release_interval_ms: 30_000,
            grow_backoff_ms: 120_000,
        }
    }
}

impl PoolConfig {
    /// Whether WARM_IP_TARGET or MINIMUM_IP_TARGET drive the pool (they win over the ENI/prefix targets).
    pub fn uses_ip_targets(&self) -> bool {
        self.warm_ip_target > 0 || self.minimum_ip_target > 0
    }
}

/// What the node may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLimits {
    /// ENIs on the default card, after MAX_ENI.
    pub max_enis: u32,
    /// Whether MAX_ENI lowered `max_enis`.
    pub max_eni_configured: bool,
    /// ENIs ipamd must leave alone (`no_manage`); they use ENI slots.
    pub unmanaged_enis: u32,
    /// Keep a slot for the trunk ENI until one is attached (security groups for pods).
    pub reserve_trunk_slot: bool,
    /// Address slots per ENI for secondary addresses or prefixes (IPv4 per ENI − 1).
    pub slots_per_eni: u32,
    /// Growth stops once the pool holds this many addresses.
    pub max_pods: u32,
}

impl NodeLimits {
    /// Limits of an instance type: MAX_ENI applied, max pods as the published table computes it.
    pub fn for_instance(
        limits: &InstanceLimits,
        max_eni: Option<u32>,
        security_groups_for_pods: bool,
    ) -> Self {
        Self::for_node(limits, max_eni, security_groups_for_pods, false)
    }

    /// The same, with custom networking (AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG) taken into account: the
    /// primary ENI carries no pod addresses, so max pods is the table's for ENIs − 1, as
    /// `vpcnictl max-pods --custom-networking` and the original's calculator compute it.
    pub fn for_node(
        limits: &InstanceLimits,
        max_eni: Option<u32>,
        security_groups_for_pods: bool,
        custom_networking: bool,
    ) -> Self {
        let max_enis = max_eni.map_or(limits.max_enis, |m| m.min(limits.max_enis));
        let options = vpcni_limits::max_pods::MaxPodsOptions {
            prefix_delegation: false,
            custom_networking,
            show_max_allowed: true,
            ..Default::default()
        };
        Self {
            max_enis,
            max_eni_configured: max_enis < limits.max_enis,
            unmanaged_enis: 0,
            reserve_trunk_slot: security_groups_for_pods && limits.trunking_compatible() == Some(true),
            slots_per_eni: limits.ipv4_per_eni.saturating_sub(1),
            max_pods: vpcni_limits::max_pods::max_pods(limits, &options).max_pods,
        }
    }
}

/// What to do this cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing; why, for introspection.
    Nothing {
        /// Explanation.
        why: String,
    },
    /// AssignPrivateIpAddresses(SecondaryPrivateIpAddressCount) on an ENI.
    AddIps {
        /// ENI.
        eni_id: String,
        /// How many.
        count: u32,
    },
    /// AssignPrivateIpAddresses(Ipv4PrefixCount) on an ENI.
    AddPrefixes {
        /// ENI.
        eni_id: String,
        /// How many.
        count: u32,
    },
    /// Create and attach an ENI with addresses or prefixes requested inline.
    CreateEni {
        /// Secondary addresses.
        ips: u32,
        /// Prefixes.
        prefixes: u32,
    },
    /// Give addresses or prefixes back: remove them from the pool, then UnassignPrivateIpAddresses per ENI.
    Release {
        /// `(ENI, CIDR)` pairs.
        cidrs: Vec<(String, Ipv4Net)>,
    },
    /// Detach and delete an ENI: remove it from the pool first.
    FreeEni {
        /// ENI.
        eni_id: String,
    },
}

impl Pool {
    /// Addresses one ENI can hold in the current mode.
    fn ips_per_eni(&self) -> usize {
        let slots = self.limits.slots_per_eni as usize;
        if self.config.prefix_delegation {
            slots * PREFIX_SIZE
        } else {
            slots
        }
    }

    /// How many addresses short of the targets the pool is (0 = not too low).
    fn shortfall(&self, stats: &Stats) -> usize {
        let config = &self.config;
        if config.uses_ip_targets() {
            let short = (config.warm_ip_target as usize).saturating_sub(stats.available);
            short.max((config.minimum_ip_target as usize).saturating_sub(stats.total))
        } else if config.prefix_delegation {
            let wanted = PREFIX_SIZE * config.warm_prefix_target as usize;
            let too_low =
                stats.available < wanted || (config.warm_prefix_target == 0 && stats.available == 0);
            if too_low {
                PREFIX_SIZE
                    * (config.warm_prefix_target as usize)
                        .saturating_sub(stats.free_prefixes)
                        .max(1)
            } else {
                0
            }
        } else {
            let wanted = self.ips_per_eni() * config.warm_eni_target as usize;
            let too_low = stats.available < wanted || (config.warm_eni_target == 0 && stats.available == 0);
            if too_low { self.ips_per_eni() } else { 0 }
        }
    }

    fn is_too_low(&self, stats: &Stats) -> bool {
        self.shortfall(stats) > 0
    }

    /// Whether the pool is below its warm targets at `now` (it will grow if it can).
    pub fn is_below_target(&self, now: Millis) -> bool {
        self.is_too_low(&self.stats(now))
    }

    /// Decides this cycle's action at `now`.
    pub fn decide(&self, now: Millis) -> Decision {
        if let Some(block) = self.ipv6_block() {
            return Decision::Nothing {
                why: format!(
                    "IPv6 mode: pods take addresses from {}, which never runs short; there is no pool to manage",
                    block.prefix()
                ),
            };
        }
        if self.eni_attach_in_progress {
            return Decision::Nothing {
                why: "an ENI attach is in progress".into(),
            };
        }
        if let Some(release) = self.old_mode_release() {
            return release;
        }
        let stats = self.stats(now);
        if self.is_too_low(&stats) {
            return self.grow(&stats, now);
        }
        let release_due = self
            .last_release_at
            .is_none_or(|at| now >= at.saturating_add(self.config.release_interval_ms));
        if release_due && let Some(release) = self.shrink(&stats) {
            return release;
        }
        if let Some(eni_id) = self.deletable_eni(&stats, now) {
            return Decision::FreeEni { eni_id };
        }
        Decision::Nothing {
            why: format!(
                "pool at target: {} addresses, {} in use",
                stats.total, stats.assigned
            ),
        }
    }

    /// Empty CIDRs of the mode not in use, to give back.
    fn old_mode_release(&self) -> Option<Decision> {
        let cidrs: Vec<(String, Ipv4Net)> = self
            .enis
            .values()
            .flat_map(|eni| {
                eni.cidrs
                    .values()
                    .filter(|c| !self.in_current_mode(c) && c.assigned() == 0)
                    .map(|c| (eni.id.clone(), c.net))
            })
            .collect();
        (!cidrs.is_empty()).then_some(Decision::Release { cidrs })
    }

    fn grow(&self, stats: &Stats, now: Millis) -> Decision {
        if stats.total >= self.limits.max_pods as usize {
            return Decision::Nothing {
                why: format!(
                    "pool holds {} addresses, max pods is {}: no growth",
                    stats.total, self.limits.max_pods
                ),
            };
        }
        if let Some((failure, at)) = &self.last_grow_failure
            && failure.backs_off()
            && now < at.saturating_add(self.config.grow_backoff_ms)
        {
            return Decision::Nothing {
                why: format!("backing off after {failure:?}"),
            };
        }
        let short = self.shortfall(stats);
        let slots = self.limits.slots_per_eni;
        let prefixes = self.config.prefix_delegation;
        let wanted_slots = if prefixes {
            short.div_ceil(PREFIX_SIZE) as u32
        } else {
            short as u32
        }
        .max(1);
        if let Some(eni) = self.eni_with_room() {
            let room = slots - eni.all_slots_used() as u32;
            let count = if self.config.uses_ip_targets() || prefixes {
                room.min(wanted_slots)
            } else {
                room
            };
            let eni_id = eni.id.clone();
            return if prefixes {
                Decision::AddPrefixes { eni_id, count }
            } else {
                Decision::AddIps { eni_id, count }
            };
        }
        if self.has_room_for_eni() {
            let count = if self.config.uses_ip_targets() || prefixes {
                wanted_slots.min(slots)
            } else {
                slots
            };
            return if prefixes {
                Decision::CreateEni {
                    ips: 0,
                    prefixes: count,
                }
            } else {
                Decision::CreateEni {
                    ips: count,
                    prefixes: 0,
                }
            };
        }
        Decision::Nothing {
            why: "pool is low but the node has no ENI or address slot left".into(),
        }
    }

    /// Addresses (or prefixes) above the targets, to release.
    fn shrink(&self, stats: &Stats) -> Option<Decision> {
        let config = &self.config;
        if config.uses_ip_targets() {
            if config.prefix_delegation {
                let needed = (stats.assigned + config.warm_ip_target as usize).div_ceil(PREFIX_SIZE);
                let over = stats
                    .free_prefixes
                    .min(stats.total_prefixes.saturating_sub(needed));
                let over = over.min(
                    stats
                        .total_prefixes
                        .saturating_sub((config.minimum_ip_target as usize).div_ceil(PREFIX_SIZE)),
                );
                return self.release_empty(over, true);
            }
            let over = stats.available.saturating_sub(config.warm_ip_target as usize);
            let over = over.min(stats.total.saturating_sub(config.minimum_ip_target as usize));
            return self.release_empty(over, false);
        }
        if config.prefix_delegation && stats.free_prefixes > config.warm_prefix_target as usize {
            return self.release_empty(stats.free_prefixes - config.warm_prefix_target as usize, true);
        }
        None
    }

    /// Up to `count` empty current-mode CIDRs, from the emptiest ENIs first so whole ENIs drain.
    fn release_empty(&self, count: usize, prefixes: bool) -> Option<Decision> {
        if count == 0 {
            return None;
        }
        let mut enis: Vec<&Eni> = self.enis.values().filter(|e| e.carries_pods()).collect();
        enis.sort_by_key(|e| (e.assigned(), std::cmp::Reverse(e.device_number)));
        let cidrs: Vec<(String, Ipv4Net)> = enis
            .iter()
            .flat_map(|eni| {
                eni.cidrs
                    .values()
                    .rev()
                    .filter(|c| c.is_prefix == prefixes && c.assigned() == 0)
                    .map(|c| (eni.id.clone(), c.net))
            })
            .take(count)
            .collect();
        (!cidrs.is_empty()).then_some(Decision::Release { cidrs })
    }

    /// One ENI that may be freed now, if any.
    fn deletable_eni(&self, stats: &Stats, now: Millis) -> Option<String> {
        let cooldown = self.config.ip_cooldown_ms;
        let mut candidates: Vec<&Eni> = self
            .enis
            .values()
            .filter(|e| e.is_freeable_kind())
            .filter(|e| now >= e.created_at.saturating_add(self.config.min_eni_lifetime_ms))
            .filter(|e| e.assigned() == 0)
            .filter(|e| e.cidrs.values().all(|c| c.cooling(now, cooldown) == 0))
            .collect();
        // The most recently attached first: the oldest ENIs stay, as their addresses are the most settled.
        candidates.sort_by_key(|e| std::cmp::Reverse((e.device_number, e.id.clone())));
        let config = &self.config;
        for eni in candidates {
            let (eni_total, eni_free_prefixes) = self.current_mode_counts(eni);
            let without = Stats {
                total: stats.total - eni_total,
                available: stats.available - eni_total,
                free_prefixes: stats.free_prefixes - eni_free_prefixes,
                total_prefixes: stats.total_prefixes - eni_free_prefixes,
                enis: stats.enis - 1,
                ..*stats
            };
            let wanted = if config.uses_ip_targets() {
                true
            } else if config.prefix_delegation {
                let surplus =
                    stats.available >= (config.warm_prefix_target as usize + 1) * self.ips_per_eni();
                let empty = eni_total == 0 || eni.assigned() == 0;
                (surplus || empty) && without.free_prefixes >= config.warm_prefix_target as usize
            } else {
                stats.available >= (config.warm_eni_target as usize + 1) * self.ips_per_eni()
            };
            if wanted && !self.is_too_low(&without) {
                return Some(eni.id.clone());
            }
        }
        None
    }

    fn current_mode_counts(&self, eni: &Eni) -> (usize, usize) {
        if !eni.carries_pods() {
            return (0, 0);
        }
        let cidrs = eni.cidrs.values().filter(|c| self.in_current_mode(c));
        let mut total = 0;
        let mut free_prefixes = 0;
        for cidr in cidrs {
            total += cidr.slots.len();
            if cidr.is_prefix && cidr.assigned() == 0 {
                free_prefixes += 1;
            }
        }
        (total, free_prefixes)
    }
}
