//! The figures issue #13 says must hold, each from the daemon's own rules: the engine's policy against
//! the EC2 simulator. Nothing here is computed by the test; each expected figure is explained.

use vpcni_planner::{Cluster, RunOptions, run};

fn cluster(subnet: &str, settings: &str, extra_subnet: &str) -> Cluster {
    let text = format!(
        r#"
[vpc]
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "a"
cidr = "{subnet}"
zone = "us-west-2a"
{extra_subnet}

[[node_groups]]
name = "general"
instance_type = "m5.xlarge"
nodes = 10
subnets = ["a"]

[settings]
{settings}

[workload]
pods_per_node = 5
duration = "30m"
"#
    );
    Cluster::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn defaults_in_a_slash_20_use_300_addresses() {
    // Per node: WARM_ENI_TARGET=1 fills the primary ENI (its own address + 14), then 5 pods leave 9 free
    // < 14, so a second ENI comes with 14: 2 ENIs × 15 = 30; 10 nodes = 300.
    let report = run(&cluster("10.0.0.0/20", "", ""), RunOptions::default());
    let subnet = &report.subnets[0];
    assert_eq!(subnet.used_end, 300, "{}", report.text());
    assert_eq!(subnet.used_peak, 300);
    assert_eq!(subnet.idle_peak, 250, "300 taken, 50 by pods");
    assert!(!subnet.exhausted);
    assert_eq!((report.pods.running_end, report.pods.pending_end), (50, 0));
    assert_eq!(report.pods.requested, 50);
}

#[test]
fn warm_ip_target_2_uses_80() {
    // Per node: the node's address + 5 pods + 2 warm = 8; 10 nodes = 80.
    let report = run(
        &cluster("10.0.0.0/20", "WARM_IP_TARGET = \"2\"", ""),
        RunOptions::default(),
    );
    assert_eq!(report.subnets[0].used_end, 80, "{}", report.text());
    assert_eq!(report.pods.running_end, 50);
}

#[test]
fn prefix_delegation_with_warm_prefix_target_1_uses_330() {
    // Per node: one primary address + two /28s (the first holds the 5 pods, the second is the warm one).
    let report = run(
        &cluster(
            "10.0.0.0/20",
            "ENABLE_PREFIX_DELEGATION = \"true\"\nWARM_PREFIX_TARGET = \"1\"",
            "",
        ),
        RunOptions::default(),
    );
    assert_eq!(report.subnets[0].used_end, 330, "{}", report.text());
    assert_eq!(report.pods.running_end, 50);
}

#[test]
fn defaults_in_a_slash_24_exhaust_it_with_pods_pending_and_say_why() {
    // 251 usable < 10 × 30. Nodes come up one every 10 s (launch_interval) and each takes its 30 as its
    // pods arrive: 8 nodes × 30 = 240; the 9th node's primary address is the 241st, and its first
    // AssignPrivateIpAddresses for 14 finds 10 left: InsufficientFreeAddressesInSubnet, so its pods and
    // the 10th node's wait.
    let report = run(&cluster("10.0.0.0/24", "", ""), RunOptions::default());
    let subnet = &report.subnets[0];
    assert!(subnet.exhausted, "{}", report.text());
    let cause = subnet.cause.as_ref().expect("a cause");
    assert_eq!(cause.code, "SUBNET_EXHAUSTED");
    assert!(cause.message.contains("no free address"), "{}", cause.message);
    assert!(report.pods.pending_end > 0, "{}", report.text());
    assert_eq!(
        report.pods.pending_reasons.get("SUBNET_EXHAUSTED").copied(),
        Some(report.pods.pending_end),
        "{}",
        report.text()
    );
    assert!(subnet.exhausted_at_s.is_some());
}

#[test]
fn a_fragmented_slash_26_gives_prefix_delegation_no_prefix() {
    // 10.0.0.0/26 has two whole /28s (.16 and .32; .0 holds AWS's reserved addresses, .48 the broadcast):
    // one address in each breaks them. Free addresses remain, but no /28.
    let text = r#"
[vpc]
cidrs = ["10.0.0.0/16"]
[[subnets]]
name = "small"
cidr = "10.0.0.0/26"
in_use = ["10.0.0.20", "10.0.0.40"]
[[node_groups]]
name = "pd"
instance_type = "m5.xlarge"
nodes = 1
subnets = ["small"]
[settings]
ENABLE_PREFIX_DELEGATION = "true"
WARM_PREFIX_TARGET = "1"
[workload]
pods_per_node = 5
duration = "10m"
"#;
    let report = run(&Cluster::parse(text).unwrap(), RunOptions::default());
    let subnet = &report.subnets[0];
    assert!(subnet.exhausted, "{}", report.text());
    assert_eq!(subnet.cause.as_ref().unwrap().code, "NO_FREE_PREFIX");
    assert!(subnet.cause.as_ref().unwrap().message.contains("fragmented"));
    assert_eq!(subnet.whole_prefixes_free_end, 0);
    assert!(subnet.used_end < subnet.usable, "free addresses remain");
    assert_eq!(report.pods.pending_end, 5);
    assert_eq!(report.pods.pending_reasons.get("NO_FREE_PREFIX"), Some(&5));
}
