//! The checkpoint loader: ours (`/var/run/vpcni/ipam.json`, `vpc-cni-ipam/1` plus `vpcniCooling`) and the
//! original's (`/var/run/aws-node/ipam.json`, imported through the same loader, VPCNI_IMPORT_CHECKPOINT):
//! a file that a crash, a full disk or another program may have left in any state.
//!
//! Input: the file's text. It is parsed (`Checkpoint::parse`, what `Checkpoint::load` runs on the file's
//! contents) and restored into a node's pool as the daemon does at start-up.
//!
//! Checks: what loads, saved and loaded again, is the same checkpoint (`Checkpoint::write` serialises with
//! serde_json, as here); after the restore the pool is consistent: every address held by a pod is the one
//! its key looks up, each ENI's count of held addresses is right, every allocation not dropped holds its
//! address; and a checkpoint of the restored pool restores into a fresh pool with the same allocations (a
//! second restart changes nothing).

#![no_main]

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use libfuzzer_sys::fuzz_target;
use vpcni_engine::checkpoint::Checkpoint;
use vpcni_engine::{Eni, EniFlags, NodeLimits, Pool, PoolConfig};

const NOW: u64 = 1_700_000_000_000;

/// A node as EC2 describes it at start-up: a primary ENI with secondary addresses and a prefix, and a
/// second ENI with a prefix.
fn node() -> Pool {
    let limits = NodeLimits {
        max_enis: 4,
        max_eni_configured: false,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
        slots_per_eni: 14,
        max_pods: 110,
    };
    let mut pool = Pool::new(PoolConfig::default(), limits);
    let subnet: Ipv4Net = "10.0.0.0/16".parse().expect("CIDR");
    let primary = EniFlags {
        primary: true,
        ..EniFlags::default()
    };
    pool.add_eni(Eni::new(
        "eni-1",
        0,
        primary,
        subnet,
        Ipv4Addr::new(10, 0, 0, 10),
        0,
    ))
    .expect("ENI");
    let mut cidrs: Vec<Ipv4Net> = (11..=20)
        .map(|n| Ipv4Net::from(Ipv4Addr::new(10, 0, 0, n)))
        .collect();
    cidrs.push("10.0.1.0/28".parse().expect("CIDR"));
    pool.add_cidrs("eni-1", &cidrs).expect("CIDRs");
    pool.add_eni(Eni::new(
        "eni-2",
        1,
        EniFlags::default(),
        subnet,
        Ipv4Addr::new(10, 0, 0, 30),
        0,
    ))
    .expect("ENI");
    pool.add_cidrs("eni-2", &["10.0.2.0/28".parse().expect("CIDR")])
        .expect("CIDRs");
    pool
}

/// The pool's own bookkeeping agrees with its addresses.
fn check_consistent(pool: &Pool) {
    let mut held = 0;
    for eni in pool.enis() {
        let mut on_eni = 0;
        for slot in eni.cidrs.values().flat_map(|c| c.slots.iter()) {
            if let Some((key, _, _)) = &slot.holder {
                on_eni += 1;
                let found = pool.lookup(key).map(|a| a.ip);
                assert_eq!(
                    found,
                    Some(slot.ip),
                    "{key:?} holds {} but looks up {found:?}",
                    slot.ip
                );
            }
        }
        assert_eq!(eni.assigned(), on_eni, "{}'s count of held addresses", eni.id);
        held += on_eni;
    }
    assert_eq!(pool.allocations().len(), held, "allocations vs held addresses");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/var/run/vpcni/ipam.json");
    let Ok(checkpoint) = Checkpoint::parse(text, path) else {
        return;
    };

    // load(save(x)) == x.
    let saved = serde_json::to_string(&checkpoint).expect("a loaded checkpoint serialises");
    let reloaded = Checkpoint::parse(&saved, path).expect("a saved checkpoint loads");
    assert_eq!(reloaded, checkpoint);

    // Restore as at start-up.
    let mut pool = node();
    let dropped = checkpoint.restore_into(&mut pool);
    check_consistent(&pool);
    for allocation in &checkpoint.allocations {
        let Some(ip) = allocation.ipv4 else { continue };
        if dropped.iter().any(|(d, _)| d == allocation) {
            continue;
        }
        let key = vpcni_engine::PodKey::new(
            &allocation.network_name,
            &allocation.container_id,
            &allocation.if_name,
        );
        assert_eq!(
            pool.lookup(&key).map(|a| a.ip),
            Some(ip),
            "restored {key:?} holds {ip}"
        );
    }

    // A second restart restores the same allocations.
    let again = Checkpoint::from_pool(&pool, NOW);
    let text = serde_json::to_string(&again).expect("serialises");
    let again = Checkpoint::parse(&text, path).expect("loads");
    let mut restarted = node();
    assert!(
        again.restore_into(&mut restarted).is_empty(),
        "nothing dropped the second time"
    );
    check_consistent(&restarted);
    assert_eq!(restarted.allocations(), pool.allocations());
});
