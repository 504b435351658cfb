//! `vpcnictl lab` as a user runs it: up, status (text and the JSON contract), pods past max pods, exec,
//! del, down twice, and the errors that say what to do. Needs root and the workspace's binaries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

struct Cli {
    state: PathBuf,
    prefix: String,
    _dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            state: dir.path().join("lab"),
            prefix: format!("vt-lab-{}-cli-", std::process::id()),
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
            .arg("lab")
            .arg("--state")
            .arg(&self.state)
            .args(["--prefix", &self.prefix])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn up_status_pods_exec_and_down_as_a_user_runs_them() {
    let cli = Cli::new();
    let up = cli.run(&[
        "up",
        "--nodes",
        "1",
        "--instance-type",
        "t3.micro",
        "--env",
        "VPCNI_POOL_INTERVAL_MS=300",
    ]);
    assert!(up.status.success(), "{}{}", text(&up.stdout), text(&up.stderr));
    let out = text(&up.stdout);
    assert!(
        out.contains("try next") && out.contains("vpcnictl lab demo"),
        "{out}"
    );

    let again = cli.run(&["up"]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    // The advice names this lab's flags, so it can be pasted as is.
    let down = format!(
        "vpcnictl lab --state {} --prefix {} down",
        cli.state.display(),
        cli.prefix
    );
    assert!(err.contains("already up") && err.contains(&down), "{err}");

    // t3.micro: 2 pods get addresses, the third meets max pods and the command says why.
    let pods = cli.run(&["pods", "add", "--node", "1", "--count", "3"]);
    assert_eq!(pods.status.code(), Some(1), "{}", text(&pods.stdout));
    assert!(text(&pods.stdout).contains("pod-1") && text(&pods.stdout).contains("pod-2"));
    let err = text(&pods.stderr);
    assert!(
        err.contains("pod-3 on node-1") && err.contains("NODE_MAX_PODS"),
        "{err}"
    );

    let status = cli.run(&["status", "--output", "json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let json: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(keys(&json), set(&["nodes", "pods", "internet", "vpc_cidrs"]));
    let node = &json["nodes"][0];
    assert_eq!(
        keys(node),
        set(&[
            "name",
            "netns",
            "instance_id",
            "instance_type",
            "primary_ip",
            "public_ip",
            "ipamd_socket",
            "introspection",
            "enis",
            "eni_config"
        ])
    );
    assert_eq!(
        node["eni_config"],
        Value::Null,
        "no custom networking in this lab"
    );
    assert_eq!(node["netns"], format!("{}node-1", cli.prefix));
    assert_eq!(node["introspection"], "127.0.0.1:61679");
    assert_eq!(
        keys(&node["enis"][0]),
        set(&[
            "id",
            "device_number",
            "ips",
            "prefixes",
            "subnet_id",
            "subnet_cidr"
        ])
    );
    assert_eq!(node["enis"][0]["subnet_cidr"], "10.0.0.0/24");
    assert_eq!(json["pods"].as_array().unwrap().len(), 2);
    let pod = &json["pods"][0];
    assert_eq!(
        keys(pod),
        set(&["name", "netns", "node", "ip", "eni", "device_number"])
    );
    assert_eq!(
        json["internet"],
        serde_json::json!({"ip": "203.0.113.10", "port": 80})
    );
    assert_eq!(json["vpc_cidrs"], serde_json::json!(["10.0.0.0/16"]));

    let table = text(&cli.run(&["status"]).stdout);
    assert!(
        table.contains("NAME") && table.contains("NODE") && table.contains("FREE"),
        "{table}"
    );

    let ip = pod["ip"].as_str().unwrap();
    let shown = cli.run(&["exec", "pod-1", "--", "ip", "-4", "-o", "address", "show", "eth0"]);
    assert!(
        text(&shown.stdout).contains(&format!("{ip}/32")),
        "{}",
        text(&shown.stdout)
    );
    assert_eq!(cli.run(&["exec", "pod-1", "--", "false"]).status.code(), Some(1));
    let unknown = cli.run(&["exec", "pod-9", "--", "true"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("known: router, internet, node-1, pod-1, pod-2"),
        "{}",
        text(&unknown.stderr)
    );

    assert!(cli.run(&["pods", "del", "pod-1"]).status.success());
    let down = cli.run(&["down"]);
    assert!(text(&down.stdout).contains("lab down:"), "{}", text(&down.stdout));
    assert!(text(&cli.run(&["down"]).stdout).contains("no lab to remove"));
    let gone = cli.run(&["status"]);
    assert!(
        text(&gone.stderr).contains("vpcnictl lab up"),
        "{}",
        text(&gone.stderr)
    );
}

#[test]
fn bad_requests_say_what_to_do_and_create_nothing() {
    let cli = Cli::new();
    for (args, expected) in [
        (vec!["up", "--subnet", "10.1.0.0/24"], "not inside the VPC"),
        (
            vec!["up", "--env", "AWS_EC2_ENDPOINT=http://x"],
            "the lab sets this variable itself",
        ),
        (vec!["up", "--instance-type", "m5.huge"], "m5.huge"),
        (vec!["up", "--nodes", "0"], "1 to 50 nodes"),
        (vec!["up", "--env", "warm=1"], "upper-case variable name"),
        (
            vec!["up", "--custom-networking"],
            "one --pod-subnet per node subnet",
        ),
        (
            vec!["up", "--custom-networking", "--pod-subnet", "100.64.0.0/24"],
            "add its range with --secondary-cidr",
        ),
        (
            vec!["up", "--custom-networking", "--pod-subnet", "10.0.0.128/25"],
            "overlaps subnet 10.0.0.0/24",
        ),
        (
            vec![
                "up",
                "--custom-networking",
                "--secondary-cidr",
                "10.0.128.0/17",
                "--pod-subnet",
                "10.0.200.0/24",
            ],
            "overlaps the VPC's 10.0.0.0/16",
        ),
        (vec!["up", "--pod-subnet", "100.64.0.0/24"], "--custom-networking"),
        (
            vec!["up", "--ipv6", "--instance-type", "t2.medium"],
            "Nitro (or bare-metal) instance type",
        ),
        (
            vec!["up", "--env", "ENABLE_IPv6=true"],
            "the lab sets this variable itself (use --ipv6",
        ),
        (
            vec![
                "up",
                "--ipv6",
                "--custom-networking",
                "--pod-subnet",
                "10.0.1.0/24",
            ],
            "--ipv6 and --custom-networking cannot be combined",
        ),
        (vec!["soak", "--ipv6"], "the soak runs IPv4 labs only"),
    ] {
        let output = cli.run(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(expected),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    let missing = cli.run(&["up", "--bin-dir", "/nonexistent"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("cargo build --workspace --bins"),
        "{}",
        text(&missing.stderr)
    );
    assert!(
        !cli.state.exists(),
        "a refused `lab up` created {}",
        cli.state.display()
    );
    assert!(vpcni_lab_namespaces(&cli.prefix).is_empty());
}

fn vpcni_lab_namespaces(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
