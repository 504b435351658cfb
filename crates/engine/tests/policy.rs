//! The warm-pool policy against worked examples derived from the original's rules
//! (<https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/docs/eni-and-ip-target.md>,
//! <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/docs/prefix-and-ip-target.md>,
//! `pkg/ipamd/ipamd.go`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test or benchmark is its failure report

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpcni_engine::forecast::ForecastNode;
use vpcni_engine::{
    Decision, Eni, EniFlags, GrowFailure, NoAddressReason, NodeLimits, PodInfo, PodKey, Pool, PoolConfig,
};

fn node(instance_type: &str, config: PoolConfig) -> ForecastNode {
    node_with(instance_type, config, None, false, false)
}

fn node_with(
    instance_type: &str,
    config: PoolConfig,
    max_eni: Option<u32>,
    custom: bool,
    sgp: bool,
) -> ForecastNode {
    let limits = vpcni_limits::builtin().get(instance_type).unwrap();
    let mut node = ForecastNode::new(config, NodeLimits::for_instance(limits, max_eni, sgp), custom);
    node.converge(1_000);
    node
}

/// (ENIs, total addresses) after converging.
fn shape(node: &ForecastNode) -> (usize, usize) {
    let stats = node.pool().stats(node.now());
    (stats.enis, stats.total)
}

fn add_pods(node: &mut ForecastNode, count: usize) {
    for _ in 0..count {
        node.add_pod().unwrap();
        node.converge(1_000);
    }
}

#[test]
fn warm_eni_target_on_m5_xlarge() {
    let mut node = node("m5.xlarge", PoolConfig::default());
    assert_eq!(
        shape(&node),
        (1, 14),
        "no pods: one ENI's worth of free addresses on the primary"
    );
    add_pods(&mut node, 1);
    assert_eq!(shape(&node), (2, 28), "one pod: a whole spare ENI");
    add_pods(&mut node, 13);
    assert_eq!(shape(&node), (2, 28), "14 pods: still one spare ENI's worth");
    add_pods(&mut node, 1);
    assert_eq!(shape(&node), (3, 42));
}

#[test]
fn warm_eni_target_on_m4_4xlarge_matches_the_readme() {
    let mut node = node("m4.4xlarge", PoolConfig::default());
    add_pods(&mut node, 1);
    assert_eq!(shape(&node), (2, 58));
    add_pods(&mut node, 28);
    assert_eq!(shape(&node), (2, 58), "29 pods");
    add_pods(&mut node, 1);
    assert_eq!(shape(&node), (3, 87), "30 pods");
    add_pods(&mut node, 28);
    assert_eq!(shape(&node), (3, 87), "58 pods");
}

#[test]
fn warm_eni_target_two_keeps_two_spare_enis() {
    let mut node = node(
        "m5.xlarge",
        PoolConfig {
            warm_eni_target: 2,
            ..PoolConfig::default()
        },
    );
    assert_eq!(shape(&node), (2, 28));
    add_pods(&mut node, 1);
    assert_eq!(shape(&node), (3, 42));
}

#[test]
fn warm_eni_target_zero_does_not_flap() {
    let mut node = node(
        "m5.xlarge",
        PoolConfig {
            warm_eni_target: 0,
            ..PoolConfig::default()
        },
    );
    assert_eq!(shape(&node), (1, 14));
    add_pods(&mut node, 14);
    add_pods(&mut node, 1);
    assert_eq!(shape(&node), (2, 28));
    // Pods leave; the second ENI empties and is freed once, then the pool stays put.
    for _ in 0..15 {
        node.remove_pod();
    }
    node.converge(1_000);
    let settled = shape(&node);
    assert_eq!(settled, (1, 14));
    for _ in 0..50 {
        assert!(matches!(node.step(), Decision::Nothing { .. }));
    }
}

#[test]
fn pods_drain_surplus_enis_after_scale_down() {
    let mut node = node("m5.xlarge", PoolConfig::default());
    add_pods(&mut node, 30);
    assert_eq!(shape(&node), (4, 56));
    for _ in 0..30 {
        node.remove_pod();
    }
    node.converge(1_000);
    assert_eq!(
        shape(&node),
        (1, 14),
        "back to a fresh node's pool: surplus ENIs freed one by one"
    );
}

