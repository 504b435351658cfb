//! The node layout vpcni shares with the Amazon VPC CNI: which route table each ENI's pods use, the
//! priorities of the policy rules, and the gateway every pod routes through.
//!
//! ipamd programs the ENIs' tables and rules, the plugin programs each pod's rules and routes, and the
//! engine reports each address's table to the plugin. They must agree to the number, and with the original
//! (a node keeps working when one is replaced by the other), so each number is defined here once and
//! nowhere else. The layout is described in the repository's `docs/node-layout.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::{Ipv4Addr, Ipv6Addr};

/// The kernel's main routing table. Pods on the primary ENI, and everything the node itself sends, use it.
pub const MAIN_TABLE: u32 = 254;

/// The gateway every pod routes through: a link-local address that exists nowhere. The pod's static ARP
/// entry points it at the host end of its veth, so the node receives everything the pod sends.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The gateway of IPv6 pods, as the original's: `fe80::1`, a link-local address nothing holds. Like
/// [`POD_GATEWAY`] it is only a name for the host end of the pod's veth: the pod's permanent neighbour entry
/// maps it to that veth's MAC, and its default route is `default via fe80::1 dev eth0`.
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Prefix length of an IPv4 pod's address on its `eth0`: the pod's /32 alone, nothing on-link.
pub const POD_PREFIX_V4: u8 = 32;

/// Prefix length of an IPv6 pod's address on its `eth0`: the /128 ipamd gave it from the node's /80.
pub const POD_PREFIX_V6: u8 = 128;

/// The CNI network name vpcni's conflist declares; the runtime sends it with every ADD, DEL and GC, and
/// ipamd keys each allocation by it (with the container id and interface name).
pub const NETWORK_NAME: &str = "vpcni";

/// The conflist's file name in the host's CNI configuration directory (`/etc/cni/net.d`). The original's
/// `10-aws.conflist` sorts first, and runtimes take the first, so it goes when switching (docs/install.md).
pub const CONFLIST_FILE: &str = "10-vpcni.conflist";

/// The original's network name (`aws-cni`), under which its checkpoint records every pod. After a switch,
/// the runtime names pods started under the original with [`NETWORK_NAME`], so ipamd treats an allocation
/// under this name as the same pod's.
pub const ORIGINAL_NETWORK_NAME: &str = "aws-cni";

/// The egress path of single-family pods (the original's `egress-cni`, vpcni's `vpcni-egress`): an IPv6 pod
/// gets a second interface with a node-local IPv4 address, SNATed to the node's primary IPv4 address, and,
/// with `ENABLE_V6_EGRESS`, an IPv4 pod gets one with a node-local IPv6 address, SNATed to the node's IPv6
/// address. The ranges, names, chain prefixes and directories are the original's, so a node moving from
/// aws-node keeps its pods' egress addresses and its rules look the same.
pub mod egress {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The node-local IPv4 range of IPv6 pods' egress addresses: `169.254.172.0/22` (network address).
    pub const V4_RANGE: Ipv4Addr = Ipv4Addr::new(169, 254, 172, 0);
    /// Prefix length of [`V4_RANGE`].
    pub const V4_RANGE_PREFIX: u8 = 22;
    /// The node-local IPv6 range of IPv4 pods' egress addresses: `fd00::ac:00/118` (network address).
    pub const V6_RANGE: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0xac, 0);
    /// Prefix length of [`V6_RANGE`].
    pub const V6_RANGE_PREFIX: u8 = 118;
    /// The egress interface an IPv6 pod gets (IPv4 egress).
    pub const V4_INTERFACE: &str = "v4if0";
    /// The egress interface an IPv4 pod gets (IPv6 egress).
    pub const V6_INTERFACE: &str = "v6if0";
    /// Where the IPv4 egress addresses are recorded, one file per address (host-local's store).
    pub const V4_DATA_DIR: &str = "/run/cni/v6pd/egress-v4-ipam";
    /// Where the IPv6 egress addresses are recorded.
    pub const V6_DATA_DIR: &str = "/run/cni/v4pd/egress-v6-ipam";
    /// Multicast is never SNATed (the per-pod chain's first rule accepts it): IPv4.
    pub const V4_MULTICAST: &str = "224.0.0.0/4";
    /// Multicast is never SNATed: IPv6.
    pub const V6_MULTICAST: &str = "ff00::/8";
    /// Per-pod SNAT chains in the nat table: this prefix and sha512(network name + container id) in hex,
    /// 28 characters in all (containernetworking's chain names, with the original's `E4-` and `E6-`).
    pub const CHAIN_PREFIX: &str = "CNI-";
    /// The IPv4 egress chain's infix (after [`CHAIN_PREFIX`]).
    pub const V4_CHAIN_INFIX: &str = "E4-";
    /// The IPv6 egress chain's infix.
    pub const V6_CHAIN_INFIX: &str = "E6-";
    /// Length of a chain name, as containernetworking's (iptables allows 28 characters).
    pub const CHAIN_LENGTH: usize = 28;
    /// Comment of the filter rule that rejects new connections to IPv4 egress addresses (FORWARD).
    pub const V4_REJECT_COMMENT: &str = "Block Node Local Pod access via IPv4";
    /// Comment of the rule that rejects new connections to IPv6 egress addresses.
    pub const V6_REJECT_COMMENT: &str = "Block Node Local Pod access via IPv6";
    /// The plugin's type in the conflist.
    pub const PLUGIN_TYPE: &str = "vpcni-egress";
    /// The plugin's name in the conflist (the original's; the runtime replaces it with the list's name).
    pub const PLUGIN_NAME: &str = "egress-cni";
}

