//! Pod wiring in real network namespaces: a "node" namespace stands in for the host, pods are namespaces of
//! their own. Nothing touches the machine's own namespace. Needs root (the test script runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use common::{Namespaces, block_on, ip, on_node, until_success};

use vpcni_dataplane::{PodSpec, check_pod, setup_pod, teardown_pod};

fn spec(pod_path: String, veth: &str, ip: &str, table: u32) -> PodSpec {
    PodSpec {
        netns: pod_path,
        ifname: "eth0".into(),
        host_veth: veth.into(),
        ip: ip.parse().unwrap(),
        mtu: 9001,
        route_table: Some(table),
    }
}

#[test]
fn setup_check_and_teardown_of_a_pod_on_the_primary_eni() {
    let ns = Namespaces::new(2);
    let (node, pod) = (ns.0[0].clone(), ns.0[1].clone());
    let spec = spec(ns.path(1), "enit0000000001", "10.0.0.20", 254);
    let wired = on_node(ns.path(0), {
        let spec = spec.clone();
        move || block_on(setup_pod(&spec)).unwrap()
    });
    assert_eq!(wired.host_mac.len(), 17);

    // Pod side.
    let addresses = ip(&pod, &["-4", "addr", "show", "eth0"]);
    assert!(addresses.contains("inet 10.0.0.20/32"), "{addresses}");
    assert!(addresses.contains("mtu 9001"), "{addresses}");
    let routes = ip(&pod, &["route"]);
    assert!(routes.contains("default via 169.254.1.1 dev eth0"), "{routes}");
    assert!(routes.contains("169.254.1.1 dev eth0 scope link"), "{routes}");
    let neighbours = ip(&pod, &["neigh"]);
    assert!(
        neighbours.contains(&format!(
            "169.254.1.1 dev eth0 lladdr {} PERMANENT",
            wired.host_mac
        )),
        "{neighbours}"
    );

    // Node side.
    let routes = ip(&node, &["route"]);
    assert!(
        routes.contains("10.0.0.20 dev enit0000000001 scope link"),
        "{routes}"
    );
    let rules = ip(&node, &["rule"]);
    assert!(
        rules.contains("512:\tfrom all to 10.0.0.20 lookup main"),
        "{rules}"
    );
    assert!(
        !rules.contains("1536:"),
        "a primary-ENI pod has no from-rule: {rules}"
    );

    let differences = on_node(ns.path(0), {
        let spec = spec.clone();
        move || block_on(check_pod(&spec)).unwrap()
    });
    assert!(differences.is_empty(), "{differences:?}");

    // CHECK reports what was changed behind our back.
    ip(&pod, &["neigh", "del", "169.254.1.1", "dev", "eth0"]);
    let differences = on_node(ns.path(0), {
        let spec = spec.clone();
        move || block_on(check_pod(&spec)).unwrap()
    });
    assert_eq!(
        differences,
        vec!["permanent ARP entry for 169.254.1.1 with the host veth's MAC is missing".to_owned()]
    );

    // Teardown twice: the second finds nothing and succeeds.
    for _ in 0..2 {
        on_node(ns.path(0), || {
            block_on(teardown_pod("enit0000000001", Some(Ipv4Addr::new(10, 0, 0, 20)))).unwrap()
        });
    }
    assert!(!ip(&node, &["link"]).contains("enit0000000001"));
    assert!(!ip(&node, &["rule"]).contains("10.0.0.20"));
    assert!(
        !ip(&pod, &["link"]).contains("eth0"),
        "the pod end went with the host end"
    );
}

#[test]
fn a_pod_on_a_secondary_eni_gets_its_from_rule_and_teardown_works_without_the_netns() {
    let ns = Namespaces::new(2);
    let node = ns.0[0].clone();
    let spec = spec(ns.path(1), "enit0000000002", "10.0.0.30", 3);
    on_node(ns.path(0), {
        let spec = spec.clone();
        move || block_on(setup_pod(&spec)).unwrap()
    });
    let rules = ip(&node, &["rule"]);
    assert!(rules.contains("1536:\tfrom 10.0.0.30 lookup 3"), "{rules}");
    let _ = Command::new("ip").args(["netns", "del", &ns.0[1]]).status();
    on_node(ns.path(0), || {
        block_on(teardown_pod("enit0000000002", Some(Ipv4Addr::new(10, 0, 0, 30)))).unwrap()
    });
    let rules = ip(&node, &["rule"]);
    assert!(!rules.contains("10.0.0.30"), "{rules}");
}

#[test]
fn two_pods_on_a_node_reach_each_other_and_a_failed_setup_leaves_nothing() {
    let ns = Namespaces::new(3);
    let node = ns.0[0].clone();
    Command::new("ip")
        .args(["netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .status()
        .unwrap();
    for (i, (veth, ip)) in [("enit00000000a", "10.0.0.41"), ("enit00000000b", "10.0.0.42")]
        .into_iter()
        .enumerate()
    {
        let spec = spec(ns.path(i + 1), veth, ip, 254);
        on_node(ns.path(0), move || block_on(setup_pod(&spec)).unwrap());
    }
    let ping = until_success(|| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0[1],
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "10.0.0.42",
            ])
            .output()
            .unwrap()
    });
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    // A pod namespace that does not exist: an error naming it, and no veth or rule left behind.
    let bad = spec(
        "/var/run/netns/vt-dp-no-such-netns".into(),
        "enit00000000c",
        "10.0.0.43",
        254,
    );
    let error = on_node(ns.path(0), move || block_on(setup_pod(&bad)).unwrap_err());
    assert!(error.to_string().contains("vt-dp-no-such-netns"), "{error}");
    assert!(!ip(&node, &["link"]).contains("enit00000000c"));
    assert!(!ip(&node, &["rule"]).contains("10.0.0.43"));
}
