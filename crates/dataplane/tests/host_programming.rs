//! ipamd's host programming in real network namespaces: a "node" namespace stands in for the host, a
//! "fabric" namespace for the VPC behind its ENIs. Nothing touches the machine's own namespace. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use vpcni_dataplane::eni::{EniSpec, prune_eni_rules, setup_eni, teardown_eni, wait_for_link_by_mac};
use vpcni_dataplane::iptables::{SnatPorts, SnatSettings, apply};
use vpcni_dataplane::rules::{NodeRules, program_node_rules};
use vpcni_dataplane::{PodSpec, setup_pod, sysctl};

use common::{Namespaces, block_on, ip, on_node, until_success};

fn exec(netns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .unwrap()
}

/// A veth `name` in `node` with `mac`, its peer `peer` in `fabric`.
fn plug(node: &str, fabric: &str, name: &str, peer: &str, mac: &str) {
    ip(
        node,
        &[
            "link", "add", name, "address", mac, "type", "veth", "peer", "name", peer, "netns", fabric,
        ],
    );
    ip(fabric, &["link", "set", peer, "up"]);
}

fn eni_spec() -> EniSpec {
    EniSpec {
        mac: "02:AA:BB:CC:DD:01".into(),
        primary_ip: "10.0.1.20".parse().unwrap(),
        subnet: "10.0.1.0/24".parse().unwrap(),
        mtu: 9001,
        table: 2,
    }
}

#[test]
fn a_secondary_eni_is_set_up_as_the_original_does_it_and_torn_down() {
    let ns = Namespaces::new(2);
    let (node, fabric) = (ns.0[0].clone(), ns.0[1].clone());
    plug(&node, &fabric, "eth1", "f1", "02:aa:bb:cc:dd:01");
    ip(&node, &["addr", "add", "192.168.9.9/24", "dev", "eth1"]);
    ip(&fabric, &["addr", "add", "10.0.1.1/24", "dev", "f1"]);

    let spec = eni_spec();
    let name = on_node(ns.path(0), move || block_on(setup_eni(&spec)).unwrap());
    assert_eq!(name, "eth1");
    let link = ip(&node, &["link", "show", "eth1"]);
    assert!(link.contains("mtu 9001") && link.contains(",UP"), "{link}");
    let addresses = ip(&node, &["-4", "addr", "show", "eth1"]);
    assert!(addresses.contains("inet 10.0.1.20/24"), "{addresses}");
    assert!(
        !addresses.contains("192.168.9.9"),
        "old addresses are replaced: {addresses}"
    );
    let main = ip(&node, &["route", "show", "table", "main"]);
    assert!(
        !main.contains("10.0.1.0/24"),
        "the connected route leaves main: {main}"
    );
    let table = ip(&node, &["route", "show", "table", "2"]);
    assert!(table.contains("default via 10.0.1.1 dev eth1"), "{table}");
    assert!(table.contains("10.0.1.1 dev eth1 scope link"), "{table}");
    let rules = ip(&node, &["rule"]);
    assert!(rules.contains("32765:\tfrom 10.0.1.20 lookup 2"), "{rules}");

    // The policy routing carries traffic: from the ENI's address, the subnet router answers through eth1.
    let ping = until_success(|| {
        exec(
            &node,
            &["ping", "-c", "1", "-W", "2", "-I", "10.0.1.20", "10.0.1.1"],
        )
    });
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    // Again: nothing changes, nothing doubles.
    let spec = eni_spec();
    on_node(ns.path(0), move || block_on(setup_eni(&spec)).unwrap());
    assert_eq!(ip(&node, &["rule"]), rules);
    assert_eq!(ip(&node, &["route", "show", "table", "2"]), table);
    assert_eq!(
        ip(&node, &["-4", "addr", "show", "eth1"])
            .matches("inet ")
            .count(),
        1
    );

    on_node(ns.path(0), || {
        block_on(teardown_eni("10.0.1.20".parse().unwrap(), 2)).unwrap()
    });
    assert!(!ip(&node, &["rule"]).contains("10.0.1.20"));
    assert_eq!(ip(&node, &["route", "show", "table", "2"]).trim(), "");
}

