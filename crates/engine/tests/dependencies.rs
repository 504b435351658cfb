//! The engine is pure logic: the daemon, the lab and the planner all run it, so it must never pull in a
//! runtime, a network stack or the AWS SDK, directly or through another crate. This test asks Cargo for the
//! resolved dependency graph (`cargo metadata`), so a forbidden crate is caught however deep it comes in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::process::Command;

use serde_json::Value;

/// Crates that do I/O, or exist to: async runtimes, sockets, HTTP and gRPC, netlink, the AWS SDK, and our
/// own crates that talk to EC2, the kernel or ipamd. A name matches if it is one of these or starts with one
/// followed by `-`.
const FORBIDDEN: [&str; 18] = [
    "tokio",
    "mio",
    "socket2",
    "hyper",
    "h2",
    "tower",
    "tonic",
    "axum",
    "reqwest",
    "rtnetlink",
    "netlink",
    "nix",
    "aws",
    "vpcni-ec2",
    "vpcni-dataplane",
    "vpcni-rpc",
    "vpcni-ipamd",
    "vpcni-cni",
];

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc runs");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// Names of every package the engine needs at run time on this platform (normal dependencies, followed
/// transitively). Offline: the build already fetched everything this platform needs.
fn engine_runtime_dependencies() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple(), "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let engine = names
        .iter()
        .find(|(_, name)| **name == "vpcni-engine")
        .map(|(id, _)| *id)
        .expect("vpcni-engine in the workspace");

    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut queue = VecDeque::from([engine]);
    while let Some(id) = queue.pop_front() {
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            // Dev- and build-dependencies never reach the engine's code at run time.
            let normal = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|kind| kind["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(dep_id) {
                queue.push_back(dep_id);
            }
        }
    }
    seen.into_iter().map(|id| names[id].to_owned()).collect()
}

fn is_forbidden(name: &str) -> bool {
    FORBIDDEN
        .iter()
        .any(|f| name == *f || name.strip_prefix(f).is_some_and(|rest| rest.starts_with('-')))
}

#[test]
fn engine_depends_on_nothing_that_does_io() {
    let dependencies = engine_runtime_dependencies();
    // The walk really is transitive: csv comes only through vpcni-limits.
    for expected in ["vpcni-limits", "vpcni-layout", "serde", "csv"] {
        assert!(
            dependencies.contains(expected),
            "{expected} missing from {dependencies:?}"
        );
    }
    let forbidden: Vec<&String> = dependencies.iter().filter(|name| is_forbidden(name)).collect();
    assert!(
        forbidden.is_empty(),
        "vpcni-engine must not depend on {forbidden:?} (all it depends on: {dependencies:?})"
    );
}

#[test]
fn the_forbidden_list_matches_whole_names() {
    assert!(is_forbidden("tokio"));
    assert!(is_forbidden("tokio-util"));
    assert!(is_forbidden("aws-sdk-ec2"));
    assert!(is_forbidden("netlink-packet-route"));
    assert!(!is_forbidden("nixpkgs-fmt"));
    assert!(!is_forbidden("towers"));
    assert!(!is_forbidden("serde"));
}
