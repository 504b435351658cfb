//! The bad-input corpus, against a live node: every case is an ADD (or CHECK, GC, STATUS) a runtime or an
//! attacker could send, with everything else valid (a real pod namespace, the node's ipamd socket), so a
//! plugin that wrongly went ahead would wire something. Each must fail with the spec's code, a clear
//! one-line message, no panic, and leave no link, route, rule or allocation behind. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use common::pod_state;
use vpcni_testbed::{PluginCall, PluginOutput, TestNode};

/// A variable to set, or to leave out (`None`).
type Env = Vec<(&'static str, Option<String>)>;

struct Case {
    env: Env,
    stdin: Vec<u8>,
    code: u64,
    needle: &'static str,
}

fn set(name: &'static str, value: impl Into<String>) -> Env {
    vec![(name, Some(value.into()))]
}

fn unset(name: &'static str) -> Env {
    vec![(name, None)]
}

fn assert_refused(case: &Case, output: &PluginOutput) {
    let what = format!(
        "{:?} / {}",
        case.env,
        String::from_utf8_lossy(&case.stdin[..case.stdin.len().min(120)])
    );
    assert!(!output.success(), "{what}: succeeded: {output}");
    assert!(!output.stderr.contains("panicked"), "{what}: {output}");
    assert_eq!(
        output.stdout.trim().lines().count(),
        1,
        "{what}: one JSON line: {output}"
    );
    let json = output.json();
    assert_eq!(json["code"].as_u64(), Some(case.code), "{what}: {output}");
    let msg = output.error_msg();
    assert!(
        msg.contains(case.needle),
        "{what}: {msg:?} should mention {:?}",
        case.needle
    );
    assert!(
        !msg.contains('\n') && msg.len() < 200,
        "{what}: one bounded line: {msg:?}"
    );
    assert_eq!(
        output.status.code(),
        Some(i32::try_from(case.code).unwrap()),
        "{what}: exit code = error code"
    );
}

fn env_cases() -> Vec<(Env, u64, &'static str)> {
    let mut cases = vec![
        (unset("CNI_COMMAND"), 4, "CNI_COMMAND"),
        (set("CNI_COMMAND", ""), 4, "CNI_COMMAND"),
        (set("CNI_COMMAND", "add"), 4, "CNI_COMMAND"),
        (set("CNI_COMMAND", "DESTROY"), 4, "CNI_COMMAND"),
        (set("CNI_COMMAND", "ADD\n"), 4, "CNI_COMMAND"),
        (unset("CNI_CONTAINERID"), 4, "CNI_CONTAINERID"),
        (set("CNI_CONTAINERID", ""), 4, "CNI_CONTAINERID"),
        (set("CNI_CONTAINERID", "-x"), 4, "CNI_CONTAINERID"),
        (set("CNI_CONTAINERID", "a;reboot"), 4, "CNI_CONTAINERID"),
        (set("CNI_CONTAINERID", "a".repeat(300)), 4, "CNI_CONTAINERID"),
        (set("CNI_CONTAINERID", "ctr-é"), 4, "CNI_CONTAINERID"),
        (unset("CNI_IFNAME"), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", ""), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", "x".repeat(16)), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", "eth/0"), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", "eth 0"), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", ".."), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", "eth0\n"), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", "éth0"), 4, "CNI_IFNAME"),
        (set("CNI_IFNAME", "eth:0"), 4, "CNI_IFNAME"),
        (unset("CNI_NETNS"), 4, "CNI_NETNS"),
        (set("CNI_NETNS", ""), 4, "CNI_NETNS"),
        (set("CNI_NETNS", "netns/relative"), 4, "CNI_NETNS"),
        (
            set("CNI_NETNS", "/var/run/netns/../../etc/shadow"),
            4,
            "CNI_NETNS",
        ),
        (
            set("CNI_NETNS", "/var/run/netns/vt-tb-no-such-pod"),
            3,
            "does not exist",
        ),
        (set("CNI_NETNS", "/etc/hostname"), 4, "not a network namespace"),
        (set("CNI_NETNS", "/var/run/netns"), 4, "not a network namespace"),
        (set("CNI_ARGS", "K8S_POD_NAME"), 4, "CNI_ARGS"),
        (set("CNI_ARGS", "FOO=bar"), 4, "unknown key"),
        (set("CNI_ARGS", "K8S_POD_NAME=a;K8S_POD_NAME=b"), 4, "repeats"),
        (set("CNI_ARGS", "IgnoreUnknown=sometimes"), 4, "IgnoreUnknown"),
        (set("CNI_ARGS", "K8S_POD_NAME=$(id)"), 4, "K8S_POD_NAME"),
        (set("CNI_ARGS", "K8S_POD_NAMESPACE=a b"), 4, "K8S_POD_NAMESPACE"),
        (set("CNI_ARGS", "K8S_POD_NAME=../../x"), 4, "K8S_POD_NAME"),
        (set("CNI_ARGS", "K8S_POD_NAME=a\nb"), 4, "K8S_POD_NAME"),
        (
            set("CNI_ARGS", "K8S_POD_INFRA_CONTAINER_ID=-bad"),
            4,
            "K8S_POD_INFRA_CONTAINER_ID",
        ),
        (set("CNI_ARGS", "K8S_POD_UID="), 4, "K8S_POD_UID"),
        (
            set("CNI_ARGS", format!("K8S_POD_NAME={}", "a".repeat(10_000))),
            4,
            "too long",
        ),
    ];
    // Spec-shaped garbage in every CNI_* variable at once still names the first bad one.
    cases.push((
        vec![
            ("CNI_COMMAND", Some("ADD".into())),
            ("CNI_CONTAINERID", Some("\u{7f}".into())),
        ],
        4,
        "CNI_CONTAINERID",
    ));
    cases
}

