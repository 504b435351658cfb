//! Every simulator rule, exercised through the `Ec2` and `Imds` traits the daemon uses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::executor::block_on;
use ipnet::Ipv4Net;
use vpcni_ec2::sim::{FaultRule, SimConfig, Simulator, VirtualClock};
use vpcni_ec2::{
    AddressRequest, AttachmentStatus, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2,
    Ec2ErrorKind, Filter, Imds, InterfaceStatus, Tags,
};

struct World {
    sim: Simulator,
    clock: VirtualClock,
    subnet: String,
    instance: String,
}

fn world_with(config: SimConfig, subnet_cidr: &str, instance_type: &str) -> World {
    let clock = VirtualClock::new(1_700_000_000_000);
    let sim = Simulator::new(config, Arc::new(clock.clone()));
    let vpc = sim
        .create_vpc("10.0.0.0/16".parse().unwrap(), Tags::new())
        .unwrap();
    let subnet = sim
        .create_subnet(&vpc, subnet_cidr.parse().unwrap(), "us-west-2a", Tags::new())
        .unwrap();
    let instance = sim
        .run_instance(instance_type, &subnet, None, Tags::new())
        .unwrap();
    World {
        sim,
        clock,
        subnet,
        instance,
    }
}

fn world(instance_type: &str) -> World {
    world_with(SimConfig::default(), "10.0.0.0/20", instance_type)
}

fn new_eni(w: &World) -> String {
    let request = CreateNetworkInterfaceRequest {
        subnet_id: w.subnet.clone(),
        description: "aws-K8S-test".into(),
        ..Default::default()
    };
    block_on(w.sim.create_network_interface(&request))
        .unwrap()
        .network_interface_id
}

fn code<T: std::fmt::Debug>(result: Result<T, vpcni_ec2::Ec2Error>) -> String {
    result.unwrap_err().code
}

#[test]
fn instances_start_with_a_primary_eni_at_device_zero() {
    let w = world("m5.xlarge");
    let instance = block_on(w.sim.describe_instance(&w.instance)).unwrap();
    assert_eq!(instance.instance_type, "m5.xlarge");
    assert_eq!(instance.network_interfaces.len(), 1);
    let primary = &instance.network_interfaces[0];
    let attachment = primary.attachment.as_ref().unwrap();
    assert_eq!((attachment.device_index, attachment.network_card_index), (0, 0));
    assert!(attachment.delete_on_termination);
    // The first four addresses of the subnet are AWS's: the first instance gets .4.
    assert_eq!(primary.private_ip, Ipv4Addr::new(10, 0, 0, 4));
    assert_eq!(
        code(block_on(w.sim.describe_instance("i-nope"))),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(
        code(w.sim.run_instance("m5.hyperlarge", &w.subnet, None, Tags::new())),
        "InvalidParameterValue"
    );
}

#[test]
fn subnets_reserve_five_addresses_and_run_out() {
    let w = world_with(SimConfig::default(), "10.0.0.0/28", "t3.medium");
    let subnets = block_on(w.sim.describe_subnets(std::slice::from_ref(&w.subnet), &[])).unwrap();
    // 16 − 5 reserved − 1 primary.
    assert_eq!(subnets[0].available_ip_address_count, 10);
    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    let got = block_on(w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(4))).unwrap();
    assert_eq!(got.len(), 4);
    let second = new_eni(&w);
    block_on(w.sim.attach_network_interface(&second, &w.instance, 2, 0)).unwrap();
    block_on(
        w.sim
            .assign_private_ip_addresses(&second, &AddressRequest::Count(4)),
    )
    .unwrap();
    let error = block_on(
        w.sim
            .assign_private_ip_addresses(&second, &AddressRequest::Count(1)),
    )
    .unwrap_err();
    assert_eq!(error.code, "InsufficientFreeAddressesInSubnet");
    assert_eq!(error.kind, Ec2ErrorKind::InsufficientFreeAddressesInSubnet);
    assert_eq!(
        block_on(w.sim.describe_subnets(&[], &[])).unwrap()[0].available_ip_address_count,
        0
    );
}

