//! The daemon's start-up, pool manager, reconcile and leaked-ENI sweep against the EC2 simulator, in
//! process, with a host that records what it is asked (the real host is exercised by `daemon.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{RecordingHost, World, pod, settle};
use vpcni_ec2::sim::{FaultRule, SimConfig};
use vpcni_ec2::{AddressRequest, CreateNetworkInterfaceRequest, Ec2, InterfaceStatus, Tags};
use vpcni_engine::Decision;
use vpcni_ipamd::clock::{now_ms, parse_rfc3339};
use vpcni_ipamd::pool_loop::cycle;
use vpcni_ipamd::server::AddressBook;
use vpcni_rpc::FailureReason;

/// A generous bound for what must happen eventually (not a timing assertion): no test hangs.
const EVENTUALLY: Duration = Duration::from_secs(60);

#[tokio::test]
async fn node_rules_follow_the_settings_and_metadata() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let host = RecordingHost::new();
    world
        .start(
            &[
                ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "172.16.0.0/12"),
                ("AWS_EXTERNAL_SERVICE_CIDRS", "192.0.2.0/24"),
                ("AWS_VPC_K8S_CNI_CONNMARK", "0x4000"),
            ],
            host.clone(),
        )
        .await;
    let programmed = host.programmed.lock().unwrap().clone();
    assert_eq!(programmed.len(), 1);
    let network = &programmed[0];
    assert_eq!(
        network.snat.vpc_cidrs,
        vec!["10.0.0.0/16".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    assert_eq!(network.snat.excluded_cidrs.len(), 1);
    assert_eq!(network.snat.connmark, 0x4000);
    assert_eq!(network.rules.fwmark, Some(0x4000));
    assert_eq!(network.rules.external_service_cidrs.len(), 1);

    // External SNAT and no node-port support: no fwmark rule either.
    let world = World::new("m5.large", "10.0.0.0/24");
    let host = RecordingHost::new();
    world
        .start(
            &[
                ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "true"),
                ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "false"),
            ],
            host.clone(),
        )
        .await;
    let network = host.programmed.lock().unwrap()[0].clone();
    assert!(network.snat.external_snat);
    assert_eq!(network.rules.fwmark, None);
}

#[tokio::test]
async fn a_new_eni_is_tagged_like_the_originals_and_its_addresses_wait_for_its_link() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let host = RecordingHost::new();
    let node = world
        .start(
            &[
                ("WARM_ENI_TARGET", "0"),
                ("WARM_IP_TARGET", "1"),
                ("CLUSTER_NAME", "prod"),
                ("ADDITIONAL_ENI_TAGS", r#"{"team":"net"}"#),
            ],
            host.clone(),
        )
        .await;
    node.set_ready(true);
    // Fill the primary ENI (9 addresses on an m5.large).
    for n in 0..9 {
        settle(&world, &node).await;
        node.add(&pod(n)).unwrap();
    }

    // The next growth attaches an ENI; while its link is not there, a pod is told so. The cycle is run in
    // a task of its own; once it waits for the link (the host says so), the attach is under way.
    host.links_ready.send_replace(None);
    let mut link_waits = host.link_waits.subscribe();
    let before = now_ms() / 1000 * 1000;
    let growing = {
        let (node, sim) = (node.clone(), world.sim.clone());
        tokio::spawn(async move { cycle(&node, &sim).await })
    };
    tokio::time::timeout(EVENTUALLY, link_waits.wait_for(|n| *n == 1))
        .await
        .expect("the pool cycle never waited for a new ENI's link")
        .unwrap();
    let refusal = node.add(&pod(100)).unwrap_err();
    assert_eq!(refusal.reason, FailureReason::EniAttachInProgress, "{refusal:?}");
    host.links_ready.send_replace(Some(true));
    let (decision, acted) = growing.await.unwrap();
    assert!(
        matches!(decision, Decision::CreateEni { ips: 1, prefixes: 0 }),
        "{decision:?}"
    );
    assert!(acted);

    let created = world
        .enis()
        .into_iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 1))
        .unwrap();
    assert_eq!(created.description, format!("aws-K8S-{}", world.instance));
    assert_eq!(created.tags["node.k8s.amazonaws.com/instance_id"], world.instance);
    assert_eq!(created.tags["cluster.k8s.amazonaws.com/name"], "prod");
    assert_eq!(created.tags["eks:eni:owner"], "amazon-vpc-cni");
    assert_eq!(created.tags["team"], "net");
    let stamped = parse_rfc3339(&created.tags["node.k8s.amazonaws.com/createdAt"]).unwrap();
    assert!(
        (before..=now_ms()).contains(&stamped),
        "createdAt {stamped} is not the time of this growth"
    );
    assert!(created.attachment.as_ref().unwrap().delete_on_termination);
    let set_up = host.set_up.lock().unwrap().clone();
    assert_eq!(set_up.len(), 1);
    assert_eq!(set_up[0].mac, created.mac_address);
    assert_eq!((set_up[0].table, set_up[0].primary_ip), (2, created.private_ip));
    assert_eq!(set_up[0].subnet, "10.0.0.0/24".parse().unwrap());

    let assigned = node.add(&pod(100)).unwrap();
    assert_eq!(assigned.eni_id, created.network_interface_id);
    assert_eq!(assigned.route_table_id, 2);
}

