//! IPv6 labs (`vpcnictl lab up --ipv6`): a dual-stack VPC whose nodes run ipamd in IPv6 mode, each with one
//! /80 on its primary ENI, and pods with a VPC IPv6 address from that /80 plus a node-local IPv4 egress
//! address from the chained `vpcni-egress` plugin.
//!
//! What must hold (issue 14): pods get addresses from their node's /80; they ping each other across nodes
//! over IPv6; the lab internet sees a pod's own IPv6 address over IPv6 and its node's public IPv4 address
//! over IPv4; a pod's egress-only IPv4 address cannot be reached from another node; restarting ipamd
//! (SIGTERM and SIGKILL) keeps every pod's IPv6 and egress addresses and the node's /80.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{TestLab, eventually};
use ipnet::Ipv6Net;
use vpcni_lab::PodRecord;

/// How long a probe that must succeed is retried (a bound so that a broken lab fails rather than hangs).
const WITHIN: Duration = Duration::from_secs(30);

fn ipv6_lab(nodes: u32) -> TestLab {
    TestLab::up(nodes, "m5.xlarge", |spec| {
        spec.ipv6 = true;
        spec.prefix_delegation = true;
    })
}

/// The /80 each node's pods take their addresses from, as `lab status` shows it: exactly one per node.
fn node_prefix(lab: &TestLab, node: &str) -> Ipv6Net {
    let status = lab.status().unwrap();
    let shown = status.nodes.iter().find(|n| n.name == node).unwrap();
    let prefixes = shown
        .ipv6_prefixes
        .clone()
        .expect("an IPv6 lab shows every node's ipv6_prefixes");
    assert_eq!(
        prefixes.len(),
        1,
        "{node} should hold exactly one /80: {prefixes:?}"
    );
    assert_eq!(prefixes[0].prefix_len(), 80, "{prefixes:?}");
    prefixes[0]
}

/// What the lab internet sees `from` as, over IPv6 or IPv4, asked until it answers (up to 30 s).
fn seen_as(lab: &TestLab, from: &str, ipv6: bool) -> String {
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    eventually(
        &format!("{from} reaching the internet over {family}"),
        WITHIN,
        || {
            vpcni_lab::Lab::whoami(lab, from, ipv6, Duration::from_secs(2))
                .unwrap()
                .ok()
        },
    )
}

