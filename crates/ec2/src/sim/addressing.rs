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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetAddresses {
    cidr: Ipv4Net,
    used: BTreeSet<u32>,
    prefix_reservations: Vec<Ipv4Net>,
    #[serde(default)]
    explicit_reservations: Vec<Ipv4Net>,
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
        Self {
            cidr: cidr.trunc(),
            used: BTreeSet::new(),
            prefix_reservations: Vec::new(),
            explicit_reservations: Vec::new(),
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.cidr.network())
    }

    fn last(&self) -> u32 {
        u32::from(self.cidr.broadcast())
    }

    /// AWS reserves the network address, the next three (router, DNS, future use) and the broadcast address.
    pub fn is_aws_reserved(&self, addr: u32) -> bool {
        addr < self.first() + 4 || addr == self.last()
    }

    fn in_prefix_reservation(&self, addr: u32) -> bool {
        self.prefix_reservations
            .iter()
            .any(|r| r.contains(&Ipv4Addr::from(addr)))
    }

    fn in_explicit_reservation(&self, addr: u32) -> bool {
        self.explicit_reservations
            .iter()
            .any(|r| r.contains(&Ipv4Addr::from(addr)))
    }

    /// Addresses neither reserved by AWS nor in use: `AvailableIpAddressCount`.
    pub fn available(&self) -> u32 {
        let usable = (self.last() - self.first() + 1).saturating_sub(5);
        usable.saturating_sub(self.used.iter().filter(|a| !self.is_aws_reserved(**a)).count() as u32)
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
        Ok(())
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

    /// The lowest free address outside reservations.
    pub fn allocate_ip(&mut self) -> Result<Ipv4Addr, Ec2Error> {
        let found = (self.first()..=self.last()).find(|a| {
            !self.is_aws_reserved(*a)
                && !self.used.contains(a)
                && !self.in_prefix_reservation(*a)
                && !self.in_explicit_reservation(*a)
        });
        let addr = found.ok_or_else(|| self.exhausted())?;
        self.used.insert(addr);
        Ok(Ipv4Addr::from(addr))
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
        if self.used.contains(&addr) {
            return Err(Ec2Error::new(
                "InvalidIPAddress.InUse",
                format!("Address {ip} is in use."),
            ));
        }
        self.used.insert(addr);
        Ok(())
    }

    /// The lowest aligned, entirely free /28, inside prefix reservations first, never in an explicit one.
    pub fn allocate_prefix(&mut self) -> Result<Ipv4Net, Ec2Error> {
        let free_block = |base: u32| {
            (base..base + PREFIX_SIZE).all(|a| {
                !self.is_aws_reserved(a) && !self.used.contains(&a) && !self.in_explicit_reservation(a)
            })
        };
        let aligned_first = self.first().div_ceil(PREFIX_SIZE) * PREFIX_SIZE;
        let bases =
            || (aligned_first..=self.last().saturating_sub(PREFIX_SIZE - 1)).step_by(PREFIX_SIZE as usize);
        let reserved_first = bases().find(|b| self.in_prefix_reservation(*b) && free_block(*b));
        let base = reserved_first.or_else(|| bases().find(|b| free_block(*b)));
        let Some(base) = base else {
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
        self.used.extend(base..base + PREFIX_SIZE);
        Ok(Ipv4Net::new(Ipv4Addr::from(base), PREFIX_LEN).expect("valid /28"))
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
        if (base..base + PREFIX_SIZE).any(|a| self.is_aws_reserved(a) || self.used.contains(&a)) {
            return Err(Ec2Error::new(
                "InvalidParameterValue",
                format!("Prefix {prefix} overlaps addresses in use"),
            ));
        }
        self.used.extend(base..base + PREFIX_SIZE);
        Ok(())
    }

    /// Frees one address.
    pub fn release_ip(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }

    /// Frees a prefix.
    pub fn release_prefix(&mut self, prefix: Ipv4Net) {
        let base = u32::from(prefix.network());
        for addr in base..base + PREFIX_SIZE {
            self.used.remove(&addr);
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
