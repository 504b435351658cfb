//! The real daemon's interfaces: AddNetwork / DelNetwork over its 0600 unix socket with the original's
//! semantics, introspection and metrics with the original's names (and vpcni's), and the import of the
//! original's checkpoint. Runs `vpcni-ipamd` in a testbed node against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use std::os::unix::fs::PermissionsExt;

use node_support::{EVENTUALLY, outcome};
use vpcni_rpc::cni_backend_client::CniBackendClient;
use vpcni_testbed::TestNode;

#[test]
fn add_and_del_over_the_socket_keep_the_originals_semantics() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    let mode = std::fs::metadata(node.socket_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only root may talk to ipamd");

    let reply = node.ipamd_add("web-0").unwrap();
    let ip = outcome(&reply).unwrap();
    assert!(node.subnet_cidr().contains(&ip));
    let meta = &reply.ip_allocation_metadata[0];
    assert_eq!(
        (meta.device_number, meta.route_table_id),
        (0, 254),
        "primary ENI: table main"
    );
    assert_eq!(reply.vp_cv4_cid_rs, vec![node.vpc_cidr().to_string()]);
    assert!(!reply.use_external_snat);
    assert_eq!(reply.eniid, node.primary_eni_id());
    // ADD is idempotent per key.
    assert_eq!(outcome(&node.ipamd_add("web-0").unwrap()), Ok(ip));

    // DEL of an unknown key succeeds; DEL of a known one returns what it held.
    let unknown = node.ipamd_del("never-added").unwrap();
    assert!(unknown.success && !unknown.found);
    let deleted = node.ipamd_del("web-0").unwrap();
    assert!(deleted.success && deleted.found);
    assert_eq!(deleted.ip_allocation_metadata[0].i_pv4_addr, ip.to_string());

    // A stale plugin and a malformed key are refused with the gRPC status that says so.
    let mut old = node.add_request("web-1");
    old.client_version = "vpcni-rpc/0".into();
    let status = node
        .with_channel(|c| async move { CniBackendClient::new(c).add_network(old).await })
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    assert!(
        status
            .message()
            .contains(r#"client version "vpcni-rpc/0" is not served"#),
        "{status}"
    );
    let mut bad = node.add_request("web-1");
    bad.container_id = "../../etc".into();
    let status = node
        .with_channel(|c| async move { CniBackendClient::new(c).add_network(bad).await })
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");

    // DEL works for a pod added before a restart.
    let before = outcome(&node.ipamd_add("web-2").unwrap()).unwrap();
    node.restart_ipamd().unwrap();
    let deleted = node.ipamd_del("web-2").unwrap();
    assert!(deleted.found);
    assert_eq!(deleted.ip_allocation_metadata[0].i_pv4_addr, before.to_string());
}

#[test]
fn introspection_and_metrics_answer_with_the_originals_names() {
    // One warm address instead of a warm ENI: the pool loop only ever adds addresses to the primary ENI
    // here, so the ENI counts below cannot change under the test (with the default, a second ENI arrives
    // once a pod uses an address, sooner or later depending on the machine).
    let node = TestNode::builder()
        .ipamd_env("WARM_ENI_TARGET", "0")
        .ipamd_env("WARM_IP_TARGET", "1")
        .start()
        .unwrap();
    node.wait_for_addresses(1).unwrap();
    let ip = outcome(&node.ipamd_add("api-0").unwrap()).unwrap().to_string();

    let index = node.introspection("/").unwrap().json().unwrap();
    for path in [
        "/v1/enis",
        "/v1/eni-configs",
        "/v1/networkutils-env-settings",
        "/v1/ipamd-env-settings",
        "/v1/pods",
        "/v1/pool",
    ] {
        assert!(
            index["AvailableCommands"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == path),
            "{index}"
        );
    }
    let enis = node.introspection("/v1/enis").unwrap().json().unwrap();
    let card = &enis["0"];
    assert_eq!(card["AssignedIPs"], 1);
    let primary = &card["ENIs"][node.primary_eni_id()];
    assert_eq!(primary["ID"], node.primary_eni_id());
    assert_eq!(primary["IsPrimary"], true);
    assert_eq!(primary["DeviceNumber"], 0);
    assert_eq!(primary["RouteTableID"], 254);
    let cidr = &primary["AvailableIPv4Cidrs"][format!("{ip}/32")];
    assert_eq!(cidr["IsPrefix"], false);
    assert_eq!(cidr["AddressFamily"], "4");
    let address = &cidr["IPAddresses"][&ip];
    assert_eq!(address["Address"], ip.as_str());
    assert_eq!(address["IPAMKey"]["networkName"], "vpcni");
    assert_eq!(address["IPAMKey"]["containerID"], "", "blanked since v1.23");
    assert_eq!(address["IPAMMetadata"]["k8sPodName"], "api-0");
    assert_eq!(address["UnassignedTime"], "0001-01-01T00:00:00Z");

    let pods = node.introspection("/v1/pods").unwrap().json().unwrap();
    assert_eq!(pods[0]["name"], "api-0");
    assert_eq!(pods[0]["ipv4"], ip.as_str());
    let pool = node.introspection("/v1/pool").unwrap().json().unwrap();
    assert_eq!(pool["stats"]["assigned"], 1);
    assert!(!pool["recentDecisions"].as_array().unwrap().is_empty(), "{pool}");
    assert!(pool["nextDecision"]["action"].is_string(), "{pool}");
    let network = node
        .introspection("/v1/networkutils-env-settings")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(network["AWS_VPC_K8S_CNI_CONNMARK"], 128);
    assert_eq!(network["AWS_VPC_K8S_CNI_VETHPREFIX"], "eni");
    assert_eq!(network["AWS_VPC_K8S_CNI_RANDOMIZESNAT"], "prng");
    let ipamd = node
        .introspection("/v1/ipamd-env-settings")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ipamd["WARM_ENI_TARGET"], 0);
    assert_eq!(ipamd["WARM_IP_TARGET"], 1);
    assert_eq!(ipamd["ENABLE_SUBNET_DISCOVERY"], true);
    assert_eq!(node.introspection("/v1/eni-configs").unwrap().json().unwrap(), "");
    assert_eq!(node.introspection("/v1/nothing").unwrap().status, 404);

    let metrics = node.metrics().unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    let eni = node.primary_eni_id();
    for line in [
        "awscni_add_ip_req_count 1".to_owned(),
        "awscni_assigned_ip_addresses 1".to_owned(),
        "awscni_eni_allocated 1".to_owned(),
        "awscni_eni_max 3".to_owned(),
        "awscni_ip_max 27".to_owned(),
        format!("awscni_assigned_ip_per_eni{{eni=\"{eni}\"}} 1"),
        format!("awscni_assigned_ip_per_cidr{{cidr=\"{ip}/32\"}} 1"),
        "awscni_connmark_backend{backend=\"iptables\"} 1".to_owned(),
        "awscni_connmark_reconcile_total{result=\"success\"} 1".to_owned(),
        "awscni_connmark_reconcile_total{result=\"error\"} 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    for name in [
        "awscni_total_ip_addresses",
        "awscni_total_ipv4_prefixes",
        "awscni_force_removed_enis",
        "awscni_force_removed_ips",
        "awscni_no_available_ip_addresses",
        "awscni_ec2api_req_count",
        "awscni_aws_api_latency_ms",
        "awscni_ipamd_startup_duration_seconds",
        "awscni_build_info",
        "vpcni_ec2_budget_wait_seconds",
        "vpcni_cooling_ip_addresses",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing in\n{text}"
        );
    }
    assert!(
        text.contains("awscni_ec2api_req_count{fn=\"AssignPrivateIpAddresses\"}"),
        "{text}"
    );
    // Every family the running daemon exports has the original's type; the API latency is a summary
    // without quantiles, as the original's.
    let types = exported_types(&text);
    for (name, kind) in &types {
        if name.starts_with("awscni_") {
            assert_eq!(
                Some(kind.as_str()),
                original_type(name),
                "# TYPE {name} in\n{text}"
            );
        }
    }
    for name in [
        "awscni_aws_api_latency_ms",
        "awscni_ipamd_startup_duration_seconds",
        "awscni_ec2api_req_count",
        "awscni_eni_max",
    ] {
        assert!(types.iter().any(|(n, _)| n == name), "{name} missing in\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with(
            "awscni_aws_api_latency_ms_count{api=\"DescribeInstances\",error=\"false\",status=\"200\"} "
        )),
        "{text}"
    );
    assert!(!text.contains("awscni_aws_api_latency_ms_bucket"), "{text}");
    // Counter names as the original's, not OpenMetrics' `_total` variants (only one original name has it).
    for name in [
        "awscni_add_ip_req_count",
        "awscni_ec2api_req_count",
        "awscni_aws_api_error_count",
    ] {
        assert!(!text.contains(&format!("{name}_total")), "{text}");
    }
}