#[test]
fn waiting_for_a_hot_plugged_eni_and_pruning_rules_of_gone_ones() {
    let ns = Namespaces::new(2);
    let (node, fabric) = (ns.0[0].clone(), ns.0[1].clone());
    let plugger = {
        let (node, fabric) = (node.clone(), fabric.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            plug(&node, &fabric, "eth2", "f2", "02:aa:bb:cc:dd:02");
        })
    };
    let name = on_node(ns.path(0), || {
        block_on(wait_for_link_by_mac("02:aa:bb:cc:dd:02", Duration::from_secs(60))).unwrap()
    });
    plugger.join().unwrap();
    assert_eq!(name, "eth2");
    let error = on_node(ns.path(0), || {
        block_on(wait_for_link_by_mac(
            "02:aa:bb:cc:dd:99",
            Duration::from_millis(300),
        ))
        .unwrap_err()
    });
    assert!(
        error.to_string().contains("no link with MAC 02:aa:bb:cc:dd:99"),
        "{error}"
    );

    // A setup for a MAC with no link says so.
    let missing = EniSpec {
        mac: "02:aa:bb:cc:dd:77".into(),
        ..eni_spec()
    };
    let error = on_node(ns.path(0), move || block_on(setup_eni(&missing)).unwrap_err());
    assert!(error.to_string().contains("02:aa:bb:cc:dd:77"), "{error}");

    for (source, table) in [("10.0.1.20", "2"), ("10.0.1.30", "3")] {
        ip(
            &node,
            &[
                "rule", "add", "from", source, "lookup", table, "priority", "32765",
            ],
        );
    }
    let removed = on_node(ns.path(0), || {
        block_on(prune_eni_rules(&["10.0.1.20".parse().unwrap()])).unwrap()
    });
    assert_eq!(removed, vec!["10.0.1.30".parse::<std::net::Ipv4Addr>().unwrap()]);
    let rules = ip(&node, &["rule"]);
    assert!(
        rules.contains("from 10.0.1.20 lookup 2") && !rules.contains("10.0.1.30"),
        "{rules}"
    );
}

#[test]
fn node_rules_follow_the_settings() {
    let ns = Namespaces::new(1);
    let node = ns.0[0].clone();
    let wanted = NodeRules {
        fwmark: Some(0x80),
        external_service_cidrs: vec!["192.0.2.0/24".parse().unwrap(), "192.0.2.0/24".parse().unwrap()],
    };
    let changes = on_node(ns.path(0), move || block_on(program_node_rules(&wanted)).unwrap());
    assert_eq!(changes, 2);
    let rules = ip(&node, &["rule"]);
    assert!(
        rules.contains("1024:\tfrom all fwmark 0x80/0x80 lookup main"),
        "{rules}"
    );
    assert!(
        rules.contains("1535:\tfrom all to 192.0.2.0/24 lookup main"),
        "{rules}"
    );
    let again = NodeRules {
        fwmark: Some(0x80),
        external_service_cidrs: vec!["192.0.2.0/24".parse().unwrap()],
    };
    assert_eq!(
        on_node(ns.path(0), move || block_on(program_node_rules(&again)).unwrap()),
        0
    );

    let changed = NodeRules {
        fwmark: None,
        external_service_cidrs: vec!["198.51.100.0/24".parse().unwrap()],
    };
    assert_eq!(
        on_node(ns.path(0), move || block_on(program_node_rules(&changed))
            .unwrap()),
        3
    );
    let rules = ip(&node, &["rule"]);
    assert!(
        !rules.contains("fwmark") && !rules.contains("192.0.2.0"),
        "{rules}"
    );
    assert!(
        rules.contains("1535:\tfrom all to 198.51.100.0/24 lookup main"),
        "{rules}"
    );

    // rp_filter on the primary interface, in the node's namespace only.
    ip(
        &node,
        &["link", "add", "eth0", "type", "veth", "peer", "name", "p0"],
    );
    on_node(ns.path(0), || {
        sysctl::set_rp_filter("eth0", sysctl::RP_FILTER_LOOSE).unwrap()
    });
    let value = exec(&node, &["sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"]);
    assert_eq!(String::from_utf8_lossy(&value.stdout).trim(), "2");
}

