//! The real daemon in IPv6 mode (`ENABLE_IPv6=true`, `ENABLE_IPv4=false`, `ENABLE_PREFIX_DELEGATION=true`)
//! in a testbed node whose VPC has an IPv6 /56 and whose subnet has a /64: one /80 on the primary ENI, pods'
//! addresses from it in the reply the plugin expects, DEL, STATUS and GC, the introspection and metrics
//! views, the node's IPv6 sysctls and no IPv4 rules; restarts (SIGTERM and kill -9) keep every pod's address
//! and the /80; a non-Nitro type stops start-up naming ENABLE_IPv6 and the type. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use node_support::{iptables, sh, with_ec2};
use serde_json::Value;
use vpcni_dataplane::naming::host_veth_name;
use vpcni_ec2::{DescribeNetworkInterfacesRequest, Ec2};
use vpcni_rpc::vpcni_backend_client::VpcniBackendClient;
use vpcni_rpc::{Attachment, GarbageCollectRequest};
use vpcni_testbed::TestNode;

fn ipv6_node() -> TestNode {
    TestNode::builder().ipv6().start().unwrap()
}

/// The primary ENI's /80s as EC2 lists them.
fn primary_prefixes(node: &TestNode) -> Vec<Ipv6Net> {
    let eni = node.primary_eni_id().to_owned();
    with_ec2(node, move |ec2| async move {
        ec2.describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            network_interface_ids: vec![eni],
            ..DescribeNetworkInterfacesRequest::default()
        })
        .await
        .unwrap()
        .network_interfaces
        .remove(0)
        .ipv6_prefixes
    })
}

/// The pod's IPv6 address from an ADD reply, after checking the reply is IPv6 mode's.
fn added(node: &TestNode, pod: &str) -> Ipv6Addr {
    let reply = node.ipamd_add(pod).unwrap();
    assert!(reply.success, "{reply:?}");
    assert_eq!(reply.ip_allocation_metadata.len(), 1, "{reply:?}");
    let metadata = &reply.ip_allocation_metadata[0];
    assert_eq!(metadata.i_pv4_addr, "", "{reply:?}");
    assert_eq!((metadata.device_number, metadata.route_table_id), (0, 254));
    metadata.i_pv6_addr.parse().unwrap()
}

fn metric(node: &TestNode, name: &str) -> String {
    let body = node.metrics().unwrap().body;
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[test]
fn pods_get_addresses_from_the_nodes_80() {
    let node = ipv6_node();
    let prefixes = primary_prefixes(&node);
    assert_eq!(prefixes.len(), 1, "one /80 on the primary ENI: {prefixes:?}");
    let prefix = prefixes[0];
    assert_eq!(prefix.prefix_len(), 80);

    let reply = node.ipamd_add("web-1").unwrap();
    assert!(reply.success, "{reply:?}");
    assert!(
        reply.vp_cv4_cid_rs.is_empty() && !reply.use_external_snat,
        "{reply:?}"
    );
    assert_eq!(reply.vp_cv6_cid_rs.len(), 1, "{reply:?}");
    let vpc: Ipv6Net = reply.vp_cv6_cid_rs[0].parse().unwrap();
    assert_eq!(vpc.prefix_len(), 56);
    assert!(vpc.contains(&prefix), "{vpc} holds {prefix}");
    let first: Ipv6Addr = reply.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap();
    assert!(prefix.contains(&first) && first != prefix.network());
    assert_eq!(
        added(&node, "web-1"),
        first,
        "a repeated ADD gets the same address"
    );
    let second = added(&node, "web-2");
    assert_ne!(second, first);

    let released = node.ipamd_del("web-1").unwrap();
    assert!(released.success && released.found, "{released:?}");
    assert_eq!(released.ip_allocation_metadata[0].i_pv6_addr, first.to_string());
    assert_eq!(released.ip_allocation_metadata[0].i_pv4_addr, "");
    let third = added(&node, "web-3");
    assert!(
        third != first && third != second,
        "a released address is not handed out at once"
    );

    let status = node.ipamd_status().unwrap();
    assert!(
        status.ready && status.available_addresses > 1_000_000,
        "{status:?}"
    );

    // GC releases what the runtime no longer knows.
    let request = GarbageCollectRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
        network_name: vpcni_testbed::NETWORK_NAME.to_owned(),
        valid_attachments: vec![Attachment {
            network_name: vpcni_testbed::NETWORK_NAME.to_owned(),
            container_id: "web-3".to_owned(),
            if_name: "eth0".to_owned(),
        }],
    };
    let gc = node
        .with_channel(
            |channel| async move { VpcniBackendClient::new(channel).garbage_collect(request).await },
        )
        .unwrap()
        .unwrap()
        .into_inner();
    let released: Vec<&str> = gc.released.iter().map(|a| a.container_id.as_str()).collect();
    assert_eq!(released, ["web-2"]);

    // Introspection: the original's /v1/enis shape with the /80 under IPv6Cidrs; /v1/pool and /v1/pods.
    let enis: Value = node.introspection("/v1/enis").unwrap().json().unwrap();
    let card = &enis["0"];
    assert_eq!(card["TotalIPs"], 1u64 << 48);
    assert_eq!(card["AssignedIPs"], 1);
    let primary = &card["ENIs"][node.primary_eni_id()];
    assert_eq!(primary["IsPrimary"], true);
    let cidr = &primary["IPv6Cidrs"][prefix.to_string()];
    assert_eq!(cidr["AddressFamily"], "6", "{primary}");
    assert_eq!(cidr["IsPrefix"], true);
    let held: Vec<&String> = cidr["IPAddresses"].as_object().unwrap().keys().collect();
    assert_eq!(held, [&third.to_string()]);
    assert_eq!(
        cidr["IPAddresses"][third.to_string()]["IPAMMetadata"]["k8sPodName"],
        "web-3"
    );
    assert_eq!(card["ENIs"].as_object().unwrap().len(), 1, "{card}");

    let pool: Value = node.introspection("/v1/pool").unwrap().json().unwrap();
    assert_eq!(pool["family"], "ipv6");
    assert_eq!(pool["ipv6"]["prefix"], prefix.to_string());
    assert_eq!(pool["ipv6"]["eni"], node.primary_eni_id());
    assert_eq!(pool["ipv6"]["assigned"], 1);
    assert_eq!(pool["ipv6"]["assignments"][0]["ipv6"], third.to_string());
    let pods: Value = node.introspection("/v1/pods").unwrap().json().unwrap();
    assert_eq!(pods[0]["ipv6"], third.to_string());
    let env: Value = node
        .introspection("/v1/ipamd-env-settings")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (env["ENABLE_IPv4"].clone(), env["ENABLE_IPv6"].clone()),
        (false.into(), true.into())
    );

    // Metrics keep the original's names and count the /80.
    assert_eq!(
        metric(&node, "awscni_total_ip_addresses"),
        (1u64 << 48).to_string()
    );
    assert_eq!(metric(&node, "awscni_assigned_ip_addresses"), "1");
    assert_eq!(metric(&node, "awscni_ip_max"), (1u64 << 48).to_string());
}