#[test]
fn the_originals_checkpoint_is_imported_when_ours_is_missing() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    let ip = outcome(&node.ipamd_add("moved-0").unwrap()).unwrap();
    node.stop_ipamd().unwrap();
    std::fs::remove_file(node.checkpoint_path()).unwrap();
    // As aws-node writes it: no vpcni fields.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(
        node.original_checkpoint_path(),
        format!(
            r#"{{"version":"vpc-cni-ipam/1","allocations":[{{"networkName":"vpcni","containerID":"moved-0","ifName":"eth0","ipv4":"{ip}","allocationTimestamp":{now_ns},"metadata":{{"k8sPodNamespace":"default","k8sPodName":"moved-0","interfacesCount":1}}}}]}}"#
        ),
    )
    .unwrap();
    node.start_ipamd().unwrap();
    assert_eq!(
        outcome(&node.ipamd_add("moved-0").unwrap()),
        Ok(ip),
        "same key, same address"
    );
    node.wait_until("our checkpoint to be written", EVENTUALLY, || {
        std::fs::read_to_string(node.checkpoint_path()).is_ok_and(|t| t.contains("moved-0"))
    })
    .unwrap();
    assert!(node.ipamd_log().contains("importing the original's checkpoint"));
}

/// The original's metric types (v1.23.1, utils/prometheusmetrics/prometheusmetrics.go and
/// pkg/version/info.go), written out independently of vpcni's code.
const ORIGINAL_METRIC_TYPES: &[(&str, &str)] = &[
    ("awscni_ipamd_error_count", "counter"),
    ("awscni_ipamd_action_inprogress", "gauge"),
    ("awscni_eni_max", "gauge"),
    ("awscni_ip_max", "gauge"),
    ("awscni_reconcile_count", "counter"),
    ("awscni_add_ip_req_count", "counter"),
    ("awscni_del_ip_req_count", "counter"),
    ("awscni_pod_eni_error_count", "counter"),
    ("awscni_aws_api_latency_ms", "summary"),
    ("awscni_aws_api_error_count", "counter"),
    ("awscni_aws_utils_error_count", "counter"),
    ("awscni_ec2api_req_count", "counter"),
    ("awscni_ec2api_error_count", "counter"),
    ("awscni_eni_allocated", "gauge"),
    ("awscni_total_ip_addresses", "gauge"),
    ("awscni_assigned_ip_addresses", "gauge"),
    ("awscni_force_removed_enis", "counter"),
    ("awscni_force_removed_ips", "counter"),
    ("awscni_total_ipv4_prefixes", "gauge"),
    ("awscni_assigned_ip_per_cidr", "gauge"),
    ("awscni_no_available_ip_addresses", "counter"),
    ("awscni_assigned_ip_per_eni", "gauge"),
    ("awscni_ipamd_startup_duration_seconds", "histogram"),
    ("awscni_ipamd_node_initialization_duration_seconds", "histogram"),
    ("awscni_connmark_backend", "gauge"),
    ("awscni_connmark_reconcile_total", "counter"),
    ("awscni_build_info", "gauge"),
];

