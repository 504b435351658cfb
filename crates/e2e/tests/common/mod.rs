//! Helpers the runtime end-to-end tests share: what a lab node's ipamd and routing say about a pod address.

#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vpcni_lab::spec::INTROSPECTION;
use vpcni_lab::{Lab, LabGuard, LabSpec, NodeRecord, PodRecord};

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

/// A two-node lab for a runtime test: a pod on node-2 to reach, node-1's record, and a plugin directory
/// `<node-1>/<test_dir>/cni-bin` with `vpcni` and `loopback` (which runtimes run for every sandbox).
pub struct RuntimeLab {
    pub lab: LabGuard,
    pub peer: PodRecord,
    pub node: NodeRecord,
    pub dir: PathBuf,
    pub bin: PathBuf,
}

pub fn runtime_lab(suite: &str, test_dir: &str) -> RuntimeLab {
    let mut spec = LabSpec::isolated(suite);
    spec.nodes = 2;
    let mut lab = LabGuard::up(spec).unwrap();
    let peer = lab
        .add_pods("node-2", 1, Duration::from_secs(60))
        .unwrap()
        .remove(0);
    let node = lab.node("node-1").unwrap().clone();
    let dir = lab.paths().node_dir("node-1").join(test_dir);
    let bin = dir.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(lab.bin_dir().join("vpcni"), bin.join("vpcni")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/cni/loopback", bin.join("loopback")).unwrap();
    RuntimeLab {
        lab,
        peer,
        node,
        dir,
        bin,
    }
}
