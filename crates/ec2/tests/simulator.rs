//! What only the simulator has: its own time (attach delay, metadata lag, throttle refill on a virtual
//! clock), injected faults, seeds, subnet CIDR reservations and instance termination. EC2's rules, the same on
//! every backend, are in the conformance suite (tests/conformance.rs, `vpcni_ec2::conformance`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::sync::Arc;

use futures::executor::block_on;
use ipnet::{Ipv4Net, Ipv6Net};
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
fn attach_takes_the_configured_time_on_the_virtual_clock() {
    let config = SimConfig {
        attach_delay_ms: 3_000,
        ..SimConfig::default()
    };
    let w = world_with(config, "10.0.0.0/20", "m5.xlarge");
    let eni = new_eni(&w);
    block_on(w.sim.attach_network_interface(&eni, &w.instance, 1, 0)).unwrap();
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
    w.clock.advance(2_999);
    assert_eq!(describe(&w).status, InterfaceStatus::Attaching);
    w.clock.advance(1);
    assert_eq!(describe(&w).status, InterfaceStatus::InUse);
    assert_eq!(
        describe(&w).attachment.unwrap().status,
        AttachmentStatus::Attached
    );
}

#[test]
fn unknown_instance_types_are_refused() {
    let w = world("m5.xlarge");
    assert_eq!(
        code(w.sim.run_instance("m5.hyperlarge", &w.subnet, None, Tags::new())),
        "InvalidParameterValue"
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

    // A detach: EC2 shows it at once, metadata keeps listing the ENI, as it was, for the lag.
    let attached = block_on(w.sim.describe_instance(&w.instance))
        .unwrap()
        .network_interfaces
        .into_iter()
        .find(|e| e.network_interface_id == eni)
        .unwrap();
    let attachment = attached.attachment.unwrap().attachment_id;
    block_on(w.sim.detach_network_interface(&attachment, false)).unwrap();
    block_on(w.sim.delete_network_interface(&eni)).unwrap();
    assert_eq!(
        block_on(imds.macs()).unwrap(),
        vec![primary_mac.clone(), attached.mac_address.clone()],
        "metadata has not caught up with the detach"
    );
    let stale = block_on(imds.interface(&attached.mac_address)).unwrap();
    assert_eq!(
        (stale.interface_id.as_str(), stale.device_number),
        (eni.as_str(), 1)
    );
    w.clock.advance(2_000);
    assert_eq!(block_on(imds.macs()).unwrap(), vec![primary_mac]);
    assert!(block_on(imds.interface(&attached.mac_address)).is_err());
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

/// One step of [`the_attachment_index_answers_as_a_scan_would`].
#[derive(Debug, Clone)]
enum Step {
    Create,
    Attach {
        eni: usize,
        instance: usize,
        device: u32,
    },
    Detach {
        eni: usize,
    },
    Delete {
        eni: usize,
    },
    Terminate {
        instance: usize,
    },
    Launch,
    SaveAndLoad,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(Step::Create),
        4 => (0..8usize, 0..3usize, 0..4u32).prop_map(|(eni, instance, device)| Step::Attach { eni, instance, device }),
        2 => (0..8usize).prop_map(|eni| Step::Detach { eni }),
        2 => (0..8usize).prop_map(|eni| Step::Delete { eni }),
        1 => (0..3usize).prop_map(|instance| Step::Terminate { instance }),
        1 => Just(Step::Launch),
        1 => Just(Step::SaveAndLoad),
    ]
}

proptest::proptest! {
    // Seeded, so every run tries the same cases; PROPTEST_RNG_SEED=<n> explores others.
    #![proptest_config(proptest::test_runner::Config {
        cases: 256,
        rng_seed: match proptest::test_runner::Config::default().rng_seed {
            proptest::test_runner::RngSeed::Random => proptest::test_runner::RngSeed::Fixed(20_261_201),
            chosen => chosen,
        },
        ..proptest::test_runner::Config::default()
    })]

    /// The simulator keeps ENIs indexed by instance and by attachment so that thousands of nodes do not
    /// scan the account on every call. Whatever the calls (refused ones included) and however often the
    /// state is saved and loaded, the index says what a scan of every ENI says, and DescribeInstances
    /// lists exactly the ENIs whose attachment names the instance.
    #[test]
    fn the_attachment_index_answers_as_a_scan_would(steps in proptest::collection::vec(step(), 1..40)) {
        let mut config = SimConfig::default();
        // Refusals for EC2's rules are what this walks; a throttled call would only be noise.
        config.throttle.enabled = false;
        let mut w = world_with(config, "10.0.0.0/20", "m5.xlarge");
        let mut instances = vec![w.instance.clone()];
        let mut enis: Vec<String> = Vec::new();
        for step in steps {
            let pick = |list: &[String], i: usize| (!list.is_empty()).then(|| list[i % list.len()].clone());
            match step {
                Step::Create => enis.push(new_eni(&w)),
                Step::Attach { eni, instance, device } => {
                    if let (Some(eni), Some(instance)) = (pick(&enis, eni), pick(&instances, instance)) {
                        // Refusals (in use, device taken, limits, terminated) are part of what is tested.
                        let _refused_or_attached = block_on(w.sim.attach_network_interface(&eni, &instance, device, 0));
                    }
                }
                Step::Detach { eni } => {
                    if let Some(eni) = pick(&enis, eni) {
                        let attachment = w.sim.inspect(|a| a.enis.get(&eni).and_then(|e| e.attachment.clone()));
                        if let Some(attachment) = attachment {
                            // The primary ENI refuses: also tested.
                            let _refused_or_detached = block_on(w.sim.detach_network_interface(&attachment.id, false));
                        }
                    }
                }
                Step::Delete { eni } => {
                    if let Some(eni) = pick(&enis, eni) {
                        // An attached ENI refuses: also tested.
                        let _refused_or_deleted = block_on(w.sim.delete_network_interface(&eni));
                    }
                }
                Step::Terminate { instance } => {
                    if let Some(instance) = pick(&instances, instance) {
                        w.sim.terminate_instance(&instance).unwrap();
                    }
                }
                Step::Launch => instances.push(w.sim.run_instance("m5.xlarge", &w.subnet, None, Tags::new()).unwrap()),
                Step::SaveAndLoad => {
                    let saved = serde_json::to_string(&w.sim.snapshot()).unwrap();
                    let loaded = serde_json::from_str(&saved).unwrap();
                    w.sim = Simulator::from_account(loaded, w.sim.config(), Arc::new(w.clock.clone()));
                }
            }
            proptest::prop_assert!(w.sim.inspect(|a| a.index_is_consistent()));
            for instance in &instances {
                let scanned: Vec<String> = w.sim.inspect(|a| {
                    a.enis
                        .values()
                        .filter(|e| e.attachment.as_ref().is_some_and(|at| &at.instance_id == instance))
                        .map(|e| e.id.clone())
                        .collect()
                });
                let described = block_on(w.sim.describe_instance(instance)).unwrap();
                let listed: Vec<String> =
                    described.network_interfaces.iter().map(|e| e.network_interface_id.clone()).collect();
                proptest::prop_assert_eq!(listed, scanned);
            }
        }
    }
}

