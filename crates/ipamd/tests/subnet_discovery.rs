//! Where new ENIs go, against the EC2 simulator: subnet discovery's choice, its fallback when EC2 cannot
//! list subnets, and the node's subnet tagged `kubernetes.io/role/cni=0`, which is an error, never a
//! silent fallback to the excluded subnet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{RecordingHost, World};
use vpcni_ec2::sim::{FaultRule, SimConfig};
use vpcni_ec2::{Ec2, Tags};
use vpcni_ipamd::enis::{candidate_subnets, create_eni};

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

/// Another subnet in the node's zone, and one in another zone.
fn more_subnets(world: &World, role: &str) -> (String, String) {
    let same_zone = world
        .sim
        .create_subnet(
            &world.vpc,
            "10.0.16.0/20".parse().unwrap(),
            "us-west-2a",
            tags(&[("kubernetes.io/role/cni", role)]),
        )
        .unwrap();
    let other_zone = world
        .sim
        .create_subnet(
            &world.vpc,
            "10.0.32.0/20".parse().unwrap(),
            "us-west-2b",
            tags(&[("kubernetes.io/role/cni", "1")]),
        )
        .unwrap();
    (same_zone, other_zone)
}

async fn exclude_node_subnet(world: &World) {
    world
        .sim
        .create_tags(
            std::slice::from_ref(&world.subnet),
            &tags(&[("kubernetes.io/role/cni", "0")]),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn discovery_picks_the_tagged_subnet_with_most_room_in_the_nodes_zone() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let (same_zone, _) = more_subnets(&world, "1");
    let node = world.start(&[], RecordingHost::new()).await;
    let subnets: Vec<String> = candidate_subnets(&node, &world.sim)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        subnets,
        [same_zone.clone(), world.subnet.clone()],
        "a /20 before a /24"
    );
    create_eni(&node, &world.sim, 2, 0).await.unwrap();
    let created = world
        .enis()
        .into_iter()
        .find(|e| e.attachment.as_ref().unwrap().device_index == 1);
    assert_eq!(created.unwrap().subnet_id, same_zone);
}

#[tokio::test]
async fn an_excluded_node_subnet_with_nothing_else_is_an_error_and_creates_nothing() {
    for discovery in ["true", "false"] {
        let world = World::new("m5.large", "10.0.0.0/24");
        more_subnets(&world, "0");
        exclude_node_subnet(&world).await;
        let node = world
            .start(&[("ENABLE_SUBNET_DISCOVERY", discovery)], RecordingHost::new())
            .await;
        let error = create_eni(&node, &world.sim, 2, 0).await.unwrap_err();
        assert_eq!(error.code, "NoEligibleSubnet", "discovery {discovery}");
        assert!(
            error.message.contains("kubernetes.io/role/cni=0"),
            "{}",
            error.message
        );
        assert_eq!(world.sim.counters().calls_to("CreateNetworkInterface"), 0);
        assert_eq!(world.enis().len(), 1, "only the primary ENI");
    }
}

#[tokio::test]
async fn an_excluded_node_subnet_sends_enis_to_a_tagged_one() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let (same_zone, _) = more_subnets(&world, "1");
    exclude_node_subnet(&world).await;
    let node = world.start(&[], RecordingHost::new()).await;
    let subnets = candidate_subnets(&node, &world.sim).await.unwrap();
    assert_eq!(subnets.len(), 1);
    assert_eq!(subnets[0].0, same_zone);
}

#[tokio::test]
async fn when_ec2_cannot_list_subnets_the_nodes_subnet_is_used_unless_excluded() {
    let failing = || SimConfig {
        faults: vec![FaultRule {
            action: Some("DescribeSubnets".into()),
            code: "InternalError".into(),
            probability: 1.0,
            remaining: Some(1),
        }],
        ..SimConfig::default()
    };
    let world = World::with("m5.large", "10.0.0.0/24", failing());
    more_subnets(&world, "1");
    let node = world.start(&[], RecordingHost::new()).await;
    // The fault is armed only now: start-up may read subnets too.
    world.sim.configure(|config| *config = failing());
    let subnets = candidate_subnets(&node, &world.sim).await.unwrap();
    assert_eq!(subnets, [(world.subnet.clone(), "10.0.0.0/24".parse().unwrap())]);

    exclude_node_subnet(&world).await;
    world.sim.configure(|config| *config = failing());
    let error = candidate_subnets(&node, &world.sim).await.unwrap_err();
    assert_eq!(error.code, "NoEligibleSubnet");
}
