//! IPv6 mode's start-up and address book against the EC2 simulator, in process: the /80 assigned when the
//! primary ENI has none and kept when it has one, no secondary ENI, the IPv6 host settings, a non-Nitro type
//! refused, pods' addresses from the /80 and back after a restart, and no EC2 call after start-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv6Addr;
use std::sync::Arc;

use ipnet::Ipv6Net;
use support::{RecordingHost, World, pod};
use vpcni_ec2::{AddressRequest, Ec2};
use vpcni_ipamd::metrics::Metrics;
use vpcni_ipamd::server::AddressBook;
use vpcni_ipamd::startup::{StartupError, start};

const IPV6: [(&str, &str); 3] = [
    ("ENABLE_IPv6", "true"),
    ("ENABLE_IPv4", "false"),
    ("ENABLE_PREFIX_DELEGATION", "true"),
];

/// Started and ready, as the daemon is once its servers are up.
async fn ready(
    world: &World,
    env: &[(&str, &str)],
    host: Arc<RecordingHost>,
) -> Arc<vpcni_ipamd::node::Node> {
    let node = world.start(env, host).await;
    node.set_ready(true);
    node
}

fn primary_prefixes(world: &World) -> Vec<Ipv6Net> {
    world
        .enis()
        .into_iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0))
        .unwrap()
        .ipv6_prefixes
}

#[tokio::test]
async fn a_primary_eni_without_a_prefix_gets_one_and_pods_get_its_addresses() {
    let world = World::ipv6("m5.large");
    assert!(primary_prefixes(&world).is_empty());
    let host = RecordingHost::new();
    let node = ready(&world, &IPV6, host.clone()).await;
    let prefixes = primary_prefixes(&world);
    assert_eq!(prefixes.len(), 1, "one /80 on the primary ENI");
    assert_eq!(prefixes[0].prefix_len(), 80);
    assert_eq!(world.sim.counters().calls_to("AssignIpv6Addresses"), 1);
    assert_eq!(world.enis().len(), 1, "no secondary ENI in IPv6 mode");
    {
        let pool = node.pool();
        assert_eq!(pool.ipv6_block().unwrap().prefix(), prefixes[0]);
        assert_eq!(pool.stats(0).total, 0, "no IPv4 address is a pod's");
    }
    let programmed = host.programmed.lock().unwrap().clone();
    assert!(programmed.iter().all(|n| n.ipv6), "{programmed:?}");
    assert!(host.set_up.lock().unwrap().is_empty());

    let first = node.add(&pod(1)).unwrap();
    let address = first.ipv6.unwrap();
    assert!(prefixes[0].contains(&address));
    assert_ne!(address, prefixes[0].network());
    assert_eq!((first.device_number, first.route_table_id), (0, 254));
    assert_eq!(
        node.add(&pod(1)).unwrap(),
        first,
        "a repeated ADD gets the same address"
    );
    let second = node.add(&pod(2)).unwrap().ipv6.unwrap();
    assert_ne!(second, address);
    assert_eq!(node.del(&pod(1).key).unwrap().ipv6, Some(address));
    let third = node.add(&pod(3)).unwrap().ipv6.unwrap();
    assert!(
        third != address && third != second,
        "a released address is not handed out at once"
    );
    let vpc_block = world.sim.vpc_ipv6_cidr(&world.vpc).unwrap();
    assert_eq!(node.vpc_ipv6_cidrs(), [vpc_block]);

    let status = node.status();
    assert!(
        status.available > 1_000_000 && status.refusal.is_none(),
        "{status:?}"
    );
    let released = node.garbage_collect("aws-cni", &[pod(3).key]);
    assert_eq!(released, [pod(2).key]);
}

#[tokio::test]
async fn a_prefix_already_held_is_kept_and_the_pods_come_back_after_a_restart() {
    let world = World::ipv6("m5.large");
    let primary = world.enis().remove(0).network_interface_id;
    let held = world
        .sim
        .assign_ipv6_prefixes(&primary, &AddressRequest::Count(1))
        .await
        .unwrap()[0];
    let calls = world.sim.counters().calls_to("AssignIpv6Addresses");
    let node = ready(&world, &IPV6, RecordingHost::new()).await;
    assert_eq!(
        world.sim.counters().calls_to("AssignIpv6Addresses"),
        calls,
        "the /80 held is kept"
    );
    assert_eq!(node.pool().ipv6_block().unwrap().prefix(), held);
    let given: Vec<Ipv6Addr> = (0..5).map(|n| node.add(&pod(n)).unwrap().ipv6.unwrap()).collect();
    node.del(&pod(4).key).unwrap();
    drop(node);

    let restarted = ready(&world, &IPV6, RecordingHost::new()).await;
    assert_eq!(primary_prefixes(&world), [held]);
    for (n, ip) in given.iter().enumerate().take(4) {
        assert_eq!(
            restarted.add(&pod(n)).unwrap().ipv6,
            Some(*ip),
            "pod {n} keeps its address"
        );
    }
    let new = restarted.add(&pod(9)).unwrap().ipv6.unwrap();
    assert!(!given.contains(&new), "{new} was given before the restart");
}

