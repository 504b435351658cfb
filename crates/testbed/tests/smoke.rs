//! The testbed itself: a node comes up as on EC2 (eth0 with the primary ENI's MAC and address), ipamd
//! serves, ENIs attached by ipamd appear as links and go when detached, the helpers work, ipamd survives a
//! kill -9 with its checkpoint, a daemon that dies at start-up is reported with its log, and nothing is
//! left behind. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::time::Duration;

use vpcni_testbed::{PluginCall, TestNode, TestbedError};

fn link_mac(node: &TestNode, name: &str) -> Option<String> {
    let output = node.exec(&["ip", "-j", "link", "show", name]).unwrap();
    let links: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    links[0]["address"].as_str().map(str::to_owned)
}

#[test]
fn a_node_comes_up_serves_and_cleans_up() {
    // 15 warm addresses: more than the primary ENI's 9, so ipamd attaches a second ENI at once.
    let node = TestNode::builder()
        .ipamd_env("WARM_IP_TARGET", "15")
        .start()
        .unwrap();
    let name = node.name().to_owned();
    let dir = node.dir().to_path_buf();

    // eth0 is the primary ENI.
    assert_eq!(link_mac(&node, "eth0").as_deref(), Some(node.primary_mac()));
    let addresses =
        String::from_utf8(node.exec(&["ip", "-4", "addr", "show", "eth0"]).unwrap().stdout).unwrap();
    assert!(
        addresses.contains(&format!(
            "{}/{}",
            node.primary_ip(),
            node.subnet_cidr().prefix_len()
        )),
        "{addresses}"
    );
    // One answered ping, retried (the first may wait on neighbour resolution on a busy machine).
    let gateway = node.subnet_gateway().to_string();
    node.wait_until("the subnet gateway to answer", Duration::from_secs(60), || {
        node.exec(&["ping", "-c1", "-W2", &gateway])
            .is_ok_and(|ping| ping.status.success())
    })
    .unwrap();

    // ipamd attaches a second ENI: it appears as eth1 with that ENI's MAC.
    node.wait_until("eth1 to be plugged", Duration::from_secs(60), || {
        node.plugged_enis().contains_key(&1)
    })
    .unwrap();
    let state = node.sim_state().unwrap();
    let attached = state.attached_enis(node.instance_id(), u64::MAX);
    let eni1 = attached[&1];
    assert_eq!(link_mac(&node, "eth1").as_deref(), Some(eni1.mac.as_str()));
    assert!(node.hotplug_errors().is_empty(), "{:?}", node.hotplug_errors());

    // ipamd answers over its socket, introspection and metrics inside the namespace.
    node.wait_for_addresses(1).unwrap();
    let reply = node.ipamd_add("smoke-0").unwrap();
    assert!(reply.success, "{reply:?}");
    let ip: std::net::Ipv4Addr = reply.ip_allocation_metadata[0].i_pv4_addr.parse().unwrap();
    assert!(
        node.sim_state()
            .unwrap()
            .assigned_addresses(node.instance_id())
            .contains(&ip)
    );
    let enis = node.introspection("/v1/enis").unwrap();
    assert_eq!(enis.status, 200, "{enis}");
    assert!(enis.body.contains(&ip.to_string()), "{enis}");
    let metrics = node.metrics().unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("awscni_"), "{metrics}");

    // The plugin runs inside the node against this node's ipamd.
    let pod = node.pod_netns("smoke-1").unwrap();
    let config = node.cni_config("1.0.0");
    let added = node.plugin(&PluginCall::add(&pod, "smoke-1", &config)).unwrap();
    assert!(added.success(), "{added}");
    let deleted = node.plugin(&PluginCall::del(&pod, "smoke-1", &config)).unwrap();
    assert!(deleted.success(), "{deleted}");

    // kill -9 and restart: the checkpoint keeps the allocation.
    let pid = node.ipamd_pid().unwrap();
    assert!(node.kill_ipamd().is_some());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    node.start_ipamd().unwrap();
    let again = node.ipamd_add("smoke-0").unwrap();
    assert_eq!(again.ip_allocation_metadata[0].i_pv4_addr, ip.to_string());

    // Detaching an ENI takes its link away (ipamd stopped first so it does not react).
    node.stop_ipamd().unwrap();
    let attachment = eni1.attachment.clone().unwrap();
    let detach = node
        .http_get(
            vpcni_testbed::EC2_LISTEN.parse().unwrap(),
            &format!(
                "/?Action=DetachNetworkInterface&AttachmentId={}&Force=true",
                attachment.id
            ),
        )
        .unwrap();
    assert_eq!(detach.status, 200, "{detach}");
    node.wait_until("eth1 to go", Duration::from_secs(30), || {
        !node.plugged_enis().contains_key(&1)
    })
    .unwrap();
    assert_eq!(link_mac(&node, "eth1"), None);

    node.start_ipamd().unwrap();
    let ipamd_pid = node.ipamd_pid().unwrap();
    drop(pod);
    drop(node);
    assert!(!std::path::Path::new(&format!("/proc/{ipamd_pid}")).exists());
    assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
    assert!(!std::path::Path::new(&format!("/var/run/netns/{name}-w")).exists());
    assert!(!dir.exists());
}

#[test]
fn an_ipamd_that_dies_at_start_is_reported_with_its_log() {
    // A MAX_ENI that is not a number stops the daemon (a misread limit would change the pool's size);
    // WARM_IP_TARGET=ten would not, since the original falls back to its default there.
    let error = TestNode::builder()
        .ipamd_env("MAX_ENI", "ten")
        .start()
        .unwrap_err();
    match &error {
        TestbedError::Died { process, log, .. } => {
            assert_eq!(process, "vpcni-ipamd");
            assert!(log.contains("MAX_ENI"), "{log}");
        }
        other => panic!("expected Died, got {other}"),
    }
}
