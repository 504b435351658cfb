//! IPv6 mode's addresses: the one /80 prefix delegated to the primary ENI, and which pod holds which /128
//! of it. Kept beside the IPv4 [`Pool`](crate::Pool), which stays the IPv4 pool.
//!
//! A /80 has 2^48 addresses, so there is no warm pool and nothing to give back to EC2 (the original's pool
//! manager does nothing after start-up in IPv6 mode). Addresses are handed out from a cursor that only
//! moves forward: a released address is not handed out again until the cursor has gone round the whole
//! prefix, so no cooldown needs keeping. The prefix's first address is never handed out.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::model::{Millis, PodInfo, PodKey};
use crate::pool::{NoAddress, NoAddressReason};

/// Prefix length of the block EC2 delegates to an ENI in IPv6 mode.
pub const IPV6_PREFIX_LEN: u8 = 80;

/// An IPv6 address given to a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ipv6Assignment {
    /// The pod's address.
    pub ip: Ipv6Addr,
    /// ENI holding the prefix (the primary ENI).
    pub eni_id: String,
    /// That ENI's device number (0: the primary ENI).
    pub device_number: u32,
    /// Route table of the pod's host route: the main table, as for every primary-ENI pod.
    pub route_table_id: u32,
    /// When it was assigned.
    pub assigned_at: Millis,
}

/// Why an IPv6 allocation could not be restored from a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ipv6Error {
    /// The address is not in the /80 the node holds (or the node holds none).
    #[error("{ip} is not in the node's IPv6 prefix ({prefix})")]
    OutsidePrefix {
        /// The address.
        ip: Ipv6Addr,
        /// The prefix held, or "none".
        prefix: String,
    },
    /// The address is the prefix's first, which is never given to a pod.
    #[error("{0} is the prefix's first address, which is never given to a pod")]
    FirstAddress(Ipv6Addr),
    /// A checkpointed key is listed again with another address: it keeps the one restored first.
    #[error("{container} already holds {held}, so not {ip} as well")]
    KeyHoldsAnother {
        /// The container.
        container: String,
        /// The address it holds.
        held: Ipv6Addr,
        /// The other address listed for it.
        ip: Ipv6Addr,
    },
    /// A checkpointed key holds an address another key holds.
    #[error("{ip} is held by two keys ({first} and {second})")]
    DoubleAssignment {
        /// The address.
        ip: Ipv6Addr,
        /// One container.
        first: String,
        /// The other.
        second: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    pod: PodInfo,
    ip: Ipv6Addr,
    assigned_at: Millis,
}

/// The node's /80 and its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Block {
    eni_id: String,
    prefix: Ipv6Net,
    holders: BTreeMap<PodKey, Holder>,
    by_address: HashMap<Ipv6Addr, PodKey>,
    /// Offset in the prefix of the next address to try (1 ..= last offset).
    cursor: u64,
}