#[test]
fn eni_limits_are_per_network_card_and_device_indices_unique() {
    let w = world("m5.xlarge"); // 4 ENIs on card 0
    let enis: Vec<String> = (0..4).map(|_| new_eni(&w)).collect();
    for (i, eni) in enis.iter().take(3).enumerate() {
        block_on(w.sim.attach_network_interface(eni, &w.instance, i as u32 + 1, 0)).unwrap();
    }
    let error = block_on(w.sim.attach_network_interface(&enis[3], &w.instance, 5, 0)).unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.kind),
        ("AttachmentLimitExceeded", Ec2ErrorKind::AttachmentLimitExceeded)
    );
    assert_eq!(
        code(block_on(w.sim.attach_network_interface(
            &enis[3],
            &w.instance,
            0,
            1
        ))),
        "InvalidParameterValue"
    );

    let p5 = world("p5.48xlarge"); // 32 cards of 2
    let a = new_eni(&p5);
    let b = new_eni(&p5);
    let c = new_eni(&p5);
    block_on(p5.sim.attach_network_interface(&a, &p5.instance, 1, 0)).unwrap();
    assert_eq!(
        code(block_on(p5.sim.attach_network_interface(&b, &p5.instance, 2, 0))),
        "AttachmentLimitExceeded"
    );
    block_on(p5.sim.attach_network_interface(&b, &p5.instance, 0, 1)).unwrap();
    assert_eq!(
        code(block_on(p5.sim.attach_network_interface(&c, &p5.instance, 0, 1))),
        "InvalidParameterValue",
        "device index taken"
    );
}

#[test]
fn address_slots_count_secondary_ips_and_prefixes_alike() {
    let w = world("m5.large"); // 10 IPv4 per ENI: the primary + 9
    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    block_on(w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(5))).unwrap();
    block_on(w.sim.assign_ipv4_prefixes(&eni, &AddressRequest::Count(4))).unwrap();
    let error = block_on(w.sim.assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))).unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.kind),
        (
            "PrivateIpAddressLimitExceeded",
            Ec2ErrorKind::AddressLimitExceeded
        )
    );
    assert_eq!(
        code(block_on(
            w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))
        )),
        "PrivateIpAddressLimitExceeded"
    );
    // Releasing one frees one slot.
    let view = block_on(
        w.sim
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                network_interface_ids: vec![eni.clone()],
                ..Default::default()
            }),
    )
    .unwrap();
    let prefix = view.network_interfaces[0].ipv4_prefixes[0];
    block_on(w.sim.unassign_ipv4_prefixes(&eni, &[prefix])).unwrap();
    block_on(w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))).unwrap();
}

#[test]
fn prefixes_are_aligned_disjoint_and_fragmentation_is_reported() {
    let w = world_with(SimConfig::default(), "10.0.0.0/26", "m5.xlarge");
    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    let prefixes = block_on(w.sim.assign_ipv4_prefixes(&eni, &AddressRequest::Count(2))).unwrap();
    for prefix in &prefixes {
        assert_eq!(prefix.prefix_len(), 28);
        assert_eq!(u32::from(prefix.network()) % 16, 0, "{prefix} is aligned");
    }
    // Single addresses never land inside a prefix.
    let singles = block_on(w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(3))).unwrap();
    assert!(singles.iter().all(|ip| prefixes.iter().all(|p| !p.contains(ip))));
    // What is left: scattered addresses, no whole /28.
    let error = block_on(w.sim.assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))).unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.kind),
        ("InsufficientCidrBlocks", Ec2ErrorKind::InsufficientCidrBlocks)
    );
    assert!(block_on(w.sim.describe_subnets(&[], &[])).unwrap()[0].available_ip_address_count > 0);
    // Explicit prefixes must be aligned and free.
    let misaligned: Ipv4Net = "10.0.0.8/28".parse().unwrap();
    assert_eq!(
        code(block_on(w.sim.assign_ipv4_prefixes(
            &eni,
            &AddressRequest::Explicit(vec![misaligned])
        ))),
        "InvalidParameterValue"
    );
}

#[test]
fn subnet_cidr_reservations_keep_room_for_prefixes() {
    let w = world_with(SimConfig::default(), "10.0.0.0/26", "c5.4xlarge"); // 30 addresses per ENI
    w.sim
        .create_subnet_cidr_reservation(&w.subnet, "10.0.0.32/28".parse().unwrap())
        .unwrap();
    let a = new_eni(&w);
    let b = new_eni(&w);
    block_on(w.sim.attach_network_interface(&a, &w.instance, 1, 0)).unwrap();
    block_on(w.sim.attach_network_interface(&b, &w.instance, 2, 0)).unwrap();
    // 64 − 5 reserved by AWS − 16 kept for prefixes − 3 ENI primaries = 40 single addresses; then the
    // subnet is "full" for singles while the reserved block is still free.
    let mut singles = block_on(w.sim.assign_private_ip_addresses(&a, &AddressRequest::Count(20))).unwrap();
    singles.extend(block_on(w.sim.assign_private_ip_addresses(&b, &AddressRequest::Count(20))).unwrap());
    assert!(
        singles
            .iter()
            .all(|ip| !"10.0.0.32/28".parse::<Ipv4Net>().unwrap().contains(ip))
    );
    assert_eq!(
        code(block_on(
            w.sim.assign_private_ip_addresses(&b, &AddressRequest::Count(1))
        )),
        "InsufficientFreeAddressesInSubnet"
    );
    let prefix = block_on(w.sim.assign_ipv4_prefixes(&b, &AddressRequest::Count(1))).unwrap();
    assert_eq!(prefix, vec!["10.0.0.32/28".parse::<Ipv4Net>().unwrap()]);
}

