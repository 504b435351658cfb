//! One conformance suite for every [`Ec2`] backend: the simulator in process, the AWS SDK backend against
//! the simulator's EC2 endpoint, and the AWS SDK backend against moto_server.
//!
//! Each case is an `async fn` over a [`World`] (a VPC, its subnets, one running instance, and the backend
//! under test behind `&dyn Ec2`), so the same assertions run on every backend. A backend provides a runner
//! that builds the world a case asks for ([`Case::world`]) and drives the case on its runtime, and
//! [`conformance_tests!`](crate::conformance_tests) turns every case into its own `#[test]`.
//!
//! Cases are in two tiers ([`Needs`]): [`Needs::Wire`] cases hold for any endpoint that speaks EC2's API
//! (moto included); [`Needs::Ec2Rules`] cases check rules EC2 enforces and moto does not (limits, addresses
//! in use, reserved addresses, prefixes, pagination, parameter combinations). A backend that enforces no
//! rules runs the wire tier only; nothing is skipped at run time.
//!
//! Expected values come from EC2's documentation, not from the simulator: five reserved addresses per
//! subnet, /28 prefixes aligned on 16, the published per-type limits (m5.large: 3 ENIs of 10 addresses,
//! m5.xlarge: 4 of 15, t3.medium: 3 of 6, p5.48xlarge: 32 network cards), the address-parameter rules of
//! CreateNetworkInterface's API reference.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed assertion is the case's failure report

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error,
    Ec2ErrorKind, Filter, InterfaceStatus, NetworkInterface, PrivateIpSpec, Tags,
};

/// The VPC every world lives in.
pub const VPC_CIDR: &str = "10.0.0.0/16";
/// The availability zone every subnet is in.
pub const AVAILABILITY_ZONE: &str = "us-west-2a";

/// What a case needs from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Only EC2's API: any endpoint that speaks it (moto included).
    Wire,
    /// EC2's rules, enforced: the simulator, directly or behind its endpoint.
    Ec2Rules,
}

/// The world a case runs in: subnets of [`VPC_CIDR`] in [`AVAILABILITY_ZONE`], and one running instance in
/// the first subnet.
#[derive(Debug, Clone, Copy)]
pub struct WorldSpec {
    /// `(name, CIDR)` of each subnet; the instance runs in the first.
    pub subnets: &'static [(&'static str, &'static str)],
    /// The instance's type.
    pub instance_type: &'static str,
    /// Whether the VPC has an Amazon-provided IPv6 /56 and each subnet a /64 of it: subnet `i` (in the
    /// order of [`WorldSpec::subnets`]) gets [`subnet_ipv6_block`]`(vpc block, i)`.
    pub ipv6: bool,
}

/// The `index`th /64 of a VPC's /56: the IPv6 block a dual-stack world gives its subnet number `index`.
pub fn subnet_ipv6_block(vpc_block: Ipv6Net, index: usize) -> Ipv6Net {
    let network = u128::from(vpc_block.network()) | ((index as u128 & 0xff) << 64);
    Ipv6Net::new(Ipv6Addr::from(network), 64).expect("64 is a valid IPv6 prefix length")
}

/// A world built by a backend for one case.
pub struct World {
    /// The backend under test.
    pub ec2: Arc<dyn Ec2>,
    /// The VPC.
    pub vpc_id: String,
    /// Subnet ids by the names in [`WorldSpec::subnets`].
    pub subnets: BTreeMap<String, String>,
    /// The running instance.
    pub instance_id: String,
    /// Whatever must live as long as the world (an endpoint, a moto_server process).
    pub keep_alive: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("vpc_id", &self.vpc_id)
            .field("subnets", &self.subnets)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl World {
    /// The id of subnet `name`.
    pub fn subnet(&self, name: &str) -> String {
        self.subnets
            .get(name)
            .unwrap_or_else(|| panic!("the world has no subnet {name:?}"))
            .clone()
    }
}

/// The future a case returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One conformance case.
#[derive(Debug)]
pub struct Case {
    /// Its name, which is also the name of its generated test.
    pub name: &'static str,
    /// Which backends it runs on.
    pub needs: Needs,
    /// The world it needs.
    pub world: WorldSpec,
    /// The case itself.
    pub run: for<'a> fn(&'a World) -> CaseFuture<'a>,
}

const ONE_SUBNET: &[(&str, &str)] = &[("main", "10.0.0.0/20")];

const fn world(subnets: &'static [(&'static str, &'static str)], instance_type: &'static str) -> WorldSpec {
    WorldSpec {
        subnets,
        instance_type,
        ipv6: false,
    }
}

/// A dual-stack world: the VPC has an IPv6 /56, each subnet a /64 of it.
const fn dual_stack(
    subnets: &'static [(&'static str, &'static str)],
    instance_type: &'static str,
) -> WorldSpec {
    WorldSpec {
        subnets,
        instance_type,
        ipv6: true,
    }
}

macro_rules! cases {
    ($($name:ident: $needs:ident, $world:expr;)*) => {
        /// Every case, in the order they are listed.
        pub static CASES: &[Case] = &[
            $(Case {
                name: stringify!($name),
                needs: Needs::$needs,
                world: $world,
                run: |world| Box::pin(cases::$name(world)),
            },)*
        ];
    };
}

cases! {
    instances_have_their_primary_eni_at_device_zero: Wire, world(ONE_SUBNET, "m5.xlarge");
    subnets_are_described_by_id_and_filter: Wire, world(&[("a", "10.0.0.0/24"), ("b", "10.0.1.0/24")], "m5.large");
    instance_types_report_network_limits: Wire, world(ONE_SUBNET, "m5.large");
    create_honours_private_ip_address: Wire, world(&[("main", "10.0.0.0/24")], "m5.large");
    create_honours_private_ip_addresses_and_their_primary: Wire, world(&[("main", "10.0.0.0/24")], "m5.large");
    create_picks_secondary_addresses_by_count: Wire, world(&[("main", "10.0.0.0/24")], "m5.large");
    picked_addresses_are_distinct_and_free: Ec2Rules, world(&[("main", "10.0.0.0/24")], "m5.large");
    eni_lifecycle_attach_assign_tag_detach_delete: Wire, world(&[("main", "10.0.1.0/24")], "m5.xlarge");
    create_refuses_an_address_in_use: Ec2Rules, world(&[("main", "10.0.0.0/24")], "m5.large");
    create_refuses_addresses_outside_the_subnet_or_reserved: Ec2Rules, world(&[("main", "10.0.0.0/24")], "m5.large");
    create_combines_address_parameters_as_ec2_does: Ec2Rules, world(&[("main", "10.0.0.0/24")], "m5.large");
    create_honours_ipv4_prefixes: Ec2Rules, world(&[("main", "10.0.0.0/24")], "m5.large");
    create_is_all_or_nothing_when_the_subnet_runs_out: Ec2Rules, world(&[("big", "10.0.0.0/20"), ("tiny", "10.0.16.0/27")], "m5.large");
    subnets_reserve_five_addresses_and_run_out: Ec2Rules, world(&[("main", "10.0.0.0/28")], "t3.medium");
    attachments_are_limited_by_instance_type: Ec2Rules, world(ONE_SUBNET, "m5.xlarge");
    attachments_are_limited_per_network_card: Ec2Rules, world(ONE_SUBNET, "p5.48xlarge");
    address_slots_count_secondary_ips_and_prefixes_alike: Ec2Rules, world(ONE_SUBNET, "m5.large");
    prefixes_are_aligned_disjoint_and_fragmentation_is_reported: Ec2Rules, world(&[("main", "10.0.0.0/26")], "m5.xlarge");
    prefixes_need_nitro_or_bare_metal: Ec2Rules, world(ONE_SUBNET, "m4.large");
    detach_comes_before_delete_and_the_primary_eni_stays: Ec2Rules, world(ONE_SUBNET, "m5.xlarge");
    describe_network_interfaces_pages_filters_and_refuses_bad_requests: Ec2Rules, world(ONE_SUBNET, "c5.4xlarge");
    instance_types_report_ipv6_support: Wire, world(ONE_SUBNET, "m5.large");
    ipv6_addresses_are_assigned_described_and_unassigned: Wire, dual_stack(ONE_SUBNET, "m5.large");
    ipv6_prefixes_are_aligned_80s_inside_the_subnets_64: Ec2Rules, dual_stack(ONE_SUBNET, "m5.large");
    ipv6_slots_are_their_own_limit_per_eni: Ec2Rules, dual_stack(ONE_SUBNET, "m5.large");
    ipv6_needs_an_instance_type_with_ipv6: Ec2Rules, dual_stack(ONE_SUBNET, "c1.medium");
    ipv6_prefixes_need_nitro_or_bare_metal: Ec2Rules, dual_stack(ONE_SUBNET, "m4.large");
    ipv6_needs_a_subnet_with_an_ipv6_block: Ec2Rules, world(ONE_SUBNET, "m5.large");
}

