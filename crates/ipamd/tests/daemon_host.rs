//! The real daemon programs its node: SNAT, CONNMARK and mangle rules, the fwmark and external-service
//! rules, rp_filter on the primary interface, and every ENI it attaches once the ENI's link appears — and a
//! restart changes none of it. Runs `vpcni-ipamd` in a testbed node against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use node_support::{EVENTUALLY, iptables, sh};
use vpcni_testbed::TestNode;

#[test]
fn the_node_and_each_attached_eni_are_programmed_as_the_original_does_and_restarts_change_nothing() {
    // 12 warm addresses: the primary ENI holds 9, so a second ENI is attached at once.
    let node = TestNode::builder()
        .ipamd_env("WARM_IP_TARGET", "12")
        .ipamd_env("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "172.16.0.0/12")
        .ipamd_env("AWS_EXTERNAL_SERVICE_CIDRS", "192.0.2.0/24")
        .start()
        .unwrap();
    node.wait_until("a second ENI in the pool", EVENTUALLY, || {
        node_support::stats(&node).0 == 2
    })
    .unwrap();

    let primary_ip = node.primary_ip();
    let rules = iptables(&node);
    for line in [
        "-A POSTROUTING -m comment --comment \"AWS SNAT CHAIN\" -j AWS-SNAT-CHAIN-0".to_owned(),
        format!("-A AWS-SNAT-CHAIN-0 -d {} -m comment --comment \"AWS SNAT CHAIN\" -j RETURN", node.vpc_cidr()),
        "-A AWS-SNAT-CHAIN-0 -d 172.16.0.0/12 -m comment --comment \"AWS SNAT CHAIN EXCLUSION\" -j RETURN".into(),
        format!(
            "-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment \"AWS, SNAT\" -m addrtype ! --dst-type LOCAL -j SNAT --to-source {primary_ip} --random-fully"
        ),
        "-A PREROUTING -i eni+ -m comment --comment \"AWS, outbound connections\" -j AWS-CONNMARK-CHAIN-0".into(),
        "-A AWS-CONNMARK-CHAIN-0 -m comment --comment \"AWS, CONNMARK\" -j CONNMARK --set-xmark 0x80/0x80".into(),
        "-A PREROUTING -i eth0 -m comment --comment \"AWS, primary ENI\" -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark 0x80/0x80".into(),
    ] {
        assert!(rules.lines().any(|l| l == line), "missing {line}\n{rules}");
    }
    let ip_rules = sh(&node, &["ip", "rule"]);
    assert!(
        ip_rules.contains("1024:\tfrom all fwmark 0x80/0x80 lookup main"),
        "{ip_rules}"
    );
    assert!(
        ip_rules.contains("1535:\tfrom all to 192.0.2.0/24 lookup main"),
        "{ip_rules}"
    );
    assert_eq!(
        sh(&node, &["sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"]).trim(),
        "2"
    );
    assert!(sh(&node, &["ip", "link", "show", "eth0"]).contains("mtu 9001"));

    // The attached ENI: eth1 with its primary address, its own table, and the rule choosing it.
    let state = node.sim_state().unwrap();
    let eni = state.attached_enis(node.instance_id(), u64::MAX)[&1].clone();
    let prefix = node.subnet_cidr().prefix_len();
    let eth1 = sh(&node, &["ip", "-4", "addr", "show", "eth1"]);
    assert!(
        eth1.contains(&format!("inet {}/{prefix}", eni.primary_ip)),
        "{eth1}"
    );
    assert!(sh(&node, &["ip", "link", "show", "eth1"]).contains("mtu 9001"));
    let gateway = node.subnet_gateway();
    let table = sh(&node, &["ip", "route", "show", "table", "2"]);
    assert!(
        table.contains(&format!("default via {gateway} dev eth1")),
        "{table}"
    );
    assert!(
        table.contains(&format!("{gateway} dev eth1 scope link")),
        "{table}"
    );
    assert!(
        ip_rules.contains(&format!("32765:\tfrom {} lookup 2", eni.primary_ip)),
        "{ip_rules}"
    );
    let main = sh(&node, &["ip", "route", "show", "table", "main"]);
    assert!(
        !main.lines().any(|l| l.contains("dev eth1")),
        "the kernel's connected route for eth1 leaves main: {main}"
    );
    // Policy routing works: from the ENI's address, the subnet router is reached through eth1.
    // Retried for up to a minute: the first packet may wait on neighbour resolution on a busy machine.
    let source = eni.primary_ip.to_string();
    let target = gateway.to_string();
    let args = ["ping", "-c1", "-W2", "-I", source.as_str(), target.as_str()];
    let mut last = None;
    let answered = node.wait_until("the subnet router to answer through eth1", EVENTUALLY, || {
        let ping = node.exec(&args).unwrap();
        let ok = ping.status.success();
        last = Some(ping);
        ok
    });
    assert!(
        answered.is_ok(),
        "{}",
        last.map(|p| String::from_utf8_lossy(&p.stdout).into_owned())
            .unwrap_or_default()
    );

    // A restart finds everything in place and changes nothing.
    let before = (iptables(&node), sh(&node, &["ip", "rule"]), table);
    node.restart_ipamd().unwrap();
    node.wait_for_addresses(1).unwrap();
    let after = (
        iptables(&node),
        sh(&node, &["ip", "rule"]),
        sh(&node, &["ip", "route", "show", "table", "2"]),
    );
    assert_eq!(before, after);
    assert!(
        node.ipamd_log().contains("rule_changes=0 iptables_changes=0"),
        "{}",
        node.ipamd_log()
    );
}
