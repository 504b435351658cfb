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
    let node = TestNode::start().unwrap();
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
    assert_eq!(ipamd["WARM_ENI_TARGET"], 1);
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
