use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |key| map.get(key).cloned()
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn add_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", ID),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-abc;K8S_POD_INFRA_CONTAINER_ID=abc",
        ),
    ];
    for (key, value) in extra {
        pairs.retain(|(k, _)| k != key);
        pairs.push((key, value));
    }
    pairs
}

#[test]
fn a_kubelet_add_is_read() {
    let invocation = Invocation::from_env(env(&add_env(&[]))).unwrap();
    assert_eq!(invocation.command, Command::Add);
    assert_eq!(invocation.args.pod_namespace, "kube-system");
    assert_eq!(invocation.args.pod_name, "coredns-abc");
    assert_eq!(invocation.netns.as_deref(), Some("/var/run/netns/cni-1234"));
}

#[test]
fn runtimes_that_send_less_get_defaults() {
    // podman: only K8S_POD_NAME.
    let podman =
        Invocation::from_env(env(&add_env(&[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web")]))).unwrap();
    assert_eq!(
        (podman.args.pod_namespace.as_str(), podman.args.pod_name.as_str()),
        ("default", "web")
    );
    // Nothing at all: the container id stands in for the name, so veth names never collide.
    let bare = Invocation::from_env(env(&add_env(&[("CNI_ARGS", "")]))).unwrap();
    assert_eq!(bare.args.pod_name, ID);
    assert_eq!(bare.args.infra_container_id, ID);
}

#[test]
fn del_may_come_without_a_netns_but_add_may_not() {
    let del = Invocation::from_env(env(&add_env(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "")]))).unwrap();
    assert_eq!(del.netns, None);
    let err = Invocation::from_env(env(&add_env(&[("CNI_NETNS", "")]))).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidEnvironment);
    assert!(err.msg.contains("CNI_NETNS"));
}

#[test]
fn version_status_and_gc_need_no_container() {
    for command in ["VERSION", "STATUS", "GC"] {
        assert!(
            Invocation::from_env(env(&[("CNI_COMMAND", command)])).is_ok(),
            "{command}"
        );
    }
}

#[test]
fn bad_environment_is_code_4_with_the_variable_named() {
    let long_ifname = "x".repeat(16);
    let long_id = "a".repeat(300);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (add_env(&[("CNI_COMMAND", "")]), "CNI_COMMAND"),
        (add_env(&[("CNI_COMMAND", "add")]), "CNI_COMMAND"),
        (add_env(&[("CNI_COMMAND", "DESTROY")]), "CNI_COMMAND"),
        (add_env(&[("CNI_CONTAINERID", "")]), "CNI_CONTAINERID"),
        (
            add_env(&[("CNI_CONTAINERID", "-leading-dash")]),
            "CNI_CONTAINERID",
        ),
        (add_env(&[("CNI_CONTAINERID", "abc;rm -rf /")]), "CNI_CONTAINERID"),
        (add_env(&[("CNI_CONTAINERID", &long_id)]), "CNI_CONTAINERID"),
        (add_env(&[("CNI_IFNAME", "")]), "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", &long_ifname)]), "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "eth/0")]), "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "eth 0")]), "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "..")]), "CNI_IFNAME"),
        (add_env(&[("CNI_IFNAME", "ethé")]), "CNI_IFNAME"),
        (add_env(&[("CNI_NETNS", "relative/path")]), "CNI_NETNS"),
        (
            add_env(&[("CNI_NETNS", "/var/run/netns/../../etc/passwd")]),
            "CNI_NETNS",
        ),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAME")]), "CNI_ARGS"),
        (
            add_env(&[("CNI_ARGS", "K8S_POD_NAME=a;K8S_POD_NAME=b")]),
            "CNI_ARGS",
        ),
        (add_env(&[("CNI_ARGS", "FOO=bar")]), "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "IgnoreUnknown=maybe")]), "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAME=../../etc")]), "CNI_ARGS"),
        (add_env(&[("CNI_ARGS", "K8S_POD_NAMESPACE=a b")]), "CNI_ARGS"),
        (
            add_env(&[("CNI_ARGS", "K8S_POD_INFRA_CONTAINER_ID=$(reboot)")]),
            "CNI_ARGS",
        ),
    ];
    for (pairs, variable) in cases {
        let err = Invocation::from_env(env(&pairs)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironment, "{pairs:?}");
        assert!(err.msg.contains(variable), "{pairs:?}: {}", err.msg);
    }
    let huge = format!("K8S_POD_NAME={}", "a".repeat(10_000));
    let err = Invocation::from_env(env(&add_env(&[("CNI_ARGS", &huge)]))).unwrap_err();
    assert!(err.msg.contains("too long") && err.msg.len() < 100, "{}", err.msg);
}