/// Priorities of the policy rules vpcni (and the original) installs; lower runs first.
pub mod priority {
    /// `to <pod IP> lookup main`, one per pod (the plugin): traffic to a pod goes to its veth, whatever the
    /// rules below say.
    pub const TO_POD: u32 = 512;
    /// `fwmark 0x80/0x80 lookup main` (ipamd): connections that came in on the primary ENI, or leave the
    /// VPC through SNAT, answer through the primary ENI.
    pub const FWMARK: u32 = 1024;
    /// `to <cidr> lookup main`, one per `AWS_EXTERNAL_SERVICE_CIDRS` entry (ipamd).
    pub const EXTERNAL_SERVICE: u32 = 1535;
    /// `from <pod IP> lookup <ENI table>`, one per pod on a secondary ENI (the plugin): the pod's traffic
    /// leaves through the ENI its address belongs to, as EC2's source/destination check demands.
    pub const FROM_POD: u32 = 1536;
    /// `from <ENI primary IP> lookup <ENI table>`, one per secondary ENI (ipamd).
    pub const ENI_PRIMARY_IP: u32 = 32765;
}

/// The highest device index the layout numbers. Device indexes 0 to 99 keep card 0's tables (device + 1)
/// clear of the kernel's 253–255 and the other cards' tables (10000 + 100 × card + device) distinct; EC2's
/// largest instance types have 24 ENIs on a card.
pub const MAX_DEVICE_NUMBER: u32 = 99;

/// The highest network card index the layout numbers (EC2's largest instance types have 32 cards).
pub const MAX_NETWORK_CARD: u32 = 99;

/// Where an ENI is attached to its instance: the network card and the device index on that card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EniSlot {
    /// Network card index (0 on single-card instances).
    pub network_card: u32,
    /// Device index on that card (0 is the card's first ENI; card 0's is the instance's primary ENI).
    pub device_number: u32,
}

impl EniSlot {
    /// The primary ENI's slot.
    pub const PRIMARY: Self = Self::new(0, 0);

    /// The slot of device `device_number` on card `network_card`.
    pub const fn new(network_card: u32, device_number: u32) -> Self {
        Self {
            network_card,
            device_number,
        }
    }

    /// The slot of device `device_number` on card `network_card`, if the layout numbers it: both at most
    /// [`MAX_DEVICE_NUMBER`] and [`MAX_NETWORK_CARD`]. Use it for numbers read from outside (instance
    /// metadata, an old CNI result).
    pub const fn checked(network_card: u32, device_number: u32) -> Option<Self> {
        if network_card <= MAX_NETWORK_CARD && device_number <= MAX_DEVICE_NUMBER {
            Some(Self::new(network_card, device_number))
        } else {
            None
        }
    }