#[test]
fn warm_ip_target_keeps_exactly_that_many_free() {
    let config = PoolConfig {
        warm_ip_target: 5,
        ..PoolConfig::default()
    };
    let mut node = node("m5.xlarge", config);
    assert_eq!(shape(&node), (1, 5));
    add_pods(&mut node, 3);
    assert_eq!(shape(&node), (1, 8));
    add_pods(&mut node, 8);
    assert_eq!(
        shape(&node),
        (2, 16),
        "11 pods + 5 warm: 14 on the primary, 2 on a new ENI"
    );
    for _ in 0..11 {
        node.remove_pod();
    }
    node.converge(1_000);
    assert_eq!(shape(&node).1, 5, "surplus addresses are given back");
}

#[test]
fn minimum_ip_target_is_a_floor() {
    let config = PoolConfig {
        warm_ip_target: 2,
        minimum_ip_target: 10,
        ..PoolConfig::default()
    };
    let mut node = node("m5.xlarge", config);
    assert_eq!(shape(&node), (1, 10));
    add_pods(&mut node, 9);
    assert_eq!(shape(&node), (1, 11), "9 pods + 2 warm");
    for _ in 0..9 {
        node.remove_pod();
    }
    node.converge(1_000);
    assert_eq!(shape(&node), (1, 10), "never below the minimum");
}

#[test]
fn minimum_ip_target_alone_caps_the_pool_as_documented() {
    let config = PoolConfig {
        minimum_ip_target: 4,
        ..PoolConfig::default()
    };
    let mut node = node("m5.xlarge", config);
    assert_eq!(shape(&node), (1, 4));
    add_pods(&mut node, 4);
    let refused = node.add_pod().unwrap_err();
    assert_eq!(shape(&node), (1, 4));
    assert_ne!(refused.reason, NoAddressReason::NodeMaxPods);
}

#[test]
fn prefix_delegation_with_warm_prefix_target() {
    let config = PoolConfig {
        prefix_delegation: true,
        warm_prefix_target: 1,
        ..PoolConfig::default()
    };
    let mut node = node("m5.xlarge", config);
    let stats = node.pool().stats(node.now());
    assert_eq!((stats.total_prefixes, stats.total), (1, 16));
    add_pods(&mut node, 1);
    assert_eq!(
        node.pool().stats(node.now()).total_prefixes,
        2,
        "one pod: a whole free prefix beyond it"
    );
    add_pods(&mut node, 15);
    assert_eq!(
        node.pool().stats(node.now()).total_prefixes,
        2,
        "16 pods fill one prefix, the other is free"
    );
    add_pods(&mut node, 1);
    assert_eq!(node.pool().stats(node.now()).total_prefixes, 3);
    for _ in 0..17 {
        node.remove_pod();
    }
    node.converge(1_000);
    let stats = node.pool().stats(node.now());
    assert_eq!(
        (stats.total_prefixes, stats.free_prefixes),
        (1, 1),
        "surplus prefixes released"
    );
}

#[test]
fn prefix_delegation_with_ip_targets_counts_in_prefixes() {
    let config = PoolConfig {
        prefix_delegation: true,
        warm_ip_target: 5,
        minimum_ip_target: 20,
        ..PoolConfig::default()
    };
    let mut node = node("m5.xlarge", config);
    assert_eq!(
        node.pool().stats(node.now()).total_prefixes,
        2,
        "ceil(20 / 16) prefixes for the minimum"
    );
    add_pods(&mut node, 28);
    assert_eq!(
        node.pool().stats(node.now()).total_prefixes,
        3,
        "28 pods + 5 warm = 33 addresses"
    );
}

#[test]
fn max_eni_limits_growth_and_says_so() {
    let mut node = node_with("m5.xlarge", PoolConfig::default(), Some(2), false, false);
    add_pods(&mut node, 28);
    assert_eq!(shape(&node), (2, 28));
    let refused = node.add_pod().unwrap_err();
    assert_eq!(refused.reason, NoAddressReason::NodeAddressLimit);
    assert!(refused.message.contains("MAX_ENI=2"), "{}", refused.message);
}

