//! The checkpoint: round trip, the original's format, corruption and version errors, restore.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test or benchmark is its failure report

use std::net::Ipv4Addr;

use vpcni_engine::checkpoint::{Checkpoint, CheckpointError};
use vpcni_engine::forecast::ForecastNode;
use vpcni_engine::{NodeLimits, PodInfo, PodKey, Pool, PoolConfig, PoolError};

fn pool_with_pods(pods: usize) -> (Pool, u64) {
    let limits = NodeLimits::for_instance(vpcni_limits::builtin().get("m5.xlarge").unwrap(), None, false);
    let mut node = ForecastNode::new(PoolConfig::default(), limits, false);
    node.converge(100);
    for _ in 0..pods {
        node.add_pod().unwrap();
        node.converge(100);
    }
    (node.pool().clone(), node.now())
}

/// The same ENIs and addresses, with no allocations: what a restarted daemon rebuilds from EC2.
fn empty_copy(pool: &Pool) -> Pool {
    let mut fresh = Pool::new(pool.config().clone(), pool.limits().clone());
    for eni in pool.enis() {
        let mut eni = eni.clone();
        for cidr in eni.cidrs.values_mut() {
            for slot in &mut cidr.slots {
                slot.holder = None;
                slot.unassigned_at = None;
            }
        }
        fresh.add_eni(eni).unwrap();
    }
    fresh
}

#[test]
fn round_trip_through_a_file_restores_every_allocation_and_cooldown() {
    let (mut pool, now) = pool_with_pods(20);
    pool.unassign(&PodKey::new("vpcni", "pod19", "eth0"), now);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    Checkpoint::from_pool(&pool, now).write(&path).unwrap();
    let loaded = Checkpoint::load(&path).unwrap().unwrap();
    assert_eq!(loaded.allocations.len(), 19);
    assert_eq!(loaded.cooling.len(), 1);

    let mut restarted = empty_copy(&pool);
    assert!(loaded.restore_into(&mut restarted).is_empty());
    assert_eq!(restarted.allocations(), pool.allocations());
    assert_eq!(restarted.cooling_addresses(now), pool.cooling_addresses(now));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn the_originals_file_is_read() {
    let (pool, now) = pool_with_pods(3);
    let first = pool.allocations()[0].2.ip;
    let original = format!(
        r#"{{"version":"vpc-cni-ipam/1","allocations":[
            {{"networkName":"aws-cni","containerID":"abc123","ifName":"eth0","ipv4":"{first}",
              "allocationTimestamp":1700000000123456789,
              "metadata":{{"k8sPodNamespace":"kube-system","k8sPodName":"coredns-1","interfacesCount":1}}}},
            {{"networkName":"_migrated-from-cri","containerID":"old","ifName":"unknown","ipv6":"fd00::1"}}]}}"#
    );
    let checkpoint = Checkpoint::parse(&original, "ipam.json".as_ref()).unwrap();
    assert_eq!(checkpoint.allocations.len(), 2);
    let mut restarted = empty_copy(&pool);
    let dropped = checkpoint.restore_into(&mut restarted);
    // An IPv6 allocation has no /80 to go back to in an IPv4 pool: dropped, saying why.
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0.container_id, "old");
    assert!(
        dropped[0].1.to_string().contains("not in IPv6 mode"),
        "{}",
        dropped[0].1
    );
    let key = PodKey::new("aws-cni", "abc123", "eth0");
    let assignment = restarted.lookup(&key).unwrap();
    assert_eq!(assignment.ip, first);
    assert_eq!(assignment.assigned_at, 1_700_000_000_123);
    let _ = now;
    // What we write back is still the original's format: its fields, its version.
    let written: serde_json::Value = serde_json::to_value(Checkpoint::from_pool(&restarted, now)).unwrap();
    assert_eq!(written["version"], "vpc-cni-ipam/1");
    assert_eq!(written["allocations"][0]["metadata"]["k8sPodName"], "coredns-1");
    assert!(
        written.get("vpcniCooling").is_none(),
        "omitted when empty, so the file stays the original's"
    );
}

#[test]
fn addresses_the_node_no_longer_has_are_dropped_with_a_reason() {
    let (pool, _) = pool_with_pods(1);
    let text = r#"{"version":"vpc-cni-ipam/1","allocations":[
        {"networkName":"vpcni","containerID":"gone","ifName":"eth0","ipv4":"192.168.9.9"}]}"#;
    let checkpoint = Checkpoint::parse(text, "x".as_ref()).unwrap();
    let mut restarted = empty_copy(&pool);
    let dropped = checkpoint.restore_into(&mut restarted);
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        dropped[0].1,
        PoolError::UnknownAddress(Ipv4Addr::new(192, 168, 9, 9))
    );
}

