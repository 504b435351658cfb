//! The conflist chain `vpcni` then `vpcni-egress`, through the real binaries, on a test node made of network
//! namespaces: a node (with the stand-in ipamd of
//! `common/netns.rs`, shared with `ipv6.rs`), pods, and an "outside" namespace on the
//! node's uplink standing for everything beyond the node, with a listener that records who connected.
//!
//! IPv6 pods reach an IPv4 address outside through `v4if0`, SNATed to the node's IPv4 address; two pods get
//! distinct egress addresses; a repeated ADD keeps the address; DEL leaves no interface, chain, rule or
//! file; the store on disk (host-local's layout, the original's too) is what every later call reads; every
//! result version is valid per the spec; bad configurations are refused with the spec's code; the reject
//! rule makes new connections to a pod's egress address from outside fail. And the reverse: IPv4 pods with
//! IPv6 egress (`ENABLE_V6_EGRESS`). Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::netns::{NODE_PREFIX, Netns, exec, ip, json, with_prev};
use serde_json::{Value, json};

/// The node's primary IPv4 address and IPv6 address, on its uplink.
const NODE_V4: &str = "10.99.0.1";
const NODE_V6: &str = "2600:1f14:abc:ff00::1";
/// The outside's addresses on the same link.
const OUTSIDE_V4: &str = "10.99.0.2";
const OUTSIDE_V6: &str = "2600:1f14:abc:ff00::2";
/// How long a condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// A test node (`common::netns::Node`: its namespace, forwarding on for IPv6 as the init container sets it,
/// the stand-in ipamd, and a directory for sockets, logs and the egress stores) with an uplink to the outside
/// namespace. The egress plugin itself switches IPv4 forwarding on, as the original's.
struct Node {
    node: common::netns::Node,
    outside: Netns,
}

impl Deref for Node {
    type Target = common::netns::Node;

    fn deref(&self) -> &Self::Target {
        &self.node
    }
}

impl Node {
    fn start() -> Self {
        let node = common::netns::Node::start();
        let outside = Netns::new("o");
        ip(
            &node.netns.0,
            &[
                "link", "add", "up0", "type", "veth", "peer", "name", "out0", "netns", &outside.0,
            ],
        );
        for (ns, link, v4, v6) in [
            (&node.netns.0, "up0", NODE_V4, NODE_V6),
            (&outside.0, "out0", OUTSIDE_V4, OUTSIDE_V6),
        ] {
            ip(ns, &["addr", "add", &format!("{v4}/24"), "dev", link]);
            ip(
                ns,
                &["-6", "addr", "add", &format!("{v6}/64"), "dev", link, "nodad"],
            );
            ip(ns, &["link", "set", link, "up"]);
        }
        Self { node, outside }
    }

    /// The `vpcni` entry with the MTU as a string, as the node's conflist has it.
    fn main_config(&self, version: &str) -> Value {
        let mut config = self.config(version);
        config["mtu"] = json!("9001");
        config
    }

    fn v4_data_dir(&self) -> PathBuf {
        self.dir.join("egress-v4-ipam")
    }

    fn v6_data_dir(&self) -> PathBuf {
        self.dir.join("egress-v6-ipam")
    }