#[test]
fn a_full_configuration_is_read() {
    let conf = NetConf::parse(
        br#"{"cniVersion":"1.1.0","name":"vpcni","type":"vpcni","vethPrefix":"eni","mtu":"9001",
            "podSGEnforcingMode":"standard","pluginLogFile":"/var/log/vpcni/plugin.log","pluginLogLevel":"Info",
            "ipamdSocket":"/run/vpcni/ipamd.sock","runtimeConfig":{"portMappings":[]}}"#,
    )
    .unwrap();
    assert_eq!(conf.version, Version::V1_1);
    assert_eq!((conf.mtu, conf.plugin_log_level.as_str()), (9001, "info"));
    assert_eq!(conf.ipamd_socket, "/run/vpcni/ipamd.sock");
    assert_eq!(conf.state_dir, "/run/vpcni/cni", "next to ipamd's socket");
    let minimal = NetConf::parse(br#"{"cniVersion":"0.4.0","name":"aws-cni","type":"vpcni"}"#).unwrap();
    assert_eq!((minimal.veth_prefix.as_str(), minimal.mtu), ("eni", 9001));
    assert_eq!(minimal.state_dir, "/var/run/vpcni/cni");
    let explicit =
        NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"vpcni","stateDir":"/run/x"}"#).unwrap();
    assert_eq!(explicit.state_dir, "/run/x");
    assert_eq!(minimal.version, Version::V0_4);
}

#[test]
fn bad_configurations_get_the_right_code() {
    let cases: &[(&str, ErrorCode, &str)] = &[
        ("", ErrorCode::DecodeFailure, "not valid JSON"),
        ("{", ErrorCode::DecodeFailure, "not valid JSON"),
        (
            r#"{"cniVersion":"1.0.0","name":"n""#,
            ErrorCode::DecodeFailure,
            "not valid JSON",
        ),
        ("[1,2]", ErrorCode::DecodeFailure, "not a JSON object"),
        ("null", ErrorCode::DecodeFailure, "not a JSON object"),
        (
            r#"{"name":"n"}"#,
            ErrorCode::InvalidConfig,
            "cniVersion is missing",
        ),
        (
            r#"{"cniVersion":1,"name":"n"}"#,
            ErrorCode::InvalidConfig,
            "cniVersion must be a string",
        ),
        (
            r#"{"cniVersion":"2.0.0","name":"n"}"#,
            ErrorCode::IncompatibleVersion,
            "unsupported CNI version",
        ),
        (
            r#"{"cniVersion":"0.2.0","name":"n"}"#,
            ErrorCode::IncompatibleVersion,
            "unsupported CNI version",
        ),
        (
            r#"{"cniVersion":"1.0.0"}"#,
            ErrorCode::InvalidConfig,
            "name is missing",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":""}"#,
            ErrorCode::InvalidConfig,
            "network name",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"a/b"}"#,
            ErrorCode::InvalidConfig,
            "network name",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","stateDir":"run/x"}"#,
            ErrorCode::InvalidConfig,
            "stateDir",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","stateDir":"/run/../etc"}"#,
            ErrorCode::InvalidConfig,
            "stateDir",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","mtu":"abc"}"#,
            ErrorCode::InvalidConfig,
            "mtu",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","mtu":100}"#,
            ErrorCode::InvalidConfig,
            "mtu",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","mtu":9002}"#,
            ErrorCode::InvalidConfig,
            "mtu",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","mtu":[1]}"#,
            ErrorCode::InvalidConfig,
            "mtu must be",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","vethPrefix":"eth"}"#,
            ErrorCode::InvalidConfig,
            "vethPrefix",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","vethPrefix":"toolong"}"#,
            ErrorCode::InvalidConfig,
            "vethPrefix",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","vethPrefix":5}"#,
            ErrorCode::InvalidConfig,
            "vethPrefix must be a string",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","podSGEnforcingMode":"lax"}"#,
            ErrorCode::InvalidConfig,
            "podSGEnforcingMode",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","pluginLogFile":"stdout"}"#,
            ErrorCode::InvalidConfig,
            "stdout",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","pluginLogFile":"../x"}"#,
            ErrorCode::InvalidConfig,
            "pluginLogFile",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","pluginLogLevel":"loud"}"#,
            ErrorCode::InvalidConfig,
            "pluginLogLevel",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipamdSocket":"sock"}"#,
            ErrorCode::InvalidConfig,
            "ipamdSocket",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":3}"#,
            ErrorCode::InvalidConfig,
            "runtimeConfig",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"nonsense"}]}}"#,
            ErrorCode::DecodeFailure,
            "prevResult",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"interfaces":"x"}}"#,
            ErrorCode::DecodeFailure,
            "prevResult",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a"}]}"#,
            ErrorCode::InvalidConfig,
            "valid-attachments",
        ),
        (
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":{}}"#,
            ErrorCode::InvalidConfig,
            "valid-attachments",
        ),
    ];
    for (input, code, needle) in cases {
        let err = NetConf::parse(input.as_bytes()).unwrap_err();
        assert_eq!(err.code, *code, "{input}: {err}");
        assert!(err.msg.contains(needle), "{input}: {}", err.msg);
    }
}