/// A VPC's Amazon-provided IPv6 /56 comes from the seed: the same seed gives the same block, another seed
/// another; a VPC takes one IPv6 block; subnets take a /64 of it, no other subnet's.
#[test]
fn the_amazon_provided_56_is_seeded_and_subnets_take_64s_of_it() {
    let block_for = |seed: u64| {
        let w = world_with(
            SimConfig {
                seed,
                ..SimConfig::default()
            },
            "10.0.0.0/20",
            "m5.large",
        );
        let vpc = w.sim.vpcs()[0].0.clone();
        (w.sim.associate_vpc_ipv6_cidr(&vpc, None).unwrap(), w, vpc)
    };
    let (first, w, vpc) = block_for(42);
    assert_eq!(block_for(42).0, first, "same seed, same /56");
    assert_ne!(block_for(43).0, first, "another seed, another /56");
    assert_eq!(first.prefix_len(), 56);
    assert!(
        "2600:1f00::/24".parse::<Ipv6Net>().unwrap().contains(&first),
        "{first}"
    );
    assert_eq!(w.sim.vpc_ipv6_cidr(&vpc), Some(first));
    assert_eq!(
        code(w.sim.associate_vpc_ipv6_cidr(&vpc, None)),
        "CidrLimitExceeded"
    );
    assert_eq!(
        code(
            w.sim
                .associate_vpc_ipv6_cidr(&vpc, Some("2600:1f14:1:100::/56".parse().unwrap()))
        ),
        "CidrLimitExceeded"
    );

    // Another VPC: a given /56 must be a /56 without host bits, and not another VPC's.
    let other = w
        .sim
        .create_vpc("10.1.0.0/16".parse().unwrap(), Tags::new())
        .unwrap();
    for (cidr, why) in [
        ("2600:1f14:1:101::/56", "host bits"),
        ("2600:1f14:1::/48", "not a /56"),
    ] {
        assert_eq!(
            code(w.sim.associate_vpc_ipv6_cidr(&other, Some(cidr.parse().unwrap()))),
            "InvalidParameterValue",
            "{why}"
        );
    }
    assert_eq!(
        code(w.sim.associate_vpc_ipv6_cidr(&other, Some(first))),
        "InvalidParameterValue",
        "the first VPC's block"
    );
    let given: Ipv6Net = "2600:1f14:1:100::/56".parse().unwrap();
    assert_eq!(w.sim.associate_vpc_ipv6_cidr(&other, Some(given)).unwrap(), given);

    let sixty_four = |n: u128| Ipv6Net::new((u128::from(first.network()) | (n << 64)).into(), 64).unwrap();
    assert_eq!(
        code(
            w.sim
                .associate_subnet_ipv6_cidr(&w.subnet, "2600:1f14:1:100::/64".parse().unwrap())
        ),
        "InvalidSubnet.Range",
        "another VPC's /64"
    );
    assert_eq!(
        code(
            w.sim
                .associate_subnet_ipv6_cidr(&w.subnet, Ipv6Net::new(first.network(), 60).unwrap())
        ),
        "InvalidParameterValue",
        "a /60"
    );
    w.sim
        .associate_subnet_ipv6_cidr(&w.subnet, sixty_four(0))
        .unwrap();
    assert_eq!(
        code(w.sim.associate_subnet_ipv6_cidr(&w.subnet, sixty_four(1))),
        "InvalidParameterValue",
        "one IPv6 block per subnet"
    );
    assert_eq!(
        code(w.sim.create_subnet_with_ipv6(
            &vpc,
            "10.0.16.0/24".parse().unwrap(),
            sixty_four(0),
            "us-west-2a",
            Tags::new()
        )),
        "InvalidSubnet.Conflict"
    );
    let subnets_before = w.sim.inspect(|a| a.subnets.len());
    assert_eq!(
        code(w.sim.create_subnet_with_ipv6(
            &other,
            "10.1.0.0/24".parse().unwrap(),
            sixty_four(2),
            "us-west-2a",
            Tags::new()
        )),
        "InvalidSubnet.Range"
    );
    assert_eq!(
        w.sim.inspect(|a| a.subnets.len()),
        subnets_before,
        "a refused CreateSubnet creates nothing"
    );
    let dual = w
        .sim
        .create_subnet_with_ipv6(
            &vpc,
            "10.0.16.0/24".parse().unwrap(),
            sixty_four(2),
            "us-west-2a",
            Tags::new(),
        )
        .unwrap();
    let described = block_on(w.sim.describe_subnets(&[dual], &[])).unwrap();
    assert_eq!(described[0].ipv6_cidr_block, Some(sixty_four(2)));
    let filtered = block_on(w.sim.describe_subnets(
        &[],
        &[Filter::new(
            "ipv6-cidr-block-association.ipv6-cidr-block",
            sixty_four(0).to_string(),
        )],
    ))
    .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].subnet_id, w.subnet);
}

