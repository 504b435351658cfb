//! Pod wiring in real network namespaces: a "node" namespace stands in for the host, pods are namespaces of
//! their own. Nothing touches the machine's own namespace. Needs root (the test script runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use common::{Namespaces, block_on, ip, on_node, until_success};

use vpcni_dataplane::{PodSpec, check_pod, setup_pod, teardown_pod, unroute_pod};

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
    assert!(
        Command::new("ip")
            .args(["netns", "del", &ns.0[1]])
            .status()
            .unwrap()
            .success(),
        "deleting the pod's namespace before its teardown"
    );
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

fn ping6(netns: &str, to: &str) -> std::process::Output {
    until_success(|| {
        Command::new("ip")
            .args(["netns", "exec", netns, "ping", "-6", "-c", "1", "-W", "2", to])
            .output()
            .unwrap()
    })
}

fn sysctl_in(netns: &str, key: &str) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "sysctl", "-n", key])
        .output()
        .unwrap();
    assert!(output.status.success(), "{key}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    lines.sort();
    lines
}

/// Two IPv6 pods on a test node: each is usable when setup returns (its /128 there and not tentative), has
/// exactly the routes and neighbour entry of the original, the node has its /128 route, its 512 rule and the
/// host veth's IPv6 settings; the pods reach the node and each other through it; CHECK sees a missing
/// neighbour entry; DEL's unrouting and teardown (also of a pod whose namespace is gone) leave nothing.
#[test]
fn ipv6_pods_are_usable_when_setup_returns_and_teardown_leaves_nothing() {
    let ns = Namespaces::new(3);
    let node = ns.0[0].clone();
    // What the init container sets on an IPv6 node; and an address of the node's own to reach.
    assert!(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &node,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.forwarding=1"
            ])
            .status()
            .unwrap()
            .success()
    );
    ip(
        &node,
        &["-6", "addr", "add", "2600:1f14:abc:de00::10/128", "dev", "lo"],
    );
    let pods = [
        (
            "enit6000000001",
            "2600:1f14:abc:de00:1f2e::a1",
            ns.0[1].clone(),
            ns.path(1),
        ),
        (
            "enit6000000002",
            "2600:1f14:abc:de00:1f2e::b2",
            ns.0[2].clone(),
            ns.path(2),
        ),
    ];
    for (veth, address, pod, path) in &pods {
        let spec = spec(path.clone(), veth, address, 254);
        let wired = on_node(ns.path(0), {
            let spec = spec.clone();
            move || block_on(setup_pod(&spec)).unwrap()
        });

        // Pod side, read at once: nothing waits for DAD after setup returned.
        let addresses = ip(pod, &["-6", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            addresses.contains(&format!("inet6 {address}/128 scope global")),
            "{addresses}"
        );
        assert!(
            !addresses.contains("tentative") && !addresses.contains("dadfailed"),
            "{addresses}"
        );
        assert!(ip(pod, &["link", "show", "eth0"]).contains("mtu 9001"));
        assert_eq!(
            sorted_lines(&ip(pod, &["-6", "route", "show"])),
            sorted_lines(&format!(
                "{address} dev eth0 proto kernel metric 256 pref medium\n\
                 fe80::/64 dev eth0 proto kernel metric 256 pref medium\n\
                 default via fe80::1 dev eth0 metric 1024 pref medium\n"
            )),
        );
        assert_eq!(
            ip(pod, &["-6", "neigh", "show", "dev", "eth0"]).trim(),
            format!("fe80::1 lladdr {} PERMANENT", wired.host_mac)
        );

        // Node side.
        let routes = ip(&node, &["-6", "route", "show", "dev", veth]);
        assert!(
            routes.contains(&format!("{address} metric 1024 pref medium")),
            "{routes}"
        );
        let rules = ip(&node, &["-6", "rule"]);
        assert!(
            rules.contains(&format!("512:\tfrom all to {address} lookup main")),
            "{rules}"
        );
        assert!(!rules.contains("1536:"), "{rules}");
        for (setting, value) in [
            ("accept_ra", "0"),
            ("accept_redirects", "1"),
            ("forwarding", "0"),
            ("accept_dad", "0"),
        ] {
            assert_eq!(
                sysctl_in(&node, &format!("net.ipv6.conf.{veth}.{setting}")),
                value,
                "{veth} {setting}"
            );
        }
        let differences = on_node(ns.path(0), move || block_on(check_pod(&spec)).unwrap());
        assert!(differences.is_empty(), "{differences:?}");
    }

    // Pod to node, and pod to pod through the node.
    let ping = ping6(&pods[0].2, "2600:1f14:abc:de00::10");
    assert!(ping.status.success(), "{ping:?}");
    let ping = ping6(&pods[0].2, pods[1].1);
    assert!(ping.status.success(), "{ping:?}");
    let ping = ping6(&pods[1].2, pods[0].1);
    assert!(ping.status.success(), "{ping:?}");

    // CHECK reports what was changed behind our back.
    ip(&pods[0].2, &["-6", "neigh", "del", "fe80::1", "dev", "eth0"]);
    let first = spec(pods[0].3.clone(), pods[0].0, pods[0].1, 254);
    let differences = on_node(ns.path(0), {
        let first = first.clone();
        move || block_on(check_pod(&first)).unwrap()
    });
    assert_eq!(
        differences,
        vec!["permanent neighbour entry for fe80::1 with the host veth's MAC is missing".to_owned()]
    );

    // DEL's unrouting: the rule and the /128 route go, twice over.
    let first_ip: std::net::IpAddr = pods[0].1.parse().unwrap();
    for _ in 0..2 {
        on_node(ns.path(0), move || block_on(unroute_pod(first_ip)).unwrap());
    }
    assert!(!ip(&node, &["-6", "rule"]).contains(pods[0].1));
    assert!(!ip(&node, &["-6", "route", "show", "table", "all"]).contains(pods[0].1));
    on_node(ns.path(0), move || {
        block_on(teardown_pod("enit6000000001", Some(first_ip))).unwrap()
    });
    // The second pod's namespace is gone before its teardown.
    assert!(
        Command::new("ip")
            .args(["netns", "del", &pods[1].2])
            .status()
            .unwrap()
            .success(),
        "deleting the pod's namespace before its teardown"
    );
    let second_ip: std::net::IpAddr = pods[1].1.parse().unwrap();
    on_node(ns.path(0), move || {
        block_on(teardown_pod("enit6000000002", Some(second_ip))).unwrap()
    });
    // The kernel destroys a veth whose namespace is deleted asynchronously: wait for it, with a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ip(&node, &["link"]).contains("enit6") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let links = ip(&node, &["link"]);
    assert!(!links.contains("enit6"), "{links}");
    let rules = ip(&node, &["-6", "rule"]);
    let routes = ip(&node, &["-6", "route", "show", "table", "all"]);
    for (_, address, _, _) in &pods {
        assert!(!rules.contains(address), "{rules}");
        assert!(!routes.contains(address), "{routes}");
    }
}

/// An IPv6 pod whose namespace is missing: an error naming it, and nothing left on the node.
#[test]
fn a_failed_ipv6_setup_leaves_nothing() {
    let ns = Namespaces::new(1);
    let node = ns.0[0].clone();
    let bad = spec(
        "/var/run/netns/vt-dp-no-such-netns6".into(),
        "enit6000000003",
        "2600:1f14:abc:de00:1f2e::c3",
        254,
    );
    let error = on_node(ns.path(0), move || block_on(setup_pod(&bad)).unwrap_err());
    assert!(error.to_string().contains("vt-dp-no-such-netns6"), "{error}");
    assert!(!ip(&node, &["link"]).contains("enit6000000003"));
    assert!(!ip(&node, &["-6", "rule"]).contains("::c3"));
}
