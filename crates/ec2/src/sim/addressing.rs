//! Address allocation inside a subnet, with EC2's rules: the first four and the last address are
//! reserved; a /28 prefix is aligned and never overlaps a single address; prefix reservations (subnet CIDR
//! reservations of type `prefix`) hold addresses that are only handed out as prefixes, and prefixes come
//! from them first; explicit reservations (type `explicit`) hold addresses that are never handed out
//! automatically, only when asked for by address or prefix.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::Ec2Error;

/// Addresses of a subnet in use.
///
/// Kept as a bitmap (one bit per address, at most 8 KiB for a /16) with a used count and two search
/// hints, so that allocating, counting and the all-or-nothing copies EC2's calls make stay cheap in a
/// subnet with tens of thousands of addresses in use (the planner runs thousands of nodes on it). Saved
/// state keeps the readable form: the CIDR, the used addresses as numbers, the prefix reservations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SavedAddresses", into = "SavedAddresses")]
pub struct SubnetAddresses {
    cidr: Ipv4Net,
    /// Bit `i` set: address `first + i` is in use.
    bits: Vec<u64>,
    /// Addresses in use that AWS does not reserve.
    used_count: u32,
    prefix_reservations: Vec<Ipv4Net>,
    explicit_reservations: Vec<Ipv4Net>,
    /// Every offset below it is in use, reserved by AWS or inside a reservation.
    ip_hint: u32,
    /// No aligned /28 below this block index is entirely free.
    prefix_hint: u32,
}

/// The saved form of [`SubnetAddresses`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedAddresses {
    cidr: Ipv4Net,
    used: BTreeSet<u32>,
    prefix_reservations: Vec<Ipv4Net>,
    #[serde(default)]
    explicit_reservations: Vec<Ipv4Net>,
}

impl From<SavedAddresses> for SubnetAddresses {
    fn from(saved: SavedAddresses) -> Self {
        let mut addresses = Self::new(saved.cidr);
        addresses.prefix_reservations = saved.prefix_reservations;
        addresses.explicit_reservations = saved.explicit_reservations;
        for addr in saved.used {
            if addresses.cidr.contains(&Ipv4Addr::from(addr)) {
                addresses.set(addr - addresses.first());
            }
        }
        addresses
    }
}

impl From<SubnetAddresses> for SavedAddresses {
    fn from(addresses: SubnetAddresses) -> Self {
        let first = addresses.first();
        let used = (0..addresses.size())
            .filter(|offset| addresses.is_set(*offset))
            .map(|offset| first + offset)
            .collect();
        Self {
            cidr: addresses.cidr,
            used,
            prefix_reservations: addresses.prefix_reservations,
            explicit_reservations: addresses.explicit_reservations,
        }
    }
}

/// The two kinds of subnet CIDR reservation EC2 has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationType {
    /// Prefixes come from it first; single addresses never do.
    Prefix,
    /// Nothing is handed out from it automatically.
    Explicit,
}

impl ReservationType {
    /// EC2's spelling (`prefix`, `explicit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefix => "prefix",
            Self::Explicit => "explicit",
        }
    }

    /// Parses EC2's spelling.
    pub fn parse(text: &str) -> Result<Self, Ec2Error> {
        match text {
            "prefix" => Ok(Self::Prefix),
            "explicit" => Ok(Self::Explicit),
            other => Err(Ec2Error::new(
                "InvalidParameterValue",
                format!(
                    "Value ({other}) for parameter reservationType is invalid. Expected: prefix, explicit."
                ),
            )),
        }
    }
}

const PREFIX_LEN: u8 = 28;
const PREFIX_SIZE: u32 = 16;

impl SubnetAddresses {
    /// A subnet with nothing in use.
    pub fn new(cidr: Ipv4Net) -> Self {
        let cidr = cidr.trunc();
        let size = 1u64 << (32 - u32::from(cidr.prefix_len()));
        Self {
            cidr,
            bits: vec![0; size.div_ceil(64) as usize],
            used_count: 0,
            prefix_reservations: Vec::new(),
            explicit_reservations: Vec::new(),
            ip_hint: 0,
            prefix_hint: 0,
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.cidr.network())
    }

    fn last(&self) -> u32 {
        u32::from(self.cidr.broadcast())
    }

    /// Addresses in the subnet.
    fn size(&self) -> u32 {
        self.last() - self.first() + 1
    }

