//! The real daemon's pool converges to what the engine forecasts for the same settings (the forecast
//! `vpcnictl pool` prints), and EC2 holds exactly what the pool says. Runs `vpcni-ipamd` in a testbed node
//! against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use std::collections::BTreeMap;

use node_support::{EVENTUALLY, outcome, settled, stats};
use vpcni_engine::NodeLimits;
use vpcni_engine::forecast::ForecastNode;
use vpcni_ipamd::config::Config;
use vpcni_ipamd::startup::pool_config;
use vpcni_testbed::TestNode;

/// (ENIs, addresses, prefixes, assigned) the engine forecasts for `pods` pods with these settings.
fn forecast(instance_type: &str, env: &[(&str, &str)], pods: usize) -> (u64, u64, u64, u64) {
    let mut map: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    // Required by the daemon; the forecast never calls EC2.
    map.insert("VPCNI_EC2_BACKEND".into(), "aws".into());
    let config = Config::from_lookup(|k| map.get(k).cloned()).unwrap();
    let limits = vpcni_limits::builtin().get(instance_type).unwrap();
    let node_limits = NodeLimits::for_instance(limits, config.pool.max_eni, false);
    let mut node = ForecastNode::new(pool_config(&config), node_limits, false);
    node.converge(10_000);
    for _ in 0..pods {
        node.add_pod().unwrap();
        node.converge(10_000);
    }
    let stats = node.pool().stats(node.now());
    (
        stats.enis as u64,
        stats.total as u64,
        stats.total_prefixes as u64,
        stats.assigned as u64,
    )
}

/// Starts a node with `env`, adds `pods` pods one by one (each retried until the pool has grown enough to
/// give it an address), and checks the pool settles where the engine forecasts, and that both are the
/// `documented` (ENIs, addresses, prefixes): the figure worked out by hand from the original's documented
/// rules (`vpc-cni-behaviour.md` §2b–2d), so neither the daemon nor the engine grades itself.
fn converges(instance_type: &str, env: &[(&str, &str)], pods: usize, documented: (u64, u64, u64)) {
    let mut builder = TestNode::builder().instance_type(instance_type);
    for (k, v) in env {
        builder = builder.ipamd_env(k, v);
    }
    let node = builder.start().unwrap();
    for n in 0..pods {
        let pod = format!("pod-{n}");
        node.wait_until(&format!("an address for {pod}"), EVENTUALLY, || {
            node.ipamd_add(&pod).is_ok_and(|r| outcome(&r).is_ok())
        })
        .unwrap();
    }
    let expected = forecast(instance_type, env, pods);
    assert_eq!(
        (expected.0, expected.1, expected.2, expected.3),
        (documented.0, documented.1, documented.2, pods as u64),
        "the engine's forecast against the documented figure"
    );
    node.wait_until(
        &format!("the pool to settle at the forecast {expected:?}"),
        EVENTUALLY,
        || settled(&node) && stats(&node) == expected,
    )
    .unwrap();

    // EC2 holds exactly that: addresses (prefixes) on the instance's ENIs.
    let state = node.sim_state().unwrap();
    let enis = state.attached_enis(node.instance_id(), u64::MAX);
    assert_eq!(enis.len() as u64, expected.0);
    let secondary: usize = enis.values().map(|e| e.secondary.len()).sum();
    let prefixes: usize = enis.values().map(|e| e.prefixes.len()).sum();
    assert_eq!((secondary + prefixes * 16) as u64, expected.1);
    assert_eq!(prefixes as u64, expected.2);
}

// m5.large: 3 ENIs × 10 addresses, so 9 pod addresses (or 9 /28 prefixes) per ENI.

/// §2b: too low while free < 9 × WARM_ENI_TARGET. The primary ENI filled to 9 has 9 free: one ENI.
#[test]
fn default_warm_eni_target_on_an_empty_node() {
    converges("m5.large", &[], 0, (1, 9, 0));
}

/// §2b: 12 pods on 2 full ENIs (18) leave 6 free < 9, so a third ENI: 27 addresses, 15 free; not released
/// while free < (1 + 1) × 9.
#[test]
fn default_warm_eni_target_with_pods_spilling_onto_a_third_eni() {
    converges("m5.large", &[], 12, (3, 27, 0));
}

/// §2c: short = max(10 − total, 5 − free). 9 on the primary, then an ENI with 1 (MINIMUM 10); 7 pods leave
/// 3 free, short 2, so 2 more on the second ENI: 12; over = min(free − 5, total − 10) = 0. The second ENI
/// stays: without it the primary's 2 free would not cover WARM_IP_TARGET.
#[test]
fn warm_ip_and_minimum_ip_targets() {
    converges(
        "m5.large",
        &[("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "10")],
        7,
        (2, 12, 0),
    );
}

/// §2d: too low while free addresses < 16 × WARM_PREFIX_TARGET, adding max(1, 1 − free prefixes) each
/// time: 20 pods fill one /28 and 4 of a second (12 free < 16), which would call for a third /28 — but
/// growth stops once the pool holds max pods (§2, "Growth stops once TotalIPs >= maxPods"), and without the API server max pods is the type's
/// `eni-max-pods.txt` line, 29 for m5.large: at 32 addresses it is reached. Two /28s.
#[test]
fn prefix_delegation_with_warm_prefix_target() {
    converges(
        "m5.large",
        &[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "1")],
        20,
        (1, 32, 2),
    );
}