fn config_cases(good: &serde_json::Value) -> Vec<(Vec<u8>, u64, &'static str)> {
    let with = |key: &str, value: serde_json::Value| {
        let mut config = good.clone();
        config[key] = value;
        config.to_string().into_bytes()
    };
    let without = |key: &str| {
        let mut config = good.clone();
        config.as_object_mut().unwrap().remove(key);
        config.to_string().into_bytes()
    };
    let text = good.to_string();
    let mut nested = "[".repeat(10_000);
    nested.push_str(&"]".repeat(10_000));
    vec![
        (Vec::new(), 6, "not valid JSON"),
        (b"{".to_vec(), 6, "not valid JSON"),
        (text.as_bytes()[..text.len() / 2].to_vec(), 6, "not valid JSON"),
        (format!("{text} trailing").into_bytes(), 6, "not valid JSON"),
        (b"[]".to_vec(), 6, "not a JSON object"),
        (b"\x00\x01binary".to_vec(), 6, "not valid JSON"),
        (
            b"{\"cniVersion\":\"1.0.0\",\"name\":\"\xff\xfe\"}".to_vec(),
            6,
            "not valid JSON",
        ),
        (nested.into_bytes(), 6, "not valid JSON"),
        (vec![b' '; 2 << 20], 6, "too large"),
        (without("cniVersion"), 7, "cniVersion is missing"),
        (with("cniVersion", "9.9.9".into()), 1, "unsupported CNI version"),
        (with("cniVersion", "0.2.0".into()), 1, "unsupported CNI version"),
        (with("cniVersion", "1.2.0".into()), 1, "unsupported CNI version"),
        (with("cniVersion", 1.0.into()), 7, "cniVersion must be a string"),
        (without("name"), 7, "name is missing"),
        (with("name", "bad/name".into()), 7, "network name"),
        (with("name", 5.into()), 7, "name must be a string"),
        (with("mtu", "huge".into()), 7, "mtu"),
        (with("mtu", 70_000.into()), 7, "mtu"),
        (with("mtu", true.into()), 7, "mtu must be"),
        (with("vethPrefix", "eth".into()), 7, "vethPrefix"),
        (with("vethPrefix", "waytoolong".into()), 7, "vethPrefix"),
        (with("podSGEnforcingMode", "lax".into()), 7, "podSGEnforcingMode"),
        (with("pluginLogLevel", "shout".into()), 7, "pluginLogLevel"),
        (with("pluginLogFile", "stdout".into()), 7, "stdout"),
        (
            with("pluginLogFile", "logs/plugin.log".into()),
            7,
            "pluginLogFile",
        ),
        (with("ipamdSocket", "relative.sock".into()), 7, "ipamdSocket"),
        (
            with("ipamdSocket", serde_json::json!([])),
            7,
            "ipamdSocket must be a string",
        ),
        (
            with("prevResult", serde_json::json!({"ips": [{"address": "garbage"}]})),
            6,
            "prevResult",
        ),
        (with("prevResult", "x".into()), 6, "prevResult"),
        // IPv6 entries are read, not skipped: one that does not parse is refused like an IPv4 one.
        (
            with(
                "prevResult",
                serde_json::json!({"ips": [{"address": "2600:1f14::zz/128", "gateway": "fe80::1"}]}),
            ),
            6,
            "prevResult",
        ),
        (
            with(
                "prevResult",
                serde_json::json!({"ips": [{"address": "2600:1f14::5/128", "gateway": "169.254.1.1"}]}),
            ),
            6,
            "prevResult",
        ),
        (with("runtimeConfig", serde_json::json!([1])), 7, "runtimeConfig"),
    ]
}

