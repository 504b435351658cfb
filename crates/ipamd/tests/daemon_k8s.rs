//! The real `vpcni-ipamd` with custom networking against a Kubernetes API that is down when it starts and
//! comes up later (the in-process API server, listening inside the node's namespace): ADDs are refused
//! saying the API is unreachable, the metric says so, then the daemon lists its node and the ENIConfigs,
//! posts a Warning event on its node while the ENIConfig is missing, and uses it once it exists. Runs in a
//! testbed node against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use node_support::{EVENTUALLY, outcome};
use vpcni_k8s::testing::{FakeApiServer, node as k8s_node};
use vpcni_k8s::{EniConfig, EniConfigSpec};
use vpcni_testbed::TestNode;

/// Where the API server will listen inside the node's namespace (nothing else listens there).
const API_PORT: u16 = 16443;
const ZONE: &str = "topology.kubernetes.io/zone";

fn refusal(node: &TestNode, pod: &str) -> Option<(String, String)> {
    outcome(&node.ipamd_add(pod).unwrap()).err()
}

#[test]
fn api_down_at_start_then_up_event_then_eniconfig_used() {
    let pod_subnet: ipnet::Ipv4Net = "10.0.64.0/24".parse().unwrap();
    let node = TestNode::builder()
        .extra_subnet(pod_subnet)
        .ipamd_env("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true")
        .ipamd_env("MY_NODE_NAME", "node-1")
        .ipamd_env("ENI_CONFIG_LABEL_DEF", ZONE)
        .ipamd_env(
            "VPCNI_KUBERNETES_API_URL",
            &format!("http://127.0.0.1:{API_PORT}"),
        )
        .start()
        .unwrap();

    // Down at start: refused, and the reason says why.
    let mut message = String::new();
    node.wait_until(
        "a refusal saying the API is unreachable",
        EVENTUALLY,
        || match refusal(&node, "k-0") {
            // First "has not answered yet", then, once a request has failed, "unreachable".
            Some((reason, text)) if reason == "ENI_CONFIG_UNAVAILABLE" && text.contains("unreachable") => {
                message = text;
                true
            }
            _ => false,
        },
    )
    .unwrap();
    assert!(
        message.contains("node node-1's labels and annotations are not known")
            && message.contains("the Kubernetes API is unreachable"),
        "{message}"
    );
    let metrics = node.metrics().unwrap().body;
    assert!(
        metrics.lines().any(|l| l == "vpcni_kubernetes_api_reachable 0"),
        "{metrics}"
    );
    let report = node.introspection("/v1/eni-configs").unwrap().json().unwrap();
    assert_eq!(report["api"]["reachable"], false, "{report}");

    // The API comes up (inside the node's namespace), with the node labelled and no ENIConfig.
    let listener = vpcni_testbed::in_netns(node.name(), || {
        std::net::TcpListener::bind(("127.0.0.1", API_PORT))
    })
    .unwrap()
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(FakeApiServer::from_listener(listener)).unwrap();
    let mut labelled = k8s_node("node-1", &[(ZONE, "us-west-2a")], &[]);
    labelled.metadata.uid = Some("uid-node-1".into());
    server.put_node(&labelled);

    node.wait_until("a Warning event on the node", EVENTUALLY, || {
        !server.events().is_empty()
    })
    .unwrap();
    let event = &server.events()[0];
    assert_eq!(event.reason.as_deref(), Some("ENIConfigUnavailable"));
    assert_eq!(event.involved_object.uid.as_deref(), Some("uid-node-1"));
    let text = event.message.clone().unwrap_or_default();
    assert!(
        text.contains("ENIConfig \"us-west-2a\"") && text.contains("does not exist in the Kubernetes API"),
        "{text}"
    );
    let metrics = node.metrics().unwrap().body;
    assert!(
        metrics.lines().any(|l| l == "vpcni_kubernetes_api_reachable 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "vpcni_eni_config_unavailable 1"),
        "{metrics}"
    );

    // The ENIConfig is created: the next ENI goes to its subnet.
    let subnet_id = node
        .sim_state()
        .unwrap()
        .subnet_cidrs
        .iter()
        .find(|(_, cidr)| **cidr == pod_subnet)
        .map(|(id, _)| id.clone())
        .unwrap();
    server.put_eni_config(&EniConfig::new(
        "us-west-2a",
        EniConfigSpec {
            subnet: subnet_id.clone(),
            security_groups: vec!["sg-pods".into()],
        },
    ));
    let mut ip = None;
    node.wait_until("an address from the ENIConfig's subnet", EVENTUALLY, || {
        ip = outcome(&node.ipamd_add("k-1").unwrap()).ok();
        ip.is_some()
    })
    .unwrap();
    assert!(pod_subnet.contains(&ip.unwrap()), "{ip:?}");
    let report = node.introspection("/v1/eni-configs").unwrap().json().unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["source"], "api", "{report}");
    assert_eq!(report["securityGroups"][0], "sg-pods", "{report}");
    assert_eq!(server.events().len(), 1, "one event for one unavailability");
    drop(server);
    drop(runtime);
}
