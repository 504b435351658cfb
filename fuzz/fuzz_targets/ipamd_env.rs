//! ipamd's environment (`vpcni_ipamd::config::Config::from_lookup`): the DaemonSet's values, written by
//! hand, by Helm templates, or carried over from aws-node's manifest.
//!
//! Input: lines, each one byte choosing a variable ipamd reads and the rest its value, over
//! `VPCNI_EC2_BACKEND=aws` (the one variable without a default).
//!
//! Checks: a refused environment names, one line each, only variables ipamd reads and that were set (or
//! that are required, or that depend on another one's value: WARM_PREFIX_TARGET under prefix
//! delegation); a warning names a variable that was set; an accepted configuration has every value in the
//! set docs/configuration.md documents.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use vpcni_ipamd::config::{Config, ListenAddress};

const VARIABLES: [&str; 44] = [
    "ADDITIONAL_ENI_TAGS",
    "AWS_EC2_ENDPOINT",
    "AWS_EXTERNAL_SERVICE_CIDRS",
    "AWS_MANAGE_ENIS_NON_SCHEDULABLE",
    "AWS_VPC_CNI_NODE_PORT_SUPPORT",
    "AWS_VPC_ENI_MTU",
    "AWS_VPC_K8S_CNI_BACKING_STORE",
    "AWS_VPC_K8S_CNI_CONNMARK",
    "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
    "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
    "AWS_VPC_K8S_CNI_EXTERNALSNAT",
    "AWS_VPC_K8S_CNI_LOGLEVEL",
    "AWS_VPC_K8S_CNI_LOG_FILE",
    "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
    "AWS_VPC_K8S_CNI_VETHPREFIX",
    "CLUSTER_NAME",
    "DISABLE_INTROSPECTION",
    "DISABLE_LEAKED_ENI_CLEANUP",
    "DISABLE_METRICS",
    "DISABLE_NETWORK_RESOURCE_PROVISIONING",
    "ENABLE_IMDS_ONLY_MODE",
    "ENABLE_IPv4",
    "ENABLE_IPv6",
    "ENABLE_POD_ENI",
    "ENABLE_PREFIX_DELEGATION",
    "ENABLE_SUBNET_DISCOVERY",
    "INTROSPECTION_BIND_ADDRESS",
    "IP_COOLDOWN_PERIOD",
    "MANAGE_UNTAGGED_ENI",
    "MAX_ENI",
    "METRICS_BIND_ADDRESS",
    "MINIMUM_IP_TARGET",
    "POD_MTU",
    "POD_SECURITY_GROUP_ENFORCING_MODE",
    "VPCNI_EC2_BACKEND",
    "VPCNI_ENI_LINK_TIMEOUT_MS",
    "VPCNI_IMPORT_CHECKPOINT",
    "VPCNI_IPAMD_SOCKET",
    "VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS",
    "VPCNI_POOL_INTERVAL_MS",
    "VPCNI_RECONCILE_INTERVAL_MS",
    "WARM_ENI_TARGET",
    "WARM_IP_TARGET",
    "WARM_PREFIX_TARGET",
];

fn clean_absolute(path: &std::path::Path) -> bool {
    let text = path.to_string_lossy();
    text.starts_with('/') && !text.split('/').any(|p| p == "..")
}