#[test]
fn oversized_stdin_is_refused_without_reading_it_all() {
    let big = vec![b' '; config::MAX_CONFIG_BYTES + 10];
    let err = read_config(big.as_slice()).unwrap_err();
    assert_eq!(err.code, ErrorCode::DecodeFailure);
    assert!(err.msg.contains("too large"));
}

#[test]
fn results_take_the_shape_of_the_requested_version() {
    let result = CniResult {
        interfaces: vec![
            Interface {
                name: "enia1b2c3d4e5f".into(),
                mac: "02:00:00:00:00:01".into(),
                sandbox: None,
                mtu: Some(9001),
            },
            Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:02".into(),
                sandbox: Some("/var/run/netns/x".into()),
                mtu: Some(9001),
            },
        ],
        ips: vec![IpConfig {
            address: "10.0.1.5/32".parse().unwrap(),
            gateway: None,
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some("169.254.1.1".parse().unwrap()),
        }],
    };
    let old = result.to_json("0.4.0", Version::V0_4);
    assert_eq!(old["ips"][0]["version"], "4");
    assert_eq!(old["cniVersion"], "0.4.0");
    let new = result.to_json("1.1.0", Version::V1_1);
    assert!(new["ips"][0].get("version").is_none());
    assert!(new["interfaces"][0].get("sandbox").is_none());
    // `mtu` on interfaces exists from 1.1.0 on.
    assert!(old["interfaces"][1].get("mtu").is_none());
    assert_eq!(new["interfaces"][1]["mtu"], 9001);
    // A result reads back as itself, whatever its version (less what the version cannot say).
    assert_eq!(CniResult::from_value(&new).unwrap(), result);
    let mut without_mtu = result.clone();
    for interface in &mut without_mtu.interfaces {
        interface.mtu = None;
    }
    assert_eq!(CniResult::from_value(&old).unwrap(), without_mtu);
}

