//! Pods reach the internet as their node's public address: ipamd's SNAT turns the pod's address into the
//! node's primary address, and the internet gateway turns that into the node's public address. Without
//! the node's SNAT the gateway drops the pod's private address, as a real internet gateway does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use common::TestLab;

#[test]
fn pods_reach_the_internet_as_their_nodes_public_address() {
    let mut lab = TestLab::up(2, "m5.large", |_| {});
    let a = lab.pods("node-1", 1).remove(0);
    let b = lab.pods("node-2", 1).remove(0);
    let public = |node: &str| lab.node(node).unwrap().public_ip.to_string();
    let seen = lab.whoami_eventually(&a.name);
    assert_eq!(seen, public("node-1"), "the internet saw pod-1 as {seen}");
    assert_eq!(lab.whoami_eventually(&b.name), public("node-2"));

    // Skip the node's SNAT for pod-1: its own address reaches the gateway, which drops it.
    let pod = a.ip.to_string();
    let bypass = [
        "POSTROUTING",
        "-s",
        &pod,
        "-m",
        "comment",
        "--comment",
        "test-bypass",
        "-j",
        "RETURN",
    ];
    let mut insert = vec!["-t", "nat", "-I"];
    insert.extend_from_slice(&bypass);
    lab.iptables("node-1", &insert);
    lab.iptables(
        "router",
        &[
            "-I",
            "FORWARD",
            "-o",
            "igw",
            "-s",
            &pod,
            "-m",
            "comment",
            "--comment",
            "unsnatted",
        ],
    );
    let refused = lab.whoami(&a.name);
    assert!(
        refused.is_err(),
        "the internet answered a private source: {refused:?}"
    );
    assert!(lab.counted("router", "filter", "FORWARD", "unsnatted") >= 1);

    let mut delete = vec!["-t", "nat", "-D"];
    delete.extend_from_slice(&bypass);
    lab.iptables("node-1", &delete);
    assert_eq!(lab.whoami_eventually(&a.name), public("node-1"));
}
