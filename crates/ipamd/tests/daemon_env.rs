//! Bad environment values stop the real binary before it touches anything: exit code 64 and exactly one
//! line per bad variable naming it, its value and what is accepted. One case per family of variables.
//! Every run here points EC2 and instance metadata at a closed loopback port, so even a configuration that
//! passed could reach nothing but this machine's loopback. Values the original accepts start the daemon:
//! see `documented_values_start_the_daemon`, on a testbed node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Nothing listens on the discard port of loopback: a daemon that got past its configuration would fail
/// to reach EC2 or instance metadata here rather than anywhere else.
const NOWHERE: &str = "http://127.0.0.1:9";

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vpcni-ipamd"))
        .env_clear()
        .env("VPCNI_EC2_BACKEND", "aws")
        .env("AWS_EC2_ENDPOINT", NOWHERE)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", NOWHERE)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn refused(env: &[(&str, &str)], line: &str) {
    let (code, stderr) = run(env);
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr, format!("vpcni-ipamd: {line}\n"));
}

#[test]
fn pool_sizes() {
    refused(
        &[("MAX_ENI", "three")],
        r#"MAX_ENI="three" is not valid: expected a whole number: 1 or more caps the node's ENIs, 0 or less means the instance's limit"#,
    );
    refused(
        &[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "0")],
        r#"WARM_PREFIX_TARGET="0" is not valid: expected at least 1 with ENABLE_PREFIX_DELEGATION=true, unless WARM_IP_TARGET or MINIMUM_IP_TARGET is set"#,
    );
}

#[test]
fn booleans() {
    refused(
        &[("ENABLE_PREFIX_DELEGATION", "yes")],
        r#"ENABLE_PREFIX_DELEGATION="yes" is not valid: expected true or false"#,
    );
}

/// The bad IPv6 inputs, each a start-up error naming its variables (a non-Nitro type, known only once the
/// daemon reads instance metadata, is in `daemon_ipv6.rs`).
#[test]
fn address_families() {
    // Both families.
    refused(
        &[("ENABLE_IPv6", "true")],
        r#"ENABLE_IPv4="true" is not valid: expected false with ENABLE_IPv6=true: exactly one of ENABLE_IPv4 and ENABLE_IPv6 is true (dual-stack pods are not supported, as in the original)"#,
    );
    // Neither.
    refused(
        &[("ENABLE_IPv4", "false")],
        r#"ENABLE_IPv4="false" is not valid: expected true, or ENABLE_IPv6=true: exactly one of ENABLE_IPv4 and ENABLE_IPv6 is true (dual-stack pods are not supported, as in the original)"#,
    );
    // IPv6 without prefix delegation.
    refused(
        &[("ENABLE_IPv4", "false"), ("ENABLE_IPv6", "true")],
        r#"ENABLE_PREFIX_DELEGATION="false" is not valid: expected true with ENABLE_IPv6=true: IPv6 pods take their addresses from a /80 prefix on the primary ENI"#,
    );
    // Custom networking together with IPv6.
    refused(
        &[
            ("ENABLE_IPv4", "false"),
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ],
        r#"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG="true" is not valid: expected false with ENABLE_IPv6=true: IPv6 pods use the node's own /80, not an ENIConfig's subnet (the original refuses the pair too)"#,
    );
    // IPv6 needs 1280 bytes on every link.
    refused(
        &[
            ("ENABLE_IPv4", "false"),
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("AWS_VPC_ENI_MTU", "1000"),
        ],
        r#"AWS_VPC_ENI_MTU="1000" is not valid: expected a whole number from 1280 to 9001"#,
    );
}

#[test]
fn snat() {
    refused(
        &[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "always")],
        r#"AWS_VPC_K8S_CNI_RANDOMIZESNAT="always" is not valid: expected one of prng, hashrandom, none"#,
    );
    refused(
        &[("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.0.0.0/8,banana")],
        r#"AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS="10.0.0.0/8,banana" is not valid: expected comma-separated IPv4 CIDRs such as 10.1.0.0/16 ("banana" is not one)"#,
    );
}

