//! IPv6 in the simulator, with EC2's rules: a VPC holds at most one IPv6 /56 (Amazon-provided, chosen from
//! the seed, or given); a subnet's IPv6 block is a /64 inside its VPC's /56; inside a subnet's /64 the first
//! four addresses and the last one are AWS's; a delegated prefix is an aligned /80 that holds no address in
//! use, no other prefix and none of AWS's addresses; EC2 picks the lowest free address or /80.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;
use crate::Ec2Error;

/// The size of a VPC's IPv6 block.
pub const VPC_PREFIX_LEN: u8 = 56;
/// The size of a subnet's IPv6 block.
pub const SUBNET_PREFIX_LEN: u8 = 64;
/// The size of a delegated IPv6 prefix.
pub const PREFIX_LEN: u8 = 80;

/// Amazon's pool of IPv6 addresses as the simulator hands it out: `2600:1f00::/24`, where EC2's
/// Amazon-provided VPC blocks come from (`2600:1f14::/32` in us-west-2, for instance).
const AMAZON_POOL: u128 = 0x2600_1f00_u128 << 96;

fn invalid(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new("InvalidParameterValue", message)
}

/// An Amazon-provided /56 from the seeded generator: `2600:1f` then 32 random bits, none of `taken`.
pub fn amazon_provided_block(rng: &mut SplitMix64, taken: &[Ipv6Net]) -> Ipv6Net {
    loop {
        let bits = u128::from(rng.next_u64() & 0xffff_ffff);
        let network = AMAZON_POOL | (bits << (128 - u32::from(VPC_PREFIX_LEN)));
        // 56 is a valid IPv6 prefix length: `new` cannot fail.
        let block = Ipv6Net::new(Ipv6Addr::from(network), VPC_PREFIX_LEN).unwrap_or_default();
        if !taken.iter().any(|t| t.contains(&block) || block.contains(t)) {
            return block;
        }
    }
}

/// A given VPC block must be a /56 without host bits.
pub fn check_vpc_block(cidr: Ipv6Net) -> Result<(), Ec2Error> {
    if cidr.prefix_len() != VPC_PREFIX_LEN || cidr.trunc() != cidr {
        return Err(invalid(format!(
            "Value ({cidr}) for parameter Ipv6CidrBlock is invalid. A VPC's IPv6 block is a /56 without host bits."
        )));
    }
    Ok(())
}

/// The IPv6 /64 of a subnet and what is in use in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetIpv6 {
    cidr: Ipv6Net,
    /// Single addresses held by ENIs.
    #[serde(default)]
    addresses: BTreeSet<Ipv6Addr>,
    /// /80 prefixes held by ENIs.
    #[serde(default)]
    prefixes: BTreeSet<Ipv6Net>,
}

impl SubnetIpv6 {
    /// A /64 with nothing in use; the caller checks it is a /64 of its VPC's block.
    pub fn new(cidr: Ipv6Net) -> Self {
        Self {
            cidr: cidr.trunc(),
            addresses: BTreeSet::new(),
            prefixes: BTreeSet::new(),
        }
    }

    /// The /64.
    pub fn cidr(&self) -> Ipv6Net {
        self.cidr
    }

    fn first(&self) -> u128 {
        u128::from(self.cidr.network())
    }

    fn last(&self) -> u128 {
        u128::from(self.cidr.broadcast())
    }

    /// AWS keeps the first four addresses and the last one of every subnet IPv6 block.
    fn is_aws_reserved(&self, addr: u128) -> bool {
        addr < self.first() + 4 || addr == self.last()
    }

    /// The /80 an address is in.
    fn block_of(addr: u128) -> Ipv6Net {
        let mask = !0u128 << (128 - u32::from(PREFIX_LEN));
        // 80 is a valid IPv6 prefix length: `new` cannot fail.
        Ipv6Net::new(Ipv6Addr::from(addr & mask), PREFIX_LEN).unwrap_or_default()
    }

    fn in_prefix(&self, addr: u128) -> bool {
        self.prefixes.contains(&Self::block_of(addr))
    }

    fn exhausted(&self, what: &str) -> Ec2Error {
        Ec2Error::new(
            if what == "prefix" {
                "InsufficientCidrBlocks"
            } else {
                "InsufficientFreeAddressesInSubnet"
            },
            format!(
                "There are not enough free IPv6 {what}es in subnet {} to satisfy the request.",
                self.cidr
            ),
        )
    }

    /// The lowest free address: not AWS's, not held, not inside a prefix.
    pub fn allocate_address(&mut self) -> Result<Ipv6Addr, Ec2Error> {
        let mut addr = self.first() + 4;
        while addr < self.last() {
            if self.in_prefix(addr) {
                addr = u128::from(Self::block_of(addr).broadcast()) + 1;
            } else if self.addresses.contains(&Ipv6Addr::from(addr)) {
                addr += 1;
            } else {
                self.addresses.insert(Ipv6Addr::from(addr));
                return Ok(Ipv6Addr::from(addr));
            }
        }
        Err(self.exhausted("address"))
    }

    /// Takes an exact address.
    pub fn claim_address(&mut self, ip: Ipv6Addr) -> Result<(), Ec2Error> {
        let addr = u128::from(ip);
        if !self.cidr.contains(&ip) {
            return Err(invalid(format!(
                "Address {ip} does not fall within the subnet's IPv6 address range ({})",
                self.cidr
            )));
        }
        if self.is_aws_reserved(addr) {
            return Err(invalid(format!(
                "Address {ip} is in the subnet's reserved IPv6 address range"
            )));
        }
        if self.addresses.contains(&ip) || self.in_prefix(addr) {
            return Err(Ec2Error::new(
                "InvalidIPAddress.InUse",
                format!("Address {ip} is in use."),
            ));
        }
        self.addresses.insert(ip);
        Ok(())
    }

