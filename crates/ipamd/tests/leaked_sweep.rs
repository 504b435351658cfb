//! The leaked-ENI sweep's edges, in process against the EC2 simulator: the five-minute age to the
//! millisecond, the cluster-tag and VPC filters, a `createdAt` the original could not have written, and
//! more leaked ENIs than one DescribeNetworkInterfaces page holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use support::{RecordingHost, World};
use vpcni_ec2::sim::{SimConfig, ThrottleConfig};
use vpcni_ec2::{CreateNetworkInterfaceRequest, Ec2, InterfaceStatus, Tags};
use vpcni_ipamd::clock::parse_rfc3339;
use vpcni_ipamd::leaked::{MIN_LEAKED_AGE_MS, sweep_at};

const CREATED: &str = "2026-01-01T00:00:00Z";

/// An unattached ENI as the daemon creates them (or not, per the arguments).
async fn leaked(world: &World, subnet: &str, description: &str, tags: &[(&str, &str)]) -> String {
    let mut all = Tags::new();
    for (key, value) in tags {
        all.insert((*key).into(), (*value).into());
    }
    world
        .sim
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: subnet.to_owned(),
            description: description.into(),
            tags: all,
            ..Default::default()
        })
        .await
        .unwrap()
        .network_interface_id
}

const INSTANCE: (&str, &str) = ("node.k8s.amazonaws.com/instance_id", "i-gone");
const STAMP: (&str, &str) = ("node.k8s.amazonaws.com/createdAt", CREATED);

async fn available(world: &World) -> BTreeSet<String> {
    world
        .sim
        .describe_network_interfaces(&Default::default())
        .await
        .unwrap()
        .network_interfaces
        .into_iter()
        .filter(|e| e.status == InterfaceStatus::Available)
        .map(|e| e.network_interface_id)
        .collect()
}

#[tokio::test]
async fn five_minutes_to_the_millisecond() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = world.start(&[], RecordingHost::new()).await;
    let eni = leaked(&world, &world.subnet, "aws-K8S-i-gone", &[INSTANCE, STAMP]).await;
    let created = parse_rfc3339(CREATED).unwrap();

    let early = sweep_at(&node, &world.sim, created + MIN_LEAKED_AGE_MS - 1)
        .await
        .unwrap();
    assert!(early.deleted.is_empty() && early.stamped.is_empty(), "{early:?}");
    assert!(available(&world).await.contains(&eni));

    let due = sweep_at(&node, &world.sim, created + MIN_LEAKED_AGE_MS)
        .await
        .unwrap();
    assert_eq!(due.deleted, vec![eni.clone()]);
    assert!(!available(&world).await.contains(&eni));
}

#[tokio::test]
async fn only_this_clusters_and_this_vpcs_enis_are_swept() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = world
        .start(&[("CLUSTER_NAME", "prod")], RecordingHost::new())
        .await;
    let cluster = |name| ("cluster.k8s.amazonaws.com/name", name);
    let ours = leaked(
        &world,
        &world.subnet,
        "aws-K8S-i-gone",
        &[INSTANCE, STAMP, cluster("prod")],
    )
    .await;
    let other_cluster = leaked(
        &world,
        &world.subnet,
        "aws-K8S-i-gone",
        &[INSTANCE, STAMP, cluster("staging")],
    )
    .await;
    let no_cluster = leaked(&world, &world.subnet, "aws-K8S-i-gone", &[INSTANCE, STAMP]).await;
    let other_vpc = world
        .sim
        .create_vpc("10.1.0.0/16".parse().unwrap(), Tags::new())
        .unwrap();
    let other_subnet = world
        .sim
        .create_subnet(
            &other_vpc,
            "10.1.0.0/24".parse().unwrap(),
            "us-west-2a",
            Tags::new(),
        )
        .unwrap();
    let elsewhere = leaked(
        &world,
        &other_subnet,
        "aws-K8S-i-gone",
        &[INSTANCE, STAMP, cluster("prod")],
    )
    .await;
    let no_instance_tag = leaked(&world, &world.subnet, "aws-K8S-i-gone", &[STAMP, cluster("prod")]).await;

    let later = parse_rfc3339(CREATED).unwrap() + 3_600_000;
    let sweep = sweep_at(&node, &world.sim, later).await.unwrap();
    assert_eq!(sweep.deleted, vec![ours]);
    assert!(sweep.stamped.is_empty(), "{sweep:?}");
    let left = available(&world).await;
    for kept in [&other_cluster, &no_cluster, &elsewhere, &no_instance_tag] {
        assert!(
            left.contains(kept),
            "{kept} is not this cluster's, or not in this VPC"
        );
    }
}

