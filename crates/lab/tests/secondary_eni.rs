//! A pod whose address is on a secondary ENI sends through that ENI: its `from <pod> lookup <ENI table>`
//! rule (priority 1536) picks the ENI's route table. The router checks sources as EC2 does, so without
//! that rule the pod's packets leave through eth0 and are dropped: the lab proves the policy routing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::time::Duration;

use common::{TestLab, eventually};

#[test]
fn a_pod_on_a_secondary_eni_egresses_through_that_eni() {
    // t3.small: 3 addresses for pods per ENI; with no warm ENI the fourth pod lands on device 1.
    let mut lab = TestLab::up(2, "t3.small", |spec| {
        spec.ipamd_env.push(("WARM_ENI_TARGET".into(), "0".into()));
        spec.ipamd_env.push(("WARM_IP_TARGET".into(), "1".into()));
    });
    lab.pods("node-1", 4);
    let remote = lab.pods("node-2", 1).remove(0);
    let status = lab.status().unwrap();
    let pod = status
        .pods
        .iter()
        .find(|p| p.node == "node-1" && p.device_number.is_some_and(|d| d >= 1))
        .expect("a pod on a secondary ENI")
        .clone();
    let device = pod.device_number.unwrap();
    let report = lab.fabric_report().unwrap();
    let link = |device: u32| {
        report
            .plugged
            .iter()
            .find(|p| p.node == "node-1" && p.device == device)
            .unwrap()
            .router_link
            .clone()
    };
    let (eni_link, primary_link) = (link(device), link(0));
    let (ip, target) = (pod.ip.to_string(), remote.ip.to_string());
    // Count the pod's packets where they enter the router (raw) and where it forwards them.
    for (link, side) in [(&eni_link, "eni"), (&primary_link, "primary")] {
        let (arrived, forwarded) = (format!("in-{side}"), format!("fwd-{side}"));
        lab.iptables(
            "router",
            &[
                "-t",
                "raw",
                "-I",
                "PREROUTING",
                "-i",
                link,
                "-s",
                &ip,
                "-m",
                "comment",
                "--comment",
                &arrived,
            ],
        );
        lab.iptables(
            "router",
            &[
                "-I",
                "FORWARD",
                "-i",
                link,
                "-s",
                &ip,
                "-m",
                "comment",
                "--comment",
                &forwarded,
            ],
        );
    }
    let count = |lab: &TestLab, name: &str| {
        let table = if name.starts_with("in-") { "raw" } else { "filter" };
        let chain = if name.starts_with("in-") {
            "PREROUTING"
        } else {
            "FORWARD"
        };
        lab.counted("router", table, chain, name)
    };

    eventually(
        &format!("{} reaching {}", pod.name, remote.name),
        Duration::from_secs(60),
        || lab.ping(&pod.name, &target).then_some(()),
    );
    assert!(count(&lab, "fwd-eni") >= 1);
    assert_eq!(
        count(&lab, "in-primary"),
        0,
        "{} sent through eth0 although its address is on eth{device}",
        pod.name
    );
    // To the internet it goes out eth0 as the node (CONNMARK, rule 1024, SNAT), and is seen as the node.
    let public = lab.node("node-1").unwrap().public_ip.to_string();
    assert_eq!(lab.whoami_eventually(&pod.name), public);

    // Without its 1536 rule, the pod's packets leave through eth0 and the source check drops them.
    let rules = lab.ip("node-1", &["rule", "show", "priority", "1536"]);
    let table = rules
        .lines()
        .find(|l| l.contains(&format!("from {ip} ")))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no 1536 rule for {ip}:\n{rules}"))
        .to_owned();
    let rule = ["from", &ip, "lookup", &table, "priority", "1536"];
    let mut del = vec!["rule", "del"];
    del.extend_from_slice(&rule);
    lab.ip("node-1", &del);
    assert!(
        !lab.ping(&pod.name, &target),
        "the pod still reaches {} without its rule",
        remote.name
    );
    assert!(
        count(&lab, "in-primary") >= 1,
        "without its rule the pod's packets did not take eth0"
    );
    assert_eq!(
        count(&lab, "fwd-primary"),
        0,
        "the router forwarded a source from the wrong ENI"
    );
    let mut add = vec!["rule", "add"];
    add.extend_from_slice(&rule);
    lab.ip("node-1", &add);
    assert!(
        lab.reaches(&pod.name, &target),
        "restoring the 1536 rule did not restore the pod"
    );
}