#[tokio::test]
async fn an_eni_whose_attach_fails_is_deleted_and_one_without_a_link_is_given_back() {
    let faults = SimConfig {
        faults: vec![FaultRule {
            action: Some("AttachNetworkInterface".into()),
            code: "InvalidParameterValue".into(),
            probability: 1.0,
            remaining: Some(1),
        }],
        ..SimConfig::default()
    };
    let world = World::with("m5.large", "10.0.0.0/24", faults);
    let host = RecordingHost::new();
    let node = world.start(&[("WARM_IP_TARGET", "12")], host.clone()).await;
    node.set_ready(true);
    assert!(matches!(
        cycle(&node, &world.sim).await.0,
        Decision::AddIps { count: 9, .. }
    ));
    let (decision, acted) = cycle(&node, &world.sim).await;
    assert!(
        matches!(decision, Decision::CreateEni { .. }) && !acted,
        "{decision:?}"
    );
    let all = world
        .sim
        .describe_network_interfaces(&Default::default())
        .await
        .unwrap()
        .network_interfaces;
    assert_eq!(all.len(), 1, "only the primary ENI is left: {all:?}");

    // Attached, but its link never shows up on the host: detached and deleted again.
    host.links_ready.send_replace(Some(false));
    let (decision, acted) = cycle(&node, &world.sim).await;
    assert!(
        matches!(decision, Decision::CreateEni { .. }) && !acted,
        "{decision:?}"
    );
    let all = world
        .sim
        .describe_network_interfaces(&Default::default())
        .await
        .unwrap()
        .network_interfaces;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(host.torn_down.lock().unwrap().len(), 1);
    assert_eq!(node.pool().enis().count(), 1);
    let why = node.pool().why_no_address(now_ms());
    assert!(
        why.message.contains("could not be set up on the host"),
        "{}",
        why.message
    );
}

#[tokio::test]
async fn leaked_enis_are_swept_as_the_original_does() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let node = world.start(&[], RecordingHost::new()).await;
    let create = |description: &str, created_at: Option<&str>| {
        let mut tags = Tags::new();
        tags.insert("node.k8s.amazonaws.com/instance_id".into(), "i-gone".into());
        if let Some(at) = created_at {
            tags.insert("node.k8s.amazonaws.com/createdAt".into(), at.into());
        }
        let request = CreateNetworkInterfaceRequest {
            subnet_id: world.subnet.clone(),
            description: description.into(),
            tags,
            ..Default::default()
        };
        let sim = world.sim.clone();
        async move {
            sim.create_network_interface(&request)
                .await
                .unwrap()
                .network_interface_id
        }
    };
    let old = create("aws-K8S-i-gone", Some("2020-01-01T00:00:00Z")).await;
    let young = create("aws-K8S-i-gone", Some(&vpcni_ipamd::clock::rfc3339(now_ms()))).await;
    let unstamped = create("aws-K8S-i-gone", None).await;
    let foreign = create("made by hand", Some("2020-01-01T00:00:00Z")).await;

    let sweep = vpcni_ipamd::leaked::sweep(&node, &world.sim).await.unwrap();
    assert_eq!(sweep.deleted, vec![old.clone()]);
    assert_eq!(sweep.stamped, vec![unstamped.clone()]);
    let left: Vec<String> = world
        .sim
        .describe_network_interfaces(&Default::default())
        .await
        .unwrap()
        .network_interfaces
        .into_iter()
        .filter(|e| e.status == InterfaceStatus::Available)
        .map(|e| e.network_interface_id)
        .collect();
    assert!(!left.contains(&old));
    for kept in [&young, &unstamped, &foreign] {
        assert!(left.contains(kept), "{kept} must stay: {left:?}");
    }
}

