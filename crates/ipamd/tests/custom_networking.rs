//! Custom networking end to end in process, against the EC2 simulator: the ENIConfig from a directory or
//! from the Kubernetes API (the in-process API server), new ENIs in its subnet with its security groups,
//! the primary ENI carrying no pods, max pods as `vpcnictl max-pods --custom-networking` computes it, a
//! missing ENIConfig or subnet refused on every ADD with a reason naming it (never a node-subnet address),
//! the metric, the event, a changed ENIConfig for new ENIs only, prefix delegation with subnet CIDR
//! reservations, and ENIs in subnets tagged `kubernetes.io/role/cni=0` giving no pod addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use support::{RecordingHost, World, pod};
use vpcni_ec2::{CreateNetworkInterfaceRequest, Ec2, Tags};
use vpcni_ipamd::custom_networking::{EVENT_REASON, start_with};
use vpcni_ipamd::introspection::IntrospectionSource;
use vpcni_ipamd::node::Node;
use vpcni_ipamd::pool_loop::cycle;
use vpcni_ipamd::server::AddressBook;
use vpcni_k8s::testing::{FakeApiServer, node as k8s_node};
use vpcni_k8s::{EniConfig, EniConfigSpec, View};
use vpcni_rpc::FailureReason;

const EVENTUALLY: Duration = Duration::from_secs(60);
const ZONE: &str = "topology.kubernetes.io/zone";
const POD_CIDR: &str = "100.64.0.0/24";

/// A VPC with the secondary CIDR 100.64.0.0/16 and a pod subnet `cidr` in the node's zone.
fn pod_subnet(world: &World, cidr: &str) -> String {
    world
        .sim
        .add_vpc_cidr(&world.vpc, "100.64.0.0/16".parse().unwrap())
        .unwrap();
    world
        .sim
        .create_subnet(&world.vpc, cidr.parse().unwrap(), "us-west-2a", Tags::new())
        .unwrap()
}

struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A directory with this node's Node object labelled with its zone.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("node.yaml"),
            format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels:\n    {ZONE}: us-west-2a\n"
            ),
        )
        .unwrap();
        Self { dir }
    }

    fn eni_config(&self, name: &str, subnet: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| format!("\n    - {g}")).collect::<String>();
        let groups = if groups.is_empty() {
            String::new()
        } else {
            format!("\n  securityGroups:{groups}")
        };
        std::fs::write(
            self.dir.path().join(format!("{name}.yaml")),
            format!(
                "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}{groups}\n"
            ),
        )
        .unwrap();
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true".into()),
            ("MY_NODE_NAME", "node-1".into()),
            ("ENI_CONFIG_LABEL_DEF", ZONE.into()),
            ("VPCNI_ENI_CONFIG_DIR", self.dir.path().display().to_string()),
            ("VPCNI_POOL_INTERVAL_MS", "100".into()),
        ]
    }
}

