use std::collections::HashMap;

use super::*;

/// Loads `pairs` on top of VPCNI_EC2_BACKEND=aws, the one variable without a default.
fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut map: HashMap<String, String> =
        HashMap::from([("VPCNI_EC2_BACKEND".to_owned(), "aws".to_owned())]);
    map.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Config::from_lookup(move |key| map.get(key).cloned())
}

/// The warnings a configuration that loads gives, one line each.
fn warnings(pairs: &[(&str, &str)]) -> Vec<String> {
    load(pairs)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
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
    assert_eq!(config.log_level, "debug");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
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
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn pool_numbers() {
    assert_eq!(
        error(&[("MAX_ENI", "three")]),
        r#"MAX_ENI="three" is not valid: expected a whole number: 1 or more caps the node's ENIs, 0 or less means the instance's limit"#
    );
    assert_eq!(
        error(&[("IP_COOLDOWN_PERIOD", "1h")]),
        r#"IP_COOLDOWN_PERIOD="1h" is not valid: expected a whole number (0 or more)"#
    );
    assert_eq!(
        error(&[("IP_COOLDOWN_PERIOD", "-5")]),
        r#"IP_COOLDOWN_PERIOD="-5" is not valid: expected a whole number (0 or more)"#,
        "the original's entry point refuses a negative cooldown too"
    );
    assert_eq!(
        error(&[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "0")]),
        r#"WARM_PREFIX_TARGET="0" is not valid: expected at least 1 with ENABLE_PREFIX_DELEGATION=true, unless WARM_IP_TARGET or MINIMUM_IP_TARGET is set"#
    );
    // The original's entry point compares the text with "0", so a negative target is refused there too.
    assert_eq!(
        error(&[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "-1")]),
        r#"WARM_PREFIX_TARGET="-1" is not valid: expected at least 1 with ENABLE_PREFIX_DELEGATION=true, unless WARM_IP_TARGET or MINIMUM_IP_TARGET is set"#
    );
}

#[test]
fn max_eni_zero_or_less_is_the_instance_limit_as_in_the_original() {
    for value in ["0", "-1", "-7"] {
        let config = load(&[("MAX_ENI", value)]).unwrap();
        assert_eq!(config.pool.max_eni, None, "MAX_ENI={value}");
        assert!(config.warnings.is_empty(), "a documented value: {value}");
    }
    assert_eq!(load(&[("MAX_ENI", "1")]).unwrap().pool.max_eni, Some(1));
}

#[test]
fn negative_or_unreadable_targets_fall_back_to_the_default_with_a_warning() {
    // (variable, value, the original's default for it)
    for (variable, value, default) in [
        ("WARM_ENI_TARGET", "-1", 1),
        ("WARM_ENI_TARGET", "two", 1),
        ("WARM_IP_TARGET", "-3", 0),
        ("WARM_IP_TARGET", "ten", 0),
        ("MINIMUM_IP_TARGET", "1.5", 0),
        ("WARM_PREFIX_TARGET", "many", 0),
    ] {
        let config = load(&[(variable, value)]).unwrap();
        let read = match variable {
            "WARM_ENI_TARGET" => config.pool.warm_eni_target,
            "WARM_IP_TARGET" => config.pool.warm_ip_target,
            "MINIMUM_IP_TARGET" => config.pool.minimum_ip_target,
            _ => config.pool.warm_prefix_target,
        };
        assert_eq!(read, default, "{variable}={value}");
        assert_eq!(
            warnings(&[(variable, value)]),
            [format!(
                "{variable}={value:?}: not a whole number 0 or more; using the default, {default}, as the original does"
            )]
        );
    }
    // Go's Atoi takes a sign.
    assert_eq!(load(&[("WARM_IP_TARGET", "+5")]).unwrap().pool.warm_ip_target, 5);
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
        r#"ENABLE_IPv4="true" is not valid: expected false with ENABLE_IPv6=true: exactly one of ENABLE_IPv4 and ENABLE_IPv6 is true (dual-stack pods are not supported, as in the original)"#
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
    // The original matches exact spellings: "NONE" would quietly be prng there, so it is refused here.
    assert_eq!(
        error(&[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "NONE")]),
        r#"AWS_VPC_K8S_CNI_RANDOMIZESNAT="NONE" is not valid: expected one of prng, hashrandom, none"#
    );
    assert_eq!(
        load(&[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "none")])
            .unwrap()
            .network
            .randomize_snat,
        RandomizeSnat::None
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
}