#[tokio::test]
async fn allocations_outside_the_held_prefix_are_dropped_at_start_up() {
    let world = World::ipv6("m5.large");
    let checkpoint = r#"{"version":"vpc-cni-ipam/1","allocations":[
        {"networkName":"aws-cni","containerID":"elsewhere","ifName":"eth0","ipv6":"2001:db8::5"}]}"#;
    std::fs::write(world.checkpoint(), checkpoint).unwrap();
    let node = ready(&world, &IPV6, RecordingHost::new()).await;
    assert_eq!(node.pool().ipv6_block().unwrap().assigned(), 0);
}

#[tokio::test]
async fn a_xen_type_is_refused_naming_the_variable_and_the_type() {
    let world = World::ipv6("m4.large");
    let imds = world.sim.imds_for(&world.instance);
    let error = start(
        world.config(&IPV6),
        &world.sim,
        &imds,
        RecordingHost::new(),
        Arc::new(Metrics::new()),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(error, StartupError::Ipv6NeedsNitro { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("ENABLE_IPv6") && text.contains("m4.large") && text.contains("xen"),
        "{text}"
    );
    assert_eq!(world.sim.counters().calls_to("AssignIpv6Addresses"), 0);
}

/// After start-up nothing calls EC2 in IPv6 mode: the pool manager's cycles decide nothing, the leaked-ENI
/// sweep is off, and the pool manager's loop only waits to be stopped.
#[tokio::test]
async fn nothing_calls_ec2_after_start_up() {
    let world = World::ipv6("m5.large");
    let node = ready(&world, &IPV6, RecordingHost::new()).await;
    node.add(&pod(1)).unwrap();
    let calls = world.sim.counters().total_calls();
    for _ in 0..20 {
        let (decision, acted) = vpcni_ipamd::pool_loop::cycle(&node, &world.sim).await;
        assert!(
            !acted && matches!(decision, vpcni_engine::Decision::Nothing { .. }),
            "{decision:?}"
        );
    }
    assert!(!vpcni_ipamd::leaked::enabled(&node));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let manager = tokio::spawn(vpcni_ipamd::pool_loop::run(world.manager(&node), stopped.clone()));
    let sweep = tokio::spawn(vpcni_ipamd::leaked::run(
        node.clone(),
        Arc::new(world.sim.clone()),
        stopped,
    ));
    stop.send(true).unwrap();
    manager.await.unwrap();
    sweep.await.unwrap();
    assert_eq!(world.sim.counters().total_calls(), calls);
}

/// A restored pod whose host veth went while the daemon was down is released (once its address is older
/// than the grace period); one whose veth is there keeps its address.
#[tokio::test]
async fn a_pod_whose_veth_is_gone_is_released_at_start_up() {
    let world = World::ipv6("m5.large");
    let primary = world.enis().remove(0).network_interface_id;
    let prefix = world
        .sim
        .assign_ipv6_prefixes(&primary, &AddressRequest::Count(1))
        .await
        .unwrap()[0];
    let address = |n: u128| Ipv6Addr::from(u128::from(prefix.network()) | n);
    let an_hour_ago = (vpcni_ipamd::clock::now_ms() - 3_600_000) * 1_000_000;
    let allocation = |pod: &str, n: u128| {
        format!(
            r#"{{"networkName":"aws-cni","containerID":"{pod}","ifName":"eth0","ipv6":"{}","allocationTimestamp":{an_hour_ago},"metadata":{{"k8sPodNamespace":"default","k8sPodName":"{pod}","interfacesCount":1}}}}"#,
            address(n)
        )
    };
    std::fs::write(
        world.checkpoint(),
        format!(
            r#"{{"version":"vpc-cni-ipam/1","allocations":[{},{}]}}"#,
            allocation("gone", 5),
            allocation("here", 6)
        ),
    )
    .unwrap();
    let host = RecordingHost::new();
    host.missing_veths
        .lock()
        .unwrap()
        .insert(vpcni_dataplane::naming::host_veth_name("eni", "default", "gone"));
    let node = ready(&world, &IPV6, host).await;
    let pool = node.pool();
    let block = pool.ipv6_block().unwrap();
    let held: Vec<(String, Ipv6Addr)> = block
        .allocations()
        .into_iter()
        .map(|(key, _, a)| (key.container_id, a.ip))
        .collect();
    assert_eq!(held, [("here".to_owned(), address(6))]);
}