/// Packets counted by the REJECT rules of `node`'s filter FORWARD chain that guard the egress range.
fn egress_rejects(lab: &TestLab, node: &str) -> u64 {
    let listing = lab.iptables(node, &["-t", "filter", "-L", "FORWARD", "-v", "-x", "-n"]);
    let rejects: Vec<u64> = listing
        .lines()
        .filter(|l| l.contains("REJECT") && l.contains("169.254.172.0/22"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        !rejects.is_empty(),
        "{node} has no REJECT rule for 169.254.172.0/22 in FORWARD:\n{listing}"
    );
    rejects.iter().sum()
}

fn egress(pod: &PodRecord) -> Ipv4Addr {
    pod.egress_ipv4
        .unwrap_or_else(|| panic!("{} has no IPv4 egress address: {}", pod.name, pod.result))
}

fn ipv6(pod: &PodRecord) -> Ipv6Addr {
    pod.ipv6
        .unwrap_or_else(|| panic!("{} has no IPv6 address: {}", pod.name, pod.result))
}

/// A what-is-my-IP server of the lab's own (`vpcnictl lab internet`) listening inside a pod; killed on drop.
struct Listener(Child);

impl Listener {
    fn start(lab: &TestLab, pod: &str, address: &str) -> Self {
        let vpcnictl = lab.bin_dir().join("vpcnictl");
        let child = lab
            .command(pod, vpcnictl)
            .unwrap()
            .args(["lab", "internet", "--listen", address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Our own child; it may have exited already, which is what kill would achieve.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_fabric_is_dual_stack_and_checks_ipv6_sources() {
    let lab = ipv6_lab(2);
    let status = lab.status().unwrap();
    let vpc = status.vpc_ipv6_cidr.expect("an IPv6 lab's VPC has a /56");
    assert_eq!(vpc.prefix_len(), 56);
    let internet = status.internet.ipv6.expect("the internet has an IPv6 address");
    assert!(
        !vpc.contains(&internet),
        "the internet {internet} is inside the VPC {vpc}"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert!(json["internet"]["ipv6"].is_string(), "{json}");

    let node1 = lab.node("node-1").unwrap().clone();
    let node2 = lab.node("node-2").unwrap().clone();
    let (v6_1, v6_2) = (node1.ipv6.unwrap(), node2.ipv6.unwrap());
    for (node, address) in [(&node1, v6_1), (&node2, v6_2)] {
        assert!(
            vpc.contains(&address),
            "{} has {address} outside {vpc}",
            node.name
        );
        // Each node's /80 is inside the VPC and routed by the VPC router to that node's primary ENI.
        let prefix = node_prefix(&lab, &node.name);
        assert!(vpc.contains(&prefix), "{prefix} outside {vpc}");
        let route = lab.ip("router", &["-6", "route", "show", "exact", &prefix.to_string()]);
        let link = format!("dev n{}e0", node.index);
        assert!(
            route.contains(&link),
            "the router routes {prefix} as {route:?}, not via {link}"
        );
        let json_node = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node.name.as_str())
            .unwrap();
        assert_eq!(json_node["ipv6_prefixes"][0], prefix.to_string(), "{json_node}");
    }

    // Nodes reach each other and the internet over IPv6, with their own (public) addresses: no NAT.
    assert!(
        lab.reaches("node-1", &v6_2.to_string()),
        "node-1 cannot ping node-2 over IPv6"
    );
    assert_eq!(seen_as(&lab, "node-1", true), v6_1.to_string());
    assert_eq!(seen_as(&lab, "node-2", true), v6_2.to_string());
    // And over IPv4 as their public address, as in an IPv4 lab.
    assert_eq!(seen_as(&lab, "node-1", false), node1.public_ip.to_string());

    // EC2's source check for IPv6: an address of the VPC that EC2 never assigned to node-1's ENI.
    let subnet64 = Ipv6Net::new(v6_1, 64).unwrap().trunc();
    let foreign = Ipv6Addr::from(u128::from(subnet64.network()) | 0xdead_beef);
    lab.ip(
        "node-1",
        &[
            "-6",
            "address",
            "add",
            &format!("{foreign}/128"),
            "dev",
            "lo",
            "nodad",
        ],
    );
    let ping_from = |source: &str| {
        lab.output(
            "node-1",
            &[
                "ping",
                "-6",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                source,
                &v6_2.to_string(),
            ],
        )
        .unwrap()
        .status
        .success()
    };
    let foreign = foreign.to_string();
    let own = v6_1.to_string();
    let rule = |table: &str, chain: &str, comment: &str| {
        let output = lab
            .output(
                "router",
                &[
                    "ip6tables",
                    "-w",
                    "-t",
                    table,
                    "-I",
                    chain,
                    "-s",
                    &foreign,
                    "-m",
                    "comment",
                    "--comment",
                    comment,
                ],
            )
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    rule("raw", "PREROUTING", "arrived");
    rule("filter", "FORWARD", "forwarded");
    assert!(
        lab.reaches_with(|| ping_from(&own)),
        "node-1 cannot ping node-2 from its own IPv6 address"
    );
    assert!(
        !ping_from(&foreign),
        "a source EC2 never assigned to node-1 got an answer"
    );
    let counted = |table: &str, chain: &str, comment: &str| -> u64 {
        let output = lab
            .output(
                "router",
                &["ip6tables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"],
            )
            .unwrap();
        let listing = String::from_utf8_lossy(&output.stdout).into_owned();
        listing
            .lines()
            .find(|l| l.contains(comment))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no rule {comment:?} in {chain}:\n{listing}"))
    };
    assert!(counted("raw", "PREROUTING", "arrived") >= 1);
    assert_eq!(
        counted("filter", "FORWARD", "forwarded"),
        0,
        "the router forwarded an IPv6 packet whose source is not assigned to the ENI it came from"
    );
}

#[test]
fn pods_get_ipv6_from_their_nodes_80_reach_each_other_and_the_internet_and_hide_their_egress_address() {
    let mut lab = ipv6_lab(2);
    let on1 = lab.pods("node-1", 2);
    let on2 = lab.pods("node-2", 1);
    let status = lab.status().unwrap();
    let json = serde_json::to_value(&status).unwrap();
    for pod in on1.iter().chain(&on2) {
        let prefix = node_prefix(&lab, &pod.node);
        let address = ipv6(pod);
        assert!(
            prefix.contains(&address),
            "{} has {address}, outside its node's /80 {prefix}",
            pod.name
        );
        let egress = egress(pod);
        assert!(
            vpcni_lab::spec::EGRESS_V4_RANGE.contains(&egress),
            "{} has egress address {egress}",
            pod.name
        );
        let shown = json["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pod.name.as_str())
            .unwrap();
        assert_eq!(shown["ipv6"], address.to_string(), "{shown}");
        assert_eq!(shown["egress_ipv4"], egress.to_string(), "{shown}");
        assert!(
            shown["eni"].is_string(),
            "{}'s /80 is on none of its node's ENIs: {shown}",
            pod.name
        );
    }
    let text = status.pods_table();
    assert!(text.contains(&ipv6(&on2[0]).to_string()), "{text}");

    // Across nodes over IPv6, through the VPC router.
    let (a, b) = (&on1[0], &on2[0]);
    assert!(
        lab.reaches(&a.name, &ipv6(b).to_string()),
        "{} cannot ping {} over IPv6",
        a.name,
        b.name
    );
    assert!(
        lab.reaches(&b.name, &ipv6(a).to_string()),
        "{} cannot ping {} over IPv6",
        b.name,
        a.name
    );

    // The internet sees the pod's own IPv6 address over IPv6, and its node's public IPv4 address over IPv4.
    for pod in [a, b] {
        assert_eq!(seen_as(&lab, &pod.name, true), ipv6(pod).to_string());
        let public = lab.node(&pod.node).unwrap().public_ip.to_string();
        assert_eq!(seen_as(&lab, &pod.name, false), public, "{} over IPv4", pod.name);
    }

    // A pod's egress address is for leaving only. Pick a node-1 pod whose egress address no node-2 pod
    // has (each node hands them out on its own), and serve on it inside the pod.
    let target = on1
        .iter()
        .find(|p| on2.iter().all(|q| egress(q) != egress(p)))
        .expect("a node-1 pod whose egress address node-2 does not use");
    let address = format!("{}:8080", egress(target));
    let _listener = Listener::start(&lab, &target.name, &address);
    let url = format!("http://{address}/");
    let answer = eventually("the pod's own server answering", WITHIN, || {
        lab.http_get(&target.name, &url, Duration::from_secs(2))
            .unwrap()
            .ok()
    });
    assert_eq!(answer.trim(), egress(target).to_string());

    // From node-2, with routes that deliver the address to node-1 (as if the VPC routed it there): the
    // SYN reaches node-1, whose reject rule refuses the new connection.
    let node1 = lab.node("node-1").unwrap().clone();
    let host = format!("{}/32", egress(target));
    lab.ip(
        "node-2",
        &[
            "route",
            "add",
            &host,
            "via",
            &node1.primary_ip.to_string(),
            "dev",
            "eth0",
        ],
    );
    lab.ip(
        "router",
        &[
            "route",
            "add",
            &host,
            "via",
            &node1.primary_ip.to_string(),
            "dev",
            "n1e0",
            "onlink",
        ],
    );
    let before = egress_rejects(&lab, "node-1");
    let refused = lab.http_get("node-2", &url, Duration::from_secs(3)).unwrap();
    assert!(
        refused.is_err(),
        "node-2 reached {}'s egress address: {refused:?}",
        target.name
    );
    let after = egress_rejects(&lab, "node-1");
    assert!(
        after > before,
        "node-2's connection was not refused by node-1's reject rule ({before} → {after} packets): {refused:?}"
    );
}

#[test]
fn a_restarted_ipamd_keeps_every_pods_ipv6_and_egress_address_and_the_nodes_80() {
    let mut lab = ipv6_lab(2);
    let mut pods = lab.pods("node-1", 2);
    pods.extend(lab.pods("node-2", 2));
    let prefixes = [node_prefix(&lab, "node-1"), node_prefix(&lab, "node-2")];

    // node-1's ipamd is stopped (SIGTERM), node-2's killed (SIGKILL), both started again.
    lab.stop_ipamd("node-1").unwrap();
    lab.kill_ipamd("node-2").unwrap();
    lab.start_ipamd("node-1").unwrap();
    lab.start_ipamd("node-2").unwrap();
    // And the other way round.
    lab.kill_ipamd("node-1").unwrap();
    lab.stop_ipamd("node-2").unwrap();
    lab.start_ipamd("node-1").unwrap();
    lab.start_ipamd("node-2").unwrap();

    assert_eq!(
        [node_prefix(&lab, "node-1"), node_prefix(&lab, "node-2")],
        prefixes,
        "a node's /80 changed across ipamd restarts"
    );
    for pod in &pods {
        let v6 = lab.ip(&pod.name, &["-6", "-o", "address", "show", "scope", "global"]);
        assert!(
            v6.contains(&format!("{}/128", ipv6(pod))),
            "{} lost {}:\n{v6}",
            pod.name,
            ipv6(pod)
        );
        let v4 = lab.ip(&pod.name, &["-4", "-o", "address", "show"]);
        assert!(
            v4.contains(&egress(pod).to_string()),
            "{} lost {}:\n{v4}",
            pod.name,
            egress(pod)
        );
    }

    // New pods get neither an address nor an egress address an existing pod holds.
    let mut newer = lab.pods("node-1", 2);
    newer.extend(lab.pods("node-2", 2));
    for pod in &newer {
        let prefix = node_prefix(&lab, &pod.node);
        assert!(
            prefix.contains(&ipv6(pod)),
            "{} has {} outside {prefix}",
            pod.name,
            ipv6(pod)
        );
        for old in pods.iter().filter(|p| p.node == pod.node) {
            assert_ne!(
                ipv6(pod),
                ipv6(old),
                "{} was given {}'s IPv6 address",
                pod.name,
                old.name
            );
            assert_ne!(
                egress(pod),
                egress(old),
                "{} was given {}'s egress address",
                pod.name,
                old.name
            );
        }
    }

    // The old pods still work, over both families.
    let (a, b) = (&pods[0], &pods[2]);
    assert!(
        lab.reaches(&a.name, &ipv6(b).to_string()),
        "{} cannot ping {} after the restarts",
        a.name,
        b.name
    );
    assert_eq!(seen_as(&lab, &a.name, true), ipv6(a).to_string());
    let public = lab.node(&a.node).unwrap().public_ip.to_string();
    assert_eq!(seen_as(&lab, &a.name, false), public);
}

#[test]
fn an_ipv6_lab_needs_a_nitro_type_prefix_delegation_and_no_custom_networking() {
    let mut spec = common::spec(1, "t2.medium");
    spec.ipv6 = true;
    spec.prefix_delegation = true;
    let refused = spec.validate().unwrap_err().to_string();
    assert!(
        refused.contains("Nitro") && refused.contains("t2.medium"),
        "{refused}"
    );

    spec.instance_type = "m5.xlarge".into();
    spec.prefix_delegation = false;
    let refused = spec.validate().unwrap_err().to_string();
    assert!(refused.contains("prefix delegation"), "{refused}");

    spec.prefix_delegation = true;
    spec.ipamd_env.push(("ENABLE_IPv4".into(), "true".into()));
    let refused = spec.validate().unwrap_err().to_string();
    assert!(
        refused.contains("ENABLE_IPv4") && refused.contains("--ipv6"),
        "{refused}"
    );
    spec.ipamd_env.pop();
    spec.custom_networking = true;
    spec.pod_subnets = vec!["10.0.1.0/24".parse().unwrap()];
    let refused = spec.validate().unwrap_err().to_string();
    assert!(refused.contains("--custom-networking"), "{refused}");
    spec.custom_networking = false;
    spec.pod_subnets.clear();
    assert!(spec.validate().is_ok());
    let env = spec.ipamd_environment(std::path::Path::new("/tmp/x/nodes/node-1"));
    for (key, value) in [
        ("ENABLE_IPv6", "true"),
        ("ENABLE_IPv4", "false"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
    ] {
        assert!(
            env.contains(&(key.into(), value.into())),
            "{key}={value} missing: {env:?}"
        );
    }
}