struct Running {
    node: Arc<Node>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn finish(self) {
        // No receiver is left when custom networking is off and nothing was started.
        self.stop.send_replace(true);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

async fn start(world: &World, env: &[(&str, String)]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = world.start(&env, RecordingHost::new()).await;
    node.set_ready(true);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = start_with(&node, stopped, Duration::from_millis(50), false);
    Running { node, stop, tasks }
}

/// Checks `condition` until it holds (for what no channel announces, such as a gauge set by a task).
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until_view(node: &Node, what: &str, condition: impl Fn(&View) -> bool) {
    let mut changes = node.eni_configs.subscribe();
    let waited = tokio::time::timeout(EVENTUALLY, changes.wait_for(|v| condition(v))).await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}: {:#?}",
        node.eni_configs.snapshot()
    );
}

/// Pool cycles and ADDs for pods `first..` until one is refused right after a pool cycle with something
/// other than "growing"; returns the addresses given and that refusal.
async fn fill(
    world: &World,
    node: &Node,
    first: usize,
) -> (Vec<std::net::Ipv4Addr>, (FailureReason, String)) {
    let mut given = Vec::new();
    let mut n = first;
    let mut just_cycled = false;
    for _ in 0..500 {
        match node.add(&pod(n)) {
            Ok(assigned) => {
                given.push(assigned.ipv4);
                n += 1;
                just_cycled = false;
            }
            Err(refusal)
                if just_cycled
                    && !matches!(
                        refusal.reason,
                        FailureReason::PoolEmptyGrowing | FailureReason::EniAttachInProgress
                    ) =>
            {
                return (given, (refusal.reason, refusal.message));
            }
            Err(_) => {
                cycle(node, &world.sim).await;
                just_cycled = true;
            }
        }
    }
    panic!(
        "no final refusal after 500 steps; {} addresses given",
        given.len()
    );
}

/// Pod `n`'s address, running pool cycles while the pool grows; panics with the last refusal if 100 cycles
/// bring none.
async fn add_cycling(world: &World, node: &Node, n: usize) -> std::net::Ipv4Addr {
    let mut last = None;
    for _ in 0..100 {
        match node.add(&pod(n)) {
            Ok(assigned) => return assigned.ipv4,
            Err(refusal) => {
                last = Some((refusal.reason, refusal.message));
                cycle(node, &world.sim).await;
            }
        }
    }
    panic!("pod {n} got no address in 100 pool cycles; last refusal: {last:?}");
}

fn in_cidr(ip: std::net::Ipv4Addr, cidr: &str) -> bool {
    cidr.parse::<Ipv4Net>().unwrap().contains(&ip)
}

#[tokio::test]
async fn pods_get_the_eniconfig_subnet_and_42_fit_on_an_m5_xlarge() {
    let world = World::new("m5.xlarge", "10.0.0.0/24");
    let subnet = pod_subnet(&world, POD_CIDR);
    let cluster = Cluster::new();
    cluster.eni_config("us-west-2a", &subnet, &["sg-pods"]);
    let running = start(&world, &cluster.env()).await;
    let node = &running.node;
    until_view(node, "the directory read", |v| v.dir.loaded).await;

    // Max pods as `vpcnictl max-pods --custom-networking` has it: (4 − 1) ENIs × 14 + 2 = 44.
    let limits = vpcni_limits::builtin().get("m5.xlarge").unwrap();
    let options = vpcni_limits::max_pods::MaxPodsOptions {
        custom_networking: true,
        show_max_allowed: true,
        ..Default::default()
    };
    assert_eq!(node.pool().limits().max_pods, 44);
    assert_eq!(vpcni_limits::max_pods::max_pods(limits, &options).max_pods, 44);

    let (given, (reason, message)) = fill(&world, node, 0).await;
    assert_eq!(given.len(), 42, "{given:?}");
    assert!(given.iter().all(|ip| in_cidr(*ip, POD_CIDR)), "{given:?}");
    assert_eq!(reason, FailureReason::NodeMaxPods, "{message}");
    assert!(message.starts_with("node max pods reached (44)"), "{message}");

    let enis = world.enis();
    let primary = enis
        .iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0))
        .unwrap();
    assert!(
        primary.secondary_ips.is_empty(),
        "the primary ENI holds no pod address"
    );
    let secondaries: Vec<_> = enis
        .iter()
        .filter(|e| e.network_interface_id != primary.network_interface_id)
        .collect();
    assert_eq!(secondaries.len(), 3);
    for eni in secondaries {
        assert_eq!(eni.subnet_id, subnet);
        assert_eq!(eni.security_groups, ["sg-pods"]);
    }
    let report = node.eni_config();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["name"], "us-west-2a");
    assert_eq!(report["chosenBy"]["kind"], "label");
    assert_eq!(report["chosenBy"]["key"], ZONE);
    assert_eq!(report["subnet"], subnet.as_str());
    assert_eq!(report["source"], "directory");
    running.finish().await;
}

