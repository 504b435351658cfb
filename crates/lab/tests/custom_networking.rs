//! Custom networking in the lab, as the articles set it up: nodes in 10.0.0.0/24, pods in a subnet of the
//! secondary CIDR 100.64.0.0/16, one ENIConfig per zone chosen by the node label
//! topology.kubernetes.io/zone. Pods get addresses only from the pod subnet, none from the primary ENI,
//! reach pods on another node and the internet (as their node's public address), and an m5.xlarge takes
//! 42 of them: (4 − 1) ENIs × 14 + 2 host-network pods = 44 max pods.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::time::Duration;

use common::TestLab;
use ipnet::Ipv4Net;

#[test]
fn pods_live_in_the_pod_subnet_reach_each_other_and_the_internet_and_42_fit() {
    let pod_subnet: Ipv4Net = "100.64.0.0/24".parse().unwrap();
    let mut lab = TestLab::up(2, "m5.xlarge", |spec| {
        spec.custom_networking = true;
        spec.secondary_cidrs = vec!["100.64.0.0/16".parse().unwrap()];
        spec.pod_subnets = vec![pod_subnet];
    });
    let a = lab.pods("node-1", 1).remove(0);
    let b = lab.pods("node-2", 1).remove(0);
    for pod in [&a, &b] {
        assert!(
            pod_subnet.contains(&pod.ip),
            "{} got {} outside {pod_subnet}",
            pod.name,
            pod.ip
        );
    }
    assert!(
        lab.ping(&a.name, &b.ip.to_string()),
        "{} cannot ping {}",
        a.name,
        b.ip
    );
    assert!(
        lab.ping(&b.name, &a.ip.to_string()),
        "{} cannot ping {}",
        b.name,
        a.ip
    );
    let public = lab.node("node-1").unwrap().public_ip.to_string();
    assert_eq!(lab.whoami_eventually(&a.name), public);

    // Fill node-1: 41 more fit, the 43rd is refused with ipamd's node-max-pods reason.
    let more = lab.pods("node-1", 41);
    assert!(more.iter().all(|p| pod_subnet.contains(&p.ip)), "{more:?}");
    let refused = lab.add_pods("node-1", 1, Duration::from_secs(60)).unwrap_err();
    assert!(refused.created.is_empty());
    assert_eq!(
        refused.failure.reason(),
        Some("NODE_MAX_PODS"),
        "{}",
        refused.failure
    );
    assert!(
        refused.failure.message.contains("max pods reached (44)"),
        "{}",
        refused.failure
    );

    let status = lab.status().unwrap();
    for node in &status.nodes {
        assert_eq!(node.eni_config.as_deref(), Some("us-west-2a"));
        let primary = node.enis.iter().find(|e| e.device_number == 0).unwrap();
        assert_eq!(
            primary.ips.len(),
            1,
            "{}'s primary ENI holds pod addresses: {:?}",
            node.name,
            primary.ips
        );
        assert_eq!(primary.subnet_cidr, Some("10.0.0.0/24".parse().unwrap()));
        for eni in node.enis.iter().filter(|e| e.device_number > 0) {
            assert_eq!(eni.subnet_cidr, Some(pod_subnet), "{}", eni.id);
        }
    }
    let pods_on_node_1 = status.pods.iter().filter(|p| p.node == "node-1").count();
    assert_eq!(pods_on_node_1, 42);
    assert!(status.pods.iter().all(|p| pod_subnet.contains(&p.ip)));

    // `lab down` removes the ENIConfig directory with the rest of the state.
    let state_dir = lab.state().spec.state_dir.clone();
    assert!(state_dir.join("eniconfigs").join("us-west-2a.yaml").is_file());
    lab.down();
    assert!(!state_dir.exists(), "{} is still there", state_dir.display());
}
