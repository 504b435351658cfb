//! Runs the real `vpcnictl plan` binary: JSON fields, --set, --compare, bad files, --from-node.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

const CLUSTER: &str = r#"[vpc]
cidrs = ["10.0.0.0/16"]
[[subnets]]
name = "a"
cidr = "10.0.0.0/20"
zone = "us-west-2a"
[[node_groups]]
name = "general"
instance_type = "m5.xlarge"
nodes = 10
subnets = ["a"]
[workload]
pods_per_node = 5
duration = "30m"
"#;

fn plan(file_text: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, file_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .arg("plan")
        .arg(&path)
        .args(args)
        .output()
        .expect("vpcnictl runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn json_has_the_fields_the_issue_lists() {
    let report = json(&plan(CLUSTER, &["--output", "json"]));
    let subnet = &report["subnets"][0];
    for field in [
        "name",
        "cidr",
        "usable",
        "used_peak",
        "used_end",
        "idle_peak",
        "whole_prefixes_free_end",
        "exhausted",
        "exhausted_at_s",
        "cause",
    ] {
        assert!(
            subnet.get(field).is_some(),
            "subnets[0].{field} missing: {subnet}"
        );
    }
    assert_eq!(subnet["used_end"], 300);
    for field in ["requested", "running_end", "pending_end", "wait_p99_s"] {
        assert!(report["pods"].get(field).is_some(), "pods.{field}");
        assert!(
            report["node_groups"][0]["pods"].get(field).is_some(),
            "node_groups[0].pods.{field}"
        );
    }
    for field in ["calls", "throttled"] {
        assert!(report["ec2"][field].is_u64(), "ec2.{field}");
        assert!(
            report["node_groups"][0]["ec2"][field].is_u64(),
            "node_groups[0].ec2.{field}"
        );
    }
    assert_eq!(report["node_groups"][0]["used_end"], 300);
}

#[test]
fn set_overrides_a_setting() {
    let report = json(&plan(CLUSTER, &["--output", "json", "--set", "WARM_IP_TARGET=2"]));
    assert_eq!(report["subnets"][0]["used_end"], 80);
    let refused = plan(CLUSTER, &["--set", "MAX_ENI=ten"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("MAX_ENI=\"ten\" is not valid"));
}

#[test]
fn compare_puts_variants_side_by_side_and_says_why() {
    let output = plan(
        CLUSTER,
        &[
            "--compare",
            "WARM_IP_TARGET=5,MINIMUM_IP_TARGET=10",
            "--compare",
            "ENABLE_PREFIX_DELEGATION=true",
        ],
    );
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("baseline  WARM_IP_TARGET=5,MINIMUM_IP_TARGET=10  ENABLE_PREFIX_DELEGATION=true"),
        "{text}"
    );
    assert!(
        text.contains("recommendation: WARM_IP_TARGET=5,MINIMUM_IP_TARGET=10: "),
        "{text}"
    );
    assert!(
        text.contains("addresses used at the peak instead of 300"),
        "{text}"
    );
    let value = json(&plan(
        CLUSTER,
        &["--output", "json", "--compare", "WARM_IP_TARGET=2"],
    ));
    assert_eq!(value["variants"][1]["report"]["subnets"][0]["used_end"], 80);
    assert!(
        value["recommendation"]
            .as_str()
            .unwrap()
            .starts_with("WARM_IP_TARGET=2")
    );
}

#[test]
fn a_bad_file_exits_2_with_the_line() {
    let output = plan(&CLUSTER.replace("m5.xlarge", "m5.xlargee"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cluster.toml: line 9: node group \"general\": unknown instance type"),
        "{stderr}"
    );
}

/// Recorded introspection of a node in the shapes ipamd serves (docs/ipamd.md, crates/ipamd/src/views.rs):
/// an m5.large with its primary ENI and one more, 12 pods.
fn recorded(path: &str) -> Option<&'static str> {
    Some(match path {
        "/v1/enis" => {
            r#"{"0":{"TotalIPs":18,"AssignedIPs":12,"ENIs":{
            "eni-0aaa":{"ID":"eni-0aaa","IsPrimary":true,"IsTrunk":false,"IsEFA":false,"DeviceNumber":0,
              "AvailableIPv4Cidrs":{"10.20.1.11/32":{"Cidr":"10.20.1.11/32","IPAddresses":{},"IsPrefix":false,"AddressFamily":"4"},
                                    "10.20.1.40/32":{"Cidr":"10.20.1.40/32","IPAddresses":{},"IsPrefix":false,"AddressFamily":"4"}},
              "IPv6Cidrs":{},"IsExcludedForPodIPs":false,"RouteTableID":254,"SubnetID":"subnet-0123"},
            "eni-0bbb":{"ID":"eni-0bbb","IsPrimary":false,"IsTrunk":false,"IsEFA":false,"DeviceNumber":1,
              "AvailableIPv4Cidrs":{"10.20.1.77/32":{"Cidr":"10.20.1.77/32","IPAddresses":{},"IsPrefix":false,"AddressFamily":"4"}},
              "IPv6Cidrs":{},"IsExcludedForPodIPs":false,"RouteTableID":2,"SubnetID":"subnet-0123"}}}}"#
        }
        "/v1/pool" => {
            r#"{"stats":{"total":18,"assigned":12,"available":6,"cooling":0,"total_prefixes":0,"free_prefixes":0,"enis":2},
            "enis":[],"limits":{"max_enis":3,"max_eni_configured":false,"unmanaged_enis":0,"reserve_trunk_slot":false,"slots_per_eni":9,"max_pods":29},
            "config":{"warm_eni_target":1,"warm_ip_target":6,"minimum_ip_target":0,"warm_prefix_target":0,"prefix_delegation":false,
              "ip_cooldown_ms":30000,"min_eni_lifetime_ms":60000,"release_interval_ms":30000,"grow_backoff_ms":120000},
            "belowTarget":false,"nextDecision":{"action":"nothing","why":"pool at target"},"recentDecisions":[]}"#
        }
        "/v1/ipamd-env-settings" => {
            r#"{"WARM_IP_TARGET":6,"WARM_ENI_TARGET":1,"MINIMUM_IP_TARGET":0,"WARM_PREFIX_TARGET":0,"ENABLE_PREFIX_DELEGATION":false,
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":false,"AWS_MANAGE_ENIS_NON_SCHEDULABLE":false,"ENABLE_SUBNET_DISCOVERY":true}"#
        }
        _ => return None,
    })
}