    /// The conflist's egress entry as the runtime passes it (the list's name and version), IPv4 egress.
    fn egress_config(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "vpcni",
            "type": "vpcni-egress",
            "enabled": "true",
            "mtu": "9001",
            "randomizeSNAT": "prng",
            "nodeIP": NODE_V4,
            "pluginLogFile": self.dir.join("egress.log").display().to_string(),
            "pluginLogLevel": "debug",
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": "169.254.172.0/22" }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.v4_data_dir().display().to_string(),
            },
        })
    }

    /// The same for IPv6 egress of IPv4 pods (ENABLE_V6_EGRESS).
    fn egress_v6_config(&self, version: &str) -> Value {
        let mut config = self.egress_config(version);
        config["nodeIP"] = json!(NODE_V6);
        config["ipam"] = json!({
            "type": "host-local",
            "ranges": [[{ "subnet": "fd00::ac:00/118" }]],
            "routes": [{ "dst": "::/0" }],
            "dataDir": self.v6_data_dir().display().to_string(),
        });
        config
    }

    /// ADD through the chain: `vpcni`, then `vpcni-egress` with its result as prevResult.
    fn add_chain(&self, pod: &str, netns: &Netns, main: &Value, egress: &Value) -> Value {
        let added = self.main("ADD", pod, Some(&netns.path()), main);
        assert!(added.status.success(), "vpcni ADD {pod}: {added:?}");
        let added = self.egress("ADD", pod, Some(&netns.path()), &with_prev(egress, &json(&added)));
        assert!(added.status.success(), "vpcni-egress ADD {pod}: {added:?}");
        json(&added)
    }

    /// DEL through the chain, in the runtime's order (the last plugin first).
    fn del_chain(&self, pod: &str, netns: Option<&str>, main: &Value, egress: &Value, result: &Value) {
        let deleted = self.egress("DEL", pod, netns, &with_prev(egress, result));
        assert!(deleted.status.success(), "vpcni-egress DEL {pod}: {deleted:?}");
        let deleted = self.main("DEL", pod, netns, &with_prev(main, result));
        assert!(deleted.status.success(), "vpcni DEL {pod}: {deleted:?}");
    }

    /// Everything of the egress path on the node: SNAT chains and jumps (both families), reject rules,
    /// egress veths, and the files of both stores.
    fn egress_state(&self) -> EgressState {
        let save = |tool: &str, table: &str| -> BTreeSet<String> {
            exec(&self.netns.0, &[tool, "-t", table])
                .lines()
                .filter(|l| l.contains("CNI-E") || l.contains("Block Node Local"))
                .map(str::to_owned)
                .collect()
        };
        let mut rules = save("iptables-save", "nat");
        rules.extend(save("ip6tables-save", "nat"));
        let mut reject = save("iptables-save", "filter");
        reject.extend(save("ip6tables-save", "filter"));
        let veths = ip(&self.netns.0, &["-o", "link", "show", "type", "veth"])
            .lines()
            .filter_map(|l| {
                l.split(':')
                    .nth(1)
                    .map(|n| n.trim().split('@').next().unwrap().to_owned())
            })
            .filter(|n| n.starts_with("veth"))
            .collect();
        let mut files = BTreeSet::new();
        for dir in [self.v4_data_dir(), self.v6_data_dir()] {
            for network in std::fs::read_dir(&dir).into_iter().flatten() {
                for file in std::fs::read_dir(network.unwrap().path()).unwrap() {
                    let name = file.unwrap().file_name().to_string_lossy().into_owned();
                    if name.parse::<std::net::IpAddr>().is_ok() {
                        files.insert(name);
                    }
                }
            }
        }
        EgressState {
            rules,
            reject,
            veths,
            files,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EgressState {
    rules: BTreeSet<String>,
    reject: BTreeSet<String>,
    veths: BTreeSet<String>,
    files: BTreeSet<String>,
}

/// The result's address on interface `ifname`, without its prefix length, and the prefix length.
fn address_on(result: &Value, ifname: &str) -> Option<(String, String)> {
    let interfaces = result["interfaces"].as_array()?;
    let index = interfaces.iter().position(|i| i["name"] == ifname)?;
    let ip = result["ips"]
        .as_array()?
        .iter()
        .find(|ip| ip["interface"].as_u64() == Some(index as u64))?;
    let (address, prefix) = ip["address"].as_str()?.split_once('/')?;
    Some((address.to_owned(), prefix.to_owned()))
}

/// A listener in `netns` on `address`; who connected to it is what `peer` answers.
fn listen(netns: &Netns, address: &str) -> TcpListener {
    let address: SocketAddr = format!("{}:7000", bracketed(address)).parse().unwrap();
    netns.enter(|| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            // The address may still be settling (IPv6); try until the deadline.
            match TcpListener::bind(address) {
                Ok(listener) => return listener,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(error) => panic!("listening on {address}: {error}"),
            }
        }
    })
}

fn bracketed(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_owned()
    }
}