#[test]
fn prefixes_need_nitro_or_bare_metal() {
    let w = world("m4.large");
    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    let error = block_on(w.sim.assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))).unwrap_err();
    assert!(
        error.message.contains("Prefix delegation is not supported"),
        "{error}"
    );
}

#[test]
fn attach_takes_time_and_detach_comes_before_delete() {
    let config = SimConfig {
        attach_delay_ms: 3_000,
        ..SimConfig::default()
    };
    let w = world_with(config, "10.0.0.0/20", "m5.xlarge");
    let eni = new_eni(&w);
    let attachment = block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    let describe = |w: &World| {
        block_on(
            w.sim
                .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                    network_interface_ids: vec![eni.clone()],
                    ..Default::default()
                }),
        )
        .unwrap()
        .network_interfaces
        .remove(0)
    };
    assert_eq!(describe(&w).status, InterfaceStatus::Attaching);
    assert_eq!(
        describe(&w).attachment.unwrap().status,
        AttachmentStatus::Attaching
    );
    w.clock.advance(3_000);
    assert_eq!(describe(&w).status, InterfaceStatus::InUse);
    assert_eq!(
        code(block_on(w.sim.delete_network_interface(&eni))),
        "InvalidNetworkInterface.InUse"
    );
    block_on(w.sim.detach_network_interface(&attachment, false)).unwrap();
    assert_eq!(describe(&w).status, InterfaceStatus::Available);
    block_on(w.sim.delete_network_interface(&eni)).unwrap();
    assert_eq!(
        code(block_on(w.sim.delete_network_interface(&eni))),
        "InvalidNetworkInterfaceID.NotFound"
    );
    // The primary ENI cannot be detached.
    let instance = block_on(w.sim.describe_instance(&w.instance)).unwrap();
    let primary_attachment = instance.network_interfaces[0]
        .attachment
        .clone()
        .unwrap()
        .attachment_id;
    assert_eq!(
        code(block_on(
            w.sim.detach_network_interface(&primary_attachment, false)
        )),
        "OperationNotPermitted"
    );
}

#[test]
fn termination_deletes_delete_on_termination_enis_and_leaks_the_rest() {
    let w = world("m5.xlarge");
    let kept = new_eni(&w);
    let deleted = new_eni(&w);
    block_on(w.sim.attach_network_interface(&kept, &w.instance, 1, 0)).unwrap();
    let attachment = block_on(w.sim.attach_network_interface(&deleted, &w.instance, 2, 0)).unwrap();
    block_on(w.sim.set_delete_on_termination(&deleted, &attachment, true)).unwrap();
    block_on(
        w.sim
            .assign_private_ip_addresses(&deleted, &AddressRequest::Count(3)),
    )
    .unwrap();
    let before = block_on(w.sim.describe_subnets(&[], &[])).unwrap()[0].available_ip_address_count;
    w.sim.terminate_instance(&w.instance).unwrap();
    let leaked = block_on(
        w.sim
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("status", "available")],
                ..Default::default()
            }),
    )
    .unwrap();
    let ids: Vec<_> = leaked
        .network_interfaces
        .iter()
        .map(|e| e.network_interface_id.clone())
        .collect();
    assert_eq!(ids, vec![kept]);
    // The deleted ENI's and the primary's addresses went back to the subnet.
    let after = block_on(w.sim.describe_subnets(&[], &[])).unwrap()[0].available_ip_address_count;
    assert_eq!(after, before + 1 + 3 + 1);
}