#[test]
fn tags_and_cluster() {
    let value = r#"{"node.k8s.amazonaws.com/x":"y","team":"net"}"#;
    let config = load(&[("ADDITIONAL_ENI_TAGS", value)]).unwrap();
    assert_eq!(
        config.additional_eni_tags,
        vec![("team".to_owned(), "net".to_owned())],
        "the reserved key is dropped, as the original drops it"
    );
    assert_eq!(
        warnings(&[("ADDITIONAL_ENI_TAGS", value)]),
        [
            r#"ADDITIONAL_ENI_TAGS="{\"node.k8s.amazonaws.com/x\":\"y\",\"team\":\"net\"}": tag "node.k8s.amazonaws.com/x" dropped: keys containing k8s.amazonaws.com are reserved, as in the original"#
        ]
    );
    assert_eq!(
        error(&[("POD_SECURITY_GROUP_ENFORCING_MODE", "loose")]),
        r#"POD_SECURITY_GROUP_ENFORCING_MODE="loose" is not valid: expected one of strict, standard"#
    );
}

#[test]
fn every_bad_variable_is_reported_at_once() {
    let text = error(&[
        ("MAX_ENI", "x"),
        ("AWS_VPC_ENI_MTU", "1"),
        ("DISABLE_METRICS", "nah"),
    ]);
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn more_pool_and_address_settings() {
    assert_eq!(
        error(&[("ENABLE_IPv4", "false")]),
        r#"ENABLE_IPv4="false" is not valid: expected true, or ENABLE_IPv6=true: exactly one of ENABLE_IPv4 and ENABLE_IPv6 is true (dual-stack pods are not supported, as in the original)"#
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
    // The original's levels, in any case (its logger lower-cases them); FATAL logs errors only here.
    for (value, level, filter) in [
        ("INFO", "info", "info"),
        ("Debug", "debug", "debug"),
        ("warn", "warn", "warn"),
        ("ERROR", "error", "error"),
        ("FATAL", "fatal", "error"),
        ("fatal", "fatal", "error"),
        ("trace", "trace", "trace"),
    ] {
        let config = load(&[("AWS_VPC_K8S_CNI_LOGLEVEL", value)]).unwrap();
        assert_eq!(
            (config.log_level.as_str(), config.tracing_level()),
            (level, filter),
            "{value}"
        );
        assert!(config.warnings.is_empty(), "{value}");
    }
    // An unknown level is the original's default, debug; a warning says so.
    let config = load(&[("AWS_VPC_K8S_CNI_LOGLEVEL", "chatty")]).unwrap();
    assert_eq!(config.log_level, "debug");
    assert_eq!(
        warnings(&[("AWS_VPC_K8S_CNI_LOGLEVEL", "chatty")]),
        [
            r#"AWS_VPC_K8S_CNI_LOGLEVEL="chatty": not one of trace, debug, info, warn, error, fatal; logging at debug, as the original does"#
        ]
    );
}

#[test]
fn cidr_lists_skip_ipv6_entries_and_refuse_typos() {
    let value = "10.10.0.0/16, fd00::/8";
    let config = load(&[("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", value)]).unwrap();
    assert_eq!(
        config.network.exclude_snat_cidrs,
        vec!["10.10.0.0/16".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(
        warnings(&[("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", value)]),
        [
            r#"AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS="10.10.0.0/16, fd00::/8": IPv6 entry "fd00::/8" skipped: the cluster is IPv4, as the original skips it"#
        ]
    );
    assert_eq!(
        error(&[("AWS_EXTERNAL_SERVICE_CIDRS", "10.0.0/16")]),
        r#"AWS_EXTERNAL_SERVICE_CIDRS="10.0.0/16" is not valid: expected comma-separated IPv4 CIDRs such as 10.1.0.0/16 ("10.0.0/16" is not one)"#
    );
}

#[test]
fn the_ec2_backend_is_required_and_reported_with_the_rest() {
    let map: HashMap<&str, &str> = HashMap::from([("WARM_ENI_TARGET", "1"), ("AWS_VPC_ENI_MTU", "1")]);
    let text = Config::from_lookup(|key| map.get(key).map(|v| (*v).to_owned()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            r#"AWS_VPC_ENI_MTU="1" is not valid: expected a whole number from 576 to 9001"#,
            r#"VPCNI_EC2_BACKEND="" is not valid: expected aws (EC2 and instance metadata through the AWS SDK; point AWS_EC2_ENDPOINT and AWS_EC2_METADATA_SERVICE_ENDPOINT at `vpcnictl sim serve` to run without AWS)"#,
        ]
    );
    assert_eq!(
        error(&[("VPCNI_EC2_BACKEND", "sim")]),
        r#"VPCNI_EC2_BACKEND="sim" is not valid: expected aws (EC2 and instance metadata through the AWS SDK; point AWS_EC2_ENDPOINT and AWS_EC2_METADATA_SERVICE_ENDPOINT at `vpcnictl sim serve` to run without AWS)"#
    );
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
        r#"ADDITIONAL_ENI_TAGS="team=net" is not valid: expected a JSON object of string tags, e.g. {"team":"net"}, keys of 1 to 128 characters"#
    );
    let long = "c".repeat(101);
    assert_eq!(
        error(&[("CLUSTER_NAME", long.as_str())]),
        format!(
            r#"CLUSTER_NAME="{long}" is not valid: expected a cluster name of at most 100 printable characters"#
        )
    );
}

#[test]
fn custom_networking_settings() {
    let config = load(&[]).unwrap();
    let k8s = &config.kubernetes;
    assert_eq!(k8s.eni_config_label_def, "k8s.amazonaws.com/eniConfig");
    assert_eq!(k8s.eni_config_annotation_def, "k8s.amazonaws.com/eniConfig");
    assert_eq!(
        (k8s.node_name.as_str(), &k8s.eni_config_dir, &k8s.api_url),
        ("", &None, &None)
    );
    let config = load(&[
        ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
        ("ENI_CONFIG_ANNOTATION_DEF", "example.com/eni-config"),
        ("MY_NODE_NAME", "ip-10-0-0-11.us-west-2.compute.internal"),
        ("VPCNI_ENI_CONFIG_DIR", "/etc/vpcni/eniconfigs"),
        ("VPCNI_KUBERNETES_API_URL", "https://10.100.0.1:443"),
    ])
    .unwrap();
    let k8s = &config.kubernetes;
    assert_eq!(k8s.eni_config_label_def, "topology.kubernetes.io/zone");
    assert_eq!(k8s.eni_config_annotation_def, "example.com/eni-config");
    assert_eq!(k8s.node_name, "ip-10-0-0-11.us-west-2.compute.internal");
    assert_eq!(
        k8s.eni_config_dir.as_deref(),
        Some(std::path::Path::new("/etc/vpcni/eniconfigs"))
    );
    assert_eq!(k8s.api_url.as_deref(), Some("https://10.100.0.1:443"));
    // Empty means the default, as in the original.
    assert_eq!(
        load(&[("ENI_CONFIG_LABEL_DEF", "")])
            .unwrap()
            .kubernetes
            .eni_config_label_def,
        "k8s.amazonaws.com/eniConfig"
    );
}

#[test]
fn custom_networking_settings_that_cannot_work_are_refused_by_name() {
    for (variable, value, expected) in [
        ("ENI_CONFIG_LABEL_DEF", "zone label", "a label or annotation key"),
        (
            "ENI_CONFIG_ANNOTATION_DEF",
            "-bad/key",
            "a label or annotation key",
        ),
        (
            "ENI_CONFIG_LABEL_DEF",
            "Example.COM/zone",
            "a label or annotation key",
        ),
        ("VPCNI_ENI_CONFIG_DIR", "eniconfigs", "an absolute path"),
        (
            "VPCNI_KUBERNETES_API_URL",
            "10.100.0.1:443",
            "an http:// or https:// URL",
        ),
        ("MY_NODE_NAME", "a/b", "the node's name"),
    ] {
        let text = error(&[(variable, value)]);
        assert!(
            text.starts_with(&format!("{variable}={value:?} is not valid: expected {expected}")),
            "{text}"
        );
    }
}

/// The egress reject rule follows the original's ipamd: the IPv4 range in IPv6 mode, the IPv6 range in
/// IPv4 mode with ENABLE_V6_EGRESS, nothing otherwise. (IPv6 mode itself is the pool settings' to accept.)
#[test]
fn the_egress_reject_rule_follows_the_cluster_family() {
    assert_eq!(load(&[]).unwrap().network.egress_reject, None);
    let v6_egress = load(&[("ENABLE_V6_EGRESS", "true")]).unwrap();
    assert_eq!(v6_egress.network.egress_reject, Some(EgressReject::V6));
    assert!(error(&[("ENABLE_V6_EGRESS", "maybe")]).contains("ENABLE_V6_EGRESS"));
}