#[test]
fn bad_input_is_refused_with_the_right_code_and_leaves_nothing_behind() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    let good = node.cni_config_value("1.0.0");
    let pod = node.pod_netns("corpus").unwrap();
    let baseline = pod_state(&node);
    let base = PluginCall::add(&pod, "corpus", &good.to_string());

    let mut cases: Vec<Case> = env_cases()
        .into_iter()
        .map(|(env, code, needle)| Case {
            env,
            stdin: good.to_string().into_bytes(),
            code,
            needle,
        })
        .collect();
    cases.extend(config_cases(&good).into_iter().map(|(stdin, code, needle)| Case {
        env: Vec::new(),
        stdin,
        code,
        needle,
    }));
    // Verbs a version lacks, or without what they need.
    let mut old = good.clone();
    old["cniVersion"] = "0.3.1".into();
    old["prevResult"] = serde_json::json!({"ips": [{"version": "4", "address": "10.0.0.5/32"}]});
    cases.push(Case {
        env: set("CNI_COMMAND", "CHECK"),
        stdin: old.to_string().into_bytes(),
        code: 1,
        needle: "CHECK needs cniVersion 0.4.0",
    });
    cases.push(Case {
        env: set("CNI_COMMAND", "CHECK"),
        stdin: good.to_string().into_bytes(),
        code: 7,
        needle: "prevResult",
    });
    cases.push(Case {
        env: set("CNI_COMMAND", "GC"),
        stdin: good.to_string().into_bytes(),
        code: 7,
        needle: "valid-attachments",
    });
    assert!(cases.len() >= 70, "{} cases", cases.len());

    for case in &cases {
        let mut call = base.clone().stdin(case.stdin.clone());
        call.env = case
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let output = node.plugin(&call).unwrap();
        assert_refused(case, &output);
        assert_eq!(pod_state(&node), baseline, "{:?} left something behind", case.env);
        let links = String::from_utf8(pod.exec(&["ip", "-o", "link"]).unwrap().stdout).unwrap();
        assert_eq!(links.lines().count(), 1, "only lo in the pod: {links}");
    }

    // ipamd down: ADD says try again later and where ipamd was expected; STATUS says not available.
    node.stop_ipamd().unwrap();
    let socket = node.socket_path().display().to_string();
    let down = Case {
        env: Vec::new(),
        stdin: Vec::new(),
        code: 11,
        needle: "ipamd is not reachable at",
    };
    let output = node.plugin(&base).unwrap();
    assert_refused(&down, &output);
    assert!(output.error_msg().contains(&socket), "{output}");
    let status = node
        .plugin(&PluginCall::new("STATUS", None, "s", &good.to_string()))
        .unwrap();
    assert_refused(&Case { code: 50, ..down }, &status);
    assert_eq!(pod_state(&node), baseline);
}