#[tokio::test]
async fn a_created_at_the_original_could_not_have_written_keeps_the_eni() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = world.start(&[], RecordingHost::new()).await;
    let mut unreadable = Vec::new();
    for text in [
        "yesterday",
        "2026-01-01 00:00:00Z",
        "",
        "1700000000",
        "2026-13-01T00:00:00Z",
    ] {
        let tag = ("node.k8s.amazonaws.com/createdAt", text);
        unreadable.push(leaked(&world, &world.subnet, "aws-K8S-i-gone", &[INSTANCE, tag]).await);
    }
    let later = parse_rfc3339(CREATED).unwrap() + 3_600_000;
    let sweep = sweep_at(&node, &world.sim, later).await.unwrap();
    assert!(sweep.deleted.is_empty(), "{sweep:?}");
    assert!(
        sweep.stamped.is_empty(),
        "an unreadable stamp is not replaced: {sweep:?}"
    );
    let left = available(&world).await;
    for eni in &unreadable {
        assert!(left.contains(eni));
    }
}

/// 1,001 leaked ENIs: more than the 1,000 one DescribeNetworkInterfaces page returns.
#[tokio::test]
async fn every_page_of_the_describe_is_swept() {
    // A thousand creations and deletions in a moment would meet EC2's request limits, which are not what
    // this test is about.
    let config = SimConfig {
        throttle: ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        },
        ..SimConfig::default()
    };
    let world = World::with("m5.large", "10.0.0.0/20", config);
    let node = world.start(&[], RecordingHost::new()).await;
    let mut all = BTreeSet::new();
    for _ in 0..1_001 {
        all.insert(leaked(&world, &world.subnet, "aws-K8S-i-gone", &[INSTANCE, STAMP]).await);
    }
    let pages_before = world.sim.counters().calls_to("DescribeNetworkInterfaces");
    let later = parse_rfc3339(CREATED).unwrap() + 3_600_000;
    let sweep = sweep_at(&node, &world.sim, later).await.unwrap();
    assert_eq!(
        world.sim.counters().calls_to("DescribeNetworkInterfaces") - pages_before,
        2,
        "two pages"
    );
    assert_eq!(sweep.deleted.into_iter().collect::<BTreeSet<_>>(), all);
    assert!(available(&world).await.is_empty());
}

/// At start-up the node's own unattached ENIs (left by a run killed between create and attach) go at once;
/// other instances' wait for the sweep's five minutes, and attached ones stay.
#[tokio::test]
async fn this_nodes_own_unattached_enis_are_deleted_at_start_up() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = world.start(&[], RecordingHost::new()).await;
    let description = format!("aws-K8S-{}", world.instance);
    let own_tag = ("node.k8s.amazonaws.com/instance_id", world.instance.as_str());
    let now = vpcni_ipamd::clock::rfc3339(vpcni_ipamd::clock::now_ms());
    let created = ("node.k8s.amazonaws.com/createdAt", now.as_str());
    let own = leaked(&world, &world.subnet, &description, &[own_tag, created]).await;
    let other = leaked(&world, &world.subnet, "aws-K8S-i-other", &[INSTANCE, created]).await;
    let hand_made = leaked(&world, &world.subnet, "made by hand", &[own_tag]).await;
    let deleted = vpcni_ipamd::leaked::delete_own_unattached(&node, &world.sim)
        .await
        .unwrap();
    assert_eq!(deleted, vec![own.clone()]);
    let left = available(&world).await;
    assert!(!left.contains(&own));
    assert!(left.contains(&other) && left.contains(&hand_made));
    assert_eq!(world.enis().len(), 1, "the attached primary ENI stays");
}

/// An ENI whose attach fails and whose delete fails too is deleted on the next pool cycle, not left for
/// the hourly sweep.
#[tokio::test]
async fn an_eni_that_could_not_be_deleted_is_deleted_on_the_next_cycle() {
    let fault = |action: &str| vpcni_ec2::sim::FaultRule {
        action: Some(action.into()),
        code: "InternalError".into(),
        probability: 1.0,
        remaining: Some(1),
    };
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = world.start(&[], RecordingHost::new()).await;
    world.sim.configure(|config| {
        config.faults = vec![fault("AttachNetworkInterface"), fault("DeleteNetworkInterface")];
    });
    assert!(
        vpcni_ipamd::enis::create_eni(&node, &world.sim, 2, 0)
            .await
            .is_err()
    );
    let stranded = available(&world).await;
    assert_eq!(stranded.len(), 1, "attach and delete failed: {stranded:?}");
    assert_eq!(node.eni_deletes.lock().unwrap().len(), 1);
    vpcni_ipamd::pool_loop::cycle(&node, &world.sim).await;
    assert!(available(&world).await.is_empty());
    assert!(node.eni_deletes.lock().unwrap().is_empty());
}