#[tokio::test]
async fn reconcile_trusts_ec2_over_the_pool() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let host = RecordingHost::new();
    let node = world.start(&[("WARM_IP_TARGET", "3")], host.clone()).await;
    node.set_ready(true);
    settle(&world, &node).await;
    let holder = node.add(&pod(1)).unwrap();
    let primary = world
        .enis()
        .into_iter()
        .find(|e| e.attachment.as_ref().unwrap().device_index == 0)
        .unwrap();
    let manager = world.manager(&node);

    // Behind the daemon's back: two addresses are added, the pod's and a free one taken away.
    let free = primary
        .secondary_ips
        .iter()
        .copied()
        .find(|ip| *ip != holder.ipv4)
        .unwrap();
    let added = world
        .sim
        .assign_private_ip_addresses(&primary.network_interface_id, &AddressRequest::Count(2))
        .await
        .unwrap();
    world
        .sim
        .unassign_private_ip_addresses(&primary.network_interface_id, &[holder.ipv4, free])
        .await
        .unwrap();
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    let on_primary: Vec<_> = node
        .pool()
        .eni(&primary.network_interface_id)
        .unwrap()
        .cidrs
        .keys()
        .map(|c| c.addr())
        .collect();
    assert!(
        !on_primary.contains(&holder.ipv4) && !on_primary.contains(&free),
        "{on_primary:?}"
    );
    for ip in &added {
        assert!(on_primary.contains(ip), "{ip} adopted: {on_primary:?}");
    }
    assert!(node.pool().holder_of(holder.ipv4).is_none());
    assert_eq!(node.metrics.force_removed_ips.get(), 2);

    // An ENI attached by hand is adopted and set up; one detached by hand is dropped.
    let extra = world
        .sim
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: world.subnet.clone(),
            secondary_ip_count: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let attachment = world
        .sim
        .attach_network_interface(&extra.network_interface_id, &world.instance, 1, 0)
        .await
        .unwrap();
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert_eq!(
        node.pool().eni(&extra.network_interface_id).unwrap().cidrs.len(),
        2
    );
    assert!(
        host.set_up
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.mac == extra.mac_address)
    );
    let tagged = world
        .enis()
        .into_iter()
        .find(|e| e.network_interface_id == extra.network_interface_id)
        .unwrap();
    assert_eq!(tagged.tags["node.k8s.amazonaws.com/instance_id"], world.instance);

    world
        .sim
        .detach_network_interface(&attachment, false)
        .await
        .unwrap();
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert!(node.pool().eni(&extra.network_interface_id).is_none());
    assert_eq!(node.metrics.force_removed_enis.get(), 1);
    assert!(host.torn_down.lock().unwrap().contains(&(extra.private_ip, 2)));
}

/// The instance's addresses as the pool holds them.
fn pool_addresses(node: &vpcni_ipamd::node::Node) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
    node.pool()
        .enis()
        .flat_map(|e| e.cidrs.keys().map(|c| c.addr()).collect::<Vec<_>>())
        .collect()
}