    /// The route table of the ENI in this slot, as the original numbers them: main for the primary ENI,
    /// device number + 1 on card 0, and 10000 + 100 × card + device on the other cards (so no two ENIs of
    /// an instance share a table, and none lands on the kernel's 253–255). Defined for the slots
    /// [`EniSlot::checked`] accepts.
    pub const fn route_table(self) -> u32 {
        match (self.network_card, self.device_number) {
            (0, 0) => MAIN_TABLE,
            (0, device) => device + 1,
            (card, device) => 10_000 + 100 * card + device,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn single_card_tables_are_main_then_device_plus_one() {
        assert_eq!(EniSlot::PRIMARY.route_table(), 254);
        assert_eq!(EniSlot::new(0, 1).route_table(), 2);
        assert_eq!(EniSlot::new(0, 3).route_table(), 4);
        assert_eq!(EniSlot::new(0, 14).route_table(), 15);
    }

    /// p4d.24xlarge has four network cards of 15 ENIs each: every ENI it can hold gets its own table, the
    /// ones the original gives it, and none is one of the kernel's reserved tables.
    #[test]
    fn every_eni_of_a_multi_card_instance_gets_its_own_table() {
        let limits = vpcni_limits::builtin()
            .get("p4d.24xlarge")
            .expect("p4d.24xlarge is in the limits table");
        assert_eq!(limits.network_cards.len(), 4, "{:?}", limits.network_cards);
        let mut owners: BTreeMap<u32, EniSlot> = BTreeMap::new();
        for card in &limits.network_cards {
            for device in 0..card.max_enis {
                let slot = EniSlot::new(card.index, device);
                let table = slot.route_table();
                if slot != EniSlot::PRIMARY {
                    assert!(
                        !(253..=255).contains(&table),
                        "{slot:?} got reserved table {table}"
                    );
                    assert_ne!(table, 0, "{slot:?}");
                }
                if let Some(other) = owners.insert(table, slot) {
                    panic!("{slot:?} and {other:?} share table {table}");
                }
            }
        }
        assert_eq!(owners.len(), 60);
        // The original's numbers, written out: card 0 device 14 → 15, card 1 device 0 → 10100, card 3
        // device 14 → 10314.
        assert_eq!(owners[&254], EniSlot::PRIMARY);
        assert_eq!(owners[&15], EniSlot::new(0, 14));
        assert_eq!(owners[&10_100], EniSlot::new(1, 0));
        assert_eq!(owners[&10_102], EniSlot::new(1, 2));
        assert_eq!(owners[&10_314], EniSlot::new(3, 14));
        // Device 0 of card 1 is not the primary ENI: it has a table of its own.
        assert_ne!(EniSlot::new(1, 0).route_table(), MAIN_TABLE);
    }

    /// Every slot the layout numbers has a table of its own, never 0 or one of the kernel's 253–255 (main
    /// only for the primary ENI), and no slot beyond the bounds is accepted.
    #[test]
    fn every_numbered_slot_has_its_own_usable_table() {
        let mut owners: BTreeMap<u32, EniSlot> = BTreeMap::new();
        for card in 0..=MAX_NETWORK_CARD {
            for device in 0..=MAX_DEVICE_NUMBER {
                let slot = EniSlot::checked(card, device).expect("within the bounds");
                let table = slot.route_table();
                assert!(table != 0 && !matches!(table, 253 | 255), "{slot:?}: {table}");
                assert!(table != MAIN_TABLE || slot == EniSlot::PRIMARY, "{slot:?}");
                if let Some(other) = owners.insert(table, slot) {
                    panic!("{slot:?} and {other:?} share table {table}");
                }
            }
        }
        assert_eq!(EniSlot::checked(MAX_NETWORK_CARD + 1, 0), None);
        assert_eq!(EniSlot::checked(0, MAX_DEVICE_NUMBER + 1), None);
        assert_eq!(EniSlot::checked(u32::MAX, u32::MAX), None);
    }

    #[test]
    fn pod_gateways_are_the_originals() {
        assert_eq!(POD_GATEWAY.to_string(), "169.254.1.1");
        assert_eq!(POD_GATEWAY_V6.to_string(), "fe80::1");
        assert!(POD_GATEWAY_V6.is_unicast_link_local());
        assert_eq!((POD_PREFIX_V4, POD_PREFIX_V6), (32, 128));
    }

    #[test]
    fn egress_ranges_are_the_originals() {
        assert_eq!(
            format!("{}/{}", egress::V4_RANGE, egress::V4_RANGE_PREFIX),
            "169.254.172.0/22"
        );
        assert_eq!(
            format!("{}/{}", egress::V6_RANGE, egress::V6_RANGE_PREFIX),
            "fd00::ac:0/118"
        );
        assert!(egress::V4_RANGE.is_link_local());
        assert_eq!(
            egress::CHAIN_PREFIX.len() + egress::V4_CHAIN_INFIX.len(),
            egress::CHAIN_PREFIX.len() + egress::V6_CHAIN_INFIX.len()
        );
    }

    #[test]
    fn rule_priorities_run_in_the_original_order() {
        let order = [
            priority::TO_POD,
            priority::FWMARK,
            priority::EXTERNAL_SERVICE,
            priority::FROM_POD,
            priority::ENI_PRIMARY_IP,
        ];
        assert_eq!(order, [512, 1024, 1535, 1536, 32765]);
    }
}