/// The case called `name`.
pub fn case(name: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance case {name:?}"))
}

/// Checks that a backend's generated tests are exactly the cases it can run: every wire case, and every
/// rules case too if `enforces_rules`. Fails the test that calls it on any case missing or extra.
pub fn check_generated(generated: &[&str], enforces_rules: bool) {
    let generated: BTreeSet<&str> = generated.iter().copied().collect();
    let expected: BTreeSet<&str> = CASES
        .iter()
        .filter(|c| enforces_rules || c.needs == Needs::Wire)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        generated, expected,
        "the generated tests must be the cases this backend can run"
    );
}

/// One `#[test]` per conformance case for a backend: `conformance_tests!(runner, rules)` for a backend that
/// enforces EC2's rules, `conformance_tests!(runner, wire)` for one that only speaks the API. `runner` is a
/// `fn(&'static Case)` that builds the case's world and runs it to completion.
#[macro_export]
macro_rules! conformance_tests {
    ($runner:path, rules) => {
        $crate::__conformance_tests!($runner, true;
            instances_have_their_primary_eni_at_device_zero,
            subnets_are_described_by_id_and_filter,
            instance_types_report_network_limits,
            create_honours_private_ip_address,
            create_honours_private_ip_addresses_and_their_primary,
            create_picks_secondary_addresses_by_count,
            picked_addresses_are_distinct_and_free,
            eni_lifecycle_attach_assign_tag_detach_delete,
            create_refuses_an_address_in_use,
            create_refuses_addresses_outside_the_subnet_or_reserved,
            create_combines_address_parameters_as_ec2_does,
            create_honours_ipv4_prefixes,
            create_is_all_or_nothing_when_the_subnet_runs_out,
            subnets_reserve_five_addresses_and_run_out,
            attachments_are_limited_by_instance_type,
            attachments_are_limited_per_network_card,
            address_slots_count_secondary_ips_and_prefixes_alike,
            prefixes_are_aligned_disjoint_and_fragmentation_is_reported,
            prefixes_need_nitro_or_bare_metal,
            detach_comes_before_delete_and_the_primary_eni_stays,
            describe_network_interfaces_pages_filters_and_refuses_bad_requests,
            instance_types_report_ipv6_support,
            ipv6_addresses_are_assigned_described_and_unassigned,
            ipv6_prefixes_are_aligned_80s_inside_the_subnets_64,
            ipv6_slots_are_their_own_limit_per_eni,
            ipv6_needs_an_instance_type_with_ipv6,
            ipv6_prefixes_need_nitro_or_bare_metal,
            ipv6_needs_a_subnet_with_an_ipv6_block,
        );
    };
    ($runner:path, wire) => {
        $crate::__conformance_tests!($runner, false;
            instances_have_their_primary_eni_at_device_zero,
            subnets_are_described_by_id_and_filter,
            instance_types_report_network_limits,
            create_honours_private_ip_address,
            create_honours_private_ip_addresses_and_their_primary,
            create_picks_secondary_addresses_by_count,
            eni_lifecycle_attach_assign_tag_detach_delete,
            instance_types_report_ipv6_support,
            ipv6_addresses_are_assigned_described_and_unassigned,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($runner:path, $enforces_rules:expr; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $runner($crate::conformance::case(stringify!($case)));
            }
        )*

        #[test]
        fn every_case_this_backend_can_run_is_generated() {
            $crate::conformance::check_generated(&[$(stringify!($case)),*], $enforces_rules);
        }
    };
}

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// The IPv6 /64 of subnet `name`, as DescribeSubnets reports it.
async fn subnet_ipv6(world: &World, name: &str) -> Ipv6Net {
    let subnets = world
        .ec2
        .describe_subnets(&[world.subnet(name)], &[])
        .await
        .unwrap();
    subnets[0]
        .ipv6_cidr_block
        .unwrap_or_else(|| panic!("subnet {name} has no IPv6 block: {subnets:?}"))
}

/// The `n`th aligned /80 of a /64.
fn nth_80(block: Ipv6Net, n: u128) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::from(u128::from(block.network()) | (n << 48)), 80).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, Ec2Error>) -> String {
    result.unwrap_err().code
}

fn in_subnet(world: &World, name: &str) -> CreateNetworkInterfaceRequest {
    CreateNetworkInterfaceRequest {
        subnet_id: world.subnet(name),
        description: "aws-K8S-conformance".into(),
        ..Default::default()
    }
}

async fn create(world: &World, request: CreateNetworkInterfaceRequest) -> NetworkInterface {
    world.ec2.create_network_interface(&request).await.unwrap()
}

async fn new_eni(world: &World, subnet: &str) -> String {
    create(world, in_subnet(world, subnet)).await.network_interface_id
}

async fn attached_eni(world: &World, subnet: &str, device_index: u32) -> String {
    let eni = new_eni(world, subnet).await;
    world
        .ec2
        .attach_network_interface(&eni, &world.instance_id, device_index, 0)
        .await
        .unwrap();
    eni
}

async fn describe(world: &World, eni: &str) -> NetworkInterface {
    let mut page = world
        .ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            network_interface_ids: vec![eni.to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.network_interfaces.len(), 1, "{page:?}");
    page.network_interfaces.remove(0)
}

async fn available(world: &World, subnet: &str) -> u32 {
    world
        .ec2
        .describe_subnets(&[world.subnet(subnet)], &[])
        .await
        .unwrap()[0]
        .available_ip_address_count
}

/// Every address an ENI holds: the primary, the secondaries, and each address of each prefix.
fn held(eni: &NetworkInterface) -> BTreeSet<Ipv4Addr> {
    let mut addresses: BTreeSet<Ipv4Addr> = eni.secondary_ips.iter().copied().collect();
    addresses.insert(eni.private_ip);
    for prefix in &eni.ipv4_prefixes {
        addresses.extend(prefix.hosts().chain([prefix.network(), prefix.broadcast()]));
    }
    addresses
}

/// The cases. Each is public so a backend can also call one directly.
pub mod cases {
    use super::*;

    /// DescribeInstances: the type, and the primary ENI at device 0 of card 0 holding the instance's address.
    pub async fn instances_have_their_primary_eni_at_device_zero(world: &World) {
        let instance = world.ec2.describe_instance(&world.instance_id).await.unwrap();
        assert_eq!(instance.instance_id, world.instance_id);
        assert_eq!(instance.instance_type, "m5.xlarge");
        assert_eq!(instance.vpc_id, world.vpc_id);
        assert_eq!(instance.subnet_id, world.subnet("main"));
        assert_eq!(instance.network_interfaces.len(), 1, "{instance:?}");
        let primary = &instance.network_interfaces[0];
        let attachment = primary.attachment.as_ref().unwrap();
        assert_eq!((attachment.device_index, attachment.network_card_index), (0, 0));
        assert_eq!(attachment.instance_id, world.instance_id);
        assert_eq!(primary.private_ip, instance.private_ip);
        assert!(net("10.0.0.0/20").contains(&instance.private_ip));
        assert_eq!(primary.status, InterfaceStatus::InUse);
        let missing = world
            .ec2
            .describe_instance("i-0123456789abcdef0")
            .await
            .unwrap_err();
        assert_eq!(
            (missing.code.as_str(), missing.kind),
            ("InvalidInstanceID.NotFound", Ec2ErrorKind::NotFound)
        );
    }