#[test]
fn mtu_and_veth_prefix() {
    refused(
        &[("AWS_VPC_ENI_MTU", "9002")],
        r#"AWS_VPC_ENI_MTU="9002" is not valid: expected a whole number from 576 to 9001"#,
    );
    refused(
        &[("AWS_VPC_K8S_CNI_VETHPREFIX", "vlan")],
        r#"AWS_VPC_K8S_CNI_VETHPREFIX="vlan" is not valid: expected 1 to 4 letters, digits, '_' or '-', and not eth, lo or vlan"#,
    );
}

#[test]
fn listeners_and_paths() {
    refused(
        &[("INTROSPECTION_BIND_ADDRESS", "localhost")],
        r#"INTROSPECTION_BIND_ADDRESS="localhost" is not valid: expected HOST:PORT such as 127.0.0.1:61679, :PORT, or unix:/absolute/path"#,
    );
    refused(
        &[("AWS_VPC_K8S_CNI_BACKING_STORE", "ipam.json")],
        r#"AWS_VPC_K8S_CNI_BACKING_STORE="ipam.json" is not valid: expected an absolute path without '..'"#,
    );
}

#[test]
fn tags_and_cluster() {
    refused(
        &[("ADDITIONAL_ENI_TAGS", r#"{"node.k8s.amazonaws.com/x":"y""#)],
        r#"ADDITIONAL_ENI_TAGS="{\"node.k8s.amazonaws.com/x\":\"y\"" is not valid: expected a JSON object of string tags, e.g. {"team":"net"}, keys of 1 to 128 characters"#,
    );
}

#[test]
fn logging() {
    refused(
        &[("AWS_VPC_K8S_CNI_LOG_FILE", "ipamd.log")],
        r#"AWS_VPC_K8S_CNI_LOG_FILE="ipamd.log" is not valid: expected stdout, stderr or an absolute path"#,
    );
}

#[test]
fn vpcni_timers() {
    refused(
        &[("VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS", "0")],
        r#"VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS="0" is not valid: expected a whole number from 100 to 86400000"#,
    );
    refused(
        &[("VPCNI_ENI_LINK_TIMEOUT_MS", "soon")],
        r#"VPCNI_ENI_LINK_TIMEOUT_MS="soon" is not valid: expected a whole number from 100 to 600000"#,
    );
}

#[test]
fn ec2_backend() {
    refused(
        &[("VPCNI_EC2_BACKEND", "sim")],
        r#"VPCNI_EC2_BACKEND="sim" is not valid: expected aws (EC2 and instance metadata through the AWS SDK; point AWS_EC2_ENDPOINT and AWS_EC2_METADATA_SERVICE_ENDPOINT at `vpcnictl sim serve` to run without AWS)"#,
    );
}

#[test]
fn every_bad_variable_is_named_at_once() {
    let (code, stderr) = run(&[
        ("MAX_ENI", "x"),
        ("AWS_VPC_ENI_MTU", "1"),
        ("DISABLE_METRICS", "nah"),
        ("VPCNI_EC2_BACKEND", ""),
    ]);
    assert_eq!(code, Some(64));
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    for name in [
        "MAX_ENI",
        "AWS_VPC_ENI_MTU",
        "DISABLE_METRICS",
        "VPCNI_EC2_BACKEND",
    ] {
        assert!(stderr.contains(&format!("vpcni-ipamd: {name}=")), "{stderr}");
    }
}

/// Values the original documents as valid start the real daemon and keep their meaning: `MAX_ENI=0` is
/// the instance's limit, `AWS_VPC_K8S_CNI_LOGLEVEL=FATAL` a level (errors only here).
#[test]
fn documented_values_start_the_daemon() {
    let node = vpcni_testbed::TestNode::builder()
        .ipamd_env("MAX_ENI", "0")
        .ipamd_env("AWS_VPC_K8S_CNI_LOGLEVEL", "FATAL")
        .start()
        .unwrap();
    node.wait_for_addresses(1).unwrap();
    let reply = node.ipamd_add("max-eni-zero").unwrap();
    assert!(reply.success, "{reply:?}");
    // m5.large (the testbed's default type) takes 3 ENIs (EC2's documented limit for the type).
    let metrics = node.metrics().unwrap().body;
    assert!(
        metrics.lines().any(|line| line == "awscni_eni_max 3"),
        "{metrics}"
    );
    let log = node.ipamd_log();
    assert!(
        !log.contains("INFO") && !log.contains("DEBUG"),
        "FATAL logs errors only:\n{log}"
    );
}
