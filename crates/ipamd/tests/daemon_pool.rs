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
/// give it an address), and checks the pool settles where the engine forecasts.
fn converges(instance_type: &str, env: &[(&str, &str)], pods: usize) {
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

#[test]
fn default_warm_eni_target_on_an_empty_node() {
    converges("m5.large", &[], 0);
}

#[test]
fn default_warm_eni_target_with_pods_spilling_onto_a_third_eni() {
    converges("m5.large", &[], 12);
}

#[test]
fn warm_ip_and_minimum_ip_targets() {
    converges(
        "m5.large",
        &[("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "10")],
        7,
    );
}

#[test]
fn prefix_delegation_with_warm_prefix_target() {
    converges(
        "m5.large",
        &[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "1")],
        20,
    );
}
