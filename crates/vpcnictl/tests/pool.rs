//! Runs the real `vpcnictl pool` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::process::{Command, Output};

fn vpcnictl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .args(args)
        .output()
        .expect("vpcnictl runs")
}

fn forecast(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["pool", "--output", "json"];
    all.extend_from_slice(args);
    let output = vpcnictl(&all);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stderr)))
}

fn counts(value: &serde_json::Value) -> (u64, u64, u64, u64, u64) {
    let n = |k: &str| value[k].as_u64().unwrap();
    (
        n("enis"),
        n("total_ips"),
        n("assigned_ips"),
        n("available_ips"),
        n("prefixes"),
    )
}

#[test]
fn defaults_are_the_originals() {
    assert_eq!(
        counts(&forecast(&["--instance-type", "m5.xlarge"])),
        (1, 14, 0, 14, 0)
    );
    assert_eq!(
        counts(&forecast(&["--instance-type", "m5.xlarge", "--pods", "1"])),
        (2, 28, 1, 27, 0)
    );
    assert_eq!(
        counts(&forecast(&["--instance-type", "m5.xlarge", "--pods", "14"])),
        (2, 28, 14, 14, 0)
    );
    assert_eq!(
        counts(&forecast(&["--instance-type", "m5.xlarge", "--pods", "15"])),
        (3, 42, 15, 27, 0)
    );
}

#[test]
fn warm_ip_and_minimum_targets() {
    let value = forecast(&[
        "--instance-type",
        "m5.xlarge",
        "--pods",
        "3",
        "--warm-ip-target",
        "5",
    ]);
    assert_eq!(counts(&value), (1, 8, 3, 5, 0));
    let value = forecast(&[
        "--instance-type",
        "m5.xlarge",
        "--minimum-ip-target",
        "10",
        "--warm-ip-target",
        "2",
    ]);
    assert_eq!(counts(&value), (1, 10, 0, 10, 0));
}

#[test]
fn prefix_delegation_and_its_fallback() {
    let value = forecast(&[
        "--instance-type",
        "m5.large",
        "--pods",
        "30",
        "--prefix-delegation",
    ]);
    assert_eq!(value["mode"], "prefix-delegation");
    assert_eq!(counts(&value), (1, 48, 30, 18, 3));
    let value = forecast(&[
        "--instance-type",
        "m5.large",
        "--pods",
        "30",
        "--prefix-delegation",
        "--warm-prefix-target",
        "2",
    ]);
    assert_eq!(value["prefixes"], 4);
    let xen = forecast(&[
        "--instance-type",
        "m4.large",
        "--pods",
        "3",
        "--prefix-delegation",
    ]);
    assert_eq!(xen["mode"], "secondary-ip");
    assert!(xen["notes"].to_string().contains("Nitro"));
}

#[test]
fn max_eni_custom_networking_and_the_max_pods_wall() {
    let value = forecast(&[
        "--instance-type",
        "m5.xlarge",
        "--pods",
        "10",
        "--custom-networking",
    ]);
    assert_eq!(value["per_eni"][0]["total"], 0, "nothing on the primary ENI");
    let output = vpcnictl(&[
        "pool",
        "--instance-type",
        "m5.xlarge",
        "--pods",
        "40",
        "--max-eni",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("pod 29 of 40 got no address: node address limit reached: MAX_ENI=2"),
        "{text}"
    );
    let value = forecast(&["--instance-type", "t3.medium", "--pods", "20"]);
    assert_eq!(value["pods_placed"], 15);
    assert_eq!(value["refused"]["reason"], "NODE_MAX_PODS");
}

#[test]
fn text_says_what_idle_addresses_mean_and_trace_lists_decisions() {
    let output = vpcnictl(&["pool", "--instance-type", "m5.xlarge", "--pods", "20", "--trace"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with(
            "m5.xlarge with 20 pods (secondary-ip): 3 ENIs, 42 addresses held, 20 in use, 22 idle"
        ),
        "{text}"
    );
    assert!(text.contains("meaning: 22 of 42 addresses (52%) sit idle"));
    assert!(text.contains("\"action\":\"create_eni\""), "{text}");
    let value = forecast(&["--instance-type", "m5.xlarge", "--pods", "20", "--trace"]);
    let actions: Vec<&str> = value["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["decision"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["add_ips", "create_eni", "create_eni"]);
}

#[test]
fn bad_input_is_a_usage_error() {
    let output = vpcnictl(&["pool", "--instance-type", "m5.xlargee"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown instance type 'm5.xlargee'"));
    for args in [
        vec!["pool"],
        vec!["pool", "--instance-type", "m5.xlarge", "--pods", "-1"],
        vec!["pool", "--instance-type", "m5.xlarge", "--max-eni", "0"],
    ] {
        assert_eq!(vpcnictl(&args).status.code(), Some(2), "{args:?}");
    }
}