#[test]
fn a_chained_result_keeps_everything_the_previous_plugin_said() {
    let prev = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{ "name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/x" }],
        "ips": [{ "interface": 0, "address": "127.0.0.1/8" }, { "interface": 0, "address": "::1/128" }],
        "dns": { "nameservers": ["10.0.0.2"] },
        "vendorField": 7,
    });
    let ours = CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: "02:00:00:00:00:02".into(),
            sandbox: Some("/var/run/netns/x".into()),
            mtu: None,
        }],
        ips: vec![IpConfig {
            address: "10.0.1.5/32".parse().unwrap(),
            gateway: None,
            interface: Some(0),
        }],
        routes: Vec::new(),
    };
    let merged = ours.appended_to(Some(&prev), "1.1.0", Version::V1_1);
    assert_eq!(merged["cniVersion"], "1.1.0");
    assert_eq!(merged["interfaces"][0]["name"], "lo");
    assert_eq!(merged["interfaces"][1]["name"], "eth0");
    assert_eq!(
        merged["ips"][1]["address"], "::1/128",
        "IPv6 entries pass through"
    );
    assert_eq!(merged["ips"][2]["interface"], 1, "our index shifts past lo");
    assert_eq!(merged["dns"]["nameservers"][0], "10.0.0.2");
    assert_eq!(merged["vendorField"], 7);
    // Without a previous result, ours alone.
    assert_eq!(
        ours.appended_to(None, "1.0.0", Version::V1_0),
        ours.to_json("1.0.0", Version::V1_0)
    );
}

#[test]
fn errors_and_versions_print_as_the_spec_says() {
    let err = CniError::new(
        ErrorCode::TryAgainLater,
        "node max pods reached (17)",
        "ipamd: NODE_MAX_PODS",
    );
    let value: serde_json::Value = serde_json::from_str(&err.to_json("1.0.0")).unwrap();
    assert_eq!(value["code"], 11);
    assert_eq!(value["msg"], "node max pods reached (17)");
    assert_eq!(value["details"], "ipamd: NODE_MAX_PODS");
    let version: serde_json::Value = serde_json::from_str(&version_reply("1.1.0")).unwrap();
    assert_eq!(
        version["supportedVersions"].as_array().unwrap().len(),
        SUPPORTED_VERSIONS.len()
    );
}

/// A record interface (`dummy…`) of an old `prevResult` names the ENI's device number in `sandbox`. Seen
/// while writing the cni_input fuzzer's checks: a device number of 4294967295 overflowed the table
/// arithmetic (device + 1), and 252 gave the kernel's table 253. Numbers the node layout does not number
/// give no table (CHECK then skips the ENI rule comparison).
#[test]
fn a_record_interface_with_a_device_number_out_of_range_gives_no_table() {
    let result = |device: &str| {
        CniResult::from_value(&serde_json::json!({
            "interfaces": [
                { "name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/x" },
                { "name": "dummy5bd4b1c4e3d", "mac": "0", "sandbox": device },
            ],
            "ips": [{ "address": "10.0.1.5/32", "interface": 0 }],
        }))
        .unwrap()
    };
    assert_eq!(result("2").legacy_route_table("eth0"), Some(3));
    assert_eq!(result("0").legacy_route_table("eth0"), Some(254));
    assert_eq!(result("252").legacy_route_table("eth0"), None);
    assert_eq!(result("4294967295").legacy_route_table("eth0"), None);
}