#[tokio::test]
async fn no_eniconfig_refuses_every_add_naming_it_and_creates_no_eni() {
    let world = World::new("m5.xlarge", "10.0.0.0/24");
    let subnet = pod_subnet(&world, POD_CIDR);
    let cluster = Cluster::new();
    let running = start(&world, &cluster.env()).await;
    let node = &running.node;
    until_view(node, "the directory read", |v| v.dir.loaded).await;

    for n in 0..3 {
        let (given, (reason, message)) = fill(&world, node, n).await;
        assert!(given.is_empty(), "{given:?}");
        assert_eq!(reason, FailureReason::EniConfigUnavailable, "{message}");
        assert!(
            message.contains("ENIConfig \"us-west-2a\"")
                && message.contains("label topology.kubernetes.io/zone (ENI_CONFIG_LABEL_DEF)")
                && message.contains("does not exist in directory"),
            "{message}"
        );
    }
    assert_eq!(world.enis().len(), 1, "no ENI was created anywhere");
    eventually("the gauge at 1", || {
        node.metrics.eni_config_unavailable.get() == 1
    })
    .await;
    assert!(
        node.metrics
            .render()
            .contains("vpcni_no_ip_reason_count{reason=\"ENI_CONFIG_UNAVAILABLE\"}")
    );
    assert_eq!(node.eni_config()["status"], "unavailable");

    // The ENIConfig appears: the next growth uses it.
    cluster.eni_config("us-west-2a", &subnet, &[]);
    until_view(node, "the ENIConfig", |v| {
        v.dir.configs.contains_key("us-west-2a")
    })
    .await;
    let (given, _) = fill(&world, node, 10).await;
    assert_eq!(given.len(), 42);
    assert!(given.iter().all(|ip| in_cidr(*ip, POD_CIDR)));
    eventually("the gauge at 0", || {
        node.metrics.eni_config_unavailable.get() == 0
    })
    .await;
    running.finish().await;
}