/// Connects from `netns` to `address`:7000 until it works or the deadline passes; the last error otherwise.
fn connect(netns: &Netns, address: &str, attempts_until: Duration) -> Result<(), String> {
    let target: SocketAddr = format!("{}:7000", bracketed(address)).parse().unwrap();
    netns.enter(|| {
        let deadline = Instant::now() + attempts_until;
        loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut stream) => {
                    stream.write_all(b"hello").map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Err(error) if Instant::now() >= deadline => return Err(error.to_string()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
}

/// The peer address of the next connection the listener has (it is already queued when this runs).
fn peer(listener: &TcpListener) -> String {
    let (mut stream, peer) = listener.accept().unwrap();
    let mut hello = [0u8; 5];
    stream.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    peer.ip().to_string()
}

/// The chain in every version: the result keeps vpcni's IPv6 entries and adds `v4if0` with its address (a
/// valid result per the spec), the pods reach an IPv4 address outside the node with the node's address as
/// their source, two pods get distinct addresses, a repeated ADD keeps the address, the store holds one file
/// per pod, and DEL (twice, and without the namespace) leaves nothing behind.
#[test]
fn ipv6_pods_reach_ipv4_outside_through_the_node_in_every_version() {
    let node = Node::start();
    let before = node.egress_state();
    let listener = listen(&node.outside, OUTSIDE_V4);
    let mut pods = Vec::new();
    let mut addresses = BTreeSet::new();
    for version in common::spec_result::VERSIONS {
        let netns = Netns::new("p");
        let pod = format!("web{}", version.replace('.', ""));
        let (main, egress) = (node.main_config(version), node.egress_config(version));
        let result = node.add_chain(&pod, &netns, &main, &egress);
        let violations = common::spec_result::violations(&result, version, &netns.path());
        assert!(violations.is_empty(), "{version}: {violations:#?}\n{result}");

        // vpcni's entries first, untouched; then the egress pair and address.
        let (v6, prefix) = address_on(&result, "eth0").unwrap();
        assert!(
            v6.starts_with(NODE_PREFIX) && prefix == "128",
            "{version}: {result}"
        );
        let names: Vec<&str> = result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{version}: {result}");
        assert_eq!(names[1], "eth0");
        assert_eq!(names[3], "v4if0");
        assert!(names[2].starts_with("veth"), "{version}: {result}");
        assert_eq!(result["interfaces"][3]["sandbox"], netns.path());
        let (v4, prefix) = address_on(&result, "v4if0").unwrap();
        assert_eq!(prefix, "22", "{version}: {result}");
        assert!(v4.starts_with("169.254.17"), "{version}: {result}");
        assert!(addresses.insert(v4.clone()), "{version}: {v4} given twice");
        assert_eq!(
            result["routes"],
            json!([{ "dst": "::/0", "gw": "fe80::1" }]),
            "{version}"
        );

        // In the pod: the address on v4if0 and an IPv4 default route through it to the node.
        let on_link = ip(&netns.0, &["-4", "-o", "addr", "show", "dev", "v4if0"]);
        assert!(on_link.contains(&format!("inet {v4}/22")), "{on_link}");
        let routes = ip(&netns.0, &["-4", "route"]);
        assert!(routes.contains("default via 169.254.172.1 dev v4if0"), "{routes}");

        // The outside sees the node's address, not the pod's.
        connect(&netns, OUTSIDE_V4, DEADLINE).unwrap();
        assert_eq!(peer(&listener), NODE_V4, "{version}");
        pods.push((netns, pod, main, egress, result, v4));
    }

    // The store: one file per pod, in host-local's format, under the network's name.
    let store = node.v4_data_dir().join("vpcni");
    for (_, pod, _, _, _, v4) in &pods {
        let text = std::fs::read_to_string(store.join(v4)).unwrap();
        assert_eq!(text, format!("ctr-{pod}\r\neth0"));
    }
    let state = node.egress_state();
    assert_eq!(state.files, addresses);
    assert_eq!(state.veths.len(), pods.len());
    assert_eq!(
        state.reject.len(),
        1,
        "one reject rule, however many pods: {:?}",
        state.reject
    );
    let reject = state.reject.iter().next().unwrap();
    assert!(
        reject.contains("-A FORWARD -d 169.254.172.0/22")
            && reject.contains("--ctstate NEW")
            && reject.contains("-j REJECT"),
        "{reject}"
    );
    let chains = state.rules.iter().filter(|l| l.starts_with(":CNI-E4-")).count();
    assert_eq!(chains, pods.len(), "{:?}", state.rules);
    let snat = state
        .rules
        .iter()
        .filter(|l| l.contains(&format!("-j SNAT --to-source {NODE_V4} --random-fully")))
        .count();
    assert_eq!(snat, pods.len(), "{:?}", state.rules);

    // A repeated ADD (a new process, reading the store) keeps the address.
    let (netns, pod, _, egress, result, v4) = &pods[0];
    let again = node.egress("ADD", pod, Some(&netns.path()), &with_prev(egress, result));
    assert!(again.status.success(), "{again:?}");
    let again = json(&again);
    assert_eq!(address_on(&again, "v4if0").unwrap().0, *v4);
    connect(netns, OUTSIDE_V4, DEADLINE).unwrap();
    assert_eq!(peer(&listener), NODE_V4);
    assert_eq!(
        node.egress_state(),
        state,
        "a repeated ADD changes nothing on the node"
    );

    // DEL: the interface, its routes, the chain and the file go; twice is fine; without the namespace too.
    for (i, (netns, pod, main, egress, result, v4)) in pods.iter().enumerate() {
        let path = netns.path();
        let netns_arg = if i == 1 { None } else { Some(path.as_str()) };
        node.del_chain(pod, netns_arg, main, egress, result);
        let deleted = node.egress("DEL", pod, netns_arg, &with_prev(egress, result));
        assert!(deleted.status.success(), "second DEL: {deleted:?}");
        let state = node.egress_state();
        assert!(!state.files.contains(v4), "{v4}: {state:?}");
        assert!(
            !state.rules.iter().any(|l| l.contains(&format!("ctr-{pod}"))),
            "{pod}: {:?}",
            state.rules
        );
        let links = ip(&netns.0, &["-o", "link"]);
        assert!(!links.contains("v4if0"), "{links}");
    }
    let after = node.egress_state();
    assert_eq!(after.rules, before.rules);
    assert!(after.veths.is_empty() && after.files.is_empty(), "{after:?}");
}

/// A node moving from aws-node: the original's store (`aws-cni`, the original's network name) holds a
/// running pod's address. That pod's ADD under vpcni gets the same address, a new pod does not get it, and
/// the pod's DEL releases the original's file. The files are the state: every call is a new process.
#[test]
fn the_store_on_disk_is_what_every_call_reads() {
    let node = Node::start();
    let original = node.v4_data_dir().join("aws-cni");
    std::fs::create_dir_all(&original).unwrap();
    std::fs::write(original.join("169.254.172.2"), "ctr-old-0\r\neth0").unwrap();
    std::fs::write(original.join("last_reserved_ip.0"), "169.254.172.2").unwrap();

    let old = Netns::new("p");
    let (main, egress) = (node.main_config("1.0.0"), node.egress_config("1.0.0"));
    let result = node.add_chain("old-0", &old, &main, &egress);
    assert_eq!(address_on(&result, "v4if0").unwrap().0, "169.254.172.2");
    let new = Netns::new("p");
    let other = node.add_chain("new-0", &new, &main, &egress);
    let taken = address_on(&other, "v4if0").unwrap().0;
    assert_eq!(taken, "169.254.172.3", "the original's address is taken");
    assert_eq!(
        std::fs::read_to_string(node.v4_data_dir().join("vpcni/last_reserved_ip.0")).unwrap(),
        "169.254.172.3"
    );

    node.del_chain("old-0", Some(&old.path()), &main, &egress, &result);
    assert!(!original.join("169.254.172.2").exists());
    node.del_chain("new-0", Some(&new.path()), &main, &egress, &other);
    assert!(node.egress_state().files.is_empty());
}

/// The reject rule: a new connection from outside the node to a pod's egress address fails while the rule
/// is there (the pod listens on it), and succeeds once the rule is removed, so the rule is what stops it.
#[test]
fn new_connections_to_egress_addresses_from_outside_are_rejected() {
    let node = Node::start();
    let netns = Netns::new("p");
    let (main, egress) = (node.main_config("1.1.0"), node.egress_config("1.1.0"));
    let result = node.add_chain("db-0", &netns, &main, &egress);
    let (v4, _) = address_on(&result, "v4if0").unwrap();
    let listener = listen(&netns, &v4);
    // The outside knows the way (as another node in the VPC could be told it).
    ip(
        &node.outside.0,
        &["route", "add", "169.254.172.0/22", "via", NODE_V4],
    );

    let refused = connect(&node.outside, &v4, Duration::ZERO);
    assert!(refused.is_err(), "a new connection from outside reached {v4}");
    let error = refused.unwrap_err();
    assert!(error.contains("refused"), "REJECT answers: {error}");

    let rule = [
        "-d",
        "169.254.172.0/22",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        "Block Node Local Pod access via IPv4",
        "-j",
        "REJECT",
    ];
    let mut delete = vec!["iptables", "-t", "filter", "-D", "FORWARD"];
    delete.extend(rule);
    exec(&node.netns.0, &delete);
    connect(&node.outside, &v4, DEADLINE).unwrap();
    assert_eq!(peer(&listener), OUTSIDE_V4);

    // The next ADD puts the rule back, once.
    let again = node.egress("ADD", "db-0", Some(&netns.path()), &with_prev(&egress, &result));
    assert!(again.status.success(), "{again:?}");
    assert_eq!(node.egress_state().reject.len(), 1);
    node.del_chain("db-0", Some(&netns.path()), &main, &egress, &result);
}

/// Bad configurations are refused with code 7 naming the field, before anything is allocated;
/// `enabled: "false"` passes prevResult through untouched; no prevResult is refused.
#[test]
fn bad_egress_configuration_is_refused_with_the_right_code() {
    let node = Node::start();
    let netns = Netns::new("p");
    let main = node.main_config("1.0.0");
    let added = node.main("ADD", "api-0", Some(&netns.path()), &main);
    assert!(added.status.success(), "{added:?}");
    let prev = json(&added);
    let good = with_prev(&node.egress_config("1.0.0"), &prev);
    let before = node.egress_state();

    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("nodeIP");
    cases.push((missing, "nodeIP is missing"));
    let mut garbage = good.clone();
    garbage["nodeIP"] = json!("10.99.0");
    cases.push((garbage, "nodeIP \"10.99.0\" is not an IP address"));
    let mut wrong_family = good.clone();
    wrong_family["ipam"]["ranges"] = json!([[{ "subnet": "fd00::ac:00/118" }]]);
    cases.push((
        wrong_family,
        "ipam.ranges subnet fd00::ac:0/118 is not of nodeIP 10.99.0.1's family",
    ));
    let mut random = good.clone();
    random["randomizeSNAT"] = json!("sometimes");
    cases.push((random, "randomizeSNAT \"sometimes\" is not valid"));
    let mut enabled = good.clone();
    enabled["enabled"] = json!("yes");
    cases.push((enabled, "enabled \"yes\" is not valid"));
    let mut ipam = good.clone();
    ipam["ipam"]["type"] = json!("dhcp");
    cases.push((ipam, "ipam.type \"dhcp\" is not supported"));
    let mut unchained = good.clone();
    unchained.as_object_mut().unwrap().remove("prevResult");
    cases.push((unchained, "prevResult is missing"));
    for (config, needle) in &cases {
        let output = node.egress("ADD", "api-0", Some(&netns.path()), config);
        let reply = json(&output);
        assert_eq!(reply["code"], 7, "{needle}: {output:?}");
        assert!(
            reply["msg"].as_str().unwrap().contains(needle),
            "{needle}: {reply}"
        );
        assert_eq!(reply["cniVersion"], "1.0.0", "{reply}");
        assert_eq!(output.status.code(), Some(7));
    }
    for (config, needle) in &cases[..3] {
        let output = node.egress("DEL", "api-0", Some(&netns.path()), config);
        assert_eq!(json(&output)["code"], 7, "DEL {needle}: {output:?}");
    }
    assert_eq!(node.egress_state(), before, "nothing allocated or programmed");

    let mut disabled = good.clone();
    disabled["enabled"] = json!("false");
    let output = node.egress("ADD", "api-0", Some(&netns.path()), &disabled);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(json(&output), prev, "passed through untouched");
    let output = node.egress("DEL", "api-0", Some(&netns.path()), &disabled);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(node.egress_state(), before);
    let links = ip(&netns.0, &["-o", "link"]);
    assert!(!links.contains("v4if0"), "{links}");
    let deleted = node.main("DEL", "api-0", Some(&netns.path()), &with_prev(&main, &prev));
    assert!(deleted.status.success(), "{deleted:?}");
}

/// ENABLE_V6_EGRESS: an IPv4 pod gets `v6if0` with an address from fd00::ac:00/118, IPv6 off on its eth0,
/// reaches an IPv6 address outside with the node's IPv6 address as its source; DEL leaves nothing.
#[test]
fn ipv4_pods_reach_ipv6_outside_with_v6_egress() {
    let node = Node::start();
    let before = node.egress_state();
    let listener = listen(&node.outside, OUTSIDE_V6);
    let mut pods = Vec::new();
    for version in ["0.4.0", "1.1.0"] {
        let netns = Netns::new("p");
        let pod = format!("v4web{}", version.replace('.', ""));
        let (main, egress) = (node.main_config(version), node.egress_v6_config(version));
        let result = node.add_chain(&pod, &netns, &main, &egress);
        let violations = common::spec_result::violations(&result, version, &netns.path());
        assert!(violations.is_empty(), "{version}: {violations:#?}\n{result}");
        let (v4, _) = address_on(&result, "eth0").unwrap();
        assert!(v4.starts_with("10.0.1."), "{result}");
        let (v6, prefix) = address_on(&result, "v6if0").unwrap();
        assert!(v6.starts_with("fd00::ac:"), "{result}");
        assert_eq!(prefix, "118");
        let disabled = exec(&netns.0, &["sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6"]);
        assert_eq!(disabled.trim(), "1");
        connect(&netns, OUTSIDE_V6, DEADLINE).unwrap();
        assert_eq!(peer(&listener), NODE_V6, "{version}");
        pods.push((netns, pod, main, egress, result));
    }
    let state = node.egress_state();
    assert_eq!(state.files.len(), 2);
    assert_eq!(
        state.rules.iter().filter(|l| l.starts_with(":CNI-E6-")).count(),
        2
    );
    assert!(
        state
            .reject
            .iter()
            .any(|r| r.contains("-A FORWARD -d fd00::ac:0/118")),
        "{:?}",
        state.reject
    );
    for (netns, pod, main, egress, result) in &pods {
        node.del_chain(pod, Some(&netns.path()), main, egress, result);
    }
    let after = node.egress_state();
    assert_eq!(after.rules, before.rules);
    assert!(after.veths.is_empty() && after.files.is_empty(), "{after:?}");
}

/// GC (1.1.0) releases the address, chain and veth of every attachment the runtime no longer lists, and
/// keeps the ones it lists.
#[test]
fn gc_releases_what_the_runtime_no_longer_lists() {
    let node = Node::start();
    let before = node.egress_state();
    let (main, egress) = (node.main_config("1.1.0"), node.egress_config("1.1.0"));
    let kept = Netns::new("p");
    let kept_result = node.add_chain("kept-0", &kept, &main, &egress);
    let (kept_v4, _) = address_on(&kept_result, "v4if0").unwrap();
    let gone = Netns::new("p");
    node.add_chain("gone-0", &gone, &main, &egress);
    drop(gone);

    let mut gc = egress.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "ctr-kept-0", "ifname": "eth0" }]);
    let output = node.egress("GC", "", None, &gc);
    assert!(output.status.success(), "{output:?}");
    let state = node.egress_state();
    assert_eq!(state.files, BTreeSet::from([kept_v4.clone()]));
    assert_eq!(
        state.rules.iter().filter(|l| l.starts_with(":CNI-E4-")).count(),
        1
    );
    assert_eq!(state.veths.len(), 1, "{state:?}");
    let listener = listen(&node.outside, OUTSIDE_V4);
    connect(&kept, OUTSIDE_V4, DEADLINE).unwrap();
    assert_eq!(
        peer(&listener),
        NODE_V4,
        "the kept pod still leaves through the node"
    );

    gc["cni.dev/valid-attachments"] = json!([]);
    let output = node.egress("GC", "", None, &gc);
    assert!(output.status.success(), "{output:?}");
    let after = node.egress_state();
    assert_eq!(after.rules, before.rules);
    assert!(after.veths.is_empty() && after.files.is_empty(), "{after:?}");
}
