//! Every reason the real daemon gives for not giving a pod an address is reachable, as a stable code and a
//! sentence: node max pods reached, subnet exhausted, no free /28 block (a fragmented subnet), EC2
//! throttled, ENI attach in progress, pool empty while growing, all free addresses cooling down, and (custom
//! networking) no usable ENIConfig.
//! Runs `vpcni-ipamd` in a testbed node against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use node_support::{EVENTUALLY, outcome};
use vpcni_testbed::{TestNode, TestNodeBuilder};

/// Adds pods `prefix-0`, `prefix-1`, … (each retried while the pool grows) until one is refused with a
/// reason other than "growing"; returns how many got an address and the refusal.
fn fill(node: &TestNode, prefix: &str) -> (usize, (String, String)) {
    let mut placed = 0;
    let mut refusal = None;
    node.wait_until("a refusal that is not about growing", EVENTUALLY, || {
        match outcome(&node.ipamd_add(&format!("{prefix}-{placed}")).unwrap()) {
            Ok(_) => placed += 1,
            Err((reason, _)) if reason == "POOL_EMPTY_GROWING" || reason == "ENI_ATTACH_IN_PROGRESS" => {}
            Err(other) => refusal = Some(other),
        }
        refusal.is_some()
    })
    .unwrap();
    (placed, refusal.unwrap())
}

/// Retries one pod until the refusal has `reason`.
fn refused_with(node: &TestNode, pod: &str, reason: &str) -> String {
    let mut message = String::new();
    node.wait_until(
        &format!("{pod} refused with {reason}"),
        EVENTUALLY,
        || match outcome(&node.ipamd_add(pod).unwrap()) {
            Err((got, text)) if got == reason => {
                message = text;
                true
            }
            Err(_) => false,
            Ok(ip) => panic!("{pod} got {ip}, expected a refusal with {reason}"),
        },
    )
    .unwrap();
    message
}

fn reason_counted(node: &TestNode, reason: &str) {
    let metrics = node.metrics().unwrap().body;
    let counted = metrics
        .lines()
        .any(|l| l.starts_with(&format!("vpcni_no_ip_reason_count{{reason=\"{reason}\"}}")));
    assert!(counted, "{reason} not counted:\n{metrics}");
}

#[test]
fn node_max_pods_reached() {
    // t3.nano: 2 ENIs of 2 addresses, so 2 pod addresses; max pods 4 (with the 2 host-network pods).
    let node = TestNode::builder().instance_type("t3.nano").start().unwrap();
    let (placed, (reason, message)) = fill(&node, "max");
    assert_eq!(placed, 2);
    assert_eq!(reason, "NODE_MAX_PODS");
    assert!(message.starts_with("node max pods reached (4)"), "{message}");
    reason_counted(&node, "NODE_MAX_PODS");
}

#[test]
fn subnet_exhausted() {
    // A /28 keeps 11 addresses after AWS's five; the node's own takes one, its primary ENI nine more.
    let node = TestNode::builder()
        .subnet("10.0.0.0/28".parse().unwrap())
        .start()
        .unwrap();
    let (placed, (reason, message)) = fill(&node, "full");
    assert_eq!(placed, 9);
    assert_eq!(reason, "SUBNET_EXHAUSTED");
    assert!(message.contains("has no free addresses"), "{message}");
    reason_counted(&node, "SUBNET_EXHAUSTED");
}

#[test]
fn no_free_prefix_in_a_fragmented_subnet() {
    // A /26 has four /28 blocks: AWS's reserved addresses sit in the first and the last, this node's
    // address in the second, another instance's in the third. Addresses are left, whole blocks are not.
    let node = TestNode::builder()
        .subnet("10.0.0.0/26".parse().unwrap())
        .primary_ip("10.0.0.20".parse().unwrap())
        .topology_extra(
            "[[instances]]\nname = \"neighbour\"\ntype = \"m5.large\"\nsubnet = \"primary\"\nprimary_ip = \"10.0.0.40\"\n",
        )
        .prefix_delegation()
        .start()
        .unwrap();
    let message = refused_with(&node, "pd-0", "NO_FREE_PREFIX");
    assert!(message.contains("no free /28 block"), "{message}");
    reason_counted(&node, "NO_FREE_PREFIX");
}

#[test]
fn ec2_throttled() {
    let node = TestNode::builder()
        .sim_setting(
            "faults",
            r#"[{ action = "AssignPrivateIpAddresses", code = "RequestLimitExceeded" }, { action = "CreateNetworkInterface", code = "RequestLimitExceeded" }]"#,
        )
        .start()
        .unwrap();
    let message = refused_with(&node, "slow-0", "EC2_THROTTLED");
    assert!(message.contains("EC2 is throttling"), "{message}");
    reason_counted(&node, "EC2_THROTTLED");
    let metrics = node.metrics().unwrap().body;
    assert!(
        metrics.contains(
            r#"awscni_aws_api_error_count{api="AssignPrivateIpAddresses",error="RequestLimitExceeded"}"#
        ),
        "{metrics}"
    );
}

/// The primary ENI's nine addresses used, the next growth attaches an ENI that takes ten minutes to attach.
fn attaching() -> TestNodeBuilder {
    TestNode::builder().sim_setting("attach_delay_ms", "600000")
}