#[test]
fn describe_network_interfaces_filters_and_pages() {
    let w = world("c5.4xlarge");
    let mut tags = Tags::new();
    tags.insert("node.k8s.amazonaws.com/instance_id".into(), w.instance.clone());
    let mut created = Vec::new();
    for i in 0..12 {
        let request = CreateNetworkInterfaceRequest {
            subnet_id: w.subnet.clone(),
            description: if i % 2 == 0 {
                "aws-K8S-i-1".into()
            } else {
                "other".into()
            },
            tags: if i < 7 { tags.clone() } else { Tags::new() },
            ..Default::default()
        };
        created.push(
            block_on(w.sim.create_network_interface(&request))
                .unwrap()
                .network_interface_id,
        );
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
    let first = block_on(w.sim.describe_network_interfaces(&tagged(None))).unwrap();
    assert_eq!(first.network_interfaces.len(), 5);
    let second = block_on(
        w.sim
            .describe_network_interfaces(&tagged(first.next_token.clone())),
    )
    .unwrap();
    assert_eq!(second.network_interfaces.len(), 2);
    assert!(second.next_token.is_none());
    let described = block_on(
        w.sim
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![
                    Filter::new("description", "aws-K8S-*"),
                    Filter::new("tag:node.k8s.amazonaws.com/instance_id", w.instance.clone()),
                ],
                ..Default::default()
            }),
    )
    .unwrap();
    assert_eq!(
        described.network_interfaces.len(),
        4,
        "even-numbered among the first seven"
    );
    let by_instance = block_on(
        w.sim
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("attachment.instance-id", w.instance.clone())],
                ..Default::default()
            }),
    )
    .unwrap();
    assert_eq!(
        by_instance.network_interfaces.len(),
        1,
        "only the primary is attached"
    );
    let bad_page = DescribeNetworkInterfacesRequest {
        max_results: Some(2),
        ..Default::default()
    };
    assert_eq!(
        code(block_on(w.sim.describe_network_interfaces(&bad_page))),
        "InvalidParameterValue"
    );
    let bad_filter = DescribeNetworkInterfacesRequest {
        filters: vec![Filter::new("colour", "blue")],
        ..Default::default()
    };
    assert_eq!(
        code(block_on(w.sim.describe_network_interfaces(&bad_filter))),
        "InvalidParameterValue"
    );
    // Tags added later are found.
    block_on(w.sim.create_tags(&[created[11].clone()], &tags)).unwrap();
    let all = block_on(w.sim.describe_network_interfaces(&tagged(None))).unwrap();
    let rest = block_on(w.sim.describe_network_interfaces(&tagged(all.next_token))).unwrap();
    assert_eq!(all.network_interfaces.len() + rest.network_interfaces.len(), 8);
    assert_eq!(
        code(block_on(w.sim.create_tags(&["eni-0000".into()], &tags))),
        "InvalidNetworkInterfaceID.NotFound"
    );
}

#[test]
fn throttling_follows_token_buckets_per_action() {
    let w = world("m5.xlarge");
    let eni = new_eni(&w);
    // Describe* holds 100 tokens: the 101st call in the same instant is throttled.
    let request = DescribeNetworkInterfacesRequest {
        network_interface_ids: vec![eni.clone()],
        ..Default::default()
    };
    let mut throttled = None;
    for call in 1..=101 {
        if let Err(error) = block_on(w.sim.describe_network_interfaces(&request)) {
            throttled = Some((call, error));
            break;
        }
    }
    let (call, error) = throttled.expect("throttled eventually");
    assert_eq!(call, 101);
    assert_eq!(
        (error.code.as_str(), error.kind),
        ("RequestLimitExceeded", Ec2ErrorKind::Throttled)
    );
    // Other actions have their own buckets.
    block_on(w.sim.describe_subnets(&[], &[])).unwrap();
    // Refill: 20 tokens a second.
    w.clock.advance(1_000);
    for _ in 0..20 {
        block_on(w.sim.describe_network_interfaces(&request)).unwrap();
    }
    assert!(block_on(w.sim.describe_network_interfaces(&request)).is_err());
    let counters = w.sim.counters();
    assert_eq!(counters.calls_to("DescribeNetworkInterfaces"), 122);
    assert_eq!(
        counters.errors["DescribeNetworkInterfaces/RequestLimitExceeded"],
        2
    );
}

#[test]
fn faults_can_be_injected_per_action() {
    let w = world("m5.xlarge");
    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    w.sim.configure(|config| {
        config.faults.push(FaultRule {
            action: Some("AssignPrivateIpAddresses".into()),
            code: "InsufficientFreeAddressesInSubnet".into(),
            probability: 1.0,
            remaining: Some(2),
        })
    });
    for _ in 0..2 {
        assert_eq!(
            code(block_on(
                w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))
            )),
            "InsufficientFreeAddressesInSubnet"
        );
    }
    block_on(w.sim.assign_private_ip_addresses(&eni, &AddressRequest::Count(1))).unwrap();
    block_on(w.sim.describe_subnets(&[], &[])).unwrap();
    // A probabilistic fault fires about as often as asked, and the same seed gives the same sequence.
    let run = || {
        let w = world("m5.xlarge");
        w.sim.configure(|c| {
            c.throttle.enabled = false;
            c.faults.push(FaultRule {
                action: None,
                code: "InternalError".into(),
                probability: 0.3,
                remaining: None,
            })
        });
        (0..200)
            .map(|_| block_on(w.sim.describe_subnets(&[], &[])).is_err())
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    let failures = first.iter().filter(|f| **f).count();
    assert!((30..=90).contains(&failures), "{failures}");
}

