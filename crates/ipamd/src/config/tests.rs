use std::collections::HashMap;

use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(move |key| map.get(key).cloned())
}

fn error(pairs: &[(&str, &str)]) -> String {
    load(pairs).unwrap_err().to_string()
}

#[test]
fn defaults_are_the_originals() {
    let config = load(&[]).unwrap();
    assert_eq!(config.pool.warm_eni_target, 1);
    assert_eq!(config.pool.warm_ip_target, 0);
    assert_eq!(config.pool.minimum_ip_target, 0);
    assert_eq!(config.pool.warm_prefix_target, 0);
    assert!(!config.pool.prefix_delegation);
    assert_eq!(config.pool.max_eni, None);
    assert_eq!(config.pool.ip_cooldown, Duration::from_secs(30));
    assert!(config.pool.subnet_discovery && config.pool.manage_untagged_eni);
    assert_eq!(config.network.connmark, 0x80);
    assert_eq!(config.network.randomize_snat, RandomizeSnat::Prng);
    assert_eq!((config.network.eni_mtu, config.network.pod_mtu), (9001, 9001));
    assert_eq!(config.network.veth_prefix, "eni");
    assert!(config.network.node_port_support && !config.network.external_snat);
    // Introspection on loopback only by default; metrics on every interface, as the original.
    assert_eq!(
        config.introspection,
        Some(ListenAddress::Tcp("127.0.0.1:61679".parse().unwrap()))
    );
    assert_eq!(
        config.metrics,
        Some(ListenAddress::Tcp("0.0.0.0:61678".parse().unwrap()))
    );
    assert_eq!(config.socket_path, PathBuf::from("/var/run/vpcni/ipamd.sock"));
    assert_eq!(config.backing_store, PathBuf::from("/var/run/vpcni/ipam.json"));
}

#[test]
fn manifest_values_are_read() {
    let config = load(&[
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("WARM_IP_TARGET", "5"),
        ("MINIMUM_IP_TARGET", "10"),
        ("MAX_ENI", "3"),
        ("IP_COOLDOWN_PERIOD", "0"),
        (
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
            "10.10.0.0/16, 192.168.0.0/24",
        ),
        ("AWS_VPC_K8S_CNI_CONNMARK", "0x100"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "hashrandom"),
        ("AWS_VPC_ENI_MTU", "1500"),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "pod"),
        ("DISABLE_INTROSPECTION", "1"),
        ("METRICS_BIND_ADDRESS", "127.0.0.1:9100"),
        ("ADDITIONAL_ENI_TAGS", r#"{"team":"net"}"#),
        ("MAX_ENI", "3"),
    ])
    .unwrap();
    assert_eq!(
        config.pool.warm_prefix_target, 1,
        "default 1 in prefix mode, as the manifest"
    );
    assert_eq!(
        (
            config.pool.warm_ip_target,
            config.pool.minimum_ip_target,
            config.pool.max_eni
        ),
        (5, 10, Some(3))
    );
    assert_eq!(config.pool.ip_cooldown, Duration::ZERO);
    assert_eq!(config.network.exclude_snat_cidrs.len(), 2);
    assert_eq!(config.network.connmark, 0x100);
    assert_eq!((config.network.eni_mtu, config.network.pod_mtu), (1500, 1500));
    assert_eq!(config.introspection, None);
    assert_eq!(
        config.additional_eni_tags,
        vec![("team".to_owned(), "net".to_owned())]
    );
    assert_eq!(load(&[("MAX_ENI", "-1")]).unwrap().pool.max_eni, None);
}

#[test]
fn pool_numbers() {
    assert_eq!(
        error(&[("WARM_IP_TARGET", "ten")]),
        r#"WARM_IP_TARGET="ten" is not valid: expected a whole number (0 or more)"#
    );
    assert_eq!(
        error(&[("WARM_ENI_TARGET", "-1")]),
        r#"WARM_ENI_TARGET="-1" is not valid: expected a whole number (0 or more)"#
    );
    assert_eq!(
        error(&[("MAX_ENI", "0")]),
        r#"MAX_ENI="0" is not valid: expected a whole number (1 or more), or -1 for no limit"#
    );
    assert_eq!(
        error(&[("IP_COOLDOWN_PERIOD", "1h")]),
        r#"IP_COOLDOWN_PERIOD="1h" is not valid: expected a whole number from 0 to 86400"#
    );
    assert_eq!(
        error(&[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "0")]),
        r#"WARM_PREFIX_TARGET="0" is not valid: expected at least 1 with ENABLE_PREFIX_DELEGATION=true, unless WARM_IP_TARGET or MINIMUM_IP_TARGET is set"#
    );
}