#[tokio::test]
async fn unlabelled_node_without_a_default_eniconfig_is_refused_saying_so() {
    let world = World::new("m5.large", "10.0.0.0/24");
    pod_subnet(&world, POD_CIDR);
    let cluster = Cluster::new();
    std::fs::write(
        cluster.dir.path().join("node.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n",
    )
    .unwrap();
    let running = start(&world, &cluster.env()).await;
    until_view(&running.node, "the directory read", |v| v.dir.loaded).await;
    let (given, (reason, message)) = fill(&world, &running.node, 0).await;
    assert!(given.is_empty());
    assert_eq!(reason, FailureReason::EniConfigUnavailable);
    assert!(
        message.contains(
            "ENIConfig \"default\" (chosen by default: the node has no ENIConfig label or annotation"
        ),
        "{message}"
    );
    running.finish().await;
}

#[tokio::test]
async fn an_eniconfig_naming_a_missing_or_foreign_subnet_is_refused_naming_it() {
    let world = World::new("m5.large", "10.0.0.0/24");
    pod_subnet(&world, POD_CIDR);
    let other_zone = world
        .sim
        .create_subnet(
            &world.vpc,
            "100.64.1.0/24".parse().unwrap(),
            "us-west-2b",
            Tags::new(),
        )
        .unwrap();
    let cluster = Cluster::new();
    cluster.eni_config("us-west-2a", "subnet-0000000000000dead", &[]);
    let running = start(&world, &cluster.env()).await;
    let node = &running.node;
    until_view(node, "the directory read", |v| v.dir.loaded).await;
    let (given, (reason, message)) = fill(&world, node, 0).await;
    assert!(given.is_empty());
    assert_eq!(reason, FailureReason::EniConfigUnavailable);
    assert!(
        message.contains("names subnet subnet-0000000000000dead, which does not exist"),
        "{message}"
    );
    // The view has the ENIConfig; EC2 says its subnet is wrong: that counts as unavailable too.
    eventually("the gauge at 1", || {
        node.metrics.eni_config_unavailable.get() == 1
    })
    .await;

    cluster.eni_config("us-west-2a", &other_zone, &[]);
    until_view(node, "the new subnet", |v| {
        v.dir
            .configs
            .get("us-west-2a")
            .is_some_and(|c| c.subnet == other_zone)
    })
    .await;
    let (given, (reason, message)) = fill(&world, node, 10).await;
    assert!(given.is_empty());
    assert_eq!(reason, FailureReason::EniConfigUnavailable);
    assert!(
        message.contains("in us-west-2b, not in this node's zone us-west-2a"),
        "{message}"
    );
    assert_eq!(world.enis().len(), 1);
    running.finish().await;
}

#[tokio::test]
async fn a_changed_eniconfig_applies_to_new_enis_and_old_ones_keep_their_pods() {
    let world = World::new("m5.xlarge", "10.0.0.0/24");
    let first = pod_subnet(&world, POD_CIDR);
    let second = world
        .sim
        .create_subnet(
            &world.vpc,
            "100.64.1.0/24".parse().unwrap(),
            "us-west-2a",
            Tags::new(),
        )
        .unwrap();
    let cluster = Cluster::new();
    cluster.eni_config("us-west-2a", &first, &[]);
    let running = start(&world, &cluster.env()).await;
    let node = &running.node;
    until_view(node, "the directory read", |v| v.dir.loaded).await;
    // 14 pods fill the first ENI.
    let mut placed = Vec::new();
    for n in 0..14 {
        placed.push(add_cycling(&world, node, n).await);
    }
    assert!(placed.iter().all(|ip| in_cidr(*ip, POD_CIDR)));

    cluster.eni_config("us-west-2a", &second, &[]);
    until_view(node, "the changed ENIConfig", |v| {
        v.dir
            .configs
            .get("us-west-2a")
            .is_some_and(|c| c.subnet == second)
    })
    .await;
    let (given, _) = fill(&world, node, 14).await;
    assert_eq!(given.len(), 28);
    assert!(given.iter().all(|ip| in_cidr(*ip, "100.64.1.0/24")), "{given:?}");
    let subnets: Vec<String> = world.enis().into_iter().map(|e| e.subnet_id).collect();
    assert_eq!(
        subnets.iter().filter(|s| **s == first).count(),
        1,
        "the old ENI stays: {subnets:?}"
    );
    assert_eq!(subnets.iter().filter(|s| **s == second).count(), 2);
    for n in 0..14 {
        assert!(
            node.del(&pod(n).key).is_some(),
            "pod {n} still held its first-subnet address"
        );
    }
    running.finish().await;
}

#[tokio::test]
async fn api_source_selection_event_and_the_api_going_away() {
    let world = World::new("m5.xlarge", "10.0.0.0/24");
    let subnet = pod_subnet(&world, POD_CIDR);
    let mut server = FakeApiServer::start().await.unwrap();
    let mut labelled = k8s_node("node-1", &[(ZONE, "us-west-2a")], &[]);
    labelled.metadata.uid = Some("uid-1".into());
    server.put_node(&labelled);
    let env = vec![
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true".to_owned()),
        ("MY_NODE_NAME", "node-1".to_owned()),
        ("ENI_CONFIG_LABEL_DEF", ZONE.to_owned()),
        ("VPCNI_KUBERNETES_API_URL", server.url()),
    ];
    let running = start(&world, &env).await;
    let node = &running.node;
    until_view(node, "the ENIConfigs listed", |v| {
        v.api_configs.is_some() && v.api_node.is_some()
    })
    .await;

    let (given, (reason, message)) = fill(&world, node, 0).await;
    assert!(given.is_empty());
    assert_eq!(reason, FailureReason::EniConfigUnavailable);
    assert!(
        message.contains("does not exist in the Kubernetes API"),
        "{message}"
    );
    eventually("an event", || !server.events().is_empty()).await;
    let event = &server.events()[0];
    assert_eq!(event.reason.as_deref(), Some(EVENT_REASON));
    assert_eq!(event.involved_object.uid.as_deref(), Some("uid-1"));
    assert!(
        event
            .message
            .as_deref()
            .unwrap()
            .contains("ENIConfig \"us-west-2a\"")
    );
    assert_eq!(node.metrics.kubernetes_api_reachable.get(), 1);

    server.put_eni_config(&EniConfig::new(
        "us-west-2a",
        EniConfigSpec {
            subnet: subnet.clone(),
            security_groups: vec!["sg-api".into()],
        },
    ));
    until_view(node, "the ENIConfig", |v| {
        v.api_configs
            .as_ref()
            .is_some_and(|c| c.contains_key("us-west-2a"))
    })
    .await;
    let mut given = Vec::new();
    for n in 10..20 {
        given.push(add_cycling(&world, node, n).await);
    }
    assert!(given.iter().all(|ip| in_cidr(*ip, POD_CIDR)));
    assert!(world.enis().iter().any(|e| e.security_groups == ["sg-api"]));
    assert_eq!(server.events().len(), 1, "one event for one unavailability");

    // The API goes away: pods are still served from the pool, and the daemon says the API is down.
    server.stop().await;
    until_view(node, "the API marked unreachable", |v| !v.api.is_up()).await;
    eventually("the API gauge at 0", || {
        node.metrics.kubernetes_api_reachable.get() == 0
    })
    .await;
    assert!(node.add(&pod(20)).is_ok());
    let report = node.eni_config();
    assert_eq!(report["api"]["reachable"], false, "{report}");
    assert_eq!(
        report["status"], "ok",
        "the last ENIConfig read is kept: {report}"
    );
    running.finish().await;
}

#[tokio::test]
async fn prefix_delegation_takes_prefixes_from_a_reservation_in_a_fragmented_pod_subnet() {
    for reserved in [true, false] {
        let world = World::new("m5.xlarge", "10.0.0.0/24");
        // A /26 has four /28 blocks; AWS's reserved addresses sit in the first and the last.
        let subnet = pod_subnet(&world, "100.64.0.0/26");
        if reserved {
            world
                .sim
                .create_subnet_cidr_reservation(&subnet, "100.64.0.16/28".parse().unwrap())
                .unwrap();
        } else {
            world
                .sim
                .run_instance(
                    "m5.large",
                    &subnet,
                    Some("100.64.0.20".parse().unwrap()),
                    Tags::new(),
                )
                .unwrap();
        }
        world
            .sim
            .run_instance(
                "m5.large",
                &subnet,
                Some("100.64.0.40".parse().unwrap()),
                Tags::new(),
            )
            .unwrap();
        let cluster = Cluster::new();
        cluster.eni_config("us-west-2a", &subnet, &[]);
        let mut env = cluster.env();
        env.push(("ENABLE_PREFIX_DELEGATION", "true".into()));
        let running = start(&world, &env).await;
        let node = &running.node;
        until_view(node, "the directory read", |v| v.dir.loaded).await;
        if reserved {
            let mut got = None;
            for _ in 0..20 {
                match node.add(&pod(0)) {
                    Ok(assigned) => {
                        got = Some(assigned.ipv4);
                        break;
                    }
                    Err(_) => {
                        cycle(node, &world.sim).await;
                    }
                }
            }
            let ip = got.expect("an address from the reserved prefix");
            assert!(in_cidr(ip, "100.64.0.16/28"), "{ip}");
            let prefixes: Vec<Ipv4Net> = world.enis().into_iter().flat_map(|e| e.ipv4_prefixes).collect();
            assert_eq!(prefixes, ["100.64.0.16/28".parse::<Ipv4Net>().unwrap()]);
        } else {
            let (given, (reason, message)) = fill(&world, node, 0).await;
            assert!(given.is_empty());
            assert_eq!(reason, FailureReason::NoFreePrefix, "{message}");
            assert!(
                message.contains(&subnet) && message.contains("no free /28 block"),
                "{message}"
            );
        }
        running.finish().await;
    }
}

#[tokio::test]
async fn enis_in_subnets_tagged_role_cni_0_give_no_pod_addresses() {
    let world = World::new("m5.xlarge", "10.0.0.0/24");
    let excluded = world
        .sim
        .create_subnet(
            &world.vpc,
            "10.0.16.0/24".parse().unwrap(),
            "us-west-2a",
            [("kubernetes.io/role/cni".to_owned(), "0".to_owned())]
                .into_iter()
                .collect(),
        )
        .unwrap();
    // An ENI already attached in the excluded subnet, with addresses, when the daemon starts.
    let eni = world
        .sim
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: excluded.clone(),
            secondary_ip_count: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    world
        .sim
        .attach_network_interface(&eni.network_interface_id, &world.instance, 1, 0)
        .await
        .unwrap();
    let running = start(&world, &[]).await;
    let node = &running.node;
    assert!(node.pool().eni(&eni.network_interface_id).unwrap().flags.excluded);
    assert_eq!(
        node.pool().stats(vpcni_ipamd::clock::now_ms()).total,
        0,
        "its 5 addresses are not in the pool's stats"
    );
    let mut given = Vec::new();
    for n in 0..10 {
        given.push(add_cycling(&world, node, n).await);
    }
    assert!(given.iter().all(|ip| in_cidr(*ip, "10.0.0.0/24")), "{given:?}");
    running.finish().await;
}