/// An IPv6 pod's result in every version vpcni answers: the /128 on the pod's interface with fe80::1 as its
/// gateway and `::/0` via fe80::1; `"version": "6"` before 1.0.0 and no `version` from 1.0.0 on. Each reads
/// back as itself.
#[test]
fn ipv6_results_in_every_version() {
    let result = CniResult {
        interfaces: vec![
            Interface {
                name: "enia1b2c3d4e5f".into(),
                mac: "02:00:00:00:00:01".into(),
                sandbox: None,
                mtu: None,
            },
            Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:02".into(),
                sandbox: Some("/var/run/netns/x".into()),
                mtu: None,
            },
        ],
        ips: vec![IpConfig {
            address: "2600:1f14:abc:de00:1f2e::5/128".parse().unwrap(),
            gateway: Some("fe80::1".parse().unwrap()),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: "::/0".parse().unwrap(),
            gw: Some("fe80::1".parse().unwrap()),
        }],
    };
    for text in SUPPORTED_VERSIONS {
        let version = Version::parse(text).unwrap();
        let json = result.to_json(text, version);
        let ip = &json["ips"][0];
        assert_eq!(ip["address"], "2600:1f14:abc:de00:1f2e::5/128", "{text}");
        assert_eq!(ip["gateway"], "fe80::1", "{text}");
        assert_eq!(ip["interface"], 1, "{text}");
        if text.starts_with("0.") {
            assert_eq!(ip["version"], "6", "{text}");
        } else {
            assert!(ip.get("version").is_none(), "{text}: {json}");
        }
        assert_eq!(json["routes"][0]["dst"], "::/0", "{text}");
        assert_eq!(json["routes"][0]["gw"], "fe80::1", "{text}");
        let back = CniResult::from_value(&json).unwrap();
        assert_eq!(back, result, "{text}");
        assert_eq!(
            back.pod_address("eth0"),
            Some("2600:1f14:abc:de00:1f2e::5".parse().unwrap())
        );
    }
}

/// A prevResult whose IPv6 entries do not parse is refused with the field named, never taken for a result
/// without them (DEL and CHECK would then act on the wrong address, or none).
#[test]
fn an_ipv6_prev_result_that_does_not_parse_is_refused_with_the_field_named() {
    let config = |prev: serde_json::Value| {
        serde_json::json!({ "cniVersion": "1.0.0", "name": "vpcni", "prevResult": prev }).to_string()
    };
    let cases = [
        (
            serde_json::json!({ "ips": [{ "address": "2600:1f14::zz/128" }] }),
            "ips[0].address \"2600:1f14::zz/128\" is not an IPv6 address in CIDR notation",
        ),
        (
            serde_json::json!({ "ips": [{ "address": "2600:1f14::5/129" }] }),
            "ips[0].address",
        ),
        (
            serde_json::json!({ "ips": [{ "address": "2600:1f14::5" }] }),
            "ips[0].address",
        ),
        (
            serde_json::json!({ "ips": [{ "address": "2600:1f14::5/128", "gateway": "fe80::zz" }] }),
            "ips[0].gateway",
        ),
        (
            serde_json::json!({ "ips": [{ "address": "2600:1f14::5/128", "gateway": "169.254.1.1" }] }),
            "ips[0].gateway 169.254.1.1 is not of the family of 2600:1f14::5/128",
        ),
        (
            serde_json::json!({ "ips": [{ "version": "4", "address": "2600:1f14::5/128" }] }),
            "ips[0].version \"4\" does not match",
        ),
        (
            serde_json::json!({ "ips": [], "routes": [{ "dst": "::/0", "gw": "10.0.0.1" }] }),
            "routes[0].gw",
        ),
        (
            serde_json::json!({ "ips": [], "routes": [{ "dst": "::/x" }] }),
            "routes[0].dst",
        ),
    ];
    for (prev, needle) in cases {
        let err = NetConf::parse(config(prev.clone()).as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::DecodeFailure, "{prev}: {err}");
        assert_eq!(err.msg, "prevResult is not a CNI result", "{prev}");
        assert!(err.details.contains(needle), "{prev}: {:?}", err.details);
    }
    // A good IPv6 prevResult gives the pod's address on eth0, not the first address of another interface.
    let config = NetConf::parse(
        config(serde_json::json!({
            "interfaces": [
                { "name": "enia1b2c3d4e5f", "mac": "02:00:00:00:00:01" },
                { "name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/x" },
                { "name": "v4if0", "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/x" },
            ],
            "ips": [
                { "address": "169.254.172.9/22", "interface": 2 },
                { "address": "2600:1f14::5/128", "gateway": "fe80::1", "interface": 1 },
            ],
        }))
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        config.prev_result.unwrap().pod_address("eth0"),
        Some("2600:1f14::5".parse().unwrap())
    );
}
