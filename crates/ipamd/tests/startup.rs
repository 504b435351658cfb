//! Start-up's decisions against the EC2 simulator: prefix delegation on a type without it, which checkpoint
//! wins, an unreadable checkpoint, and a managed ENI found without the daemon's tags.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use support::{RecordingHost, World};
use vpcni_ec2::{AddressRequest, CreateNetworkInterfaceRequest, Ec2, Tags};
use vpcni_ipamd::clock::now_ms;
use vpcni_ipamd::metrics::Metrics;
use vpcni_ipamd::startup::{StartupError, start};

fn original_checkpoint(container: &str, ip: std::net::Ipv4Addr) -> String {
    let at = (now_ms() - 3_600_000) * 1_000_000;
    format!(
        r#"{{"version":"vpc-cni-ipam/1","allocations":[{{"networkName":"aws-cni","containerID":"{container}","ifName":"eth0","ipv4":"{ip}","allocationTimestamp":{at},"metadata":{{}}}}]}}"#
    )
}

#[tokio::test]
async fn prefix_delegation_on_a_xen_type_falls_back_to_secondary_ips() {
    let world = World::new("m4.large", "10.0.0.0/24");
    let node = world
        .start(&[("ENABLE_PREFIX_DELEGATION", "true")], RecordingHost::new())
        .await;
    assert!(!node.pool().config().prefix_delegation);
    let nitro = World::new("m5.large", "10.0.0.0/24");
    let node = nitro
        .start(&[("ENABLE_PREFIX_DELEGATION", "true")], RecordingHost::new())
        .await;
    assert!(node.pool().config().prefix_delegation);
}

#[tokio::test]
async fn our_checkpoint_wins_over_the_originals() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let primary = world.enis().remove(0);
    let ips = world
        .sim
        .assign_private_ip_addresses(&primary.network_interface_id, &AddressRequest::Count(2))
        .await
        .unwrap();
    std::fs::write(world.original_checkpoint(), original_checkpoint("theirs", ips[0])).unwrap();
    std::fs::write(world.checkpoint(), original_checkpoint("ours", ips[1])).unwrap();
    let node = world.start(&[], RecordingHost::new()).await;
    let held: Vec<String> = node
        .pool()
        .allocations()
        .into_iter()
        .map(|(k, _, _)| k.container_id)
        .collect();
    assert_eq!(held, ["ours"]);
}

#[tokio::test]
async fn an_unreadable_checkpoint_stops_start_up_and_is_kept() {
    let world = World::new("m5.large", "10.0.0.0/24");
    std::fs::write(world.checkpoint(), "{not json").unwrap();
    let imds = world.sim.imds_for(&world.instance);
    let error = start(
        world.config(&[]),
        &world.sim,
        &imds,
        RecordingHost::new(),
        Arc::new(Metrics::new()),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(error, StartupError::Checkpoint(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains(&world.checkpoint().display().to_string()),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(world.checkpoint()).unwrap(), "{not json");
}

#[tokio::test]
async fn a_managed_eni_found_untagged_is_tagged_and_used() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let eni = world
        .sim
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: world.subnet.clone(),
            secondary_ip_count: 3,
            tags: Tags::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    world
        .sim
        .attach_network_interface(&eni.network_interface_id, &world.instance, 1, 0)
        .await
        .unwrap();
    let host = RecordingHost::new();
    let node = world.start(&[("CLUSTER_NAME", "prod")], host.clone()).await;
    let found = world
        .enis()
        .into_iter()
        .find(|e| e.network_interface_id == eni.network_interface_id)
        .unwrap();
    assert_eq!(found.tags["node.k8s.amazonaws.com/instance_id"], world.instance);
    assert_eq!(found.tags["cluster.k8s.amazonaws.com/name"], "prod");
    assert_eq!(
        node.pool().eni(&eni.network_interface_id).unwrap().cidrs.len(),
        3,
        "its addresses are the pool's"
    );
    assert!(
        host.set_up
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.mac == eni.mac_address)
    );
}