    /// Whether the aligned /80 `block` can be delegated: none of AWS's addresses, no address held, not
    /// delegated already.
    fn block_free(&self, block: Ipv6Net) -> bool {
        let start = u128::from(block.network());
        let end = u128::from(block.broadcast());
        !self.is_aws_reserved(start)
            && !self.is_aws_reserved(end)
            && !self.prefixes.contains(&block)
            && self
                .addresses
                .range(block.network()..=block.broadcast())
                .next()
                .is_none()
    }

    /// The lowest free aligned /80.
    pub fn allocate_prefix(&mut self) -> Result<Ipv6Net, Ec2Error> {
        let size = 1u128 << (128 - u32::from(PREFIX_LEN));
        let blocks = 1u128 << (PREFIX_LEN - SUBNET_PREFIX_LEN);
        for index in 0..blocks {
            let block = Self::block_of(self.first() + index * size);
            if self.block_free(block) {
                self.prefixes.insert(block);
                return Ok(block);
            }
        }
        Err(self.exhausted("prefix"))
    }

    /// Takes an exact /80.
    pub fn claim_prefix(&mut self, prefix: Ipv6Net) -> Result<(), Ec2Error> {
        if prefix.prefix_len() != PREFIX_LEN || prefix.trunc() != prefix {
            return Err(invalid(format!(
                "{prefix} is not an aligned /{PREFIX_LEN} IPv6 prefix"
            )));
        }
        if !self.cidr.contains(&prefix) {
            return Err(invalid(format!(
                "{prefix} is not in the subnet's IPv6 block {}",
                self.cidr
            )));
        }
        if !self.block_free(prefix) {
            return Err(invalid(format!(
                "Prefix {prefix} overlaps addresses in use or reserved by AWS"
            )));
        }
        self.prefixes.insert(prefix);
        Ok(())
    }

    /// Frees an address.
    pub fn release_address(&mut self, ip: Ipv6Addr) {
        self.addresses.remove(&ip);
    }

    /// Frees a prefix.
    pub fn release_prefix(&mut self, prefix: Ipv6Net) {
        self.prefixes.remove(&prefix);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is its failure report

    use super::*;

    fn net(text: &str) -> Ipv6Net {
        text.parse().unwrap()
    }

    #[test]
    fn reserved_addresses_and_blocks_are_never_handed_out() {
        let mut subnet = SubnetIpv6::new(net("2600:1f14:0:100::/64"));
        assert_eq!(
            subnet.allocate_address().unwrap(),
            "2600:1f14:0:100::4".parse::<Ipv6Addr>().unwrap()
        );
        // The first /80 holds AWS's four addresses: the first prefix is the second /80.
        assert_eq!(subnet.allocate_prefix().unwrap(), net("2600:1f14:0:100:1::/80"));
        for (prefix, why) in [
            ("2600:1f14:0:100::/80", "holds the reserved addresses"),
            ("2600:1f14:0:100:ffff::/80", "holds the last address"),
            ("2600:1f14:0:100:1::/80", "taken"),
            ("2600:1f14:0:100:2::/96", "not a /80"),
            ("2600:1f14:0:100:2:1::/80", "not aligned"),
            ("2600:1f14:0:101:2::/80", "outside the /64"),
        ] {
            let error = subnet.claim_prefix(net(prefix)).unwrap_err();
            assert_eq!(error.code, "InvalidParameterValue", "{prefix}: {why}");
        }
        for (address, code) in [
            ("2600:1f14:0:100::3", "InvalidParameterValue"),
            ("2600:1f14:0:100:ffff:ffff:ffff:ffff", "InvalidParameterValue"),
            ("2600:1f14:0:100:1::9", "InvalidIPAddress.InUse"),
            ("2600:1f14:0:100::4", "InvalidIPAddress.InUse"),
            ("2600:1f14:0:101::9", "InvalidParameterValue"),
        ] {
            let error = subnet.claim_address(address.parse().unwrap()).unwrap_err();
            assert_eq!(error.code, code, "{address}");
        }
        // An address in a /80 keeps that /80 from being delegated.
        subnet
            .claim_address("2600:1f14:0:100:2::7".parse().unwrap())
            .unwrap();
        assert_eq!(subnet.allocate_prefix().unwrap(), net("2600:1f14:0:100:3::/80"));
        subnet.release_prefix(net("2600:1f14:0:100:1::/80"));
        assert_eq!(subnet.allocate_prefix().unwrap(), net("2600:1f14:0:100:1::/80"));
    }

    #[test]
    fn amazon_blocks_are_seeded_distinct_56s_in_amazons_pool() {
        let mut rng = SplitMix64::new(7);
        let first = amazon_provided_block(&mut rng, &[]);
        let second = amazon_provided_block(&mut rng, &[first]);
        assert_ne!(first, second);
        for block in [first, second] {
            assert_eq!(block.prefix_len(), 56);
            assert!(net("2600:1f00::/24").contains(&block), "{block}");
        }
        assert_eq!(amazon_provided_block(&mut SplitMix64::new(7), &[]), first);
        assert!(check_vpc_block(net("2600:1f14:1:101::/56")).is_err(), "host bits");
        assert!(check_vpc_block(net("2600:1f14:1::/48")).is_err());
        assert!(check_vpc_block(net("2600:1f14:1:100::/56")).is_ok());
    }
}
