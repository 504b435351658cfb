//! The short soak the README's test command runs: three lab nodes, two thousand pod operations through the
//! real plugin, ipamd killed every hundred operations, a fifth of EC2 calls failing. It must end with not
//! one violation, and its report must show the storm really happened. Needs root and the workspace's
//! binaries next to vpcnictl (`cargo build --workspace`), as `scripts/test.sh` provides.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::process::Command;

#[test]
fn a_short_storm_leaves_nothing_wrong() {
    let output = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .args([
            "lab",
            "soak",
            "--nodes",
            "3",
            "--ops",
            "2000",
            "--kill-every",
            "100",
            "--ec2-fault-rate",
            "0.2",
            "--seed",
            "7",
            "--output",
            "json",
        ])
        .output()
        .expect("vpcnictl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    let violations = report["violations"].as_array().unwrap();
    assert!(
        violations.is_empty() && output.status.success(),
        "exit {:?}, violations:\n{}",
        output.status,
        serde_json::to_string_pretty(violations).unwrap()
    );
    for zero in [
        "double_assigned",
        "leaked_addresses",
        "leaked_enis",
        "stale_host_state",
        "pods_without_connectivity",
    ] {
        assert_eq!(report[zero], 0, "{zero}");
    }
    // The storm happened: operations, kills, injected faults, probes.
    let number = |key: &str| report[key].as_u64().unwrap();
    assert!(number("ops") >= 2000, "{report}");
    assert!(number("adds_ok") > 500 && number("dels_ok") > 500, "{report}");
    assert!(
        number("ipamd_restarts") >= 19,
        "a restart per hundred operations: {report}"
    );
    assert!(number("ipamd_sigkills") > 0, "{report}");
    assert!(number("ec2_faults_injected") > 0, "{report}");
    assert!(number("connectivity_checks") > 0, "{report}");
    assert!(number("bursts") > 0, "{report}");
    let ipamd = report["ipamd"].as_array().unwrap();
    assert_eq!(ipamd.len(), 3);
    for node in ipamd {
        assert!(node["rss_kib"].as_u64().unwrap() > 0 && node["open_fds"].as_u64().unwrap() > 0);
    }
}
