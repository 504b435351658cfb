//! Pods on different nodes reach each other with their VPC addresses, through the VPC router, with no
//! overlay; and the router's source/destination check drops what EC2 would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use common::TestLab;

#[test]
fn pods_on_different_nodes_ping_each_other_without_overlay() {
    let mut lab = TestLab::up(2, "m5.large", |_| {});
    let a = lab.pods("node-1", 1).remove(0);
    let b = lab.pods("node-2", 1).remove(0);
    let status = lab.status().unwrap();
    for pod in [&a, &b] {
        let node = lab.node(&pod.node).unwrap();
        assert!(
            node.subnet.contains(&pod.ip),
            "{} has {} outside its node's subnet {}",
            pod.name,
            pod.ip,
            node.subnet
        );
        let shown = status.pods.iter().find(|p| p.name == pod.name).unwrap();
        let eni = shown
            .eni
            .as_deref()
            .expect("the pod's address is on one of its node's ENIs");
        assert!(
            status
                .nodes
                .iter()
                .find(|n| n.name == pod.node)
                .unwrap()
                .enis
                .iter()
                .any(|e| e.id == eni),
            "{} is on {eni}, which is not {}'s",
            pod.name,
            pod.node
        );
    }

    // Count, at the VPC router, packets carrying the pods' own addresses: an overlay would show the
    // nodes' addresses on the outside instead.
    let (from, to) = (a.ip.to_string(), b.ip.to_string());
    lab.iptables(
        "router",
        &[
            "-I",
            "FORWARD",
            "-s",
            &from,
            "-d",
            &to,
            "-p",
            "icmp",
            "-m",
            "comment",
            "--comment",
            "a-to-b",
        ],
    );
    lab.iptables(
        "router",
        &[
            "-I",
            "FORWARD",
            "-s",
            &to,
            "-d",
            &from,
            "-p",
            "icmp",
            "-m",
            "comment",
            "--comment",
            "b-to-a",
        ],
    );
    assert!(
        lab.reaches(&a.name, &to),
        "{} cannot ping {} on another node",
        a.name,
        b.name
    );
    assert!(
        lab.reaches(&b.name, &from),
        "{} cannot ping {} on another node",
        b.name,
        a.name
    );
    assert!(lab.counted("router", "filter", "FORWARD", "a-to-b") >= 2);
    assert!(lab.counted("router", "filter", "FORWARD", "b-to-a") >= 2);

    for node in ["node-1", "node-2"] {
        let links = lab.ip(node, &["-d", "-o", "link", "show"]);
        for tunnel in ["vxlan", "geneve", "ipip", "gre", "wireguard", "ip6tnl"] {
            assert!(!links.contains(tunnel), "{node} has a {tunnel} link:\n{links}");
        }
    }
}

#[test]
fn router_drops_sources_not_assigned_to_the_eni_and_nodes_reach_the_internet_as_public() {
    let lab = TestLab::up(2, "m5.large", |_| {});
    let node1 = lab.node("node-1").unwrap().clone();
    let node2 = lab.node("node-2").unwrap().clone();
    let (peer, own) = (node2.primary_ip.to_string(), node1.primary_ip.to_string());
    // EC2 never assigned this address to node-1's ENI: the source check must drop what it sends.
    let foreign = std::net::Ipv4Addr::from(u32::from(node1.subnet.broadcast()) - 1).to_string();
    lab.ip(
        "node-1",
        &["address", "add", &format!("{foreign}/32"), "dev", "lo"],
    );
    let ping_from = |source: &str| {
        lab.output("node-1", &["ping", "-c", "1", "-W", "1", "-I", source, &peer])
            .unwrap()
            .status
            .success()
    };
    lab.iptables(
        "router",
        &[
            "-t",
            "raw",
            "-I",
            "PREROUTING",
            "-s",
            &foreign,
            "-m",
            "comment",
            "--comment",
            "arrived",
        ],
    );
    lab.iptables(
        "router",
        &[
            "-I",
            "FORWARD",
            "-s",
            &foreign,
            "-m",
            "comment",
            "--comment",
            "forwarded",
        ],
    );
    assert!(
        lab.reaches_with(|| ping_from(&own)),
        "node-1 cannot ping node-2 from its own address"
    );
    assert!(
        !ping_from(&foreign),
        "a source EC2 never assigned to node-1 got an answer"
    );
    assert!(lab.counted("router", "raw", "PREROUTING", "arrived") >= 1);
    assert_eq!(
        lab.counted("router", "filter", "FORWARD", "forwarded"),
        0,
        "the router forwarded a packet whose source is not assigned to the ENI it came from"
    );

    // The internet gateway: a node's primary address leaves as its public address.
    assert_eq!(lab.whoami_eventually("node-1"), node1.public_ip.to_string());
    assert_eq!(lab.whoami_eventually("node-2"), node2.public_ip.to_string());
}