/// Instance metadata lags EC2 (the simulator's knob, on a virtual clock that only this test moves): after
/// an assign, an unassign and an ENI detach, reconcile neither drops a live address nor brings back a
/// released one or a freed ENI, and it calls EC2 only while metadata and the pool disagree.
#[tokio::test]
async fn reconcile_under_lagging_metadata() {
    const LAG_MS: u64 = 10_000;
    let clock = std::sync::Arc::new(vpcni_ec2::sim::VirtualClock::new(1_000_000));
    let config = SimConfig {
        imds_lag_ms: LAG_MS,
        ..SimConfig::default()
    };
    let world = World::with_clock("m5.large", "10.0.0.0/24", config, clock.clone());
    let host = RecordingHost::new();
    let node = world
        .start(
            &[("WARM_IP_TARGET", "3"), ("IP_COOLDOWN_PERIOD", "0")],
            host.clone(),
        )
        .await;
    node.set_ready(true);
    let manager = world.manager(&node);
    let calls = || world.sim.counters().total_calls();

    // Assigned, not yet in metadata: EC2 is asked, and its answer keeps all three.
    settle(&world, &node).await;
    let assigned = pool_addresses(&node);
    assert_eq!(assigned.len(), 3);
    let described = world.sim.counters().calls_to("DescribeInstances");
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert_eq!(
        world.sim.counters().calls_to("DescribeInstances"),
        described + 1,
        "metadata disagrees, so EC2 decides"
    );
    assert_eq!(pool_addresses(&node), assigned, "nothing live is dropped");

    // Metadata caught up and agrees: no EC2 call at all.
    clock.advance(LAG_MS);
    let before = calls();
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert_eq!(calls(), before, "metadata agrees: EC2 is not called");

    // A pod takes an address; the pool grows by one that metadata does not show yet.
    let holder = node.add(&pod(1)).unwrap();
    settle(&world, &node).await;
    let grown = pool_addresses(&node);
    assert_eq!(grown.len(), 4);
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert_eq!(pool_addresses(&node), grown);
    assert_eq!(
        node.pool().holder_of(holder.ipv4).map(|k| k.container_id.clone()),
        Some("container1".to_owned()),
        "the pod keeps its address"
    );
    clock.advance(LAG_MS);

    // The pod goes; the surplus address is given back. Metadata still lists it for the lag.
    node.del(&pod(1).key).unwrap();
    settle(&world, &node).await;
    let shrunk = pool_addresses(&node);
    assert_eq!(shrunk.len(), 3);
    let released: Vec<_> = grown.difference(&shrunk).copied().collect();
    assert_eq!(released.len(), 1);
    let imds = world.sim.imds_for(&world.instance);
    let primary_mac = vpcni_ec2::Imds::primary_mac(&imds).await.unwrap();
    let listed = vpcni_ec2::Imds::interface(&imds, &primary_mac).await.unwrap();
    assert!(
        listed.local_ipv4s.contains(&released[0]),
        "metadata lags the unassign"
    );
    let before = calls();
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert_eq!(
        pool_addresses(&node),
        shrunk,
        "the released address is not brought back"
    );
    assert_eq!(
        calls(),
        before,
        "a just-released address lingering in metadata is no disagreement"
    );
    assert_eq!(node.metrics.force_removed_ips.get(), 0);

    // An ENI the daemon frees: gone from EC2 at once, listed by metadata for the lag.
    vpcni_ipamd::enis::create_eni(&node, &world.sim, 2, 0)
        .await
        .unwrap();
    clock.advance(LAG_MS);
    let second = node
        .pool()
        .enis()
        .find(|e| e.device_number > 0)
        .map(|e| e.id.clone())
        .unwrap();
    vpcni_ipamd::enis::free_eni(&node, &world.sim, &second)
        .await
        .unwrap();
    assert!(world.enis().iter().all(|e| e.network_interface_id != second));
    let macs = vpcni_ec2::Imds::macs(&imds).await.unwrap();
    assert_eq!(macs.len(), 2, "metadata lags the detach");
    let before = calls();
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert!(
        node.pool().eni(&second).is_none(),
        "a freed ENI is not adopted again"
    );
    assert_eq!(
        calls(),
        before,
        "a just-freed ENI lingering in metadata is no disagreement"
    );
    clock.advance(LAG_MS);
    vpcni_ipamd::reconcile::reconcile(&manager).await;
    assert!(node.pool().eni(&second).is_none());
    assert_eq!(calls(), before);
    assert_eq!(pool_addresses(&node), shrunk);
}

