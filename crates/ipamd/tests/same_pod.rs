//! One pod, several requests at once, as runtimes send them: parallel ADDs of one sandbox, an ADD racing
//! its DEL, an ADD the daemon cannot record, and pods started under the original, which the runtime names
//! differently after the switch. In process, against the EC2 simulator, through the same address book the
//! gRPC server calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use support::{RecordingHost, World, pod, settle};
use vpcni_ec2::{AddressRequest, Ec2};
use vpcni_engine::checkpoint::Checkpoint;
use vpcni_ipamd::clock::now_ms;
use vpcni_ipamd::node::Node;
use vpcni_ipamd::server::{AddressBook, PodKey, PodRequest};
use vpcni_rpc::FailureReason;

async fn ready_node(world: &World, env: &[(&str, &str)]) -> Arc<Node> {
    let node = world.start(env, RecordingHost::new()).await;
    node.set_ready(true);
    settle(world, &node).await;
    node
}

fn allocations(node: &Node) -> Vec<(String, String)> {
    node.pool()
        .allocations()
        .into_iter()
        .map(|(key, _, _)| (key.network_name, key.container_id))
        .collect()
}

fn checkpointed(world: &World) -> Vec<(String, String)> {
    Checkpoint::load(&world.checkpoint())
        .unwrap()
        .unwrap()
        .allocations
        .into_iter()
        .map(|a| (a.network_name, a.container_id))
        .collect()
}