fn dual_stack_world(config: SimConfig) -> (World, Ipv6Net) {
    let w = world_with(config, "10.0.0.0/20", "m5.large");
    let vpc = w.sim.vpcs()[0].0.clone();
    let block = w.sim.associate_vpc_ipv6_cidr(&vpc, None).unwrap();
    let subnet_block = Ipv6Net::new(block.network(), 64).unwrap();
    w.sim.associate_subnet_ipv6_cidr(&w.subnet, subnet_block).unwrap();
    (w, subnet_block)
}

/// Instance metadata's IPv6 paths lag behind EC2 like its IPv4 ones: new addresses and prefixes appear, and
/// removed ones disappear, once the lag has passed.
#[test]
fn imds_ipv6_paths_lag_behind_ec2() {
    let (w, subnet_block) = dual_stack_world(SimConfig {
        imds_lag_ms: 2_000,
        ..SimConfig::default()
    });
    let imds = w.sim.imds_for(&w.instance);
    let mac = block_on(imds.primary_mac()).unwrap();
    let primary = block_on(w.sim.describe_instance(&w.instance))
        .unwrap()
        .network_interfaces[0]
        .network_interface_id
        .clone();
    let seen = || block_on(imds.interface(&mac)).unwrap();
    assert_eq!(seen().subnet_ipv6_cidr_blocks, vec![subnet_block]);
    assert_eq!(seen().vpc_ipv6_cidr_blocks.len(), 1);
    let prefixes = block_on(w.sim.assign_ipv6_prefixes(&primary, &AddressRequest::Count(1))).unwrap();
    let addresses = block_on(w.sim.assign_ipv6_addresses(&primary, &AddressRequest::Count(2))).unwrap();
    assert!(
        seen().ipv6_prefixes.is_empty() && seen().ipv6s.is_empty(),
        "not yet"
    );
    w.clock.advance(2_000);
    assert_eq!(seen().ipv6_prefixes, prefixes);
    assert_eq!(seen().ipv6s, addresses);
    block_on(w.sim.unassign_ipv6_prefixes(&primary, &prefixes)).unwrap();
    block_on(w.sim.unassign_ipv6_addresses(&primary, &addresses[..1])).unwrap();
    assert_eq!(seen().ipv6_prefixes, prefixes, "still shown within the lag");
    assert_eq!(seen().ipv6s.len(), 2);
    w.clock.advance(2_000);
    assert!(seen().ipv6_prefixes.is_empty());
    assert_eq!(seen().ipv6s, addresses[1..]);
}