#[test]
fn node_max_pods_is_the_reason_when_the_node_is_full() {
    // t3.medium: 3 ENIs × 5 addresses = 15 pods (+2 host-network = max pods 17).
    let mut node = node("t3.medium", PoolConfig::default());
    add_pods(&mut node, 15);
    let refused = node.add_pod().unwrap_err();
    assert_eq!(refused.reason, NoAddressReason::NodeMaxPods);
    assert!(
        refused.message.starts_with("node max pods reached (17)"),
        "{}",
        refused.message
    );
}

#[test]
fn growth_stops_at_max_pods() {
    let limits = vpcni_limits::builtin().get("m5.xlarge").unwrap();
    let mut limits = NodeLimits::for_instance(limits, None, false);
    limits.max_pods = 20;
    let mut node = ForecastNode::new(PoolConfig::default(), limits, false);
    node.converge(1_000);
    add_pods(&mut node, 10);
    assert_eq!(shape(&node), (2, 28));
    add_pods(&mut node, 10);
    assert_eq!(
        shape(&node),
        (2, 28),
        "28 addresses already cover max pods 20: no third ENI"
    );
}

#[test]
fn custom_networking_keeps_pods_off_the_primary_eni() {
    let mut node = node_with("m5.xlarge", PoolConfig::default(), None, true, false);
    assert_eq!(shape(&node), (2, 14));
    let assignment = node.add_pod().unwrap();
    assert_ne!(assignment.device_number, 0);
    assert_ne!(assignment.route_table_id, 254);
    add_pods(&mut node, 41);
    assert_eq!(shape(&node), (4, 42));
    assert_eq!(node.add_pod().unwrap_err().reason, NoAddressReason::NodeMaxPods);
}

#[test]
fn trunk_slot_is_reserved_for_security_groups_for_pods() {
    let mut node = node_with("m5.xlarge", PoolConfig::default(), None, false, true);
    add_pods(&mut node, 42);
    assert_eq!(shape(&node), (3, 42), "one of four ENI slots kept for the trunk");
    assert!(node.add_pod().is_err());
    // t3 types cannot have a trunk: nothing is reserved.
    let mut t3 = node_with("t3.medium", PoolConfig::default(), None, false, true);
    add_pods(&mut t3, 15);
    assert_eq!(shape(&t3), (3, 15));
}

#[test]
fn primary_eni_route_table_is_main_and_secondary_is_device_plus_one() {
    let mut node = node("m5.xlarge", PoolConfig::default());
    let first = node.add_pod().unwrap();
    assert_eq!((first.device_number, first.route_table_id), (0, 254));
    add_pods(&mut node, 13);
    node.converge(1_000);
    let on_second = node.add_pod().unwrap();
    assert_eq!((on_second.device_number, on_second.route_table_id), (1, 2));
}

/// p4d.24xlarge has four network cards: an ENI on card 1 is neither the primary ENI (device 0 there) nor
/// table device + 1 (what the plugin's own copy of the rule used to say); it gets the original's
/// 10000 + 100 × card + device.
#[test]
fn enis_on_other_network_cards_get_the_originals_tables() {
    let subnet = "10.0.64.0/19".parse().unwrap();
    let mut eni = vpcni_engine::Eni::new(
        "eni-card1",
        0,
        Default::default(),
        subnet,
        "10.0.64.10".parse().unwrap(),
        0,
    );
    eni.network_card = 1;
    assert_eq!(eni.route_table_id(), 10_100);
    eni.device_number = 2;
    assert_eq!(eni.route_table_id(), 10_102);
    eni.network_card = 0;
    assert_eq!(eni.route_table_id(), 3);
}

#[test]
fn assign_is_idempotent_and_unknown_del_is_none() {
    let mut node = node("m5.xlarge", PoolConfig::default());
    let now = node.now();
    let mut pool = node.pool().clone();
    let key = PodKey::new("vpcni", "c1", "eth0");
    let pod = PodInfo {
        namespace: "ns".into(),
        name: "p".into(),
    };
    let first = pool.assign(&key, &pod, now).unwrap();
    assert_eq!(pool.assign(&key, &pod, now + 1).unwrap(), first);
    assert_eq!(pool.stats(now).assigned, 1);
    assert!(
        pool.unassign(&PodKey::new("vpcni", "unknown", "eth0"), now)
            .is_none()
    );
    assert_eq!(pool.unassign(&key, now).unwrap().ip, first.ip);
    assert!(pool.unassign(&key, now).is_none(), "second DEL finds nothing");
    let _ = node.add_pod();
}