fn with_network(request: &PodRequest, network_name: &str) -> PodRequest {
    let mut request = request.clone();
    request.key.network_name = network_name.to_owned();
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_adds_of_one_pod_give_it_one_address() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = ready_node(&world, &[]).await;
    for round in 0..20 {
        let request = pod(round);
        let start = Arc::new(Barrier::new(8));
        let answers: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (node, start, request) = (&node, start.clone(), &request);
                    scope.spawn(move || {
                        start.wait();
                        node.add(request).unwrap().ipv4
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: BTreeSet<_> = answers.iter().collect();
        assert_eq!(distinct.len(), 1, "round {round}: {answers:?}");
        assert_eq!(
            node.pool().holder_of(answers[0]).unwrap().container_id,
            request.key.container_id
        );
        // The pool grows as the daemon's loop would between pods.
        settle(&world, &node).await;
    }
    assert_eq!(node.pool().allocations().len(), 20, "one allocation per pod");
    let recorded = checkpointed(&world);
    assert_eq!(recorded.len(), 20, "{recorded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_racing_its_del_leaves_the_pod_with_one_address_or_none() {
    let world = World::new("m5.large", "10.0.0.0/24");
    // No cooldown, so a hundred rounds on nine addresses never run dry.
    let node = ready_node(&world, &[("IP_COOLDOWN_PERIOD", "0")]).await;
    for round in 0..100 {
        let request = pod(round);
        let start = Arc::new(Barrier::new(2));
        std::thread::scope(|scope| {
            let add = {
                let (node, start, request) = (&node, start.clone(), &request);
                scope.spawn(move || {
                    start.wait();
                    node.add(request).map(|a| a.ipv4)
                })
            };
            let del = {
                let (node, start, request) = (&node, start.clone(), &request);
                scope.spawn(move || {
                    start.wait();
                    node.del(&request.key).map(|a| a.ipv4)
                })
            };
            let (added, deleted) = (add.join().unwrap(), del.join().unwrap());
            let held = node.pool().lookup(&vpcni_engine::PodKey::new(
                &request.key.network_name,
                &request.key.container_id,
                &request.key.if_name,
            ));
            match (added, deleted, held) {
                // DEL first (nothing to release), then ADD: the pod holds what ADD gave.
                (Ok(ip), None, Some(held)) => assert_eq!(held.ip, ip, "round {round}"),
                // ADD first, then DEL released exactly that address.
                (Ok(ip), Some(released), None) => assert_eq!(released, ip, "round {round}"),
                other => panic!("round {round}: {other:?}"),
            }
        });
        // Whatever the order, the runtime's next DEL leaves nothing behind.
        node.del(&request.key);
        assert!(allocations(&node).is_empty(), "round {round}");
    }
    assert!(checkpointed(&world).is_empty());
}

#[tokio::test]
async fn an_add_that_cannot_be_checkpointed_is_refused_and_undone() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = ready_node(&world, &[]).await;
    let kept = node.add(&pod(0)).unwrap();

    // The checkpoint's directory becomes a file: no write can succeed, not even as root.
    let directory = world.dir.path().to_owned();
    std::fs::remove_dir_all(&directory).unwrap();
    std::fs::write(&directory, b"not a directory").unwrap();
    let refusal = node.add(&pod(1)).unwrap_err();
    assert_eq!(refusal.reason, FailureReason::NotReady);
    assert!(
        refusal.message.contains("could not write its checkpoint"),
        "{}",
        refusal.message
    );
    assert_eq!(
        allocations(&node),
        vec![("aws-cni".to_owned(), "container0".to_owned())],
        "nothing half-done: the refused pod holds nothing"
    );
    let stats = node.pool().stats(now_ms());
    assert_eq!(stats.assigned, 1, "its address went back to the pool");
    assert_eq!(
        node.metrics
            .ipamd_error_count
            .with_label_values(&["checkpoint"])
            .get(),
        1
    );

    // Writable again: the same pod gets an address, and the file holds both pods.
    std::fs::remove_file(&directory).unwrap();
    std::fs::create_dir(&directory).unwrap();
    let added = node.add(&pod(1)).unwrap();
    assert_ne!(added.ipv4, kept.ipv4);
    let recorded = checkpointed(&world);
    assert_eq!(recorded.len(), 2, "{recorded:?}");
}

/// The original records every pod under its network name `aws-cni`; after the switch the runtime sends
/// DEL, CHECK (an ADD again) and GC with vpcni's conflist name. Each must find the pod's address, and none
/// may leak.
#[tokio::test]
async fn pods_started_under_the_original_are_released_after_the_switch() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let primary = world.enis().remove(0);
    let ips = world
        .sim
        .assign_private_ip_addresses(&primary.network_interface_id, &AddressRequest::Count(3))
        .await
        .unwrap();
    let long_ago_ns = (now_ms() - 3_600_000) * 1_000_000;
    let allocation = |id: &str, ip: std::net::Ipv4Addr| {
        format!(
            r#"{{"networkName":"aws-cni","containerID":"{id}","ifName":"eth0","ipv4":"{ip}","allocationTimestamp":{long_ago_ns},"metadata":{{"k8sPodNamespace":"default","k8sPodName":"{id}","interfacesCount":1}}}}"#
        )
    };
    std::fs::write(
        world.original_checkpoint(),
        format!(
            r#"{{"version":"vpc-cni-ipam/1","allocations":[{},{},{}]}}"#,
            allocation("deleted-later", ips[0]),
            allocation("gone-while-switching", ips[1]),
            allocation("still-running", ips[2]),
        ),
    )
    .unwrap();
    let node = ready_node(&world, &[]).await;
    assert_eq!(node.pool().allocations().len(), 3, "imported");
    let as_vpcni = |id: &str| PodRequest {
        key: PodKey {
            network_name: vpcni_layout::NETWORK_NAME.to_owned(),
            container_id: id.to_owned(),
            if_name: "eth0".to_owned(),
        },
        pod_namespace: "default".to_owned(),
        pod_name: id.to_owned(),
    };

    // CHECK, or a repeated ADD, under the new name: the pod's own address, not a second one.
    let again = node.add(&as_vpcni("still-running")).unwrap();
    assert_eq!(again.ipv4, ips[2]);
    assert_eq!(node.pool().allocations().len(), 3);

    // DEL under the new name releases it.
    let released = node.del(&as_vpcni("deleted-later").key).unwrap();
    assert_eq!(released.ipv4, ips[0]);

    // GC under the new name, with the runtime's live sandboxes: the one deleted during the switch goes.
    let valid = [as_vpcni("still-running").key];
    let collected = node.garbage_collect(vpcni_layout::NETWORK_NAME, &valid);
    assert_eq!(
        collected
            .iter()
            .map(|k| k.container_id.as_str())
            .collect::<Vec<_>>(),
        ["gone-while-switching"]
    );
    assert_eq!(
        allocations(&node),
        vec![("aws-cni".to_owned(), "still-running".to_owned())]
    );

    // Its own DEL, by either name, ends it; nothing is left.
    assert_eq!(node.del(&as_vpcni("still-running").key).unwrap().ipv4, ips[2]);
    assert!(
        node.del(&with_network(&as_vpcni("still-running"), "aws-cni").key)
            .is_none()
    );
    assert!(allocations(&node).is_empty());
    assert!(checkpointed(&world).is_empty());
}