/// Saved state keeps IPv6 (the VPC's /56, the subnet's /64 and what is in use in it, the ENIs' addresses and
/// prefixes); a state saved before IPv6 existed still loads, without IPv6.
#[test]
fn saved_state_keeps_ipv6_and_older_states_load() {
    let (w, subnet_block) = dual_stack_world(SimConfig::default());
    let eni = new_eni(&w);
    let prefixes = block_on(w.sim.assign_ipv6_prefixes(&eni, &AddressRequest::Count(2))).unwrap();
    let addresses = block_on(w.sim.assign_ipv6_addresses(&eni, &AddressRequest::Count(1))).unwrap();
    let saved = serde_json::to_value(w.sim.snapshot()).unwrap();
    let loaded = Simulator::from_account(
        serde_json::from_value(saved.clone()).unwrap(),
        SimConfig::default(),
        Arc::new(w.clock.clone()),
    );
    let request = DescribeNetworkInterfacesRequest {
        network_interface_ids: vec![eni.clone()],
        ..Default::default()
    };
    let described = block_on(loaded.describe_network_interfaces(&request))
        .unwrap()
        .network_interfaces[0]
        .clone();
    assert_eq!(
        (described.ipv6_prefixes, described.ipv6_addresses),
        (prefixes.clone(), addresses.clone())
    );
    // What is in use stays in use: an exact prefix held before saving is refused after loading.
    assert_eq!(
        code(block_on(loaded.assign_ipv6_prefixes(
            &new_eni_on(&loaded, &w.subnet),
            &AddressRequest::Explicit(vec![prefixes[0]])
        ))),
        "InvalidParameterValue"
    );
    assert_eq!(
        block_on(loaded.describe_subnets(std::slice::from_ref(&w.subnet), &[])).unwrap()[0].ipv6_cidr_block,
        Some(subnet_block)
    );

    // The same state without any IPv6 field, as vpcni wrote it before IPv6.
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for key in [
                    "ipv6_cidr",
                    "ipv6",
                    "ipv6_addresses",
                    "ipv6_prefixes",
                    "removed_ipv6",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut older = saved;
    strip(&mut older);
    assert!(!older.to_string().contains("ipv6"), "{older}");
    let old = Simulator::from_account(
        serde_json::from_value(older).unwrap(),
        SimConfig::default(),
        Arc::new(w.clock.clone()),
    );
    let described = block_on(old.describe_network_interfaces(&request))
        .unwrap()
        .network_interfaces[0]
        .clone();
    assert!(described.ipv6_prefixes.is_empty() && described.ipv6_addresses.is_empty());
    assert_eq!(
        block_on(old.describe_subnets(std::slice::from_ref(&w.subnet), &[])).unwrap()[0].ipv6_cidr_block,
        None
    );
}

fn new_eni_on(sim: &Simulator, subnet: &str) -> String {
    let request = CreateNetworkInterfaceRequest {
        subnet_id: subnet.to_owned(),
        ..Default::default()
    };
    block_on(sim.create_network_interface(&request))
        .unwrap()
        .network_interface_id
}
