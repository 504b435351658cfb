//! The real daemon's timers: the leaked-ENI sweep (its interval shortened with
//! VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS) deletes what the original would and nothing else, and reconcile
//! (VPCNI_RECONCILE_INTERVAL_MS) drops addresses EC2 took away behind the daemon's back and takes in ones it
//! added. Runs `vpcni-ipamd` in a testbed node against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use node_support::{EVENTUALLY, with_ec2};
use vpcni_ec2::{AddressRequest, CreateNetworkInterfaceRequest, Ec2, Tags};
use vpcni_testbed::TestNode;

fn metric(node: &TestNode, line_start: &str) -> Option<f64> {
    node.metrics()
        .ok()?
        .body
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_leaked_eni_sweep_deletes_only_old_detached_enis_of_ipamd() {
    let node = TestNode::builder()
        .ipamd_env("VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS", "300")
        .start()
        .unwrap();
    let subnet = node.sim_state().unwrap().instances[node.instance_id()]
        .subnet_id
        .clone();
    let (old, young) = with_ec2(&node, move |ec2| async move {
        let create = |created_at: String| {
            let mut tags = Tags::new();
            tags.insert("node.k8s.amazonaws.com/instance_id".into(), "i-0gone".into());
            tags.insert("node.k8s.amazonaws.com/createdAt".into(), created_at);
            CreateNetworkInterfaceRequest {
                subnet_id: subnet.clone(),
                description: "aws-K8S-i-0gone".into(),
                tags,
                ..Default::default()
            }
        };
        let old = ec2
            .create_network_interface(&create("2020-01-01T00:00:00Z".into()))
            .await
            .unwrap();
        let young = ec2
            .create_network_interface(&create(vpcni_ipamd::clock::rfc3339(vpcni_ipamd::clock::now_ms())))
            .await
            .unwrap();
        (old.network_interface_id, young.network_interface_id)
    });
    node.wait_until("the leaked ENI to be deleted", EVENTUALLY, || {
        !node.sim_state().unwrap().enis.contains_key(&old)
    })
    .unwrap();
    let enis = node.sim_state().unwrap().enis;
    assert!(enis.contains_key(&young), "one created a moment ago stays");
    assert!(enis.contains_key(node.primary_eni_id()));
    assert!(node.ipamd_log().contains("deleted a leaked ENI"));
}

#[test]
fn reconcile_drops_what_ec2_took_away_and_takes_in_what_it_added() {
    let node = TestNode::builder()
        .ipamd_env("VPCNI_RECONCILE_INTERVAL_MS", "300")
        .ipamd_env("WARM_IP_TARGET", "3")
        .start()
        .unwrap();
    node.wait_for_addresses(3).unwrap();
    let eni = node.primary_eni_id().to_owned();
    let taken = node.sim_state().unwrap().enis[&eni]
        .secondary
        .keys()
        .next()
        .copied()
        .unwrap();
    let added = with_ec2(&node, move |ec2| async move {
        // Added first, so EC2 cannot hand back the very address it is about to take away.
        let added = ec2
            .assign_private_ip_addresses(&eni, &AddressRequest::Count(1))
            .await
            .unwrap();
        ec2.unassign_private_ip_addresses(&eni, &[taken]).await.unwrap();
        added[0]
    });
    node.wait_until("reconcile to drop the address EC2 took away", EVENTUALLY, || {
        metric(&node, "awscni_force_removed_ips ").is_some_and(|v| v >= 1.0)
    })
    .unwrap();
    node.wait_until("reconcile to take in the address EC2 added", EVENTUALLY, || {
        metric(&node, "awscni_reconcile_count{fn=\"eniIPPoolReconcileAdd\"}").is_some_and(|v| v >= 1.0)
    })
    .unwrap();
    let log = node.ipamd_log();
    assert!(
        log.contains("EC2 no longer lists these addresses; dropped"),
        "{log}"
    );
    assert!(
        log.contains(&taken.to_string()) && log.contains(&added.to_string()),
        "{log}"
    );
}
