//! The node's address model: ENIs, their CIDRs (/32 secondary addresses or /28 prefixes), and per address
//! who holds it or since when it cools down.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The engine never reads a clock: callers pass the time in.
pub type Millis = u64;

/// The key of an allocation, as the CNI spec defines an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodKey {
    /// CNI network name.
    pub network_name: String,
    /// Container (sandbox) id.
    pub container_id: String,
    /// Interface name in the pod.
    pub if_name: String,
}

impl PodKey {
    /// A key from its three parts.
    pub fn new(
        network_name: impl Into<String>,
        container_id: impl Into<String>,
        if_name: impl Into<String>,
    ) -> Self {
        Self {
            network_name: network_name.into(),
            container_id: container_id.into(),
            if_name: if_name.into(),
        }
    }
}

/// The pod behind an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// One address and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The address.
    pub ip: Ipv4Addr,
    /// Who holds it, and since when.
    pub holder: Option<(PodKey, PodInfo, Millis)>,
    /// When it was last released; it cools down from then on.
    pub unassigned_at: Option<Millis>,
}

impl Slot {
    fn new(ip: Ipv4Addr) -> Self {
        Self {
            ip,
            holder: None,
            unassigned_at: None,
        }
    }

    /// Free and past its cooldown at `now`.
    pub fn is_usable(&self, now: Millis, cooldown: Millis) -> bool {
        self.holder.is_none() && !self.is_cooling(now, cooldown)
    }

    /// Free but released less than `cooldown` ago.
    pub fn is_cooling(&self, now: Millis, cooldown: Millis) -> bool {
        self.holder.is_none()
            && self
                .unassigned_at
                .is_some_and(|at| now < at.saturating_add(cooldown))
    }
}

/// A secondary address (/32) or a delegated prefix (/28) on an ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    /// The CIDR.
    pub net: Ipv4Net,
    /// Whether it is a delegated prefix.
    pub is_prefix: bool,
    /// Its addresses (one for a /32, sixteen for a /28), in address order.
    pub slots: Vec<Slot>,
}

impl Cidr {
    /// A CIDR with every address free.
    pub fn new(net: Ipv4Net) -> Self {
        let net = net.trunc();
        let is_prefix = net.prefix_len() < 32;
        Self {
            net,
            is_prefix,
            slots: net.hosts_inclusive().map(Slot::new).collect(),
        }
    }

    /// Addresses held by pods.
    pub fn assigned(&self) -> usize {
        self.slots.iter().filter(|s| s.holder.is_some()).count()
    }

    /// Addresses cooling down at `now`.
    pub fn cooling(&self, now: Millis, cooldown: Millis) -> usize {
        self.slots.iter().filter(|s| s.is_cooling(now, cooldown)).count()
    }
}

/// Every address of a CIDR, network and broadcast included: a /28 prefix hands out all sixteen.
trait HostsInclusive {
    fn hosts_inclusive(&self) -> Box<dyn Iterator<Item = Ipv4Addr>>;
}

impl HostsInclusive for Ipv4Net {
    fn hosts_inclusive(&self) -> Box<dyn Iterator<Item = Ipv4Addr>> {
        let first = u32::from(self.network());
        let last = u32::from(self.broadcast());
        Box::new((first..=last).map(Ipv4Addr::from))
    }
}

/// What kind of ENI it is, for allocation and release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniFlags {
    /// Device 0 on card 0: never freed.
    pub primary: bool,
    /// Trunk ENI (security groups for pods): never freed, no pod addresses.
    pub trunk: bool,
    /// EFA-only ENI: never freed, no pod addresses.
    pub efa: bool,
    /// No pod addresses from this ENI (the primary under custom networking, or an excluded subnet).
    pub excluded: bool,
}

/// An ENI in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    /// `eni-…`.
    pub id: String,
    /// Device index.
    pub device_number: u32,
    /// Network card.
    pub network_card: u32,
    /// Kind.
    pub flags: EniFlags,
    /// Subnet id.
    pub subnet_id: String,
    /// Subnet CIDR.
    pub subnet_cidr: Ipv4Net,
    /// The ENI's own primary address (never given to pods).
    pub primary_ip: Ipv4Addr,
    /// When it was attached (or first seen).
    pub created_at: Millis,
    /// CIDRs by network address. Change holders only through the [`Pool`](crate::Pool), which keeps the
    /// ENI's assigned count in step.
    pub cidrs: BTreeMap<Ipv4Net, Cidr>,
    /// Addresses held by pods, kept by the pool so assignment need not count them.
    pub(crate) assigned_count: usize,
    /// Addresses in all its CIDRs, kept likewise.
    pub(crate) address_count: usize,
}

impl Eni {
    /// A new ENI with no secondary addresses yet.
    pub fn new(
        id: impl Into<String>,
        device_number: u32,
        flags: EniFlags,
        subnet_cidr: Ipv4Net,
        primary_ip: Ipv4Addr,
        created_at: Millis,
    ) -> Self {
        Self {
            id: id.into(),
            device_number,
            network_card: 0,
            flags,
            subnet_id: String::new(),
            subnet_cidr,
            primary_ip,
            created_at,
            cidrs: BTreeMap::new(),
            assigned_count: 0,
            address_count: 0,
        }
    }

    /// Sets the subnet id.
    pub fn with_subnet_id(mut self, subnet_id: impl Into<String>) -> Self {
        self.subnet_id = subnet_id.into();
        self
    }

    /// Whether pod addresses may come from it.
    pub fn carries_pods(&self) -> bool {
        !(self.flags.trunk || self.flags.efa || self.flags.excluded)
    }

    /// Whether the engine may ever free it.
    pub fn is_freeable_kind(&self) -> bool {
        !(self.flags.primary || self.flags.trunk || self.flags.efa)
    }

    /// Slots (secondary addresses or prefixes) of the given kind in use on the ENI.
    pub fn slots_used(&self, prefixes: bool) -> usize {
        self.cidrs.values().filter(|c| c.is_prefix == prefixes).count()
    }

    /// Every EC2 address slot in use (secondary addresses and prefixes each take one).
    pub fn all_slots_used(&self) -> usize {
        self.cidrs.len()
    }

    /// Addresses held by pods.
    pub fn assigned(&self) -> usize {
        self.assigned_count
    }

    pub(crate) fn recount(&mut self) {
        self.assigned_count = self.cidrs.values().map(Cidr::assigned).sum();
        self.address_count = self.cidrs.values().map(|c| c.slots.len()).sum();
    }

    /// Whether every address it has is held by a pod.
    pub(crate) fn is_full(&self) -> bool {
        self.assigned_count >= self.address_count
    }

    /// Route table of the ENI (the node layout's rule: [`vpcni_layout::EniSlot::route_table`]).
    pub fn route_table_id(&self) -> u32 {
        vpcni_layout::EniSlot::new(self.network_card, self.device_number).route_table()
    }
}
