//! Property tests: random sequences of ADD, DEL, policy cycles and clock steps, on random settings.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use vpcni_engine::forecast::ForecastNode;
use vpcni_engine::{Decision, NodeLimits, PodInfo, PodKey, PoolConfig};

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Del(u8),
    Cycles(u8),
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..60).prop_map(Op::Add),
        3 => (0u8..60).prop_map(Op::Del),
        3 => (1u8..6).prop_map(Op::Cycles),
        2 => (0u32..120_000).prop_map(Op::Advance),
    ]
}

fn config() -> impl Strategy<Value = PoolConfig> {
    prop_oneof![
        (0u32..3).prop_map(|warm_eni_target| PoolConfig {
            warm_eni_target,
            ..PoolConfig::default()
        }),
        (0u32..20, 0u32..30)
            .prop_filter("a target", |(w, m)| w + m > 0)
            .prop_map(|(warm_ip_target, minimum_ip_target)| {
                PoolConfig {
                    warm_ip_target,
                    minimum_ip_target,
                    ..PoolConfig::default()
                }
            }),
        (1u32..3).prop_map(|warm_prefix_target| PoolConfig {
            prefix_delegation: true,
            warm_prefix_target,
            ..PoolConfig::default()
        }),
        (1u32..20, 0u32..40).prop_map(|(warm_ip_target, minimum_ip_target)| PoolConfig {
            prefix_delegation: true,
            warm_ip_target,
            minimum_ip_target,
            ..PoolConfig::default()
        }),
    ]
}

fn instance() -> impl Strategy<Value = (&'static str, Option<u32>, bool, bool)> {
    (
        prop::sample::select(vec![
            "m5.xlarge",
            "t3.medium",
            "m5.large",
            "c5.4xlarge",
            "t3.nano",
        ]),
        prop::option::of(1u32..4),
        any::<bool>(),
        any::<bool>(),
    )
}

/// Runs one policy cycle, checking the decision against the state before carrying it out.
fn checked_step(node: &mut ForecastNode) {
    let pool = node.pool();
    match pool.decide(node.now()) {
        Decision::FreeEni { eni_id } => {
            let eni = pool.eni(&eni_id).expect("freed ENI exists");
            assert_eq!(eni.assigned(), 0, "freeing {eni_id} which holds pods");
            assert!(
                eni.is_freeable_kind(),
                "freeing the primary, a trunk or an EFA ENI"
            );
        }
        Decision::Release { cidrs } => {
            for (eni_id, net) in &cidrs {
                let cidr = &pool.eni(eni_id).unwrap().cidrs[net];
                assert_eq!(cidr.assigned(), 0, "releasing {net} which holds pods");
            }
        }
        _ => {}
    }
    node.step();
}

fn check_invariants(node: &ForecastNode, expected: &HashMap<u8, std::net::Ipv4Addr>) {
    let pool = node.pool();
    let limits = pool.limits();
    let allocations = pool.allocations();
    let mut seen = HashSet::new();
    for (key, _, assignment) in &allocations {
        assert!(seen.insert(assignment.ip), "{} handed to two keys", assignment.ip);
        assert_eq!(pool.holder_of(assignment.ip).as_ref(), Some(key));
    }
    assert_eq!(
        allocations.len(),
        expected.len(),
        "every ADDed key, and only those, holds an address"
    );
    for (key, _, assignment) in &allocations {
        let index: u8 = key.container_id.trim_start_matches('k').parse().unwrap();
        assert_eq!(
            expected.get(&index),
            Some(&assignment.ip),
            "a pod's address never changes under it"
        );
    }
    assert!(
        pool.enis().count() as u32 <= limits.max_enis,
        "more ENIs than the instance allows"
    );
    for eni in pool.enis() {
        assert!(
            eni.all_slots_used() as u32 <= limits.slots_per_eni,
            "{} holds more than EC2 allows",
            eni.id
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_workloads_keep_every_invariant(
        config in config(),
        (instance_type, max_eni, custom, sgp) in instance(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let limits = NodeLimits::for_instance(vpcni_limits::builtin().get(instance_type).unwrap(), max_eni, sgp);
        let mut node = ForecastNode::new(config, limits, custom);
        let mut held: HashMap<u8, std::net::Ipv4Addr> = HashMap::new();
        let pod = PodInfo { namespace: "ns".into(), name: "p".into() };
        for op in ops {
            match op {
                Op::Add(k) => {
                    let now = node.now();
                    let key = PodKey::new("vpcni", format!("k{k}"), "eth0");
                    match node.pool_mut().assign(&key, &pod, now) {
                        Ok(assignment) => {
                            if let Some(previous) = held.insert(k, assignment.ip) {
                                prop_assert_eq!(previous, assignment.ip, "repeated ADD must return the same address");
                            }
                        }
                        Err(refusal) => prop_assert!(!refusal.message.is_empty()),
                    }
                }
                Op::Del(k) => {
                    let now = node.now();
                    let released = node.pool_mut().unassign(&PodKey::new("vpcni", format!("k{k}"), "eth0"), now);
                    prop_assert_eq!(released.map(|a| a.ip), held.remove(&k));
                }
                Op::Cycles(n) => {
                    for _ in 0..n {
                        checked_step(&mut node);
                    }
                }
                Op::Advance(ms) => node.advance(u64::from(ms)),
            }
            check_invariants(&node, &held);
        }

        // Left alone, the pool settles, and where it settles meets the targets (or cannot grow further).
        for _ in 0..400 {
            checked_step(&mut node);
            node.advance(60_000);
        }
        check_invariants(&node, &held);
        let now = node.now();
        let pool = node.pool();
        prop_assert!(matches!(pool.decide(now), Decision::Nothing { .. }), "not settled: {:?}", pool.decide(now));
        let stats = pool.stats(now);
        prop_assert!(
            !pool.is_below_target(now) || !pool.can_grow() || stats.total >= pool.limits().max_pods as usize,
            "settled below target though it could grow: {stats:?}"
        );
    }
}
