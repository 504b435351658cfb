//! Helpers the runtime end-to-end tests share: what a lab node's ipamd and routing say about a pod address.

#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::time::{Duration, Instant};

use vpcni_lab::Lab;
use vpcni_lab::spec::INTROSPECTION;

/// Addresses a node's ipamd has given to pods, from its introspection.
pub fn allocated(lab: &Lab, node: &str) -> Vec<String> {
    let body = lab
        .http_get(
            node,
            &format!("http://{INTROSPECTION}/v1/pods"),
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
    let pods: serde_json::Value = serde_json::from_str(&body).unwrap();
    pods.as_array()
        .unwrap()
        .iter()
        .map(|p| p["ipv4"].as_str().unwrap().to_owned())
        .collect()
}

/// `ip rule` and `ip route` lines on a node that name the address.
pub fn wiring_of(lab: &Lab, node: &str, ip: &str) -> Vec<String> {
    let mut found = Vec::new();
    for argv in [["ip", "rule", "show"], ["ip", "route", "show"]] {
        let output = lab.output(node, &argv).unwrap();
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.split_whitespace().any(|w| w == ip))
                .map(str::to_owned),
        );
    }
    found
}

/// Waits up to a minute for `condition`, polling; fails the test naming `what` when it never holds.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