impl Ipv6Block {
    /// A block over `prefix` (truncated to its network) on the ENI `eni_id`, with no pods.
    pub fn new(eni_id: impl Into<String>, prefix: Ipv6Net) -> Self {
        Self {
            eni_id: eni_id.into(),
            prefix: prefix.trunc(),
            holders: BTreeMap::new(),
            by_address: HashMap::new(),
            cursor: 1,
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> Ipv6Net {
        self.prefix
    }

    /// The ENI holding the prefix.
    pub fn eni_id(&self) -> &str {
        &self.eni_id
    }

    /// Addresses in the prefix (2^48 for a /80), as the original counts a prefix's size.
    pub fn size(&self) -> u64 {
        let host_bits = 128 - u32::from(self.prefix.prefix_len());
        1u64.checked_shl(host_bits).unwrap_or(u64::MAX)
    }

    /// Addresses held by pods.
    pub fn assigned(&self) -> usize {
        self.holders.len()
    }

    /// The cursor: the offset in the prefix the next address is looked for from (for the checkpoint).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Moves the cursor forward to `offset` (never back), as restored from a checkpoint.
    pub fn advance_cursor(&mut self, offset: u64) {
        if offset > self.cursor && offset < self.size() {
            self.cursor = offset;
        }
    }

    fn address(&self, offset: u64) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.prefix.network()) | u128::from(offset))
    }

    fn offset(&self, ip: Ipv6Addr) -> u64 {
        // The host part of an address inside the prefix fits the prefix's size, at most 2^64 - 1.
        (u128::from(ip) & !u128::from(self.prefix.netmask())) as u64
    }

    fn assignment(&self, ip: Ipv6Addr, assigned_at: Millis) -> Ipv6Assignment {
        Ipv6Assignment {
            ip,
            eni_id: self.eni_id.clone(),
            device_number: 0,
            route_table_id: vpcni_layout::MAIN_TABLE,
            assigned_at,
        }
    }

    /// The key's address, if it holds one.
    pub fn lookup(&self, key: &PodKey) -> Option<Ipv6Assignment> {
        self.holders
            .get(key)
            .map(|h| self.assignment(h.ip, h.assigned_at))
    }

    /// Who holds `ip`.
    pub fn holder_of(&self, ip: Ipv6Addr) -> Option<&PodKey> {
        self.by_address.get(&ip)
    }

    /// Every allocation, in key order.
    pub fn allocations(&self) -> Vec<(PodKey, PodInfo, Ipv6Assignment)> {
        self.holders
            .iter()
            .map(|(key, h)| (key.clone(), h.pod.clone(), self.assignment(h.ip, h.assigned_at)))
            .collect()
    }

    /// Gives the pod an address: the one it holds already for a repeated key, else the next free one from
    /// the cursor on. Refused only when every address but the first is held.
    pub fn assign(&mut self, key: &PodKey, pod: &PodInfo, now: Millis) -> Result<Ipv6Assignment, NoAddress> {
        if let Some(held) = self.lookup(key) {
            return Ok(held);
        }
        let size = self.size();
        let usable = size.saturating_sub(1);
        if self.holders.len() as u64 >= usable {
            return Err(NoAddress {
                reason: NoAddressReason::NodeAddressLimit,
                message: format!(
                    "every address of the node's IPv6 prefix {} is held by a pod",
                    self.prefix
                ),
            });
        }
        // At most `holders + 1` probes: the holders are the only addresses skipped.
        let mut offset = self.cursor;
        loop {
            if offset == 0 || offset >= size {
                offset = 1;
            }
            let ip = self.address(offset);
            if !self.by_address.contains_key(&ip) {
                self.cursor = if offset + 1 >= size { 1 } else { offset + 1 };
                self.hold(key, pod, ip, now);
                return Ok(self.assignment(ip, now));
            }
            offset += 1;
        }
    }

    fn hold(&mut self, key: &PodKey, pod: &PodInfo, ip: Ipv6Addr, at: Millis) {
        self.holders.insert(
            key.clone(),
            Holder {
                pod: pod.clone(),
                ip,
                assigned_at: at,
            },
        );
        self.by_address.insert(ip, key.clone());
    }

    /// Releases the key's address; `None` if it held none.
    pub fn unassign(&mut self, key: &PodKey) -> Option<Ipv6Assignment> {
        let holder = self.holders.remove(key)?;
        self.by_address.remove(&holder.ip);
        Some(self.assignment(holder.ip, holder.assigned_at))
    }

    /// Marks `ip` as held by `key` again (restart from a checkpoint). The cursor moves past it, so an
    /// address restored is never handed out to another pod.
    pub fn restore(
        &mut self,
        key: &PodKey,
        pod: &PodInfo,
        ip: Ipv6Addr,
        assigned_at: Millis,
    ) -> Result<Ipv6Assignment, Ipv6Error> {
        if !self.prefix.contains(&ip) {
            return Err(Ipv6Error::OutsidePrefix {
                ip,
                prefix: self.prefix.to_string(),
            });
        }
        let offset = self.offset(ip);
        if offset == 0 {
            return Err(Ipv6Error::FirstAddress(ip));
        }
        if let Some(held) = self.holders.get(key) {
            if held.ip == ip {
                return Ok(self.assignment(ip, held.assigned_at));
            }
            return Err(Ipv6Error::KeyHoldsAnother {
                container: key.container_id.clone(),
                held: held.ip,
                ip,
            });
        }
        if let Some(other) = self.by_address.get(&ip) {
            return Err(Ipv6Error::DoubleAssignment {
                ip,
                first: other.container_id.clone(),
                second: key.container_id.clone(),
            });
        }
        self.hold(key, pod, ip, assigned_at);
        self.advance_cursor(offset.saturating_add(1));
        Ok(self.assignment(ip, assigned_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Ipv6Block {
        Ipv6Block::new("eni-primary", "2600:1f14:abc:de00:1f2e::/80".parse().unwrap())
    }

    fn key(n: u32) -> PodKey {
        PodKey::new("vpcni", format!("c{n}"), "eth0")
    }

    #[test]
    fn addresses_come_in_order_never_the_first_and_never_again_at_once() {
        let mut block = block();
        assert_eq!(block.size(), 1 << 48);
        let first = block.assign(&key(1), &PodInfo::default(), 5).unwrap();
        assert_eq!(
            first.ip,
            "2600:1f14:abc:de00:1f2e::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!((first.device_number, first.route_table_id), (0, 254));
        assert_eq!(block.assign(&key(1), &PodInfo::default(), 9).unwrap(), first);
        block.unassign(&key(1)).unwrap();
        let second = block.assign(&key(2), &PodInfo::default(), 10).unwrap();
        assert_eq!(
            second.ip,
            "2600:1f14:abc:de00:1f2e::2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(block.unassign(&key(1)), None);
    }

    #[test]
    fn restore_checks_the_prefix_and_the_keys() {
        let mut block = block();
        let pod = PodInfo::default();
        let inside: Ipv6Addr = "2600:1f14:abc:de00:1f2e::a".parse().unwrap();
        block.restore(&key(1), &pod, inside, 1).unwrap();
        assert!(matches!(
            block.restore(&key(2), &pod, inside, 1),
            Err(Ipv6Error::DoubleAssignment { .. })
        ));
        assert!(matches!(
            block.restore(&key(1), &pod, "2600:1f14:abc:de00:1f2e::b".parse().unwrap(), 1),
            Err(Ipv6Error::KeyHoldsAnother { .. })
        ));
        assert!(matches!(
            block.restore(&key(3), &pod, "2600:1f14:abc:de00:1f2f::b".parse().unwrap(), 1),
            Err(Ipv6Error::OutsidePrefix { .. })
        ));
        assert!(matches!(
            block.restore(&key(3), &pod, "2600:1f14:abc:de00:1f2e::".parse().unwrap(), 1),
            Err(Ipv6Error::FirstAddress(_))
        ));
        // The cursor moved past the restored address.
        let next = block.assign(&key(4), &pod, 2).unwrap();
        assert_eq!(next.ip, "2600:1f14:abc:de00:1f2e::b".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn a_full_small_block_refuses_and_wraps_round() {
        // A /126 stands in for a full /80: three usable addresses.
        let mut block = Ipv6Block::new("eni-x", "2600::/126".parse().unwrap());
        let pod = PodInfo::default();
        for n in 1..=3 {
            block.assign(&key(n), &pod, 0).unwrap();
        }
        let refused = block.assign(&key(4), &pod, 0).unwrap_err();
        assert_eq!(refused.reason, NoAddressReason::NodeAddressLimit);
        block.unassign(&key(2)).unwrap();
        let again = block.assign(&key(4), &pod, 0).unwrap();
        assert_eq!(again.ip, "2600::2".parse::<Ipv6Addr>().unwrap());
    }
}