fn original_type(name: &str) -> Option<&'static str> {
    ORIGINAL_METRIC_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, kind)| *kind)
}

/// `(name, type)` of every `# TYPE` line.
fn exported_types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// In process, with a series in every family: each of the original's metrics is exported, under its type.
#[test]
fn every_original_metric_is_exported_with_the_originals_type() {
    use vpcni_ec2::Ec2Error;

    let metrics = vpcni_ipamd::metrics::Metrics::new();
    metrics.ipamd_error_count.with_label_values(&["checkpoint"]).inc();
    metrics
        .reconcile_count
        .with_label_values(&["eniReconcileAdd"])
        .inc();
    metrics.add_ip_req_count.inc();
    metrics.del_ip_req_count.with_label_values(&["PodDeleted"]).inc();
    metrics.pod_eni_error("nodeInit");
    metrics
        .aws_api_error_count
        .with_label_values(&["AttachNetworkInterface", "AttachmentLimitExceeded"])
        .inc();
    metrics.aws_utils_error(
        "FreeENIDeleteErr",
        &Ec2Error::new("InvalidNetworkInterfaceID.NotFound", "gone"),
    );
    metrics
        .ec2api_req_count
        .with_label_values(&["DescribeInstances"])
        .inc();
    metrics
        .ec2api_error_count
        .with_label_values(&["DescribeInstances"])
        .inc();
    metrics.force_removed_enis.inc();
    metrics.force_removed_ips.inc();
    metrics.no_available_ip_addresses.inc();
    metrics
        .ipamd_action_inprogress
        .with_label_values(&["increaseIPPool"])
        .set(0);
    metrics.eni_max.set(3);
    metrics.ip_max.set(27);
    metrics.eni_allocated.set(1);
    metrics.total_ip_addresses.set(9);
    metrics.assigned_ip_addresses.set(1);
    metrics.total_ipv4_prefixes.set(0);
    metrics
        .assigned_ip_per_cidr
        .with_label_values(&["10.0.0.5/32"])
        .set(1);
    metrics
        .assigned_ip_per_eni
        .with_label_values(&["eni-0abc"])
        .set(1);
    metrics.connmark_backend.with_label_values(&["iptables"]).set(1);
    metrics
        .aws_api_latency_ms
        .observe(&["DescribeInstances", "false", "200"], 12.5);
    metrics
        .aws_api_latency_ms
        .observe(&["DescribeInstances", "false", "200"], 7.5);
    metrics
        .ipamd_startup_duration_seconds
        .with_label_values(&["true", "false", ""])
        .observe(1.0);
    metrics
        .ipamd_node_initialization_duration_seconds
        .with_label_values(&["true"])
        .observe(1.0);
    let text = metrics.render();

    let types = exported_types(&text);
    for (name, kind) in ORIGINAL_METRIC_TYPES {
        let exported: Vec<_> = types.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(exported.len(), 1, "{name} in\n{text}");
        assert_eq!(exported[0].1, *kind, "# TYPE {name}");
    }
    for line in [
        r#"awscni_aws_api_latency_ms_sum{api="DescribeInstances",error="false",status="200"} 20"#,
        r#"awscni_aws_api_latency_ms_count{api="DescribeInstances",error="false",status="200"} 2"#,
        r#"awscni_aws_utils_error_count{error="InvalidNetworkInterfaceID.NotFound",fn="FreeENIDeleteErr"} 1"#,
        r#"awscni_pod_eni_error_count{fn="nodeInit"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // No quantile lines: the original's summary has no objectives.
    assert!(!text.contains("quantile="), "{text}");
    // A transport failure is not an error EC2 answered: the original does not count it either.
    metrics.aws_utils_error("FreeENIDeleteErr", &Ec2Error::unavailable("connection refused"));
    assert!(metrics.render().contains(r#"fn="FreeENIDeleteErr"} 1"#));
}