fn snat_settings() -> SnatSettings {
    SnatSettings {
        primary_ip: "10.0.0.10".parse().unwrap(),
        primary_interface: "eth0".into(),
        vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
        excluded_cidrs: vec!["172.16.0.0/12".parse().unwrap()],
        external_snat: false,
        ports: SnatPorts::RandomFully,
        connmark: 0x80,
        node_port_support: true,
        veth_prefix: "eni".into(),
    }
}

fn save(netns: &str) -> String {
    let output = exec(netns, &["iptables-save"]);
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("-A ") || l.starts_with(':'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One table as `iptables-save -t <table>` prints it: every chain, with its rules in order.
fn table(netns: &str, table: &str) -> BTreeMap<String, Vec<String>> {
    let output = exec(netns, &["iptables-save", "-t", table]);
    assert!(output.status.success());
    let mut chains = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap();
            chains.insert(name.to_owned(), Vec::new());
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, spec) = rule.split_once(' ').unwrap();
            chains.get_mut(chain).unwrap().push(spec.to_owned());
        }
    }
    chains
}

#[test]
fn iptables_rules_are_applied_atomically_once_and_stale_ones_removed() {
    let ns = Namespaces::new(1);
    let node = ns.0[0].clone();
    // Someone else's rules, and a chain an older release left behind.
    for args in [
        vec![
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-j",
            "RETURN",
            "-m",
            "comment",
            "--comment",
            "kube",
        ],
        vec!["-t", "nat", "-N", "AWS-SNAT-CHAIN-1"],
        vec!["-t", "nat", "-A", "AWS-SNAT-CHAIN-1", "-j", "RETURN"],
    ] {
        let mut full = vec!["iptables"];
        full.extend(args);
        assert!(exec(&node, &full).status.success());
    }
    let settings = SnatSettings {
        vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap(), "100.64.0.0/16".parse().unwrap()],
        ..snat_settings()
    };
    let first = settings.clone();
    let changes = on_node(ns.path(0), move || apply(&first).unwrap());
    assert!(changes > 0);
    // Whole tables, chain by chain, in order: what the original (v1.23.1, network.go and
    // iptables_connmark.go) leaves on a fresh node with these settings, where each exempt CIDR's RETURN was
    // inserted at the top of its chain (VPC CIDRs, then exclusions), plus the rule that is someone else's.
    // Nothing more: a rule too many fails as surely as one missing.
    let snat_return =
        |cidr: &str, comment: &str| format!(r#"-d {cidr} -m comment --comment "{comment}" -j RETURN"#);
    let nat = BTreeMap::from([
        (
            "PREROUTING".to_owned(),
            vec![
                "-m comment --comment kube -j RETURN".to_owned(),
                r#"-i eni+ -m comment --comment "AWS, outbound connections" -j AWS-CONNMARK-CHAIN-0"#.to_owned(),
                r#"-m comment --comment "AWS, CONNMARK" -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80"#.to_owned(),
            ],
        ),
        ("INPUT".to_owned(), vec![]),
        ("OUTPUT".to_owned(), vec![]),
        (
            "POSTROUTING".to_owned(),
            vec![r#"-m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0"#.to_owned()],
        ),
        (
            "AWS-SNAT-CHAIN-0".to_owned(),
            vec![
                snat_return("172.16.0.0/12", "AWS SNAT CHAIN EXCLUSION"),
                snat_return("100.64.0.0/16", "AWS SNAT CHAIN"),
                snat_return("10.0.0.0/16", "AWS SNAT CHAIN"),
                r#"! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL -j SNAT --to-source 10.0.0.10 --random-fully"#.to_owned(),
            ],
        ),
        (
            "AWS-CONNMARK-CHAIN-0".to_owned(),
            vec![
                snat_return("172.16.0.0/12", "AWS CONNMARK CHAIN"),
                snat_return("100.64.0.0/16", "AWS CONNMARK CHAIN"),
                snat_return("10.0.0.0/16", "AWS CONNMARK CHAIN"),
                r#"-m comment --comment "AWS, CONNMARK" -j CONNMARK --set-xmark 0x80/0x80"#.to_owned(),
            ],
        ),
    ]);
    assert_eq!(table(&node, "nat"), nat);
    let mangle = BTreeMap::from([
        (
            "PREROUTING".to_owned(),
            vec![
                r#"-i eth0 -m comment --comment "AWS, primary ENI" -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark 0x80/0x80"#.to_owned(),
                r#"-i eni+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80"#.to_owned(),
                r#"-i vlan+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80"#.to_owned(),
            ],
        ),
        ("INPUT".to_owned(), vec![]),
        ("FORWARD".to_owned(), vec![]),
        ("OUTPUT".to_owned(), vec![]),
        ("POSTROUTING".to_owned(), vec![]),
    ]);
    assert_eq!(table(&node, "mangle"), mangle);
    let rules = save(&node);

    // The same settings again: not one change.
    assert_eq!(on_node(ns.path(0), move || apply(&settings).unwrap()), 0);
    assert_eq!(save(&node), rules);

    // An exclusion removed and hashrandom chosen: the stale rules go, in place.
    let changed = SnatSettings {
        excluded_cidrs: vec![],
        ports: SnatPorts::Random,
        ..snat_settings()
    };
    on_node(ns.path(0), move || apply(&changed).unwrap());
    let rules = save(&node);
    assert!(!rules.contains("172.16.0.0/12"), "{rules}");
    assert!(
        rules
            .lines()
            .any(|l| l.ends_with("--to-source 10.0.0.10 --random")),
        "{rules}"
    );

    // External SNAT: no SNAT or CONNMARK chains; the NodePort marks stay.
    let external = SnatSettings {
        external_snat: true,
        ..snat_settings()
    };
    on_node(ns.path(0), move || apply(&external).unwrap());
    let rules = save(&node);
    assert!(
        !rules.contains("AWS-SNAT-CHAIN") && !rules.contains("AWS-CONNMARK-CHAIN"),
        "{rules}"
    );
    assert!(
        rules.contains("AWS, primary ENI") && rules.contains("kube"),
        "{rules}"
    );
}

/// A pod on the node reaches an address outside the VPC only through the SNAT rules: the "internet"
/// namespace knows no route back to the pod's own address.
#[test]
fn snat_carries_pod_traffic_out_of_the_vpc() {
    let ns = Namespaces::new(3);
    let (node, internet, pod) = (ns.0[0].clone(), ns.0[1].clone(), ns.0[2].clone());
    plug(&node, &internet, "eth0", "i0", "02:aa:bb:cc:dd:10");
    ip(&node, &["addr", "add", "10.0.0.10/24", "dev", "eth0"]);
    ip(&node, &["link", "set", "eth0", "up"]);
    ip(&node, &["route", "add", "default", "via", "10.0.0.1"]);
    ip(&internet, &["addr", "add", "10.0.0.1/32", "dev", "i0"]);
    ip(&internet, &["route", "add", "10.0.0.10/32", "dev", "i0"]);
    ip(&internet, &["addr", "add", "198.51.100.1/32", "dev", "lo"]);
    assert!(
        exec(&node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status
            .success()
    );
    let spec = PodSpec {
        netns: ns.path(2),
        ifname: "eth0".into(),
        host_veth: "eni0000000001".into(),
        ip: "10.0.0.50".parse().unwrap(),
        mtu: 1500,
        route_table: Some(254),
    };
    on_node(ns.path(0), move || block_on(setup_pod(&spec)).unwrap());
    let ping = |netns: &str| {
        exec(netns, &["ping", "-c", "1", "-W", "1", "198.51.100.1"])
            .status
            .success()
    };
    assert!(!ping(&pod), "without SNAT the reply has no way back");
    on_node(ns.path(0), || apply(&snat_settings()).unwrap());
    assert!(
        until_success(|| exec(&pod, &["ping", "-c", "1", "-W", "1", "198.51.100.1"]))
            .status
            .success(),
        "with SNAT the pod reaches outside the VPC"
    );
}

/// The egress plugin's rules, as ipamd and the plugin call them: the reject rule is inserted first in
/// FORWARD once however often it is ensured, for each family; a pod's SNAT chain and its POSTROUTING jump
/// are written once (a second add changes nothing), coexist with ipamd's own SNAT rules, and go on removal
/// (twice is fine), leaving ipamd's rules as they were.
#[test]
fn egress_snat_chains_and_the_reject_rule_are_idempotent() {
    use vpcni_dataplane::iptables::egress::{
        EgressFamily, EgressSnat, add_snat, chain_comment, chain_name, ensure_reject, remove_reject,
        remove_snat,
    };
    let ns = Namespaces::new(1);
    let node = ns.0[0].clone();
    let save = |tool: &str, table: &str| {
        String::from_utf8(exec(&node, &[tool, "-t", table]).stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('-') || l.starts_with(':'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    on_node(ns.path(0), || apply(&snat_settings()).unwrap());
    let ipamd_nat = save("iptables-save", "nat");
    exec(&node, &["iptables", "-A", "FORWARD", "-j", "ACCEPT"]);

    for family in [EgressFamily::V4, EgressFamily::V6] {
        assert!(on_node(ns.path(0), move || ensure_reject(family).unwrap()));
        assert!(!on_node(ns.path(0), move || ensure_reject(family).unwrap()));
    }
    let filter = save("iptables-save", "filter");
    let forward: Vec<&String> = filter.iter().filter(|l| l.starts_with("-A FORWARD")).collect();
    assert_eq!(
        forward,
        [
            "-A FORWARD -d 169.254.172.0/22 -m conntrack --ctstate NEW -m comment --comment \"Block Node Local Pod access via IPv4\" -j REJECT --reject-with icmp-port-unreachable",
            "-A FORWARD -j ACCEPT",
        ],
        "first in FORWARD, once"
    );
    let filter6 = save("ip6tables-save", "filter");
    assert_eq!(
        filter6
            .iter()
            .filter(|l| l.contains("-A FORWARD -d fd00::ac:0/118"))
            .count(),
        1,
        "{filter6:?}"
    );

    let chain = chain_name("E4-", "vpcni", "ctr-1");
    let snat = EgressSnat {
        chain: chain.clone(),
        comment: chain_comment("vpcni", "ctr-1"),
        source: "169.254.172.2".parse().unwrap(),
        node_ip: "10.0.0.5".parse().unwrap(),
        ports: SnatPorts::Random,
    };
    let added = snat.clone();
    on_node(ns.path(0), move || add_snat(&added).unwrap());
    let once = save("iptables-save", "nat");
    let again = snat.clone();
    on_node(ns.path(0), move || add_snat(&again).unwrap());
    assert_eq!(save("iptables-save", "nat"), once, "a second add changes nothing");
    let ours: Vec<&String> = once.iter().filter(|l| l.contains(&chain)).collect();
    assert_eq!(
        ours,
        [
            &format!(":{chain} - [0:0]"),
            &format!(
                "-A POSTROUTING -s 169.254.172.2/32 -m comment --comment \"name: \\\"vpcni\\\" id: \\\"ctr-1\\\"\" -j {chain}"
            ),
            &format!(
                "-A {chain} -d 224.0.0.0/4 -m comment --comment \"name: \\\"vpcni\\\" id: \\\"ctr-1\\\"\" -j ACCEPT"
            ),
            &format!(
                "-A {chain} -m comment --comment \"name: \\\"vpcni\\\" id: \\\"ctr-1\\\"\" -j SNAT --to-source 10.0.0.5 --random"
            ),
        ]
    );
    // ipamd reprograms the node: the pod's chain and jump are not its to remove.
    assert_eq!(on_node(ns.path(0), || apply(&snat_settings()).unwrap()), 0);
    assert_eq!(save("iptables-save", "nat"), once);

    let (c, comment) = (chain.clone(), snat.comment.clone());
    assert!(on_node(ns.path(0), move || remove_snat(
        EgressFamily::V4,
        &c,
        &comment
    )
    .unwrap()));
    let (c, comment) = (chain.clone(), snat.comment.clone());
    assert!(!on_node(ns.path(0), move || remove_snat(
        EgressFamily::V4,
        &c,
        &comment
    )
    .unwrap()));
    assert_eq!(save("iptables-save", "nat"), ipamd_nat);

    assert_eq!(
        on_node(ns.path(0), || remove_reject(EgressFamily::V4).unwrap()),
        1
    );
    assert_eq!(
        on_node(ns.path(0), || remove_reject(EgressFamily::V4).unwrap()),
        0
    );
}