    fn is_set(&self, offset: u32) -> bool {
        self.bits[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    fn set(&mut self, offset: u32) {
        if !self.is_set(offset) {
            self.bits[(offset / 64) as usize] |= 1 << (offset % 64);
            if !self.is_aws_reserved(self.first() + offset) {
                self.used_count += 1;
            }
        }
    }

    fn clear(&mut self, offset: u32) {
        if self.is_set(offset) {
            self.bits[(offset / 64) as usize] &= !(1 << (offset % 64));
            if !self.is_aws_reserved(self.first() + offset) {
                self.used_count -= 1;
            }
            self.ip_hint = self.ip_hint.min(offset);
            self.prefix_hint = self.prefix_hint.min(offset / PREFIX_SIZE);
        }
    }

    fn contains(&self, addr: u32) -> bool {
        (self.first()..=self.last()).contains(&addr)
    }

    /// Whether an address of the subnet is in use (AWS's reserved addresses are not "in use").
    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        let addr = u32::from(ip);
        self.contains(addr) && self.is_set(addr - self.first())
    }

    /// The prefix reservations (subnet CIDR reservations of type `prefix`).
    pub fn prefix_reservations(&self) -> &[Ipv4Net] {
        &self.prefix_reservations
    }

    /// AWS reserves the network address, the next three (router, DNS, future use) and the broadcast address.
    pub fn is_aws_reserved(&self, addr: u32) -> bool {
        addr < self.first() + 4 || addr == self.last()
    }

    /// Addresses neither reserved by AWS nor in use: `AvailableIpAddressCount`.
    pub fn available(&self) -> u32 {
        self.size().saturating_sub(5).saturating_sub(self.used_count)
    }

    /// The subnet's CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// Adds a prefix-only reservation (CreateSubnetCidrReservation with type `prefix`).
    pub fn reserve_for_prefixes(&mut self, cidr: Ipv4Net) -> Result<(), Ec2Error> {
        self.reserve(cidr, ReservationType::Prefix)
    }

    /// Removes a reservation (DeleteSubnetCidrReservation); addresses already assigned from it stay.
    pub fn unreserve(&mut self, cidr: Ipv4Net, kind: ReservationType) {
        let list = match kind {
            ReservationType::Prefix => &mut self.prefix_reservations,
            ReservationType::Explicit => &mut self.explicit_reservations,
        };
        list.retain(|r| *r != cidr);
        // Addresses and blocks below the hints may be free for automatic use again.
        self.ip_hint = 0;
        self.prefix_hint = 0;
    }

    /// Adds a reservation of either type (CreateSubnetCidrReservation). Reservations may not overlap.
    pub fn reserve(&mut self, cidr: Ipv4Net, kind: ReservationType) -> Result<(), Ec2Error> {
        if cidr.trunc() != cidr {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("The CIDR {cidr} is not valid: host bits are set"),
            ));
        }
        if !self.cidr.contains(&cidr) {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("The CIDR {cidr} is not within subnet {}", self.cidr),
            ));
        }
        if self
            .prefix_reservations
            .iter()
            .chain(&self.explicit_reservations)
            .any(|r| r.contains(&cidr) || cidr.contains(r))
        {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("The CIDR {cidr} overlaps a reservation"),
            ));
        }
        match kind {
            ReservationType::Prefix => self.prefix_reservations.push(cidr),
            ReservationType::Explicit => self.explicit_reservations.push(cidr),
        }
        // Addresses below the hints may now be inside a reservation: still never handed out singly.
        Ok(())
    }

    fn in_explicit_reservation(&self, addr: u32) -> bool {
        self.explicit_reservations
            .iter()
            .any(|r| r.contains(&Ipv4Addr::from(addr)))
    }

    fn exhausted(&self) -> Ec2Error {
        Ec2Error::new(
            "InsufficientFreeAddressesInSubnet",
            format!(
                "There are not enough free addresses in subnet {} to satisfy the requested number of addresses.",
                self.cidr
            ),
        )
    }

    /// The lowest offset at or above `from` whose bit is clear, if any below `end`.
    fn next_clear(&self, from: u32, end: u32) -> Option<u32> {
        let mut offset = from;
        while offset < end {
            let word = self.bits[(offset / 64) as usize] | ((1u64 << (offset % 64)) - 1);
            if word == u64::MAX {
                offset = (offset / 64 + 1) * 64;
                continue;
            }
            let found = (offset / 64) * 64 + (!word).trailing_zeros();
            return (found < end).then_some(found);
        }
        None
    }

    /// The lowest free address outside reservations.
    pub fn allocate_ip(&mut self) -> Result<Ipv4Addr, Ec2Error> {
        let end = self.size() - 1; // the broadcast address is reserved
        let mut from = self.ip_hint.max(4);
        let found = loop {
            let Some(offset) = self.next_clear(from, end) else {
                break None;
            };
            let addr = self.first() + offset;
            if let Some(reservation) = self
                .prefix_reservations
                .iter()
                .chain(&self.explicit_reservations)
                .find(|r| r.contains(&Ipv4Addr::from(addr)))
            {
                from = u32::from(reservation.broadcast()) - self.first() + 1;
                continue;
            }
            break Some(offset);
        };
        let Some(offset) = found else {
            self.ip_hint = end;
            return Err(self.exhausted());
        };
        self.set(offset);
        self.ip_hint = offset + 1;
        Ok(Ipv4Addr::from(self.first() + offset))
    }

    /// Takes an exact address.
    pub fn claim_ip(&mut self, ip: Ipv4Addr) -> Result<(), Ec2Error> {
        let addr = u32::from(ip);
        if !self.cidr.contains(&ip) {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!(
                    "Address {ip} does not fall within the subnet's address range ({})",
                    self.cidr
                ),
            ));
        }
        if self.is_aws_reserved(addr) {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("Address {ip} is in subnet's reserved address range"),
            ));
        }
        if self.is_set(addr - self.first()) {
            return Err(Ec2Error::new(
                "InvalidIPAddress.InUse",
                format!("Address {ip} is in use."),
            ));
        }
        self.set(addr - self.first());
        Ok(())
    }

    /// Whether the aligned /28 at block index `block` is entirely free for automatic use (no address in use,
    /// reserved by AWS, or inside an explicit reservation).
    fn block_free(&self, block: u32) -> bool {
        let base = block * PREFIX_SIZE;
        if base + PREFIX_SIZE > self.size() {
            return false;
        }
        let first = self.first() + base;
        if self.is_aws_reserved(first) || self.is_aws_reserved(first + PREFIX_SIZE - 1) {
            return false;
        }
        if self.in_explicit_reservation(first) || self.in_explicit_reservation(first + PREFIX_SIZE - 1) {
            return false;
        }
        let word = self.bits[(base / 64) as usize];
        (word >> (base % 64)) & 0xFFFF == 0
    }

    /// The lowest aligned, entirely free /28, inside prefix reservations first, never in an explicit one.
    pub fn allocate_prefix(&mut self) -> Result<Ipv4Net, Ec2Error> {
        let first = self.first();
        let blocks = self.size() / PREFIX_SIZE;
        let reserved_first = self
            .prefix_reservations
            .iter()
            .filter_map(|r| {
                let start = (u32::from(r.network()).max(first) - first).div_ceil(PREFIX_SIZE);
                let end = ((u32::from(r.broadcast()) - first) / PREFIX_SIZE + 1).min(blocks);
                (start..end).find(|b| self.block_free(*b))
            })
            .min();
        let block = match reserved_first {
            Some(block) => Some(block),
            None => {
                let found = (self.prefix_hint..blocks).find(|b| self.block_free(*b));
                self.prefix_hint = found.unwrap_or(blocks);
                found
            }
        };
        let Some(block) = block else {
            // Addresses left but no whole aligned /28: fragmentation, which EC2 reports distinctly.
            return Err(if self.available() > 0 {
                Ec2Error::new(
                    "InsufficientCidrBlocks",
                    format!(
                        "The specified subnet {} does not have enough free cidr blocks to satisfy the request.",
                        self.cidr
                    ),
                )
            } else {
                self.exhausted()
            });
        };
        let base = block * PREFIX_SIZE;
        for offset in base..base + PREFIX_SIZE {
            self.set(offset);
        }
        Ok(Ipv4Net::new(Ipv4Addr::from(first + base), PREFIX_LEN).expect("valid /28"))
    }

    /// Takes an exact /28.
    pub fn claim_prefix(&mut self, prefix: Ipv4Net) -> Result<(), Ec2Error> {
        if prefix.prefix_len() != PREFIX_LEN || prefix.trunc() != prefix {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("{prefix} is not an aligned /28 prefix"),
            ));
        }
        if !self.cidr.contains(&prefix) {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("{prefix} is not in subnet {}", self.cidr),
            ));
        }
        let base = u32::from(prefix.network());
        if (base..base + PREFIX_SIZE).any(|a| self.is_aws_reserved(a) || self.is_set(a - self.first())) {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("Prefix {prefix} overlaps addresses in use"),
            ));
        }
        for addr in base..base + PREFIX_SIZE {
            self.set(addr - self.first());
        }
        Ok(())
    }

    /// Frees one address.
    pub fn release_ip(&mut self, ip: Ipv4Addr) {
        let addr = u32::from(ip);
        if self.contains(addr) {
            self.clear(addr - self.first());
        }
    }

    /// Frees a prefix.
    pub fn release_prefix(&mut self, prefix: Ipv4Net) {
        let base = u32::from(prefix.network());
        for addr in base..base + PREFIX_SIZE {
            if self.contains(addr) {
                self.clear(addr - self.first());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_four_and_last_are_reserved() {
        let mut subnet = SubnetAddresses::new("10.0.0.0/28".parse().unwrap());
        assert_eq!(subnet.available(), 11);
        assert_eq!(subnet.allocate_ip().unwrap(), Ipv4Addr::new(10, 0, 0, 4));
        let all: Vec<_> = std::iter::from_fn(|| subnet.allocate_ip().ok()).collect();
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 0, 0, 14)));
        assert_eq!(
            subnet.allocate_ip().unwrap_err().code,
            "InsufficientFreeAddressesInSubnet"
        );
        assert!(
            subnet
                .claim_ip(Ipv4Addr::new(10, 0, 0, 1))
                .unwrap_err()
                .message
                .contains("reserved")
        );
    }

    #[test]
    fn prefixes_are_aligned_and_fragmentation_is_its_own_error() {
        let mut subnet = SubnetAddresses::new("10.0.0.0/26".parse().unwrap());
        // 10.0.0.0/28 holds reserved addresses: the first prefix is 10.0.0.16/28.
        assert_eq!(
            subnet.allocate_prefix().unwrap(),
            "10.0.0.16/28".parse::<Ipv4Net>().unwrap()
        );
        // One address in each remaining block fragments the subnet.
        subnet.claim_ip(Ipv4Addr::new(10, 0, 0, 40)).unwrap();
        subnet.claim_ip(Ipv4Addr::new(10, 0, 0, 50)).unwrap();
        assert_eq!(
            subnet.allocate_prefix().unwrap_err().code,
            "InsufficientCidrBlocks"
        );
        assert!(subnet.available() > 0);
        subnet.release_ip(Ipv4Addr::new(10, 0, 0, 40));
        assert_eq!(
            subnet.allocate_prefix().unwrap(),
            "10.0.0.32/28".parse::<Ipv4Net>().unwrap()
        );
    }

    #[test]
    fn explicit_reservations_are_never_handed_out_automatically() {
        let mut subnet = SubnetAddresses::new("10.0.0.0/26".parse().unwrap());
        subnet
            .reserve("10.0.0.16/28".parse().unwrap(), ReservationType::Explicit)
            .unwrap();
        assert_eq!(
            subnet.allocate_prefix().unwrap(),
            "10.0.0.32/28".parse::<Ipv4Net>().unwrap()
        );
        let singles: Vec<_> = std::iter::from_fn(|| subnet.allocate_ip().ok()).collect();
        assert!(
            singles.iter().all(|ip| !(16..32).contains(&ip.octets()[3])),
            "{singles:?}"
        );
        // Asked for by address or prefix, it is given.
        subnet.claim_ip(Ipv4Addr::new(10, 0, 0, 20)).unwrap();
        subnet.claim_prefix("10.0.0.16/28".parse().unwrap()).unwrap_err();
        assert!(
            subnet
                .reserve("10.0.0.0/27".parse().unwrap(), ReservationType::Prefix)
                .unwrap_err()
                .message
                .contains("overlaps a reservation")
        );
        subnet.unreserve("10.0.0.16/28".parse().unwrap(), ReservationType::Explicit);
        subnet
            .reserve("10.0.0.16/28".parse().unwrap(), ReservationType::Prefix)
            .unwrap();
    }

    #[test]
    fn reservations_keep_addresses_for_prefixes() {
        let mut subnet = SubnetAddresses::new("10.0.0.0/26".parse().unwrap());
        subnet
            .reserve_for_prefixes("10.0.0.32/27".parse().unwrap())
            .unwrap();
        assert_eq!(
            subnet.allocate_prefix().unwrap(),
            "10.0.0.32/28".parse::<Ipv4Net>().unwrap()
        );
        // Single addresses never come from the reservation.
        let singles: Vec<_> = std::iter::from_fn(|| subnet.allocate_ip().ok()).collect();
        assert!(singles.iter().all(|ip| ip.octets()[3] < 32), "{singles:?}");
        assert_eq!(singles.len(), 32 - 4);
    }
}
