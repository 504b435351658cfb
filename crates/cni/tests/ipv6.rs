//! IPv6 pods through the real `vpcni` binary, against a stand-in ipamd that answers as ipamd in IPv6 mode
//! (an `IPv6Addr` from the node's /80 and no `IPv4Addr`), on a test node made of network namespaces: ADD,
//! CHECK and DEL in every CNI version vpcni answers, each ADD result checked against the spec, the pods
//! usable when ADD returns, and bad input refused with the spec's code. ipamd's own IPv6 mode is not in
//! this crate's tests yet: its binary needs the AWS SDK. The node and the stand-in: `common/netns.rs`. Needs
//! root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::ops::Deref;
use std::process::{Command, Output};

use common::netns::{NODE_PREFIX, Netns, ip, json, with_prev};
use serde_json::json;

/// The node's own address, on its `lo`, for the pods to reach.
const NODE_ADDRESS: &str = "2600:1f14:abc:de00::10";

/// A test node (its namespace, the stand-in ipamd and the plugin's configuration) with an address of its
/// own on `lo`.
struct Node(common::netns::Node);

impl Deref for Node {
    type Target = common::netns::Node;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Node {
    fn start() -> Self {
        let node = common::netns::Node::start();
        ip(
            &node.netns.0,
            &["-6", "addr", "add", &format!("{NODE_ADDRESS}/128"), "dev", "lo"],
        );
        Self(node)
    }

    /// The node's routes, rules and veths that name a pod.
    fn pod_state(&self) -> (String, String, String) {
        (
            ip(&self.netns.0, &["-6", "route", "show", "table", "all"]),
            ip(&self.netns.0, &["-6", "rule"]),
            ip(&self.netns.0, &["link", "show", "type", "veth"]),
        )
    }
}

fn ping6(netns: &str, to: &str) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let output = Command::new("ip")
            .args(["netns", "exec", netns, "ping", "-6", "-c", "1", "-W", "2", to])
            .output()
            .unwrap();
        if output.status.success() || std::time::Instant::now() >= deadline {
            return output;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// ADD in every version: a valid result (the spec checker), the /128 with gateway fe80::1 on the pod's
/// interface, `"version": "6"` before 1.0.0, the default route via fe80::1; the pod's address usable at
/// once; the pods reach the node and each other; CHECK passes; DEL with prevResult leaves nothing and gives
/// the address back.
#[test]
fn ipv6_pods_in_every_version() {
    let node = Node::start();
    let empty = node.pod_state();
    let mut pods = Vec::new();
    for version in common::spec_result::VERSIONS {
        let netns = Netns::new("p");
        let pod = format!("web{}", version.replace('.', ""));
        let config = node.config(version);
        let added = node.main("ADD", &pod, Some(&netns.path()), &config);
        assert!(added.status.success(), "{version}: {added:?}");
        let result = json(&added);
        let violations = common::spec_result::violations(&result, version, &netns.path());
        assert!(violations.is_empty(), "{version}: {violations:#?}\n{result}");

        let ips = result["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 1, "{version}: {result}");
        let address = ips[0]["address"].as_str().unwrap().to_owned();
        let (bare, prefix) = address.split_once('/').unwrap();
        assert_eq!(prefix, "128", "{version}: {result}");
        assert!(bare.starts_with(NODE_PREFIX), "{version}: {result}");
        assert!(node.held().contains(&bare.to_owned()));
        assert_eq!(ips[0]["gateway"], "fe80::1", "{version}: {result}");
        let index = ips[0]["interface"].as_u64().unwrap() as usize;
        let interface = &result["interfaces"][index];
        assert_eq!(interface["name"], "eth0", "{version}: {result}");
        assert_eq!(interface["sandbox"], netns.path(), "{version}: {result}");
        if version.starts_with("0.") {
            assert_eq!(ips[0]["version"], "6", "{version}: {result}");
        } else {
            assert!(ips[0].get("version").is_none(), "{version}: {result}");
        }
        assert_eq!(
            result["routes"],
            json!([{ "dst": "::/0", "gw": "fe80::1" }]),
            "{version}"
        );

        // Usable now: the address is there and not tentative, and the node is reachable.
        let addresses = ip(&netns.0, &["-6", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            addresses.contains(&format!("inet6 {address} scope global")),
            "{addresses}"
        );
        assert!(!addresses.contains("tentative"), "{addresses}");
        let ping = ping6(&netns.0, NODE_ADDRESS);
        assert!(ping.status.success(), "{version}: {ping:?}");
        let bare = bare.to_owned();
        pods.push((netns, pod, config, result, bare));
    }

    // Pod to pod, through the node.
    let ping = ping6(&pods[0].0.0, &pods[1].4);
    assert!(ping.status.success(), "{ping:?}");

    for (netns, pod, config, result, address) in &pods {
        let version = config["cniVersion"].as_str().unwrap();
        if version != "0.3.0" && version != "0.3.1" {
            let check = node.main("CHECK", pod, Some(&netns.path()), &with_prev(config, result));
            assert!(check.status.success(), "{version}: {check:?}");
        }
        let deleted = node.main("DEL", pod, Some(&netns.path()), &with_prev(config, result));
        assert!(deleted.status.success(), "{version}: {deleted:?}");
        let (routes, rules, _) = node.pod_state();
        assert!(!routes.contains(address.as_str()), "{version}: {routes}");
        assert!(!rules.contains(address.as_str()), "{version}: {rules}");
        assert!(!node.held().contains(address), "{version}: released");
    }
    drop(pods);
    // The runtime deletes the namespaces; the kernel then destroys the veths (asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.pod_state() != empty && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(node.pod_state(), empty);
}

/// DEL of an IPv6 pod as a 0.3.x runtime sends it (no prevResult: ADD's record names the address), after
/// the namespace is gone; and CHECK of a pod changed behind vpcni's back names what changed.
#[test]
fn ipv6_check_and_del_without_prev_result_or_netns() {
    let node = Node::start();
    let empty = node.pod_state();
    let netns = Netns::new("p");
    let config = node.config("1.1.0");
    let added = node.main("ADD", "api-0", Some(&netns.path()), &config);
    assert!(added.status.success(), "{added:?}");
    let result = json(&added);
    ip(&netns.0, &["-6", "neigh", "del", "fe80::1", "dev", "eth0"]);
    let check = node.main(
        "CHECK",
        "api-0",
        Some(&netns.path()),
        &with_prev(&config, &result),
    );
    assert_eq!(json(&check)["code"], 100, "{check:?}");
    let details = json(&check)["details"].as_str().unwrap().to_owned();
    assert!(
        details.contains("permanent neighbour entry for fe80::1 with the host veth's MAC is missing"),
        "{details}"
    );

    drop(netns);
    let deleted = node.main("DEL", "api-0", None, &node.config("0.3.1"));
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(node.held().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.pod_state() != empty && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(node.pod_state(), empty);
}

/// Bad input: a prevResult whose IPv6 address does not parse (code 6, the field named, for ADD, CHECK and
/// DEL), and ipamd answers with neither family, both, or an address no pod can hold (code 100, said in a
/// sentence). Nothing is wired, nothing is left behind, and nothing panics.
#[test]
fn bad_ipv6_input_is_refused_with_the_right_code() {
    let node = Node::start();
    let empty = node.pod_state();
    let netns = Netns::new("p");
    let config = node.config("1.0.0");
    let bad_prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{ "name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": netns.path() }],
        "ips": [{ "address": "2600:1f14:abc:de00:1f2e::zz/128", "gateway": "fe80::1", "interface": 0 }],
    });
    for command in ["ADD", "CHECK", "DEL"] {
        let output = node.main(
            command,
            "web-0",
            Some(&netns.path()),
            &with_prev(&config, &bad_prev),
        );
        let reply = json(&output);
        assert_eq!(reply["code"], 6, "{command}: {output:?}");
        assert_eq!(reply["msg"], "prevResult is not a CNI result", "{command}");
        assert!(
            reply["details"]
                .as_str()
                .unwrap()
                .contains("ips[0].address \"2600:1f14:abc:de00:1f2e::zz/128\" is not an IPv6 address"),
            "{command}: {reply}"
        );
    }
    for (pod, needle) in [
        ("neither-0", "ipamd reported success without an address"),
        ("both-0", "ipamd returned both 10.0.1.5 and"),
        (
            "linklocal-0",
            "ipamd returned fe80::5, which is not an address a pod can hold",
        ),
    ] {
        let output = node.main("ADD", pod, Some(&netns.path()), &config);
        let reply = json(&output);
        assert_eq!(reply["code"], 100, "{pod}: {output:?}");
        assert!(reply["msg"].as_str().unwrap().contains(needle), "{pod}: {reply}");
        assert_eq!(output.status.code(), Some(100));
    }
    assert_eq!(node.pod_state(), empty);
    let links = ip(&netns.0, &["-o", "link"]);
    assert_eq!(links.lines().count(), 1, "only lo in the pod: {links}");
}