#[test]
fn eni_attach_in_progress() {
    let node = attaching().start().unwrap();
    for n in 0..9 {
        let pod = format!("att-{n}");
        node.wait_until(&format!("an address for {pod}"), EVENTUALLY, || {
            node.ipamd_add(&pod).is_ok_and(|r| r.success)
        })
        .unwrap();
    }
    let message = refused_with(&node, "att-9", "ENI_ATTACH_IN_PROGRESS");
    assert!(message.contains("ENI is being attached"), "{message}");
    // EC2 has the ENI (attaching), the host has no link for it yet, and the pool does not use its addresses.
    node.wait_until("the ENI to be attaching in EC2", EVENTUALLY, || {
        node.sim_state().unwrap().enis.values().any(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == node.instance_id() && a.device_index == 1)
        })
    })
    .unwrap();
    assert!(!node.plugged_enis().contains_key(&1));
    assert_eq!(node_support::stats(&node).0, 1);
    let again = outcome(&node.ipamd_add("att-9").unwrap()).unwrap_err();
    assert_eq!(again.0, "ENI_ATTACH_IN_PROGRESS", "{again:?}");
}

#[test]
fn pool_empty_while_growing() {
    // Every AssignPrivateIpAddresses takes 8 s: the first pod arrives while the pool is still empty.
    let node = TestNode::builder()
        .sim_setting("latency_ms", "{ AssignPrivateIpAddresses = 8000 }")
        .start()
        .unwrap();
    let message = refused_with(&node, "early-0", "POOL_EMPTY_GROWING");
    assert!(message.contains("ipamd is adding addresses"), "{message}");
    reason_counted(&node, "POOL_EMPTY_GROWING");
    // And then it has one.
    node.wait_until("an address once the pool has grown", EVENTUALLY, || {
        node.ipamd_add("early-0").is_ok_and(|r| r.success)
    })
    .unwrap();
}

#[test]
fn all_free_addresses_cooling_down() {
    // MAX_ENI=1: the primary ENI's nine addresses are all this node will ever have, so no ENI with fresh
    // addresses can arrive mid-test (with the default WARM_ENI_TARGET=1 the pool loop attaches one as soon
    // as the pods use the first). A cooldown of an hour: the nine released addresses are still cooling when
    // the tenth pod asks, however slow the machine.
    let node = TestNode::builder()
        .ipamd_env("MAX_ENI", "1")
        .ipamd_env("IP_COOLDOWN_PERIOD", "3600")
        .start()
        .unwrap();
    node.wait_for_addresses(9).unwrap();
    for n in 0..9 {
        assert!(node.ipamd_add(&format!("cool-{n}")).unwrap().success);
    }
    for n in 0..9 {
        assert!(node.ipamd_del(&format!("cool-{n}")).unwrap().found);
    }
    // The very next ADD is refused for that reason: nothing else can have changed.
    let (reason, message) = outcome(&node.ipamd_add("cool-new").unwrap()).unwrap_err();
    assert_eq!(reason, "ALL_COOLING_DOWN", "{message}");
    assert!(
        message.starts_with("all 9 free addresses are cooling down"),
        "{message}"
    );
    assert!(message.contains("IP_COOLDOWN_PERIOD 3600 s"), "{message}");
    reason_counted(&node, "ALL_COOLING_DOWN");
    // Still one ENI: the refusal was not a race with a growing pool.
    assert_eq!(node_support::stats(&node), (1, 9, 0, 0));
}

#[test]
fn custom_networking_without_an_eniconfig_refuses_naming_it_then_uses_it_once_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels:\n    topology.kubernetes.io/zone: us-west-2a\n",
    )
    .unwrap();
    let pod_subnet: ipnet::Ipv4Net = "10.0.64.0/24".parse().unwrap();
    let node = TestNode::builder()
        .extra_subnet(pod_subnet)
        .ipamd_env("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true")
        .ipamd_env("MY_NODE_NAME", "node-1")
        .ipamd_env("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone")
        .ipamd_env("VPCNI_ENI_CONFIG_DIR", dir.path().to_str().unwrap())
        .start()
        .unwrap();
    let message = refused_with(&node, "cn-0", "ENI_CONFIG_UNAVAILABLE");
    assert!(
        message.contains("ENIConfig \"us-west-2a\"")
            && message.contains("label topology.kubernetes.io/zone (ENI_CONFIG_LABEL_DEF) of node node-1"),
        "{message}"
    );
    reason_counted(&node, "ENI_CONFIG_UNAVAILABLE");
    let metrics = node.metrics().unwrap().body;
    assert!(
        metrics.lines().any(|l| l == "vpcni_eni_config_unavailable 1"),
        "{metrics}"
    );
    let report = node.introspection("/v1/eni-configs").unwrap().json().unwrap();
    assert_eq!(report["status"], "unavailable", "{report}");
    assert_eq!(report["source"], "directory", "{report}");
    assert_eq!(
        node.sim_state().unwrap().enis.len(),
        1,
        "no ENI was created in any subnet"
    );

    let subnet_id = node
        .sim_state()
        .unwrap()
        .subnet_cidrs
        .iter()
        .find(|(_, cidr)| **cidr == pod_subnet)
        .map(|(id, _)| id.clone())
        .unwrap();
    std::fs::write(
        dir.path().join("us-west-2a.yaml"),
        format!(
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: us-west-2a\nspec:\n  subnet: {subnet_id}\n"
        ),
    )
    .unwrap();
    let mut ip = None;
    node.wait_until("an address from the ENIConfig's subnet", EVENTUALLY, || {
        ip = outcome(&node.ipamd_add("cn-1").unwrap()).ok();
        ip.is_some()
    })
    .unwrap();
    let ip = ip.unwrap();
    assert!(pod_subnet.contains(&ip), "{ip}");
    let report = node.introspection("/v1/eni-configs").unwrap().json().unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["subnet"], subnet_id.as_str(), "{report}");
}
