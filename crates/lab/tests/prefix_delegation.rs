//! Prefix delegation through the real plugin on lab nodes: each pod's address lies inside a /28 that EC2
//! lists on the pod's ENI (EC2's view, from the simulator, not ipamd's), its policy rules point at that
//! ENI's route table, and it reaches a pod on the other node and the internet (through SNAT, as the node).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{TestLab, eventually};
use vpcni_lab::status::{LabStatus, PodStatus};

/// The /28 of `pod`'s node that holds its address, and that ENI's device number, as EC2 lists them.
fn prefix_of(status: &LabStatus, pod: &PodStatus) -> (ipnet::Ipv4Net, u32) {
    let node = status.nodes.iter().find(|n| n.name == pod.node).unwrap();
    for eni in &node.enis {
        assert!(
            !eni.ips.contains(&pod.ip),
            "{} has a secondary address, not one from a prefix",
            pod.name
        );
        if let Some(prefix) = eni.prefixes.iter().find(|p| p.contains(&pod.ip)) {
            assert_eq!(prefix.prefix_len(), 28);
            return (*prefix, eni.device_number);
        }
    }
    panic!(
        "{} ({}) is in no /28 of {}: {:?}",
        pod.name, pod.ip, node.name, node.enis
    );
}

/// The table a rule at `priority` names for `selector` (`from 10.0.0.5` / `to 10.0.0.5`), if any.
fn rule_table(lab: &TestLab, node: &str, priority: &str, selector: &str) -> Option<String> {
    lab.ip(node, &["rule", "show", "priority", priority])
        .lines()
        .find(|line| line.contains(&format!("{selector} ")) || line.ends_with(selector))
        .and_then(|line| line.split_whitespace().last().map(str::to_owned))
}

/// Pods on both nodes, then every check on the first node's pods.
fn check(lab: &mut TestLab, expected_device: u32, expected_table: &str) {
    lab.pods("node-1", 3);
    lab.pods("node-2", 1);
    let status = lab.status().unwrap();
    let remote = status.pods.iter().find(|p| p.node == "node-2").unwrap().clone();
    let public = lab.node("node-1").unwrap().public_ip.to_string();
    for pod in status.pods.iter().filter(|p| p.node == "node-1") {
        let (_, device) = prefix_of(&status, pod);
        assert_eq!(device, expected_device, "{}", pod.name);
        let ip = pod.ip.to_string();
        assert_eq!(
            rule_table(lab, "node-1", "512", &format!("to {ip}")).as_deref(),
            Some("main"),
            "{}: traffic to the pod goes to its veth",
            pod.name
        );
        let from = rule_table(lab, "node-1", "1536", &format!("from {ip}"));
        if expected_table == "main" {
            assert_eq!(
                from, None,
                "{}: a pod on the primary ENI needs no from-rule",
                pod.name
            );
        } else {
            assert_eq!(from.as_deref(), Some(expected_table), "{}", pod.name);
        }
        eventually(
            &format!("{} reaching {}", pod.name, remote.name),
            Duration::from_secs(60),
            || lab.ping(&pod.name, &remote.ip.to_string()).then_some(()),
        );
        assert_eq!(
            lab.whoami_eventually(&pod.name),
            public,
            "{} leaves as the node",
            pod.name
        );
    }
    let node_1: Vec<Ipv4Addr> = status
        .pods
        .iter()
        .filter(|p| p.node == "node-1")
        .map(|p| p.ip)
        .collect();
    let (first, _) = prefix_of(&status, status.pods.iter().find(|p| p.node == "node-1").unwrap());
    assert!(
        node_1.iter().all(|ip| first.contains(ip)),
        "three pods share one /28 ({first}): {node_1:?}"
    );
}

#[test]
fn pods_on_the_primary_eni_take_addresses_from_its_prefixes() {
    let mut lab = TestLab::up(2, "m5.large", |spec| spec.prefix_delegation = true);
    // The primary ENI's pods use the main table: a to-rule, no from-rule.
    check(&mut lab, 0, "main");
}

#[test]
fn pods_on_a_secondary_eni_take_addresses_from_its_prefixes() {
    // Custom networking keeps pods off the primary ENI, so the first /28 lands on device 1, whose pods use
    // route table 2 (device + 1, as the original numbers them).
    let mut lab = TestLab::up(2, "m5.large", |spec| {
        spec.prefix_delegation = true;
        spec.custom_networking = true;
        spec.secondary_cidrs = vec!["100.64.0.0/16".parse().unwrap()];
        spec.pod_subnets = vec!["100.64.0.0/24".parse().unwrap()];
    });
    check(&mut lab, 1, "2");
}