#[test]
fn released_addresses_cool_down_before_reuse() {
    let node = node(
        "m5.xlarge",
        PoolConfig {
            warm_ip_target: 1,
            ..PoolConfig::default()
        },
    );
    let mut pool = node.pool().clone();
    let now = node.now();
    assert_eq!(pool.stats(now).total, 1);
    let pod = PodInfo::default();
    let a = PodKey::new("vpcni", "a", "eth0");
    let b = PodKey::new("vpcni", "b", "eth0");
    let ip = pool.assign(&a, &pod, now).unwrap().ip;
    pool.unassign(&a, now);
    let refused = pool.assign(&b, &pod, now + 29_999).unwrap_err();
    assert_eq!(refused.reason, NoAddressReason::AllCoolingDown);
    assert_eq!(pool.assign(&b, &pod, now + 30_000).unwrap().ip, ip);
}

/// `count` secondary addresses (/32s) from `first` on.
fn addresses(first: &str, count: u32) -> Vec<Ipv4Net> {
    let first = u32::from(first.parse::<Ipv4Addr>().unwrap());
    (first..first + count)
        .map(|ip| Ipv4Net::new(Ipv4Addr::from(ip), 32).unwrap())
        .collect()
}

/// An m5.xlarge pool (14 secondary addresses per ENI) holding the primary ENI with `primary_free` free
/// addresses, no pods.
fn m5_xlarge_pool(config: PoolConfig, primary_free: u32) -> Pool {
    let limits = NodeLimits::for_instance(vpcni_limits::builtin().get("m5.xlarge").unwrap(), None, false);
    assert_eq!(limits.slots_per_eni, 14);
    let mut pool = Pool::new(config, limits);
    let primary = EniFlags {
        primary: true,
        ..EniFlags::default()
    };
    let subnet: Ipv4Net = "10.0.0.0/16".parse().unwrap();
    pool.add_eni(Eni::new(
        "eni-primary",
        0,
        primary,
        subnet,
        "10.0.0.10".parse().unwrap(),
        0,
    ))
    .unwrap();
    pool.add_cidrs("eni-primary", &addresses("10.0.0.11", primary_free))
        .unwrap();
    pool
}

#[test]
fn young_enis_are_kept_for_a_minute() {
    // WARM_ENI_TARGET=1 (the default): the primary ENI's 14 free addresses are the one warm ENI wanted. A
    // second ENI, attached at t = 100 s, holds 14 more and no pod: two ENIs' worth of free addresses, so
    // nothing is added; in ENI mode nothing is released address by address; and the second ENI is the only
    // one that may ever be freed. Only its age (the original's 60 s minimum ENI lifetime) keeps it.
    let mut pool = m5_xlarge_pool(PoolConfig::default(), 14);
    let attached_at: u64 = 100_000;
    let subnet: Ipv4Net = "10.0.0.0/16".parse().unwrap();
    pool.add_eni(Eni::new(
        "eni-young",
        1,
        EniFlags::default(),
        subnet,
        "10.0.1.10".parse().unwrap(),
        attached_at,
    ))
    .unwrap();
    pool.add_cidrs("eni-young", &addresses("10.0.1.11", 14)).unwrap();

    for at in [
        attached_at,
        attached_at + 30_000,
        attached_at + 59_900,
        attached_at + 59_999,
    ] {
        let decision = pool.decide(at);
        assert!(
            matches!(decision, Decision::Nothing { .. }),
            "{} ms after its attach the ENI is kept: {decision:?}",
            at - attached_at
        );
    }
    let freed = Decision::FreeEni {
        eni_id: "eni-young".into(),
    };
    assert_eq!(pool.decide(attached_at + 60_000), freed, "a minute old: freed");
    assert_eq!(pool.decide(attached_at + 600_000), freed);
}

