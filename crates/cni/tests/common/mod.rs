//! What the plugin tests share: the node's pod-related state, to prove a call left nothing behind; the
//! spec's checks of a result (`spec_result`); and the namespace node with a stand-in ipamd (`netns`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part; panics report failures

pub mod netns;
pub mod spec_result;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use vpcni_testbed::{PluginOutput, TestNode};

/// Everything on a node a pod's ADD creates: host veths, host routes to pods, the 512/1536 rules, and
/// ipamd's allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub veths: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub rules: BTreeSet<String>,
    pub allocations: BTreeSet<String>,
}

fn lines(node: &TestNode, args: &[&str]) -> Vec<String> {
    let output = node.exec(args).unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

pub fn pod_state(node: &TestNode) -> PodState {
    let veths = lines(node, &["ip", "-o", "link", "show", "type", "veth"])
        .into_iter()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        })
        .filter(|name| name.starts_with("eni"))
        .collect();
    let routes = lines(node, &["ip", "route", "show", "table", "all"])
        .into_iter()
        .filter(|l| l.contains(" dev eni"))
        .collect();
    let rules = lines(node, &["ip", "rule", "show"])
        .into_iter()
        .filter(|l| l.starts_with("512:") || l.starts_with("1536:"))
        .collect();
    let allocations = match node.introspection("/v1/pods") {
        Ok(response) => response
            .json()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} {} {}", p["containerID"], p["ifName"], p["ipv4"]))
            .collect(),
        // ipamd stopped: its allocations are not in question.
        Err(_) => BTreeSet::new(),
    };
    PodState {
        veths,
        routes,
        rules,
        allocations,
    }
}

/// The pod address in an ADD result.
pub fn result_ip(output: &PluginOutput) -> Ipv4Addr {
    assert!(output.success(), "{output}");
    let json = output.json();
    let ips = json["ips"].as_array().unwrap();
    let address = ips.last().unwrap()["address"].as_str().unwrap();
    address.split('/').next().unwrap().parse().unwrap()
}

/// `ip rule` lines naming the address.
pub fn rules_for(node: &TestNode, ip: Ipv4Addr) -> Vec<String> {
    lines(node, &["ip", "rule", "show"])
        .into_iter()
        .filter(|l| l.split_whitespace().any(|w| w == ip.to_string()))
        .collect()
}

/// Waits until the node is back to `baseline`: after DEL the runtime deletes the pod's namespace, and the
/// kernel destroys the veth pair in its (asynchronous) namespace cleanup.
pub fn settle(node: &TestNode, baseline: &PodState) {
    let mut last = None;
    let settled = node.wait_until(
        "the node to be back to its baseline",
        std::time::Duration::from_secs(30),
        || {
            let state = pod_state(node);
            let same = &state == baseline;
            last = Some(state);
            same
        },
    );
    assert!(settled.is_ok(), "left behind: {last:#?}\nbaseline: {baseline:#?}");
}
