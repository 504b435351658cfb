//! The plugin's input: the `CNI_*` environment and the network configuration on stdin, as the container
//! runtime (or anyone who can run the root-owned plugin) gives them.
//!
//! Input: environment lines `KEY=VALUE` (a line `KEY` alone unsets it), a NUL byte, then stdin. The lines
//! change a kubelet ADD's environment, so both halves get past validation often enough to reach what the
//! verbs derive from them.
//!
//! Checks: bad input is a CNI error with the spec's code for it (4 for the environment, naming the
//! variable; 1, 6 or 7 for the configuration), and its JSON error result parses; whatever is accepted is
//! within the documented set; a `prevResult` read back from what we would print is the same result; what
//! DEL and CHECK derive from it (address, route table, veth name, record path) is computed without a panic.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vpcni_cni::spec::{CniError, CniResult, ErrorCode, Invocation, SUPPORTED_VERSIONS, Version, read_config};
use vpcni_dataplane::naming::host_veth_name;

fn kubelet_add() -> BTreeMap<String, String> {
    [
        ("CNI_COMMAND", "ADD"),
        (
            "CNI_CONTAINERID",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=abc",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The error result as a runtime reads it: valid JSON carrying the code.
fn check_error_json(error: &CniError, version: &str) {
    let json: Value = serde_json::from_str(&error.to_json(version)).expect("error result is JSON");
    assert_eq!(json["code"].as_u64(), Some(u64::from(error.code.code())));
    assert_eq!(json["cniVersion"].as_str(), Some(version));
    assert!(json["msg"].is_string());
}

fn token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn clean_absolute(path: &str) -> bool {
    path.starts_with('/') && !path.contains('\0') && !path.split('/').any(|p| p == "..")
}

fn check_invocation(invocation: &Invocation) {
    use vpcni_cni::spec::Command;
    if !matches!(invocation.command, Command::Add | Command::Del | Command::Check) {
        return;
    }
    let id = &invocation.container_id;
    assert!(
        token(id, 256) && id.as_bytes()[0].is_ascii_alphanumeric(),
        "{id:?}"
    );
    let ifname = &invocation.ifname;
    assert!(!ifname.is_empty() && ifname.len() <= 15, "{ifname:?}");
    assert!(
        ifname
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':'),
        "{ifname:?}"
    );
    assert!(ifname != "." && ifname != "..");
    match &invocation.netns {
        Some(netns) => assert!(clean_absolute(netns), "{netns:?}"),
        None => assert_eq!(invocation.command, Command::Del),
    }
    let args = &invocation.args;
    assert!(token(&args.pod_namespace, 63), "{:?}", args.pod_namespace);
    assert!(token(&args.pod_name, 256), "{:?}", args.pod_name);
}

fn check_prev_result(result: &CniResult, ifname: &str) {
    // What we would print, read back: the same result (1.1.0 keeps every field we read).
    let printed = result.to_json("1.1.0", Version::V1_1);
    let reread = CniResult::from_value(&printed).expect("our own result reads back");
    assert_eq!(&reread, result);
    // Older shapes read back too (they only lose the interface MTU).
    for version in [Version::V0_3, Version::V0_4, Version::V1_0] {
        let reread = CniResult::from_value(&result.to_json("0.4.0", version)).expect("reads back");
        assert_eq!(reread.ips, result.ips);
        assert_eq!(reread.routes, result.routes);
    }
    // What DEL and CHECK take from it.
    let _ = result.pod_address(ifname);
    if let Some(table) = result.legacy_route_table(ifname) {
        assert_ne!(table, 0, "table 0 is no route table");
    }
}

fuzz_target!(|data: &[u8]| {
    let (env_part, stdin) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (&[][..], data),
    };
    let mut env = kubelet_add();
    for line in String::from_utf8_lossy(env_part).split('\n') {
        match line.split_once('=') {
            Some((key, value)) => env.insert(key.to_owned(), value.to_owned()),
            None => env.remove(line),
        };
    }

    let invocation = Invocation::from_env(|name| env.get(name).cloned());
    match &invocation {
        Ok(invocation) => check_invocation(invocation),
        Err(error) => {
            assert_eq!(error.code, ErrorCode::InvalidEnvironment, "{error}");
            assert!(error.msg.contains("CNI_"), "the variable is named: {error}");
            check_error_json(error, "1.1.0");
        }
    }

    let config = read_config(stdin);
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            assert!(
                matches!(
                    error.code,
                    ErrorCode::IncompatibleVersion | ErrorCode::DecodeFailure | ErrorCode::InvalidConfig
                ),
                "{error}"
            );
            check_error_json(&error, "1.1.0");
            return;
        }
    };
    assert!(SUPPORTED_VERSIONS.contains(&config.cni_version.as_str()));
    assert_eq!(Version::parse(&config.cni_version).ok(), Some(config.version));
    assert!(token(&config.name, 253), "{:?}", config.name);
    let prefix = &config.veth_prefix;
    assert!(
        (1..=4).contains(&prefix.len()) && !matches!(prefix.as_str(), "eth" | "lo" | "vlan"),
        "{prefix:?}"
    );
    assert!((576..=9001).contains(&config.mtu));
    assert!(matches!(
        config.pod_sg_enforcing_mode.as_str(),
        "strict" | "standard"
    ));
    assert!(config.plugin_log_file == "stderr" || clean_absolute(&config.plugin_log_file));
    assert!(matches!(
        config.plugin_log_level.as_str(),
        "trace" | "debug" | "info" | "warn" | "error"
    ));
    assert!(clean_absolute(&config.ipamd_socket), "{:?}", config.ipamd_socket);
    assert!(clean_absolute(&config.state_dir), "{:?}", config.state_dir);
    for attachment in config.valid_attachments.iter().flatten() {
        assert!(token(&attachment.container_id, 256));
        assert!(!attachment.ifname.is_empty() && attachment.ifname.len() <= 15);
    }
    let ifname = invocation.as_ref().map_or("eth0", |i| i.ifname.as_str());
    if let Some(prev) = &config.prev_result {
        check_prev_result(prev, ifname);
    }
    check_error_json(&CniError::new(ErrorCode::Internal, "x", "y"), &config.cni_version);

    if let Ok(invocation) = &invocation {
        // The host veth the verbs name: a Linux interface name (at most 15 bytes).
        let veth = host_veth_name(
            &config.veth_prefix,
            &invocation.args.pod_namespace,
            &invocation.args.pod_name,
        );
        assert!(veth.len() <= 15, "{veth:?}");
        let _ = vpcni_cni::record::path(&config, &invocation.container_id, &invocation.ifname);
    }
});