#[test]
fn releases_are_spaced_by_thirty_seconds() {
    // WARM_IP_TARGET=1 with five free addresses: four are surplus, and the only possible decision is to
    // release them (the primary ENI is never freed).
    let config = PoolConfig {
        warm_ip_target: 1,
        ..PoolConfig::default()
    };
    let mut pool = m5_xlarge_pool(config, 5);
    let surplus = addresses("10.0.0.11", 5);
    let released = |decision: Decision| match decision {
        Decision::Release { cidrs } => {
            let mut nets: Vec<Ipv4Net> = cidrs
                .iter()
                .map(|(eni, net)| {
                    assert_eq!(eni, "eni-primary");
                    *net
                })
                .collect();
            nets.sort();
            nets
        }
        other => panic!("expected a release, got {other:?}"),
    };
    let first = released(pool.decide(0));
    assert_eq!(first.len(), 4, "all but the one warm address: {first:?}");
    assert!(first.iter().all(|net| surplus.contains(net)), "{first:?}");
    // One release at t = 10 s: none for the next 30 s, whatever the surplus.
    pool.record_release(10_000);
    for at in [10_000, 20_000, 39_999] {
        let decision = pool.decide(at);
        assert!(
            matches!(decision, Decision::Nothing { .. }),
            "release at {at} ms, {} ms after the last: {decision:?}",
            at - 10_000
        );
    }
    assert_eq!(
        released(pool.decide(40_000)),
        first,
        "30 s later: the same surplus"
    );
}

#[test]
fn subnet_exhaustion_backs_off_growth_for_two_minutes() {
    let node = node("m5.xlarge", PoolConfig::default());
    let mut pool = node.pool().clone();
    let now = node.now();
    let pod = PodInfo::default();
    for i in 0..14 {
        pool.assign(&PodKey::new("vpcni", format!("p{i}"), "eth0"), &pod, now)
            .unwrap();
    }
    assert!(matches!(pool.decide(now), Decision::CreateEni { .. }));
    pool.record_grow_failure(GrowFailure::SubnetExhausted("subnet-1".into()), now);
    assert!(matches!(pool.decide(now + 119_000), Decision::Nothing { .. }));
    let refused = pool
        .assign(&PodKey::new("vpcni", "late", "eth0"), &pod, now + 1)
        .unwrap_err();
    assert_eq!(refused.reason, NoAddressReason::SubnetExhausted);
    assert_eq!(refused.message, "subnet subnet-1 has no free addresses");
    assert!(matches!(pool.decide(now + 120_000), Decision::CreateEni { .. }));
    pool.record_grow_failure(GrowFailure::NoFreePrefix("subnet-1".into()), now);
    assert_eq!(
        pool.assign(&PodKey::new("vpcni", "late", "eth0"), &pod, now)
            .unwrap_err()
            .reason,
        NoAddressReason::NoFreePrefix
    );
    pool.record_grow_failure(GrowFailure::Throttled, now);
    assert_eq!(
        pool.assign(&PodKey::new("vpcni", "late", "eth0"), &pod, now)
            .unwrap_err()
            .reason,
        NoAddressReason::Ec2Throttled
    );
    pool.record_grow_success();
    pool.set_eni_attach_in_progress(true);
    assert_eq!(
        pool.assign(&PodKey::new("vpcni", "late", "eth0"), &pod, now)
            .unwrap_err()
            .reason,
        NoAddressReason::EniAttachInProgress
    );
    assert!(matches!(pool.decide(now), Decision::Nothing { .. }));
}

#[test]
fn switching_prefix_delegation_releases_the_old_modes_empty_cidrs() {
    let mut node = node("m5.xlarge", PoolConfig::default());
    add_pods(&mut node, 2);
    let mut pool = node.pool().clone();
    let now = node.now();
    // Restart with prefix delegation on: the /32s without pods go back, the pods keep theirs.
    let config = PoolConfig {
        prefix_delegation: true,
        ..PoolConfig::default()
    };
    let mut switched = vpcni_engine::Pool::new(config, pool.limits().clone());
    for eni in pool.enis() {
        switched.add_eni(eni.clone()).unwrap();
    }
    let _ = &mut pool;
    let Decision::Release { cidrs } = switched.decide(now) else {
        panic!("expected a release")
    };
    assert_eq!(cidrs.len(), 28 - 2);
    assert!(cidrs.iter().all(|(_, net)| net.prefix_len() == 32));
}