#[test]
fn two_keys_on_one_address_are_caught() {
    let (pool, _) = pool_with_pods(1);
    let ip = pool.allocations()[0].2.ip;
    let text = format!(
        r#"{{"version":"vpc-cni-ipam/1","allocations":[
        {{"networkName":"vpcni","containerID":"a","ifName":"eth0","ipv4":"{ip}"}},
        {{"networkName":"vpcni","containerID":"b","ifName":"eth0","ipv4":"{ip}"}}]}}"#
    );
    let mut restarted = empty_copy(&pool);
    let dropped = Checkpoint::parse(&text, "x".as_ref())
        .unwrap()
        .restore_into(&mut restarted);
    assert_eq!(dropped.len(), 1);
    assert!(matches!(dropped[0].1, PoolError::DoubleAssignment { .. }));
    assert_eq!(restarted.holder_of(ip), Some(PodKey::new("vpcni", "a", "eth0")));
}

/// Found by the checkpoint fuzzer: a key listed twice with two addresses held both, but looked up only the
/// second, so DEL released the second and the first stayed held by nobody's pod until the next restart.
#[test]
fn one_key_listed_twice_keeps_its_first_address_only() {
    let (pool, _) = pool_with_pods(2);
    let (first, second) = (pool.allocations()[0].2.ip, pool.allocations()[1].2.ip);
    let text = format!(
        r#"{{"version":"vpc-cni-ipam/1","allocations":[
        {{"networkName":"vpcni","containerID":"a","ifName":"eth0","ipv4":"{first}"}},
        {{"networkName":"vpcni","containerID":"a","ifName":"eth0","ipv4":"{second}"}}]}}"#
    );
    let mut restarted = empty_copy(&pool);
    let dropped = Checkpoint::parse(&text, "x".as_ref())
        .unwrap()
        .restore_into(&mut restarted);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(
        dropped[0].1,
        PoolError::KeyHoldsAnother {
            container: "a".into(),
            held: first,
            ip: second
        }
    );
    let key = PodKey::new("vpcni", "a", "eth0");
    assert_eq!(restarted.lookup(&key).unwrap().ip, first);
    assert_eq!(restarted.holder_of(second), None);
    assert_eq!(restarted.allocations().len(), 1);
    let held: usize = restarted.enis().map(|e| e.assigned()).sum();
    assert_eq!(held, 1);
}

#[test]
fn corrupt_and_unknown_versions_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    std::fs::write(&path, "{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{").unwrap();
    let error = Checkpoint::load(&path).unwrap_err();
    assert!(matches!(error, CheckpointError::Corrupt { .. }));
    assert!(error.to_string().contains("left untouched"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{"
    );

    std::fs::write(&path, r#"{"version":"vpc-cni-ipam/2","allocations":[]}"#).unwrap();
    let error = Checkpoint::load(&path).unwrap_err();
    assert!(matches!(error, CheckpointError::UnknownVersion { ref found, .. } if found == "vpc-cni-ipam/2"));

    std::fs::write(&path, r#"{"allocations":[]}"#).unwrap();
    assert!(matches!(
        Checkpoint::load(&path).unwrap_err(),
        CheckpointError::Corrupt { .. }
    ));
    std::fs::write(
        &path,
        r#"{"version":"vpc-cni-ipam/1","allocations":[{"networkName":5}]}"#,
    )
    .unwrap();
    assert!(matches!(
        Checkpoint::load(&path).unwrap_err(),
        CheckpointError::Corrupt { .. }
    ));
    assert!(
        Checkpoint::load(&dir.path().join("missing.json"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn pod_metadata_survives() {
    let (mut pool, now) = pool_with_pods(0);
    let key = PodKey::new("vpcni", "c", "eth0");
    pool.assign(
        &key,
        &PodInfo {
            namespace: "team-a".into(),
            name: "web-0".into(),
        },
        now,
    )
    .unwrap();
    let checkpoint = Checkpoint::from_pool(&pool, now);
    let text = serde_json::to_string(&checkpoint).unwrap();
    assert!(text.contains(r#""k8sPodNamespace":"team-a""#) && text.contains(r#""k8sPodName":"web-0""#));
}