#[test]
fn booleans() {
    assert_eq!(
        error(&[("ENABLE_PREFIX_DELEGATION", "yes")]),
        r#"ENABLE_PREFIX_DELEGATION="yes" is not valid: expected true or false"#
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_EXTERNALSNAT", "enabled")]),
        r#"AWS_VPC_K8S_CNI_EXTERNALSNAT="enabled" is not valid: expected true or false"#
    );
    for spelling in ["1", "t", "T", "true", "TRUE", "True"] {
        assert!(
            load(&[("AWS_VPC_K8S_CNI_EXTERNALSNAT", spelling)])
                .unwrap()
                .network
                .external_snat,
            "{spelling}"
        );
    }
}

#[test]
fn address_families() {
    assert_eq!(
        error(&[("ENABLE_IPv6", "true")]),
        r#"ENABLE_IPv6="true" is not valid: expected false: vpcni serves IPv4 clusters only, for now"#
    );
}

#[test]
fn snat_settings() {
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.0.0.0/8,banana")]),
        r#"AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS="10.0.0.0/8,banana" is not valid: expected comma-separated IPv4 CIDRs such as 10.1.0.0/16 ("banana" is not one)"#
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "always")]),
        r#"AWS_VPC_K8S_CNI_RANDOMIZESNAT="always" is not valid: expected one of prng, hashrandom, none"#
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_CONNMARK", "0")]),
        r#"AWS_VPC_K8S_CNI_CONNMARK="0" is not valid: expected a non-zero 32-bit mark such as 0x80 or 128"#
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_CONNMARK", "0x1ffffffff")]),
        r#"AWS_VPC_K8S_CNI_CONNMARK="0x1ffffffff" is not valid: expected a non-zero 32-bit mark such as 0x80 or 128"#
    );
}

#[test]
fn mtu_and_veth_prefix() {
    assert_eq!(
        error(&[("AWS_VPC_ENI_MTU", "9002")]),
        r#"AWS_VPC_ENI_MTU="9002" is not valid: expected a whole number from 576 to 9001"#
    );
    assert_eq!(
        error(&[("POD_MTU", "100")]),
        r#"POD_MTU="100" is not valid: expected a whole number from 576 to 9001"#
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_VETHPREFIX", "eth")]),
        r#"AWS_VPC_K8S_CNI_VETHPREFIX="eth" is not valid: expected 1 to 4 letters, digits, '_' or '-', and not eth, lo or vlan"#
    );
}

#[test]
fn listeners_and_paths() {
    assert_eq!(
        error(&[("INTROSPECTION_BIND_ADDRESS", "localhost")]),
        r#"INTROSPECTION_BIND_ADDRESS="localhost" is not valid: expected HOST:PORT such as 127.0.0.1:61679, :PORT, or unix:/absolute/path"#
    );
    let unix = load(&[("INTROSPECTION_BIND_ADDRESS", "unix:/run/vpcni/introspect.sock")]).unwrap();
    assert_eq!(
        unix.introspection,
        Some(ListenAddress::Unix("/run/vpcni/introspect.sock".into()))
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_BACKING_STORE", "ipam.json")]),
        r#"AWS_VPC_K8S_CNI_BACKING_STORE="ipam.json" is not valid: expected an absolute path without '..'"#
    );
    assert_eq!(
        error(&[("AWS_EC2_ENDPOINT", "ec2.local")]),
        r#"AWS_EC2_ENDPOINT="ec2.local" is not valid: expected an http:// or https:// URL"#
    );
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_LOGLEVEL", "chatty")]),
        r#"AWS_VPC_K8S_CNI_LOGLEVEL="chatty" is not valid: expected one of trace, debug, info, warn, error"#
    );
}