fn check_accepted(config: &Config) {
    let pool = &config.pool;
    assert_ne!(pool.max_eni, Some(0), "MAX_ENI 0 means no cap, never a cap of 0");
    if pool.prefix_delegation && pool.warm_ip_target == 0 && pool.minimum_ip_target == 0 {
        assert!(
            pool.warm_prefix_target >= 1,
            "prefix delegation that allocates nothing"
        );
    }
    if pool.ipv6 {
        assert!(
            pool.prefix_delegation && !pool.custom_networking,
            "IPv6 mode without prefix delegation or with custom networking"
        );
    }
    let network = &config.network;
    // IPv6's minimum link MTU is 1280.
    let min_mtu = if pool.ipv6 { 1280 } else { 576 };
    assert!((min_mtu..=9001).contains(&network.eni_mtu), "{}", network.eni_mtu);
    assert!((min_mtu..=9001).contains(&network.pod_mtu), "{}", network.pod_mtu);
    assert_ne!(network.connmark, 0);
    let prefix = &network.veth_prefix;
    assert!(
        (1..=4).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !matches!(prefix.as_str(), "eth" | "lo" | "vlan"),
        "{prefix:?}"
    );
    for cidr in network
        .exclude_snat_cidrs
        .iter()
        .chain(&network.external_service_cidrs)
    {
        assert_eq!(*cidr, cidr.trunc(), "CIDRs are kept as networks");
    }
    assert!(config.cluster_name.len() <= 100 && !config.cluster_name.bytes().any(|b| b.is_ascii_control()));
    for (key, _) in &config.additional_eni_tags {
        assert!(
            (1..=128).contains(&key.chars().count()) && !key.contains("k8s.amazonaws.com"),
            "{key:?}"
        );
    }
    assert!(matches!(
        config.pod_sg_enforcing_mode.as_str(),
        "strict" | "standard"
    ));
    for path in [
        &config.backing_store,
        &config.socket_path,
        &config.import_checkpoint,
    ] {
        assert!(clean_absolute(path), "{path:?}");
    }
    for address in config.introspection.iter().chain(&config.metrics) {
        if let ListenAddress::Unix(path) = address {
            assert!(path.is_absolute(), "{path:?}");
        }
    }
    assert!(matches!(
        config.log_level.as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "fatal"
    ));
    assert!(matches!(
        config.tracing_level(),
        "trace" | "debug" | "info" | "warn" | "error"
    ));
    assert!(
        matches!(config.log_file.as_str(), "stdout" | "stderr") || config.log_file.starts_with('/'),
        "{:?}",
        config.log_file
    );
    if let Some(endpoint) = &config.ec2_endpoint {
        assert!(endpoint.starts_with("http://") || endpoint.starts_with("https://"));
    }
    let ms = |d: std::time::Duration| d.as_millis();
    assert!((100..=60_000).contains(&ms(config.pool_interval)));
    assert!((100..=3_600_000).contains(&ms(config.reconcile_interval)));
    assert!((100..=86_400_000).contains(&ms(config.leaked_eni_cleanup_interval)));
    assert!((100..=600_000).contains(&ms(config.eni_link_timeout)));
    // Introspection shows it.
    serde_json::to_string(config).expect("the configuration serialises");
}

fuzz_target!(|data: &[u8]| {
    let mut env = BTreeMap::from([("VPCNI_EC2_BACKEND", "aws".to_owned())]);
    for line in data.split(|&b| b == b'\n') {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        let variable = VARIABLES[usize::from(which) % VARIABLES.len()];
        env.insert(variable, String::from_utf8_lossy(value).into_owned());
    }
    // Set = present and not blank: ipamd treats a blank value as unset, as Kubernetes' empty `value:` is.
    let set = |variable: &str| env.get(variable).is_some_and(|v| !v.trim().is_empty());

    match Config::from_lookup(|name| env.get(name).cloned()) {
        Ok(config) => {
            check_accepted(&config);
            for warning in &config.warnings {
                assert!(set(warning.variable), "warning for a variable not set: {warning}");
                assert!(warning.to_string().starts_with(warning.variable));
            }
        }
        Err(error) => {
            assert!(!error.0.is_empty());
            assert_eq!(
                error.to_string().lines().count(),
                error.0.len(),
                "one line each: {error}"
            );
            for invalid in &error.0 {
                assert!(VARIABLES.contains(&invalid.variable), "{invalid}");
                assert!(invalid.to_string().starts_with(&format!("{}=", invalid.variable)));
                // Named because another variable's value asks something of them: WARM_PREFIX_TARGET under
                // prefix delegation; ENABLE_IPv4 (default true) and ENABLE_PREFIX_DELEGATION (default false)
                // under ENABLE_IPv6, which needs the one false and the other true.
                let depends = (invalid.variable == "WARM_PREFIX_TARGET" && set("ENABLE_PREFIX_DELEGATION"))
                    || (matches!(invalid.variable, "ENABLE_IPv4" | "ENABLE_PREFIX_DELEGATION")
                        && set("ENABLE_IPv6"));
                assert!(
                    set(invalid.variable) || depends || invalid.variable == "VPCNI_EC2_BACKEND",
                    "error for a variable not set: {invalid}"
                );
            }
        }
    }
});