#[test]
fn from_node_turns_introspection_into_a_cluster_file_that_plans() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Serves until the test process ends (never joined: a client that stops early must not hang the test).
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            // The rest of the request, up to the blank line.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, body) = match recorded(&path) {
                Some(body) => ("200 OK", body.to_owned()),
                None => ("404 Not Found", "{}".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let output = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .args(["plan", "--from-node", &url, "--nodes", "4"])
        .output()
        .unwrap();
    let guessed = String::from_utf8_lossy(&output.stdout);
    assert!(guessed.contains("types have these limits, e.g."), "{guessed}");
    assert!(
        guessed.contains("m5.large") || guessed.contains("93 types"),
        "{guessed}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .args([
            "plan",
            "--from-node",
            &url,
            "--nodes",
            "4",
            "--instance-type",
            "m5.large",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = String::from_utf8(output.stdout).unwrap();
    assert!(file.contains("instance_type = \"m5.large\""), "{file}");
    assert!(file.contains("WARM_IP_TARGET = \"6\""), "{file}");
    assert!(file.contains("pods_per_node = 12"), "{file}");
    assert!(file.contains("cidr = \"10.20.1.0/24\""), "{file}");
    assert!(file.contains("nodes = 4"), "{file}");
    // The starting point plans as it is: per node 12 pods + 6 warm = 18 secondary addresses, 9 per ENI on
    // an m5.large, so two ENIs, each with its own primary address: 18 + 2 = 20.
    let report = json(&plan(&file, &["--output", "json"]));
    assert_eq!(report["subnets"][0]["used_end"], 4 * 20, "{file}");
    assert_eq!(report["pods"]["running_end"], 48);
}

#[test]
fn from_node_that_is_not_ipamd_is_an_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .args(["plan", "--from-node", "ftp://example"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not an http://HOST:PORT URL"));
}