    /// DescribeSubnets by id and by filter; an unknown id is NotFound.
    pub async fn subnets_are_described_by_id_and_filter(world: &World) {
        let a = world.subnet("a");
        let by_id = world
            .ec2
            .describe_subnets(std::slice::from_ref(&a), &[])
            .await
            .unwrap();
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[0].subnet_id, a);
        assert_eq!(by_id[0].vpc_id, world.vpc_id);
        assert_eq!(by_id[0].cidr_block, net("10.0.0.0/24"));
        assert_eq!(by_id[0].availability_zone, AVAILABILITY_ZONE);
        // 256 − 5 reserved by AWS − the instance's address at most.
        assert!(
            (250..=251).contains(&by_id[0].available_ip_address_count),
            "{by_id:?}"
        );
        let in_vpc = world
            .ec2
            .describe_subnets(&[], &[Filter::new("vpc-id", world.vpc_id.clone())])
            .await
            .unwrap();
        let ids: BTreeSet<String> = in_vpc.into_iter().map(|s| s.subnet_id).collect();
        assert_eq!(ids, world.subnets.values().cloned().collect());
        let b = world
            .ec2
            .describe_subnets(&[], &[Filter::new("cidr-block", "10.0.1.0/24")])
            .await
            .unwrap();
        assert_eq!(
            b.iter().map(|s| s.subnet_id.clone()).collect::<Vec<_>>(),
            vec![world.subnet("b")]
        );
        let missing = world
            .ec2
            .describe_subnets(&["subnet-0123456789abcdef0".into()], &[])
            .await
            .unwrap_err();
        assert_eq!(
            (missing.code.as_str(), missing.kind),
            ("InvalidSubnetID.NotFound", Ec2ErrorKind::NotFound)
        );
    }

    /// DescribeInstanceTypes: the published network limits.
    pub async fn instance_types_report_network_limits(world: &World) {
        let types = world
            .ec2
            .describe_instance_types(&["m5.large".into(), "p5.48xlarge".into()])
            .await
            .unwrap();
        let by_name: BTreeMap<&str, _> = types.iter().map(|t| (t.instance_type.as_str(), t)).collect();
        let m5 = by_name["m5.large"];
        assert_eq!((m5.max_enis, m5.ipv4_per_eni), (3, 10));
        assert_eq!(m5.network_cards, vec![(0, 3)]);
        let p5 = by_name["p5.48xlarge"];
        assert_eq!(p5.network_cards.len(), 32);
        assert_eq!(p5.ipv4_per_eni, 50);
    }

    /// CreateNetworkInterface with `PrivateIpAddress`: that address is the ENI's primary.
    pub async fn create_honours_private_ip_address(world: &World) {
        let eni = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.200")),
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(eni.private_ip, ip("10.0.0.200"));
        assert!(eni.secondary_ips.is_empty(), "{eni:?}");
        let described = describe(world, &eni.network_interface_id).await;
        assert_eq!(described.private_ip, ip("10.0.0.200"));
        assert_eq!(described.status, InterfaceStatus::Available);
    }

    /// CreateNetworkInterface with `PrivateIpAddresses.N`: the one marked primary is the primary, the others
    /// secondaries; with `PrivateIpAddress`, entries not marked primary are secondaries.
    pub async fn create_honours_private_ip_addresses_and_their_primary(world: &World) {
        let eni = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ips: vec![
                    PrivateIpSpec::secondary(ip("10.0.0.51")),
                    PrivateIpSpec::primary(ip("10.0.0.50")),
                    PrivateIpSpec::secondary(ip("10.0.0.52")),
                ],
                ..in_subnet(world, "main")
            },
        )
        .await;
        let described = describe(world, &eni.network_interface_id).await;
        for view in [&eni, &described] {
            assert_eq!(view.private_ip, ip("10.0.0.50"));
            let secondaries: BTreeSet<Ipv4Addr> = view.secondary_ips.iter().copied().collect();
            assert_eq!(secondaries, [ip("10.0.0.51"), ip("10.0.0.52")].into());
        }
        let with_primary = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.60")),
                private_ips: vec![PrivateIpSpec::secondary(ip("10.0.0.61"))],
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(with_primary.private_ip, ip("10.0.0.60"));
        assert_eq!(with_primary.secondary_ips, vec![ip("10.0.0.61")]);
    }

    /// CreateNetworkInterface with `SecondaryPrivateIpAddressCount`, alone and with an exact primary.
    pub async fn create_picks_secondary_addresses_by_count(world: &World) {
        let subnet = net("10.0.0.0/24");
        let eni = create(
            world,
            CreateNetworkInterfaceRequest {
                secondary_ip_count: 3,
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(eni.secondary_ips.len(), 3, "{eni:?}");
        assert!(held(&eni).iter().all(|a| subnet.contains(a)), "{eni:?}");
        assert_eq!(
            describe(world, &eni.network_interface_id)
                .await
                .secondary_ips
                .len(),
            3
        );

        let with_primary = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.70")),
                secondary_ip_count: 2,
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(with_primary.private_ip, ip("10.0.0.70"));
        assert_eq!(with_primary.secondary_ips.len(), 2);
    }

    /// Addresses EC2 picks are free ones: distinct, never an ENI's primary, never another ENI's. (moto picks
    /// at random and may repeat one: a rule, not the wire.)
    pub async fn picked_addresses_are_distinct_and_free(world: &World) {
        let eni = create(
            world,
            CreateNetworkInterfaceRequest {
                secondary_ip_count: 3,
                ..in_subnet(world, "main")
            },
        )
        .await;
        let secondaries: BTreeSet<Ipv4Addr> = eni.secondary_ips.iter().copied().collect();
        assert_eq!(secondaries.len(), 3, "{eni:?}");
        assert!(!secondaries.contains(&eni.private_ip));
        let with_primary = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.70")),
                secondary_ip_count: 2,
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert!(!with_primary.secondary_ips.contains(&ip("10.0.0.70")));
        assert!(held(&eni).is_disjoint(&held(&with_primary)));
    }

    /// The calls the daemon makes for an ENI, in order, and the filters it finds ENIs by.
    pub async fn eni_lifecycle_attach_assign_tag_detach_delete(world: &World) {
        let ec2 = &world.ec2;
        let instance_id = world.instance_id.clone();
        let mut tags = Tags::new();
        tags.insert("node.k8s.amazonaws.com/instance_id".into(), instance_id.clone());
        let eni = create(
            world,
            CreateNetworkInterfaceRequest {
                description: format!("aws-K8S-{instance_id}"),
                tags: tags.clone(),
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(eni.tags, tags);
        assert_eq!(eni.description, format!("aws-K8S-{instance_id}"));
        assert_eq!(
            (eni.subnet_id.as_str(), eni.vpc_id.as_str()),
            (world.subnet("main").as_str(), world.vpc_id.as_str())
        );
        let eni_id = eni.network_interface_id.clone();

        let attachment = ec2
            .attach_network_interface(&eni_id, &instance_id, 1, 0)
            .await
            .unwrap();
        ec2.set_delete_on_termination(&eni_id, &attachment, true)
            .await
            .unwrap();
        let attached = describe(world, &eni_id).await;
        let described_attachment = attached.attachment.as_ref().unwrap();
        assert_eq!(described_attachment.attachment_id, attachment);
        assert_eq!(described_attachment.instance_id, instance_id);
        assert_eq!(described_attachment.device_index, 1);
        assert_eq!(attached.status, InterfaceStatus::InUse);
        let instance = ec2.describe_instance(&instance_id).await.unwrap();
        assert_eq!(instance.network_interfaces.len(), 2);

        // EC2 answers with the addresses this call assigned (the rules tier checks exactly that); moto answers
        // with every address of the ENI. What the ENI holds afterwards is the same on both.
        let counted = ec2
            .assign_private_ip_addresses(&eni_id, &AddressRequest::Count(3))
            .await
            .unwrap();
        let after_count: BTreeSet<Ipv4Addr> =
            describe(world, &eni_id).await.secondary_ips.into_iter().collect();
        assert_eq!(after_count.len(), 3, "{after_count:?}");
        assert!(after_count.iter().all(|a| counted.contains(a)), "{counted:?}");
        // An address the ENI does not hold yet. moto picks the primary at random and, unlike EC2, accepts an
        // explicit address the ENI already holds (then lists it once), so a fixed choice flaked there.
        let holds = held(&describe(world, &eni_id).await);
        let explicit = (200..=250)
            .map(|host| Ipv4Addr::new(10, 0, 1, host))
            .find(|candidate| !holds.contains(candidate))
            .expect("an ENI with four addresses leaves one of 51 free");
        let assigned = ec2
            .assign_private_ip_addresses(&eni_id, &AddressRequest::Explicit(vec![explicit]))
            .await
            .unwrap();
        assert!(assigned.contains(&explicit), "{assigned:?}");
        let described = describe(world, &eni_id).await;
        let secondaries: BTreeSet<Ipv4Addr> = described.secondary_ips.iter().copied().collect();
        let expected: BTreeSet<Ipv4Addr> = after_count.iter().copied().chain([explicit]).collect();
        assert_eq!(secondaries, expected);

        ec2.unassign_private_ip_addresses(&eni_id, &[explicit])
            .await
            .unwrap();
        assert!(!describe(world, &eni_id).await.secondary_ips.contains(&explicit));

        let mut more = Tags::new();
        more.insert("cluster.k8s.amazonaws.com/name".into(), "lab".into());
        ec2.create_tags(std::slice::from_ref(&eni_id), &more)
            .await
            .unwrap();
        assert_eq!(describe(world, &eni_id).await.tags.len(), 2);
        for filters in [
            vec![Filter::new("tag-key", "node.k8s.amazonaws.com/instance_id")],
            vec![Filter::new("tag:cluster.k8s.amazonaws.com/name", "lab")],
            vec![
                Filter::new("attachment.instance-id", instance_id.clone()),
                Filter::new("vpc-id", world.vpc_id.clone()),
            ],
            vec![Filter::new("subnet-id", world.subnet("main"))],
        ] {
            let page = ec2
                .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                    filters: filters.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(
                page.network_interfaces
                    .iter()
                    .any(|e| e.network_interface_id == eni_id),
                "{filters:?}"
            );
        }
        let other_cluster = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("tag:cluster.k8s.amazonaws.com/name", "elsewhere")],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(other_cluster.network_interfaces.is_empty(), "{other_cluster:?}");

        ec2.detach_network_interface(&attachment, false).await.unwrap();
        let detached = describe(world, &eni_id).await;
        assert_eq!(detached.status, InterfaceStatus::Available);
        assert!(detached.attachment.is_none(), "{detached:?}");
        let available_enis = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("status", "available")],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            available_enis
                .network_interfaces
                .iter()
                .any(|e| e.network_interface_id == eni_id)
        );
        ec2.delete_network_interface(&eni_id).await.unwrap();

        let missing = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                network_interface_ids: vec![eni_id.clone()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            (missing.code.as_str(), missing.kind),
            ("InvalidNetworkInterfaceID.NotFound", Ec2ErrorKind::NotFound)
        );
        assert_eq!(
            ec2.delete_network_interface(&eni_id).await.unwrap_err().kind,
            Ec2ErrorKind::NotFound
        );
    }

    /// An address held by any ENI (an instance's primary, another ENI's primary or secondary) cannot be
    /// asked for again: `InvalidIPAddress.InUse`, and the failed call takes nothing.
    pub async fn create_refuses_an_address_in_use(world: &World) {
        let instance = world.ec2.describe_instance(&world.instance_id).await.unwrap();
        let first = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.200")),
                private_ips: vec![PrivateIpSpec::secondary(ip("10.0.0.201"))],
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(first.private_ip, ip("10.0.0.200"));
        let before = available(world, "main").await;
        for taken in [ip("10.0.0.200"), ip("10.0.0.201"), instance.private_ip] {
            let as_primary = CreateNetworkInterfaceRequest {
                private_ip: Some(taken),
                ..in_subnet(world, "main")
            };
            let error = world.ec2.create_network_interface(&as_primary).await.unwrap_err();
            assert_eq!(error.code, "InvalidIPAddress.InUse", "{taken}: {error}");
            let as_secondary = CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.150")),
                private_ips: vec![PrivateIpSpec::secondary(taken)],
                ..in_subnet(world, "main")
            };
            assert_eq!(
                code(world.ec2.create_network_interface(&as_secondary).await),
                "InvalidIPAddress.InUse"
            );
        }
        // The refused calls took nothing: not even 10.0.0.150, claimed before the address in use was met.
        assert_eq!(available(world, "main").await, before);
        let later = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.150")),
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(later.private_ip, ip("10.0.0.150"));
        // Assigning an address in use to an existing ENI is refused the same way.
        assert_eq!(
            code(
                world
                    .ec2
                    .assign_private_ip_addresses(
                        &later.network_interface_id,
                        &AddressRequest::Explicit(vec![ip("10.0.0.201")])
                    )
                    .await
            ),
            "InvalidIPAddress.InUse"
        );
    }

    /// An address outside the subnet, or one of the five AWS reserves in it, is an invalid parameter.
    pub async fn create_refuses_addresses_outside_the_subnet_or_reserved(world: &World) {
        for (address, why) in [
            ("10.0.1.10", "outside the subnet"),
            ("10.9.0.200", "outside the VPC"),
            ("10.0.0.0", "network address"),
            ("10.0.0.1", "VPC router"),
            ("10.0.0.2", "DNS"),
            ("10.0.0.3", "reserved for future use"),
            ("10.0.0.255", "broadcast"),
        ] {
            let request = CreateNetworkInterfaceRequest {
                private_ip: Some(ip(address)),
                ..in_subnet(world, "main")
            };
            let error = world.ec2.create_network_interface(&request).await.unwrap_err();
            assert_eq!(
                (error.code.as_str(), error.kind),
                ("InvalidParameterValue", Ec2ErrorKind::InvalidParameter),
                "{address} ({why})"
            );
            let as_secondary = CreateNetworkInterfaceRequest {
                private_ips: vec![PrivateIpSpec::secondary(ip(address))],
                ..in_subnet(world, "main")
            };
            assert_eq!(
                code(world.ec2.create_network_interface(&as_secondary).await),
                "InvalidParameterValue",
                "{address} ({why}) as a secondary"
            );
        }
        // The last usable address, next to the broadcast address, is fine.
        for address in ["10.0.0.254", "10.0.0.100"] {
            let eni = create(
                world,
                CreateNetworkInterfaceRequest {
                    private_ip: Some(ip(address)),
                    ..in_subnet(world, "main")
                },
            )
            .await;
            assert_eq!(eni.private_ip, ip(address));
        }
    }

    /// The combinations CreateNetworkInterface's API reference allows and refuses.
    pub async fn create_combines_address_parameters_as_ec2_does(world: &World) {
        let base = || in_subnet(world, "main");
        let refused = [
            (
                "PrivateIpAddress and a primary in PrivateIpAddresses",
                CreateNetworkInterfaceRequest {
                    private_ip: Some(ip("10.0.0.10")),
                    private_ips: vec![PrivateIpSpec::primary(ip("10.0.0.11"))],
                    ..base()
                },
                "InvalidParameterCombination",
            ),
            (
                "two primaries",
                CreateNetworkInterfaceRequest {
                    private_ips: vec![
                        PrivateIpSpec::primary(ip("10.0.0.10")),
                        PrivateIpSpec::primary(ip("10.0.0.11")),
                    ],
                    ..base()
                },
                "InvalidParameterValue",
            ),
            (
                "an address twice",
                CreateNetworkInterfaceRequest {
                    private_ip: Some(ip("10.0.0.10")),
                    private_ips: vec![PrivateIpSpec::secondary(ip("10.0.0.10"))],
                    ..base()
                },
                "InvalidParameterValue",
            ),
            (
                "a count and two exact addresses",
                CreateNetworkInterfaceRequest {
                    private_ips: vec![
                        PrivateIpSpec::primary(ip("10.0.0.10")),
                        PrivateIpSpec::secondary(ip("10.0.0.11")),
                    ],
                    secondary_ip_count: 1,
                    ..base()
                },
                "InvalidParameterCombination",
            ),
            (
                "exact addresses and a prefix count",
                CreateNetworkInterfaceRequest {
                    private_ips: vec![PrivateIpSpec::secondary(ip("10.0.0.10"))],
                    ipv4_prefix_count: 1,
                    ..base()
                },
                "InvalidParameterCombination",
            ),
            (
                "an address count and exact prefixes",
                CreateNetworkInterfaceRequest {
                    secondary_ip_count: 1,
                    ipv4_prefixes: vec![net("10.0.0.32/28")],
                    ..base()
                },
                "InvalidParameterCombination",
            ),
            (
                "an address count and a prefix count",
                CreateNetworkInterfaceRequest {
                    secondary_ip_count: 1,
                    ipv4_prefix_count: 1,
                    ..base()
                },
                "InvalidParameterCombination",
            ),
            (
                "exact prefixes and a prefix count",
                CreateNetworkInterfaceRequest {
                    ipv4_prefixes: vec![net("10.0.0.32/28")],
                    ipv4_prefix_count: 1,
                    ..base()
                },
                "InvalidParameterCombination",
            ),
            (
                "more than 50 address slots on one ENI",
                CreateNetworkInterfaceRequest {
                    secondary_ip_count: 50,
                    ..base()
                },
                "PrivateIpAddressLimitExceeded",
            ),
        ];
        let before = available(world, "main").await;
        for (what, request, expected) in refused {
            assert_eq!(
                code(world.ec2.create_network_interface(&request).await),
                expected,
                "{what}"
            );
        }
        assert_eq!(
            available(world, "main").await,
            before,
            "refused calls take nothing"
        );
        // Allowed: one primary in PrivateIpAddresses and a count; an exact primary and prefixes; the most
        // slots an ENI may have (the primary and 49).
        let counted = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ips: vec![PrivateIpSpec::primary(ip("10.0.0.10"))],
                secondary_ip_count: 2,
                ..base()
            },
        )
        .await;
        assert_eq!(
            (counted.private_ip, counted.secondary_ips.len()),
            (ip("10.0.0.10"), 2)
        );
        let prefixed = create(
            world,
            CreateNetworkInterfaceRequest {
                private_ip: Some(ip("10.0.0.20")),
                ipv4_prefix_count: 1,
                ..base()
            },
        )
        .await;
        assert_eq!(
            (prefixed.private_ip, prefixed.ipv4_prefixes.len()),
            (ip("10.0.0.20"), 1)
        );
        let full = create(
            world,
            CreateNetworkInterfaceRequest {
                secondary_ip_count: 49,
                ..base()
            },
        )
        .await;
        assert_eq!(full.secondary_ips.len(), 49);
    }

    /// `Ipv4Prefix.N` and `Ipv4PrefixCount` at creation: aligned /28s, disjoint from every other address.
    pub async fn create_honours_ipv4_prefixes(world: &World) {
        let exact = create(
            world,
            CreateNetworkInterfaceRequest {
                ipv4_prefixes: vec![net("10.0.0.160/28"), net("10.0.0.224/28")],
                ..in_subnet(world, "main")
            },
        )
        .await;
        let prefixes: BTreeSet<Ipv4Net> = exact.ipv4_prefixes.iter().copied().collect();
        assert_eq!(prefixes, [net("10.0.0.160/28"), net("10.0.0.224/28")].into());
        assert!(!prefixes.iter().any(|p| p.contains(&exact.private_ip)));
        assert_eq!(
            describe(world, &exact.network_interface_id)
                .await
                .ipv4_prefixes
                .len(),
            2
        );
        let counted = create(
            world,
            CreateNetworkInterfaceRequest {
                ipv4_prefix_count: 3,
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(counted.ipv4_prefixes.len(), 3, "{counted:?}");
        for prefix in &counted.ipv4_prefixes {
            assert_eq!(prefix.prefix_len(), 28);
            assert_eq!(u32::from(prefix.network()) % 16, 0, "{prefix} is aligned");
            assert!(net("10.0.0.0/24").contains(prefix));
        }
        assert!(held(&exact).is_disjoint(&held(&counted)));
        let instance = world.ec2.describe_instance(&world.instance_id).await.unwrap();
        assert!(!held(&counted).contains(&instance.private_ip));

        for (prefix, why) in [
            ("10.0.0.168/29", "not a /28"),
            ("10.0.0.160/28", "in use"),
            ("10.0.0.164/28", "not aligned"),
            ("10.0.1.0/28", "outside the subnet"),
            ("10.0.0.0/28", "holds the reserved addresses"),
        ] {
            let request = CreateNetworkInterfaceRequest {
                ipv4_prefixes: vec![net(prefix)],
                ..in_subnet(world, "main")
            };
            let error = world.ec2.create_network_interface(&request).await.unwrap_err();
            assert_eq!(
                error.kind,
                Ec2ErrorKind::InvalidParameter,
                "{prefix} ({why}): {error}"
            );
        }
    }

    /// A subnet too small for what is asked: the create fails, typed, and takes nothing.
    pub async fn create_is_all_or_nothing_when_the_subnet_runs_out(world: &World) {
        // 10.0.16.0/27: 27 usable addresses. Its upper /28 holds the broadcast address and its lower one the
        // four reserved ones: no prefix fits at all.
        let before = available(world, "tiny").await;
        assert_eq!(before, 27);
        let too_many = CreateNetworkInterfaceRequest {
            secondary_ip_count: 27,
            ..in_subnet(world, "tiny")
        };
        let error = world.ec2.create_network_interface(&too_many).await.unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            (
                "InsufficientFreeAddressesInSubnet",
                Ec2ErrorKind::InsufficientFreeAddressesInSubnet
            )
        );
        assert_eq!(available(world, "tiny").await, before);
        let prefix = CreateNetworkInterfaceRequest {
            ipv4_prefix_count: 1,
            ..in_subnet(world, "tiny")
        };
        let error = world.ec2.create_network_interface(&prefix).await.unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("InsufficientCidrBlocks", Ec2ErrorKind::InsufficientCidrBlocks)
        );
        assert_eq!(available(world, "tiny").await, before);
        // Exactly what is left fits: the primary and 26 secondaries.
        let all = create(
            world,
            CreateNetworkInterfaceRequest {
                secondary_ip_count: 26,
                ..in_subnet(world, "tiny")
            },
        )
        .await;
        assert_eq!(held(&all).len(), 27);
        assert_eq!(available(world, "tiny").await, 0);
        assert_eq!(
            code(
                world
                    .ec2
                    .create_network_interface(&in_subnet(world, "tiny"))
                    .await
            ),
            "InsufficientFreeAddressesInSubnet"
        );
        // The big subnet is unaffected.
        new_eni(world, "big").await;
    }

    /// A /28 holds 16 − 5 reserved = 11 usable addresses; the instance takes one.
    pub async fn subnets_reserve_five_addresses_and_run_out(world: &World) {
        assert_eq!(available(world, "main").await, 10);
        let first = attached_eni(world, "main", 1).await;
        let got = world
            .ec2
            .assign_private_ip_addresses(&first, &AddressRequest::Count(4))
            .await
            .unwrap();
        assert_eq!(got.len(), 4);
        let held_by_first: BTreeSet<Ipv4Addr> =
            describe(world, &first).await.secondary_ips.into_iter().collect();
        assert_eq!(
            held_by_first,
            got.iter().copied().collect(),
            "the answer lists what this call assigned"
        );
        assert_eq!(available(world, "main").await, 5);
        let second = attached_eni(world, "main", 2).await;
        world
            .ec2
            .assign_private_ip_addresses(&second, &AddressRequest::Count(4))
            .await
            .unwrap();
        assert_eq!(available(world, "main").await, 0);
        let error = world
            .ec2
            .assign_private_ip_addresses(&second, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            (
                "InsufficientFreeAddressesInSubnet",
                Ec2ErrorKind::InsufficientFreeAddressesInSubnet
            )
        );
        // Unassigning gives the address back to the subnet.
        world
            .ec2
            .unassign_private_ip_addresses(&first, &got[..1])
            .await
            .unwrap();
        assert_eq!(available(world, "main").await, 1);
        let again = world
            .ec2
            .assign_private_ip_addresses(&second, &AddressRequest::Explicit(vec![got[0]]))
            .await
            .unwrap();
        assert_eq!(again, vec![got[0]], "the answer lists what this call assigned");
    }

    /// m5.xlarge: 4 ENIs, the primary included; device indices are unique and cards must exist.
    pub async fn attachments_are_limited_by_instance_type(world: &World) {
        for device in 1..=3 {
            attached_eni(world, "main", device).await;
        }
        let extra = new_eni(world, "main").await;
        let error = world
            .ec2
            .attach_network_interface(&extra, &world.instance_id, 5, 0)
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("AttachmentLimitExceeded", Ec2ErrorKind::AttachmentLimitExceeded)
        );
        assert_eq!(
            code(
                world
                    .ec2
                    .attach_network_interface(&extra, &world.instance_id, 0, 1)
                    .await
            ),
            "InvalidParameterValue",
            "m5.xlarge has one network card"
        );
        let attached = world.ec2.describe_instance(&world.instance_id).await.unwrap();
        assert_eq!(attached.network_interfaces.len(), 4);
        // An ENI already attached cannot be attached again.
        let first_secondary = attached
            .network_interfaces
            .iter()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 1))
            .unwrap();
        assert_eq!(
            code(
                world
                    .ec2
                    .attach_network_interface(&first_secondary.network_interface_id, &world.instance_id, 4, 0)
                    .await
            ),
            "InvalidNetworkInterface.InUse"
        );
    }

    /// p5.48xlarge: 32 network cards of 2 ENIs each (card 0 holds the primary); a device index is unique
    /// per card.
    pub async fn attachments_are_limited_per_network_card(world: &World) {
        let a = new_eni(world, "main").await;
        let b = new_eni(world, "main").await;
        let c = new_eni(world, "main").await;
        world
            .ec2
            .attach_network_interface(&a, &world.instance_id, 1, 0)
            .await
            .unwrap();
        assert_eq!(
            code(
                world
                    .ec2
                    .attach_network_interface(&b, &world.instance_id, 2, 0)
                    .await
            ),
            "AttachmentLimitExceeded"
        );
        world
            .ec2
            .attach_network_interface(&b, &world.instance_id, 0, 1)
            .await
            .unwrap();
        assert_eq!(
            code(
                world
                    .ec2
                    .attach_network_interface(&c, &world.instance_id, 0, 1)
                    .await
            ),
            "InvalidParameterValue",
            "device index 0 of card 1 is taken"
        );
        world
            .ec2
            .attach_network_interface(&c, &world.instance_id, 1, 1)
            .await
            .unwrap();
        let described = describe(world, &c).await;
        assert_eq!(described.attachment.unwrap().network_card_index, 1);
        let d = new_eni(world, "main").await;
        assert_eq!(
            code(
                world
                    .ec2
                    .attach_network_interface(&d, &world.instance_id, 0, 32)
                    .await
            ),
            "InvalidParameterValue",
            "cards are numbered 0 to 31"
        );
    }

    /// m5.large: 10 slots per ENI, the primary, secondary addresses and prefixes each taking one.
    pub async fn address_slots_count_secondary_ips_and_prefixes_alike(world: &World) {
        let eni = attached_eni(world, "main", 1).await;
        let ec2 = &world.ec2;
        ec2.assign_private_ip_addresses(&eni, &AddressRequest::Count(5))
            .await
            .unwrap();
        let prefixes = ec2
            .assign_ipv4_prefixes(&eni, &AddressRequest::Count(4))
            .await
            .unwrap();
        assert_eq!(prefixes.len(), 4);
        let error = ec2
            .assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            (
                "PrivateIpAddressLimitExceeded",
                Ec2ErrorKind::AddressLimitExceeded
            )
        );
        assert_eq!(
            code(
                ec2.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))
                    .await
            ),
            "PrivateIpAddressLimitExceeded"
        );
        // Releasing one prefix frees one slot, which an address can take.
        ec2.unassign_ipv4_prefixes(&eni, &prefixes[..1]).await.unwrap();
        ec2.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))
            .await
            .unwrap();
        let described = describe(world, &eni).await;
        assert_eq!(
            (described.secondary_ips.len(), described.ipv4_prefixes.len()),
            (6, 3)
        );
        // An unattached ENI created with more than the instance type allows cannot be attached.
        let crowded = create(
            world,
            CreateNetworkInterfaceRequest {
                secondary_ip_count: 10,
                ..in_subnet(world, "main")
            },
        )
        .await;
        assert_eq!(
            code(
                ec2.attach_network_interface(&crowded.network_interface_id, &world.instance_id, 2, 0)
                    .await
            ),
            "PrivateIpAddressLimitExceeded"
        );
    }

    /// Prefixes are aligned /28s that never hold a single address; when only scattered addresses are left,
    /// the error is InsufficientCidrBlocks, not exhaustion.
    pub async fn prefixes_are_aligned_disjoint_and_fragmentation_is_reported(world: &World) {
        let eni = attached_eni(world, "main", 1).await;
        let ec2 = &world.ec2;
        let prefixes = ec2
            .assign_ipv4_prefixes(&eni, &AddressRequest::Count(2))
            .await
            .unwrap();
        for prefix in &prefixes {
            assert_eq!(prefix.prefix_len(), 28);
            assert_eq!(u32::from(prefix.network()) % 16, 0, "{prefix} is aligned");
        }
        let singles = ec2
            .assign_private_ip_addresses(&eni, &AddressRequest::Count(3))
            .await
            .unwrap();
        assert!(singles.iter().all(|ip| prefixes.iter().all(|p| !p.contains(ip))));
        // 10.0.0.0/26: the first /28 holds the reserved addresses, two /28s are prefixes, and the ENI
        // primaries and singles sit in the others: addresses are left, no whole /28.
        let error = ec2
            .assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("InsufficientCidrBlocks", Ec2ErrorKind::InsufficientCidrBlocks)
        );
        assert!(available(world, "main").await > 0);
        assert_eq!(
            code(
                ec2.assign_ipv4_prefixes(&eni, &AddressRequest::Explicit(vec![net("10.0.0.8/28")]))
                    .await
            ),
            "InvalidParameterValue",
            "a misaligned prefix"
        );
        // Giving a prefix back makes room for exactly that block again.
        ec2.unassign_ipv4_prefixes(&eni, &prefixes[..1]).await.unwrap();
        let again = ec2
            .assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))
            .await
            .unwrap();
        assert_eq!(again, prefixes[..1]);
    }

    /// Prefix delegation needs a Nitro (or bare-metal) instance type; m4 is Xen.
    pub async fn prefixes_need_nitro_or_bare_metal(world: &World) {
        let eni = attached_eni(world, "main", 1).await;
        let error = world
            .ec2
            .assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(error.kind, Ec2ErrorKind::InvalidParameter, "{error}");
        assert!(describe(world, &eni).await.ipv4_prefixes.is_empty());
    }

    /// An attached ENI cannot be deleted; the primary ENI cannot be detached; a deleted ENI is gone.
    pub async fn detach_comes_before_delete_and_the_primary_eni_stays(world: &World) {
        let ec2 = &world.ec2;
        let eni = new_eni(world, "main").await;
        let attachment = ec2
            .attach_network_interface(&eni, &world.instance_id, 1, 0)
            .await
            .unwrap();
        assert_eq!(
            code(ec2.delete_network_interface(&eni).await),
            "InvalidNetworkInterface.InUse"
        );
        ec2.detach_network_interface(&attachment, false).await.unwrap();
        assert_eq!(describe(world, &eni).await.status, InterfaceStatus::Available);
        assert_eq!(
            code(ec2.detach_network_interface(&attachment, false).await),
            "InvalidAttachmentID.NotFound"
        );
        ec2.delete_network_interface(&eni).await.unwrap();
        assert_eq!(
            code(ec2.delete_network_interface(&eni).await),
            "InvalidNetworkInterfaceID.NotFound"
        );
        let instance = ec2.describe_instance(&world.instance_id).await.unwrap();
        let primary = instance.network_interfaces[0].attachment.clone().unwrap();
        assert_eq!(
            code(ec2.detach_network_interface(&primary.attachment_id, false).await),
            "OperationNotPermitted"
        );
    }

    /// Pagination by MaxResults, filters with wildcards, tags added later, and EC2's refusals of a bad page
    /// size or an unknown filter.
    pub async fn describe_network_interfaces_pages_filters_and_refuses_bad_requests(world: &World) {
        let ec2 = &world.ec2;
        let mut tags = Tags::new();
        tags.insert(
            "node.k8s.amazonaws.com/instance_id".into(),
            world.instance_id.clone(),
        );
        let mut created = Vec::new();
        for i in 0..12 {
            let request = CreateNetworkInterfaceRequest {
                description: if i % 2 == 0 {
                    "aws-K8S-i-1".into()
                } else {
                    "other".into()
                },
                tags: if i < 7 { tags.clone() } else { Tags::new() },
                ..in_subnet(world, "main")
            };
            created.push(create(world, request).await.network_interface_id);
        }
        let tagged = |next_token: Option<String>| DescribeNetworkInterfacesRequest {
            filters: vec![
                Filter::new("tag-key", "node.k8s.amazonaws.com/instance_id"),
                Filter::new("status", "available"),
            ],
            max_results: Some(5),
            next_token,
            ..Default::default()
        };
        let first = ec2.describe_network_interfaces(&tagged(None)).await.unwrap();
        assert_eq!(first.network_interfaces.len(), 5);
        let second = ec2
            .describe_network_interfaces(&tagged(first.next_token.clone()))
            .await
            .unwrap();
        assert_eq!(second.network_interfaces.len(), 2);
        assert!(second.next_token.is_none());
        let seen: BTreeSet<String> = first
            .network_interfaces
            .iter()
            .chain(&second.network_interfaces)
            .map(|e| e.network_interface_id.clone())
            .collect();
        assert_eq!(seen, created[..7].iter().cloned().collect());

        let described = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![
                    Filter::new("description", "aws-K8S-*"),
                    Filter::new(
                        "tag:node.k8s.amazonaws.com/instance_id",
                        world.instance_id.clone(),
                    ),
                ],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            described.network_interfaces.len(),
            4,
            "the even-numbered among the first seven"
        );
        let by_instance = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("attachment.instance-id", world.instance_id.clone())],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            by_instance.network_interfaces.len(),
            1,
            "only the primary is attached"
        );

        for (request, what) in [
            (
                DescribeNetworkInterfacesRequest {
                    max_results: Some(2),
                    ..Default::default()
                },
                "MaxResults below 5",
            ),
            (
                DescribeNetworkInterfacesRequest {
                    filters: vec![Filter::new("colour", "blue")],
                    ..Default::default()
                },
                "an unknown filter",
            ),
        ] {
            assert_eq!(
                code(ec2.describe_network_interfaces(&request).await),
                "InvalidParameterValue",
                "{what}"
            );
        }
        // Tags added later are found.
        ec2.create_tags(&[created[11].clone()], &tags).await.unwrap();
        let all = ec2.describe_network_interfaces(&tagged(None)).await.unwrap();
        let rest = ec2
            .describe_network_interfaces(&tagged(all.next_token))
            .await
            .unwrap();
        assert_eq!(all.network_interfaces.len() + rest.network_interfaces.len(), 8);
        let error = ec2
            .create_tags(&["eni-0123456789abcdef0".into()], &tags)
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("InvalidNetworkInterfaceID.NotFound", Ec2ErrorKind::NotFound)
        );
    }
    /// DescribeInstanceTypes: whether a type has IPv6, and how many IPv6 addresses an interface takes.
    pub async fn instance_types_report_ipv6_support(world: &World) {
        let types = world
            .ec2
            .describe_instance_types(&["m5.large".into(), "c1.medium".into()])
            .await
            .unwrap();
        let by_name: BTreeMap<&str, _> = types.iter().map(|t| (t.instance_type.as_str(), t)).collect();
        let m5 = by_name["m5.large"];
        assert_eq!((m5.ipv6_supported, m5.ipv6_per_eni), (true, 10));
        let c1 = by_name["c1.medium"];
        assert_eq!((c1.ipv6_supported, c1.ipv6_per_eni), (false, 0));
    }

    /// AssignIpv6Addresses by count and by address, DescribeNetworkInterfaces listing them, and
    /// UnassignIpv6Addresses, in a subnet with a /64 of the VPC's /56.
    pub async fn ipv6_addresses_are_assigned_described_and_unassigned(world: &World) {
        let ec2 = &world.ec2;
        let block = subnet_ipv6(world, "main").await;
        assert_eq!(block.prefix_len(), 64, "{block}");
        let eni = attached_eni(world, "main", 1).await;
        assert!(describe(world, &eni).await.ipv6_addresses.is_empty());
        // EC2 answers with what this call assigned, moto with every IPv6 address of the ENI (the rules tier
        // checks the former): what the ENI holds afterwards is the same on both.
        let counted = ec2
            .assign_ipv6_addresses(&eni, &AddressRequest::Count(2))
            .await
            .unwrap();
        let after_count: BTreeSet<Ipv6Addr> =
            describe(world, &eni).await.ipv6_addresses.into_iter().collect();
        assert_eq!(after_count.len(), 2, "{after_count:?}");
        assert!(
            after_count.iter().all(|a| block.contains(a)),
            "{after_count:?} in {block}"
        );
        assert!(after_count.iter().all(|a| counted.contains(a)), "{counted:?}");
        // An address of the /64 the ENI does not hold (moto picks at random: never assume one is free).
        let explicit = (0x1000u128..)
            .map(|host| Ipv6Addr::from(u128::from(block.network()) | host))
            .find(|candidate| !after_count.contains(candidate))
            .expect("a /64 has free addresses");
        let assigned = ec2
            .assign_ipv6_addresses(&eni, &AddressRequest::Explicit(vec![explicit]))
            .await
            .unwrap();
        assert!(assigned.contains(&explicit), "{assigned:?}");
        let held: BTreeSet<Ipv6Addr> = describe(world, &eni).await.ipv6_addresses.into_iter().collect();
        let expected: BTreeSet<Ipv6Addr> = after_count.iter().copied().chain([explicit]).collect();
        assert_eq!(held, expected);
        ec2.unassign_ipv6_addresses(&eni, &[explicit]).await.unwrap();
        let described = describe(world, &eni).await;
        let held: BTreeSet<Ipv6Addr> = described.ipv6_addresses.iter().copied().collect();
        assert_eq!(held, after_count);
        // IPv6 addresses leave the ENI's IPv4 addresses alone.
        assert!(described.secondary_ips.is_empty(), "{described:?}");
    }

    /// `Ipv6PrefixCount` / `Ipv6Prefixes`: aligned /80s of the subnet's /64, never one holding AWS's
    /// addresses (the first four and the last of the /64), never one given twice, never overlapping an
    /// address; the answer lists what the call assigned; a prefix the ENI does not hold cannot be unassigned.
    pub async fn ipv6_prefixes_are_aligned_80s_inside_the_subnets_64(world: &World) {
        let ec2 = &world.ec2;
        let block = subnet_ipv6(world, "main").await;
        let eni = attached_eni(world, "main", 1).await;
        let counted = ec2
            .assign_ipv6_prefixes(&eni, &AddressRequest::Count(2))
            .await
            .unwrap();
        assert_eq!(counted.len(), 2, "{counted:?}");
        assert_ne!(counted[0], counted[1]);
        for prefix in &counted {
            assert_eq!(prefix.prefix_len(), 80, "{prefix}");
            assert_eq!(prefix.trunc(), *prefix, "{prefix} is aligned");
            assert!(block.contains(prefix), "{prefix} in {block}");
            assert_ne!(*prefix, nth_80(block, 0), "the first /80 holds AWS's addresses");
        }
        let singles = ec2
            .assign_ipv6_addresses(&eni, &AddressRequest::Count(3))
            .await
            .unwrap();
        assert_eq!(singles.len(), 3, "the answer lists what this call assigned");
        assert!(singles.iter().all(|a| counted.iter().all(|p| !p.contains(a))));
        let free = (1..0xffff)
            .map(|n| nth_80(block, n))
            .find(|p| !counted.contains(p) && singles.iter().all(|a| !p.contains(a)))
            .unwrap();
        let exact = ec2
            .assign_ipv6_prefixes(&eni, &AddressRequest::Explicit(vec![free]))
            .await
            .unwrap();
        assert_eq!(exact, vec![free]);
        let described = describe(world, &eni).await;
        let prefixes: BTreeSet<Ipv6Net> = described.ipv6_prefixes.iter().copied().collect();
        assert_eq!(prefixes, counted.iter().copied().chain([free]).collect());
        assert_eq!(described.ipv6_addresses.len(), 3);

        let other = attached_eni(world, "main", 2).await;
        let first_single = singles[0];
        let holding_an_address = Ipv6Net::new(first_single, 80).unwrap().trunc();
        let network = u128::from(block.network());
        for (prefix, why) in [
            (free, "delegated already"),
            (nth_80(block, 0), "holds AWS's first four addresses"),
            (nth_80(block, 0xffff), "holds AWS's last address"),
            (holding_an_address, "holds an address in use"),
            (
                Ipv6Net::new(Ipv6Addr::from(network | (0x77 << 48) | (1 << 32)), 80).unwrap(),
                "not aligned",
            ),
            (
                Ipv6Net::new(Ipv6Addr::from(network | (0x77 << 48)), 96).unwrap(),
                "not a /80",
            ),
            (
                nth_80(
                    subnet_ipv6_block(Ipv6Net::new(block.network(), 56).unwrap().trunc(), 0xee),
                    5,
                ),
                "outside the subnet's /64",
            ),
        ] {
            let error = ec2
                .assign_ipv6_prefixes(&other, &AddressRequest::Explicit(vec![prefix]))
                .await
                .unwrap_err();
            assert_eq!(
                (error.code.as_str(), error.kind),
                ("InvalidParameterValue", Ec2ErrorKind::InvalidParameter),
                "{prefix} ({why}): {error}"
            );
        }
        let twice = nth_80(block, 0x4242);
        for (request, why) in [
            (
                AddressRequest::Explicit(vec![twice, twice]),
                "a prefix twice in one call",
            ),
            (AddressRequest::Count(0), "a count of zero"),
        ] {
            assert_eq!(
                code(ec2.assign_ipv6_prefixes(&other, &request).await),
                "InvalidParameterValue",
                "{why}"
            );
        }
        assert!(
            describe(world, &other).await.ipv6_prefixes.is_empty(),
            "refused calls take nothing"
        );
        assert_eq!(
            code(ec2.unassign_ipv6_prefixes(&other, &[free]).await),
            "InvalidParameterValue",
            "another ENI's prefix"
        );
        ec2.unassign_ipv6_prefixes(&eni, &[free]).await.unwrap();
        assert!(!describe(world, &eni).await.ipv6_prefixes.contains(&free));
        // Given back, it can be delegated again.
        ec2.assign_ipv6_prefixes(&other, &AddressRequest::Explicit(vec![free]))
            .await
            .unwrap();
    }

    /// m5.large: 10 IPv6 addresses per interface, which IPv6 addresses and /80 prefixes share; they do not
    /// take the interface's IPv4 slots (10: the primary, secondaries and /28 prefixes), nor the other way.
    pub async fn ipv6_slots_are_their_own_limit_per_eni(world: &World) {
        let ec2 = &world.ec2;
        let eni = attached_eni(world, "main", 1).await;
        // Every IPv4 slot taken first: IPv6 still fits.
        ec2.assign_private_ip_addresses(&eni, &AddressRequest::Count(9))
            .await
            .unwrap();
        ec2.assign_ipv6_addresses(&eni, &AddressRequest::Count(6))
            .await
            .unwrap();
        let prefixes = ec2
            .assign_ipv6_prefixes(&eni, &AddressRequest::Count(4))
            .await
            .unwrap();
        for (what, result) in [
            (
                "an IPv6 address",
                ec2.assign_ipv6_addresses(&eni, &AddressRequest::Count(1))
                    .await
                    .map(|_| ()),
            ),
            (
                "an IPv6 prefix",
                ec2.assign_ipv6_prefixes(&eni, &AddressRequest::Count(1))
                    .await
                    .map(|_| ()),
            ),
            (
                "an IPv4 address",
                ec2.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))
                    .await
                    .map(|_| ()),
            ),
        ] {
            let error = result.unwrap_err();
            assert_eq!(
                (error.code.as_str(), error.kind),
                (
                    "PrivateIpAddressLimitExceeded",
                    Ec2ErrorKind::AddressLimitExceeded
                ),
                "{what}: {error}"
            );
        }
        // Giving a prefix back makes room for one address.
        ec2.unassign_ipv6_prefixes(&eni, &prefixes[..1]).await.unwrap();
        ec2.assign_ipv6_addresses(&eni, &AddressRequest::Count(1))
            .await
            .unwrap();
        let described = describe(world, &eni).await;
        assert_eq!(
            (
                described.secondary_ips.len(),
                described.ipv6_addresses.len(),
                described.ipv6_prefixes.len()
            ),
            (9, 7, 3)
        );
        // An unattached ENI holding more IPv6 than the type allows cannot be attached.
        let crowded = new_eni(world, "main").await;
        ec2.assign_ipv6_addresses(&crowded, &AddressRequest::Count(11))
            .await
            .unwrap();
        assert_eq!(
            code(
                ec2.attach_network_interface(&crowded, &world.instance_id, 2, 0)
                    .await
            ),
            "PrivateIpAddressLimitExceeded"
        );
    }

    /// c1.medium has no IPv6: its interfaces take no IPv6 address, and an interface holding one cannot be
    /// attached to it.
    pub async fn ipv6_needs_an_instance_type_with_ipv6(world: &World) {
        let ec2 = &world.ec2;
        let instance = ec2.describe_instance(&world.instance_id).await.unwrap();
        let primary = instance.network_interfaces[0].network_interface_id.clone();
        let error = ec2
            .assign_ipv6_addresses(&primary, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("InvalidParameterValue", Ec2ErrorKind::InvalidParameter),
            "{error}"
        );
        assert_eq!(
            code(
                ec2.assign_ipv6_prefixes(&primary, &AddressRequest::Count(1))
                    .await
            ),
            "InvalidParameterValue"
        );
        assert!(describe(world, &primary).await.ipv6_addresses.is_empty());
        let dual = new_eni(world, "main").await;
        ec2.assign_ipv6_addresses(&dual, &AddressRequest::Count(1))
            .await
            .unwrap();
        assert_eq!(
            code(
                ec2.attach_network_interface(&dual, &world.instance_id, 1, 0)
                    .await
            ),
            "InvalidParameterValue"
        );
    }

    /// m4.large (Xen) has IPv6 addresses but no prefix delegation: no /80 on its interfaces, and an
    /// interface holding one cannot be attached to it.
    pub async fn ipv6_prefixes_need_nitro_or_bare_metal(world: &World) {
        let ec2 = &world.ec2;
        let eni = attached_eni(world, "main", 1).await;
        ec2.assign_ipv6_addresses(&eni, &AddressRequest::Count(2))
            .await
            .unwrap();
        let error = ec2
            .assign_ipv6_prefixes(&eni, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(error.kind, Ec2ErrorKind::InvalidParameter, "{error}");
        assert!(describe(world, &eni).await.ipv6_prefixes.is_empty());
        let prefixed = new_eni(world, "main").await;
        ec2.assign_ipv6_prefixes(&prefixed, &AddressRequest::Count(1))
            .await
            .unwrap();
        assert_eq!(
            code(
                ec2.attach_network_interface(&prefixed, &world.instance_id, 1, 0)
                    .await
            ),
            "InvalidParameterValue",
            "m4.large has room for the ENI but not for its /80"
        );
    }

    /// A subnet without an IPv6 block hands out no IPv6 address or prefix; unassigning what the ENI does not
    /// hold is refused.
    pub async fn ipv6_needs_a_subnet_with_an_ipv6_block(world: &World) {
        let ec2 = &world.ec2;
        let subnets = ec2.describe_subnets(&[world.subnet("main")], &[]).await.unwrap();
        assert_eq!(subnets[0].ipv6_cidr_block, None);
        let eni = attached_eni(world, "main", 1).await;
        let error = ec2
            .assign_ipv6_addresses(&eni, &AddressRequest::Count(1))
            .await
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("InvalidParameterValue", Ec2ErrorKind::InvalidParameter),
            "{error}"
        );
        assert!(error.message.contains("IPv6"), "a specific message: {error}");
        assert_eq!(
            code(ec2.assign_ipv6_prefixes(&eni, &AddressRequest::Count(1)).await),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(
                ec2.unassign_ipv6_addresses(&eni, &["2600:1f14::4".parse().unwrap()])
                    .await
            ),
            "InvalidParameterValue"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_a_unique_name_and_a_world_with_a_subnet() {
        let names: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CASES.len());
        assert!(CASES.iter().all(|c| !c.world.subnets.is_empty()));
    }
}
