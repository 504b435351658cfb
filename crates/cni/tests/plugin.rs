//! The real `vpcni` binary, called the way a container runtime calls it: a bad-input corpus, version
//! negotiation, and the verbs that must work while ipamd is down.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Environment overrides, the expected CNI error code, and a word the message must contain.
type EnvCase<'a> = (Vec<(&'a str, &'a str)>, u64, &'a str);

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

/// The error result on stdout: its code and message.
fn error_of(output: &Output) -> (u64, String) {
    assert!(
        !output.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stdout is not a CNI error result ({e}): {text}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        value["code"].as_u64().unwrap(),
        value["msg"].as_str().unwrap().to_owned(),
    )
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
fn bad_input_corpus() {
    let long_ifname = "x".repeat(16);
    let long_id = "a".repeat(300);
    let huge_args = format!("K8S_POD_NAME={}", "a".repeat(10_000));
    let good = conf("");
    let env_cases: Vec<EnvCase> = vec![
        (vec![], 4, "CNI_COMMAND"),
        (add_env(&[("CNI_COMMAND", "")]), 4, "CNI_COMMAND"),
        (add_env(&[("CNI_COMMAND", "add")]), 4, "CNI_COMMAND"),
        (add_env(&[("CNI_COMMAND", "DESTROY")]), 4, "CNI_COMMAND"),
        (add_env(&[("CNI_CONTAINERID", "")]), 4, "CNI_CONTAINERID"),
        (add_env(&[("CNI_CONTAINERID", "-x")]), 4, "CNI_CONTAINERID"),
        (add_env(&[("CNI_CONTAINERID", "a;reboot")]), 4, "CNI_CONTAINERID"),
        (add_env(&[("CNI_CONTAINERID", &long_id)]), 4, "CNI_CONTAINERID"),
        (add_env(&[("CNI_IFNAME", "")]), 4, "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", &long_ifname)]), 4, "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "eth/0")]), 4, "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "eth 0")]), 4, "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "..")]), 4, "CNI_IFNAME"),
        (add_env(&[("CNI_NETNS", "")]), 4, "CNI_NETNS"),
        (add_env(&[("CNI_NETNS", "netns/relative")]), 4, "CNI_NETNS"),
        (
            add_env(&[("CNI_NETNS", "/var/run/netns/../../etc/shadow")]),
            4,
            "CNI_NETNS",
        ),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAME")]), 4, "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "FOO=bar")]), 4, "CNI_ARGS"),
        (
            add_env(&[("CNI_ARGS", "K8S_POD_NAME=a;K8S_POD_NAME=b")]),
            4,
            "CNI_ARGS",
        ),
        (add_env(&[("CNI_ARGS", "IgnoreUnknown=sometimes")]), 4, "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAME=$(id)")]), 4, "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAMESPACE=a b")]), 4, "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAME=../../x")]), 4, "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", &huge_args)]), 4, "CNI_ARGS"),
    ];
    for (env, code, needle) in &env_cases {
        let (got, msg) = error_of(&run(env, good.as_bytes()));
        assert_eq!(got, *code, "{env:?}: {msg}");
        assert!(msg.contains(needle), "{env:?}: {msg}");
        assert!(msg.len() < 200, "one line, bounded: {msg}");
    }

    let config_cases: Vec<(String, u64, &str)> = vec![
        (String::new(), 6, "not valid JSON"),
        ("{".into(), 6, "not valid JSON"),
        ("[]".into(), 6, "not a JSON object"),
        ("\u{0}\u{1}binary".into(), 6, "not valid JSON"),
        (r#"{"name":"n"}"#.into(), 7, "cniVersion"),
        (
            r#"{"cniVersion":"9.9.9","name":"n"}"#.into(),
            1,
            "unsupported CNI version",
        ),
        (
            r#"{"cniVersion":1.0,"name":"n"}"#.into(),
            7,
            "cniVersion must be a string",
        ),
        (r#"{"cniVersion":"1.0.0"}"#.into(), 7, "name is missing"),
        (
            r#"{"cniVersion":"1.0.0","name":"bad/name"}"#.into(),
            7,
            "network name",
        ),
        (conf(r#","mtu":"huge""#), 7, "mtu"),
        (conf(r#","mtu":70000"#), 7, "mtu"),
        (conf(r#","vethPrefix":"eth""#), 7, "vethPrefix"),
        (conf(r#","vethPrefix":"waytoolong""#), 7, "vethPrefix"),
        (conf(r#","podSGEnforcingMode":"lax""#), 7, "podSGEnforcingMode"),
        (conf(r#","pluginLogLevel":"shout""#), 7, "pluginLogLevel"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","pluginLogFile":"stdout"}"#.into(),
            7,
            "stdout",
        ),
        (conf(r#","ipamdSocket":"relative.sock""#), 7, "ipamdSocket"),
        (
            conf(r#","prevResult":{"ips":[{"address":"garbage"}]}"#),
            6,
            "prevResult",
        ),
        (conf(r#","runtimeConfig":[1]"#), 7, "runtimeConfig"),
    ];
    for (config, code, needle) in &config_cases {
        let (got, msg) = error_of(&run(&add_env(&[]), config.as_bytes()));
        assert_eq!(got, *code, "{config}: {msg}");
        assert!(msg.contains(needle), "{config}: {msg}");
    }

    // Oversized stdin: refused without reading it all.
    let huge = vec![b' '; 2 << 20];
    let (code, msg) = error_of(&run(&add_env(&[]), &huge));
    assert_eq!((code, msg.contains("too large")), (6, true), "{msg}");

    // ADD while ipamd is down: try again later, saying where ipamd was expected.
    let (code, msg) = error_of(&run(&add_env(&[]), good.as_bytes()));
    assert_eq!(code, 11);
    assert!(
        msg.contains("ipamd is not reachable at /tmp/vpcni-test-no-ipamd/ipamd.sock"),
        "{msg}"
    );

    // Verbs a version does not have.
    let old = r#"{"cniVersion":"0.3.1","name":"n","ipamdSocket":"/tmp/none.sock","prevResult":{"ips":[{"version":"4","address":"10.0.0.5/32"}]}}"#;
    let (code, _) = error_of(&run(&add_env(&[("CNI_COMMAND", "CHECK")]), old.as_bytes()));
    assert_eq!(code, 1);
    let (code, msg) = error_of(&run(&[("CNI_COMMAND", "GC")], conf("").as_bytes()));
    assert_eq!((code, msg.contains("valid-attachments")), (7, true));
    let (code, msg) = error_of(&run(&[("CNI_COMMAND", "STATUS")], conf("").as_bytes()));
    assert_eq!(
        (code, msg.contains("ipamd is not reachable")),
        (50, true),
        "{msg}"
    );

    assert!(
        env_cases.len() + config_cases.len() + 5 >= 40,
        "the corpus has at least 40 cases"
    );
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
    // An error for a 0.4.0 configuration carries that version.
    let old = r#"{"cniVersion":"0.4.0","name":"n","ipamdSocket":"/tmp/none.sock","pluginLogFile":"stderr"}"#;
    let output = run(&add_env(&[]), old.as_bytes());
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["cniVersion"], "0.4.0");
    assert_eq!(value["code"], 11);
}