#[test]
fn tags_and_cluster() {
    assert_eq!(
        error(&[("ADDITIONAL_ENI_TAGS", r#"{"node.k8s.amazonaws.com/x":"y"}"#)]),
        r#"ADDITIONAL_ENI_TAGS="{\"node.k8s.amazonaws.com/x\":\"y\"}" is not valid: expected a JSON object of string tags, e.g. {"team":"net"}, with no key containing k8s.amazonaws.com"#
    );
    assert_eq!(
        error(&[("POD_SECURITY_GROUP_ENFORCING_MODE", "loose")]),
        r#"POD_SECURITY_GROUP_ENFORCING_MODE="loose" is not valid: expected one of strict, standard"#
    );
}

#[test]
fn every_bad_variable_is_reported_at_once() {
    let text = error(&[
        ("WARM_IP_TARGET", "x"),
        ("AWS_VPC_ENI_MTU", "1"),
        ("DISABLE_METRICS", "nah"),
    ]);
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn more_pool_and_address_settings() {
    assert_eq!(
        error(&[("MINIMUM_IP_TARGET", "1.5")]),
        r#"MINIMUM_IP_TARGET="1.5" is not valid: expected a whole number (0 or more)"#
    );
    assert_eq!(
        error(&[("WARM_PREFIX_TARGET", "many")]),
        r#"WARM_PREFIX_TARGET="many" is not valid: expected a whole number (0 or more)"#
    );
    assert_eq!(
        error(&[("ENABLE_IPv4", "false")]),
        r#"ENABLE_IPv4="false" is not valid: expected true: vpcni serves IPv4 clusters"#
    );
    assert_eq!(
        error(&[("AWS_EXTERNAL_SERVICE_CIDRS", "10.0.0.0/33")]),
        r#"AWS_EXTERNAL_SERVICE_CIDRS="10.0.0.0/33" is not valid: expected comma-separated IPv4 CIDRs such as 10.1.0.0/16 ("10.0.0.0/33" is not one)"#
    );
    let config = load(&[("AWS_EXTERNAL_SERVICE_CIDRS", "192.0.2.7/24")]).unwrap();
    assert_eq!(
        config.network.external_service_cidrs,
        vec!["192.0.2.0/24".parse::<Ipv4Net>().unwrap()],
        "host bits are cleared, as Go's ParseCIDR does"
    );
}

#[test]
fn logging() {
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_LOG_FILE", "ipamd.log")]),
        r#"AWS_VPC_K8S_CNI_LOG_FILE="ipamd.log" is not valid: expected stdout, stderr or an absolute path"#
    );
    let config = load(&[("AWS_VPC_K8S_CNI_LOGLEVEL", "INFO")]).unwrap();
    assert_eq!(config.log_level, "info");
}

#[test]
fn vpcni_knobs() {
    let config = load(&[]).unwrap();
    assert_eq!(config.pool_interval, Duration::from_secs(5));
    assert_eq!(config.reconcile_interval, Duration::from_secs(60));
    assert_eq!(config.leaked_eni_cleanup_interval, Duration::from_secs(3600));
    assert_eq!(config.eni_link_timeout, Duration::from_secs(60));
    assert_eq!(
        config.import_checkpoint,
        PathBuf::from("/var/run/aws-node/ipam.json")
    );
    assert_eq!(
        error(&[("VPCNI_POOL_INTERVAL_MS", "50")]),
        r#"VPCNI_POOL_INTERVAL_MS="50" is not valid: expected a whole number from 100 to 60000"#
    );
    assert_eq!(
        error(&[("VPCNI_RECONCILE_INTERVAL_MS", "1m")]),
        r#"VPCNI_RECONCILE_INTERVAL_MS="1m" is not valid: expected a whole number from 100 to 3600000"#
    );
    assert_eq!(
        error(&[("VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS", "0")]),
        r#"VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS="0" is not valid: expected a whole number from 100 to 86400000"#
    );
    assert_eq!(
        error(&[("VPCNI_ENI_LINK_TIMEOUT_MS", "999999999")]),
        r#"VPCNI_ENI_LINK_TIMEOUT_MS="999999999" is not valid: expected a whole number from 100 to 600000"#
    );
    assert_eq!(
        error(&[("VPCNI_IMPORT_CHECKPOINT", "/var/run/../ipam.json")]),
        r#"VPCNI_IMPORT_CHECKPOINT="/var/run/../ipam.json" is not valid: expected an absolute path without '..'"#
    );
    assert_eq!(
        error(&[("VPCNI_IPAMD_SOCKET", "ipamd.sock")]),
        r#"VPCNI_IPAMD_SOCKET="ipamd.sock" is not valid: expected an absolute path without '..'"#
    );
    assert_eq!(
        error(&[("METRICS_BIND_ADDRESS", "unix:relative")]),
        r#"METRICS_BIND_ADDRESS="unix:relative" is not valid: expected HOST:PORT such as 127.0.0.1:61679, :PORT, or unix:/absolute/path"#
    );
}

#[test]
fn more_tags_and_cluster() {
    assert_eq!(
        error(&[("ADDITIONAL_ENI_TAGS", "team=net")]),
        r#"ADDITIONAL_ENI_TAGS="team=net" is not valid: expected a JSON object of string tags, e.g. {"team":"net"}, with no key containing k8s.amazonaws.com"#
    );
    let long = "c".repeat(101);
    assert_eq!(
        error(&[("CLUSTER_NAME", long.as_str())]),
        format!(
            r#"CLUSTER_NAME="{long}" is not valid: expected a cluster name of at most 100 printable characters"#
        )
    );
}