#[tokio::test]
async fn start_up_drops_what_ec2_and_the_host_no_longer_have() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let primary = world.enis().remove(0);
    let ips = world
        .sim
        .assign_private_ip_addresses(&primary.network_interface_id, &AddressRequest::Count(4))
        .await
        .unwrap();
    let now_ns = now_ms() * 1_000_000;
    let long_ago_ns = now_ns - 3_600 * 1_000_000_000;
    let allocation = |id: &str, ip: std::net::Ipv4Addr, at: u64, name: &str| {
        format!(
            r#"{{"networkName":"aws-cni","containerID":"{id}","ifName":"eth0","ipv4":"{ip}","allocationTimestamp":{at},"metadata":{{"k8sPodNamespace":"default","k8sPodName":"{name}","interfacesCount":1}}}}"#
        )
    };
    // The original's checkpoint: ours does not exist yet, so it is imported.
    let text = format!(
        r#"{{"version":"vpc-cni-ipam/1","allocations":[{},{},{},{}]}}"#,
        allocation("running", ips[0], long_ago_ns, "running"),
        allocation(
            "elsewhere",
            "10.0.0.250".parse().unwrap(),
            long_ago_ns,
            "elsewhere"
        ),
        allocation("deleted", ips[1], long_ago_ns, "deleted"),
        allocation("starting", ips[2], now_ns, "starting"),
    );
    std::fs::write(world.original_checkpoint(), text).unwrap();
    let host = RecordingHost::new();
    let veth = |name: &str| vpcni_dataplane::naming::host_veth_name("eni", "default", name);
    host.missing_veths
        .lock()
        .unwrap()
        .extend([veth("deleted"), veth("starting")]);
    let node = world.start(&[], host.clone()).await;

    let held: Vec<String> = node
        .pool()
        .allocations()
        .into_iter()
        .map(|(k, _, _)| k.container_id)
        .collect();
    assert!(held.contains(&"running".to_owned()));
    assert!(
        !held.contains(&"elsewhere".to_owned()),
        "EC2 does not list it: dropped"
    );
    assert!(
        !held.contains(&"deleted".to_owned()),
        "its veth is gone: released"
    );
    assert!(
        held.contains(&"starting".to_owned()),
        "too young to judge: kept for now"
    );
    assert_eq!(
        *host.removed_pod_rules.lock().unwrap(),
        vec![(veth("deleted"), ips[1])]
    );
    assert_eq!(node.veth_checks.lock().unwrap().len(), 1);
    let ours = std::fs::read_to_string(world.checkpoint()).unwrap();
    assert!(ours.contains("running") && !ours.contains("deleted"), "{ours}");

    // Its ADD finishes: the next reconcile keeps it. Had it not, it would be released.
    node.veth_checks.lock().unwrap()[0].due = 0;
    host.missing_veths.lock().unwrap().clear();
    vpcni_ipamd::reconcile::reconcile(&world.manager(&node)).await;
    assert!(
        node.pool()
            .lookup(&vpcni_engine::PodKey::new("aws-cni", "starting", "eth0"))
            .is_some()
    );
}

#[tokio::test]
async fn imds_only_mode_makes_no_ec2_call() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let primary = world.enis().remove(0);
    world
        .sim
        .assign_private_ip_addresses(&primary.network_interface_id, &AddressRequest::Count(3))
        .await
        .unwrap();
    let calls = world.sim.counters().total_calls();
    let node = world
        .start(&[("ENABLE_IMDS_ONLY_MODE", "true")], RecordingHost::new())
        .await;
    node.set_ready(true);
    for _ in 0..3 {
        cycle(&node, &world.sim).await;
    }
    vpcni_ipamd::reconcile::reconcile(&world.manager(&node)).await;
    assert_eq!(
        world.sim.counters().total_calls(),
        calls,
        "{:?}",
        world.sim.counters()
    );
    // The addresses metadata lists are used.
    assert_eq!(node.pool().stats(now_ms()).total, 3);
    assert!(node.add(&pod(0)).is_ok());
}

#[tokio::test]
async fn a_cidr_added_to_the_vpc_joins_the_snat_exemptions() {
    let world = World::new("m5.large", "10.0.0.0/24");
    let host = RecordingHost::new();
    let node = world.start(&[], host.clone()).await;
    let manager = world.manager(&node);
    vpcni_ipamd::pool_loop::refresh_vpc_cidrs(&manager).await;
    assert_eq!(host.programmed.lock().unwrap().len(), 1, "nothing changed yet");

    world
        .sim
        .add_vpc_cidr(&world.vpc, "10.1.0.0/16".parse().unwrap())
        .unwrap();
    vpcni_ipamd::pool_loop::refresh_vpc_cidrs(&manager).await;
    let programmed = host.programmed.lock().unwrap().clone();
    assert_eq!(programmed.len(), 2);
    assert_eq!(
        programmed[1].snat.vpc_cidrs,
        vec![
            "10.0.0.0/16".parse::<ipnet::Ipv4Net>().unwrap(),
            "10.1.0.0/16".parse().unwrap()
        ]
    );
    let (cidrs, _) = node.snat_info();
    assert_eq!(cidrs.len(), 2, "the plugin is told too");
}
