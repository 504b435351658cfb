//! The real `vpcni` binary, called the way a container runtime calls it, with no node around it: VERSION,
//! DEL without ipamd, and error results in the caller's version. The bad-input corpus runs against a live
//! node in `corpus.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::io::Write;
use std::process::{Command, Output, Stdio};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn conf(extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"vpcni","type":"vpcni","ipamdSocket":"/tmp/vpcni-test-no-ipamd/ipamd.sock","pluginLogFile":"stderr"{extra}}}"#
    )
}

fn run(env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plugin may refuse before reading everything; a broken pipe is then expected.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn add_env<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", ID),
        ("CNI_NETNS", "/var/run/netns/vpcni-test-none"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
    ];
    for (key, value) in overrides {
        env.retain(|(k, _)| k != key);
        env.push((key, value));
    }
    env
}

#[test]
fn version_lists_every_supported_version() {
    let output = run(&[("CNI_COMMAND", "VERSION")], b"{}");
    assert!(output.status.success());
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let versions: Vec<&str> = value["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
}

#[test]
fn del_succeeds_without_ipamd_and_without_a_netns_and_twice() {
    let prev = r#","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eni0000000000a","mac":"02:00:00:00:00:01"},{"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/var/run/netns/gone"}],"ips":[{"address":"10.0.0.77/32","interface":1}]}"#;
    for netns in ["", "/var/run/netns/vpcni-test-gone"] {
        for _ in 0..2 {
            let output = run(
                &add_env(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", netns)]),
                conf(prev).as_bytes(),
            );
            assert!(
                output.status.success(),
                "DEL failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(output.stdout.is_empty(), "DEL prints nothing on success");
        }
    }
}

#[test]
fn results_are_printed_in_the_requested_version_and_logs_never_go_to_stdout() {
    // VERSION with an old config still answers in full; no log line leaks to stdout.
    let output = run(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"0.4.0"}"#);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    // An error for a 0.4.0 configuration carries that version (here: the pod's namespace does not exist).
    let old = r#"{"cniVersion":"0.4.0","name":"n","ipamdSocket":"/tmp/none.sock","pluginLogFile":"stderr"}"#;
    let output = run(&add_env(&[]), old.as_bytes());
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["cniVersion"], "0.4.0");
    assert_eq!(value["code"], 3);
}