#[test]
fn the_node_gets_the_ipv6_sysctls_and_no_ipv4_rules() {
    let node = ipv6_node();
    let get = |key: &str| sh(&node, &["sysctl", "-n", key]).trim().to_owned();
    assert_eq!(get("net.ipv6.conf.all.disable_ipv6"), "0");
    assert_eq!(get("net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(get("net.ipv6.conf.eth0.accept_ra"), "2");
    let rules = iptables(&node);
    assert!(
        !rules.contains("AWS-SNAT-CHAIN") && !rules.contains("AWS-CONNMARK"),
        "{rules}"
    );
    let ip_rules = sh(&node, &["ip", "rule", "show"]);
    assert!(!ip_rules.contains("fwmark"), "{ip_rules}");
}

/// The host veth the plugin would have made for the pod (start-up releases pods whose veth is gone).
fn plug_veth(node: &TestNode, pod: &str) {
    let name = host_veth_name("eni", "default", pod);
    let peer = format!("q{}", &name[3..]);
    sh(
        node,
        &["ip", "link", "add", &name, "type", "veth", "peer", "name", &peer],
    );
}

#[test]
fn restarts_keep_every_pods_address_and_the_80() {
    let node = ipv6_node();
    let prefix = primary_prefixes(&node);
    let mut pods: BTreeMap<String, Ipv6Addr> = BTreeMap::new();
    for n in 0..6 {
        let pod = format!("keep-{n}");
        plug_veth(&node, &pod);
        pods.insert(pod.clone(), added(&node, &pod));
    }
    for (how, stop) in [
        ("SIGTERM", TestNode::stop_ipamd as fn(&TestNode) -> _),
        ("kill -9", TestNode::kill_ipamd),
    ] {
        stop(&node);
        node.start_ipamd().unwrap();
        assert_eq!(
            primary_prefixes(&node),
            prefix,
            "{how}: the same /80, and no other"
        );
        for (pod, ip) in &pods {
            assert_eq!(added(&node, pod), *ip, "{how}: {pod} keeps its address");
        }
        let pool: Value = node.introspection("/v1/pool").unwrap().json().unwrap();
        assert_eq!(pool["ipv6"]["assigned"], pods.len(), "{how}: {pool}");
        // A new pod gets none of the kept addresses.
        let fresh = format!("after-{}", how.len());
        let ip = added(&node, &fresh);
        assert!(
            !pods.values().any(|kept| *kept == ip),
            "{how}: {ip} is held already"
        );
        node.ipamd_del(&fresh).unwrap();
    }
}

#[test]
fn a_xen_type_stops_start_up_naming_enable_ipv6_and_the_type() {
    let node = TestNode::builder()
        .instance_type("m4.large")
        .ipv6()
        .without_ipamd()
        .start()
        .unwrap();
    let error = node.start_ipamd().unwrap_err().to_string();
    let log = node.ipamd_log();
    for needed in ["ENABLE_IPv6", "m4.large", "Nitro"] {
        assert!(
            log.contains(needed),
            "{needed} missing from the log:\n{log}\n(start: {error})"
        );
    }
    assert!(primary_prefixes(&node).is_empty(), "no /80 was asked for");
}