#[test]
fn instance_metadata_lags_behind_ec2() {
    let config = SimConfig {
        imds_lag_ms: 2_000,
        ..SimConfig::default()
    };
    let w = world_with(config, "10.0.0.0/20", "m5.xlarge");
    let imds = w.sim.imds_for(&w.instance);
    assert_eq!(block_on(imds.instance_type()).unwrap(), "m5.xlarge");
    assert_eq!(block_on(imds.region()).unwrap(), "us-west-2");
    let primary_mac = block_on(imds.primary_mac()).unwrap();
    assert_eq!(block_on(imds.macs()).unwrap(), vec![primary_mac.clone()]);
    let primary = block_on(imds.interface(&primary_mac)).unwrap();
    assert_eq!(primary.device_number, 0);
    assert_eq!(
        primary.vpc_ipv4_cidr_blocks,
        vec!["10.0.0.0/16".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(primary.local_ipv4s, vec![block_on(imds.local_ipv4()).unwrap()]);

    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
    assert_eq!(
        block_on(imds.macs()).unwrap().len(),
        1,
        "metadata has not caught up with the attach"
    );
    w.clock.advance(2_000);
    assert_eq!(block_on(imds.macs()).unwrap().len(), 2);

    let ips = block_on(
        w.sim
            .assign_private_ip_addresses(&primary.interface_id, &AddressRequest::Count(2)),
    )
    .unwrap();
    assert_eq!(
        block_on(imds.interface(&primary_mac)).unwrap().local_ipv4s.len(),
        1,
        "new addresses not yet visible"
    );
    w.clock.advance(2_000);
    assert_eq!(
        block_on(imds.interface(&primary_mac)).unwrap().local_ipv4s.len(),
        3
    );
    block_on(
        w.sim
            .unassign_private_ip_addresses(&primary.interface_id, &ips[..1]),
    )
    .unwrap();
    assert_eq!(
        block_on(imds.interface(&primary_mac)).unwrap().local_ipv4s.len(),
        3,
        "a removed address lingers"
    );
    w.clock.advance(2_000);
    assert_eq!(
        block_on(imds.interface(&primary_mac)).unwrap().local_ipv4s.len(),
        2
    );
    assert!(block_on(imds.interface("02:00:00:00:00:99")).is_err());
}

#[test]
fn the_same_seed_gives_the_same_world() {
    let ids = || {
        let w = world("m5.xlarge");
        (
            w.instance.clone(),
            new_eni(&w),
            block_on(w.sim.describe_instance(&w.instance))
                .unwrap()
                .network_interfaces[0]
                .mac_address
                .clone(),
        )
    };
    assert_eq!(ids(), ids());
    let other = world_with(
        SimConfig {
            seed: 99,
            ..SimConfig::default()
        },
        "10.0.0.0/20",
        "m5.xlarge",
    );
    assert_ne!(other.instance, ids().0);
}

#[test]
fn creating_an_eni_with_addresses_is_all_or_nothing() {
    let w = world_with(SimConfig::default(), "10.0.0.0/28", "m5.xlarge");
    let before = block_on(w.sim.describe_subnets(&[], &[])).unwrap()[0].available_ip_address_count;
    let request = CreateNetworkInterfaceRequest {
        subnet_id: w.subnet.clone(),
        secondary_ip_count: 20,
        ..Default::default()
    };
    assert_eq!(
        code(block_on(w.sim.create_network_interface(&request))),
        "InsufficientFreeAddressesInSubnet"
    );
    assert_eq!(
        block_on(w.sim.describe_subnets(&[], &[])).unwrap()[0].available_ip_address_count,
        before
    );
    let with_prefix = CreateNetworkInterfaceRequest {
        subnet_id: w.subnet.clone(),
        ipv4_prefix_count: 1,
        ..Default::default()
    };
    let error = block_on(w.sim.create_network_interface(&with_prefix)).unwrap_err();
    assert!(matches!(
        error.kind,
        Ec2ErrorKind::InsufficientCidrBlocks | Ec2ErrorKind::InsufficientFreeAddressesInSubnet
    ));
}
