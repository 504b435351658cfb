//! Property tests: random sequences of ADD, DEL, policy cycles (some of which EC2 fails), clock steps and
//! daemon restarts from the checkpoint, on random settings. The test plays EC2 itself and keeps its own
//! model of the node: which addresses EC2 gave each ENI, which pod holds which address, and when each
//! address was released. Every answer of the engine is checked against that model, not against the
//! engine's own bookkeeping:
//! - an ADD gets a usable address (on an ENI that carries pods, held by nobody, not released within the
//!   cooldown), and is refused only when the model has no usable address;
//! - a repeated ADD gets the same address, a DEL gives back the address the pod held;
//! - the policy never releases or frees what a pod holds, never asks EC2 for more than the instance allows;
//! - a restart from the checkpoint keeps every pod's address and every cooldown;
//! - left alone, the pool settles where the settings say (WARM_ENI_TARGET, WARM_IP_TARGET,
//!   MINIMUM_IP_TARGET, WARM_PREFIX_TARGET), unless the node cannot grow or holds max pods already.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use vpcni_engine::checkpoint::Checkpoint;
use vpcni_engine::{
    Decision, Eni, EniFlags, GrowFailure, Millis, NoAddressReason, NodeLimits, PodInfo, PodKey, Pool,
    PoolConfig,
};

/// Addresses in a /28 prefix.
const PREFIX_SIZE: usize = 16;

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Del(u8),
    /// Policy cycles; the first one that asks EC2 for addresses or an ENI gets this failure, if any.
    Cycles(u8, Option<GrowFailure>),
    Advance(u32),
    /// The daemon restarts: a new pool from what EC2 lists, then the checkpoint written before.
    Restart,
}

fn failure() -> impl Strategy<Value = Option<GrowFailure>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(GrowFailure::SubnetExhausted("subnet-prop".into()))),
        1 => Just(Some(GrowFailure::NoFreePrefix("subnet-prop".into()))),
        1 => Just(Some(GrowFailure::Throttled)),
        1 => Just(Some(GrowFailure::Other("InternalError".into()))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..60).prop_map(Op::Add),
        3 => (0u8..60).prop_map(Op::Del),
        3 => ((1u8..6), failure()).prop_map(|(n, f)| Op::Cycles(n, f)),
        2 => (0u32..120_000).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

fn targets() -> impl Strategy<Value = PoolConfig> {
    prop_oneof![
        (0u32..3).prop_map(|warm_eni_target| PoolConfig {
            warm_eni_target,
            ..PoolConfig::default()
        }),
        (0u32..20, 0u32..30)
            .prop_filter("a target", |(w, m)| w + m > 0)
            .prop_map(|(warm_ip_target, minimum_ip_target)| {
                PoolConfig {
                    warm_ip_target,
                    minimum_ip_target,
                    ..PoolConfig::default()
                }
            }),
        (1u32..3).prop_map(|warm_prefix_target| PoolConfig {
            prefix_delegation: true,
            warm_prefix_target,
            ..PoolConfig::default()
        }),
        (1u32..20, 0u32..40).prop_map(|(warm_ip_target, minimum_ip_target)| PoolConfig {
            prefix_delegation: true,
            warm_ip_target,
            minimum_ip_target,
            ..PoolConfig::default()
        }),
    ]
}

fn config() -> impl Strategy<Value = PoolConfig> {
    // IP_COOLDOWN_PERIOD: the default, none, or anything up to 90 s.
    let cooldown = prop_oneof![Just(30_000u64), Just(0u64), 0u64..90_000];
    (targets(), cooldown).prop_map(|(config, ip_cooldown_ms)| PoolConfig {
        ip_cooldown_ms,
        ..config
    })
}

fn instance() -> impl Strategy<Value = (&'static str, Option<u32>, bool, bool)> {
    (
        prop::sample::select(vec![
            "m5.xlarge",
            "t3.medium",
            "m5.large",
            "c5.4xlarge",
            "t3.nano",
        ]),
        prop::option::of(1u32..4),
        any::<bool>(),
        any::<bool>(),
    )
}

/// What EC2 holds for one ENI of the node.
#[derive(Debug, Clone)]
struct Ec2Eni {
    device: u32,
    primary_ip: Ipv4Addr,
    cidrs: BTreeSet<Ipv4Net>,
}

/// EC2 (which answers yes unless told to fail), the engine's pool, and the test's model of the node.
struct Harness {
    pool: Pool,
    config: PoolConfig,
    limits: NodeLimits,
    custom_networking: bool,
    now: Millis,
    ec2: BTreeMap<String, Ec2Eni>,
    next_ip: u32,
    next_prefix: u32,
    next_device: u32,
    /// Pod (by index) → the address it holds.
    held: HashMap<u8, Ipv4Addr>,
    /// Address → when its last holder released it.
    released_at: HashMap<Ipv4Addr, Millis>,
}

const SUBNET: &str = "10.0.0.0/16";

fn key(k: u8) -> PodKey {
    PodKey::new("vpcni", format!("k{k}"), "eth0")
}

fn addresses_of(net: &Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(net.network())..=u32::from(net.broadcast())).map(Ipv4Addr::from)
}

impl Harness {
    fn new(config: PoolConfig, limits: NodeLimits, custom_networking: bool) -> Self {
        let base = u32::from(SUBNET.parse::<Ipv4Net>().unwrap().network());
        let mut ec2 = BTreeMap::new();
        ec2.insert(
            "eni-primary".to_owned(),
            Ec2Eni {
                device: 0,
                primary_ip: Ipv4Addr::from(base + 10),
                cidrs: BTreeSet::new(),
            },
        );
        let mut harness = Self {
            pool: Pool::new(config.clone(), limits.clone()),
            config,
            limits,
            custom_networking,
            now: 0,
            ec2,
            next_ip: base + 11,
            // Prefixes from the upper half of the subnet, aligned, so they never meet single addresses.
            next_prefix: base + (1 << 15),
            next_device: 1,
            held: HashMap::new(),
            released_at: HashMap::new(),
        };
        harness.pool = harness.pool_from_ec2();
        harness
    }

    /// A fresh pool holding what EC2 lists, as the daemon builds it at start-up.
    fn pool_from_ec2(&self) -> Pool {
        let mut pool = Pool::new(self.config.clone(), self.limits.clone());
        let subnet: Ipv4Net = SUBNET.parse().unwrap();
        for (id, eni) in &self.ec2 {
            let flags = EniFlags {
                primary: eni.device == 0,
                excluded: self.custom_networking && eni.device == 0,
                ..EniFlags::default()
            };
            pool.add_eni(Eni::new(id, eni.device, flags, subnet, eni.primary_ip, self.now))
                .unwrap();
            let cidrs: Vec<Ipv4Net> = eni.cidrs.iter().copied().collect();
            pool.add_cidrs(id, &cidrs).unwrap();
        }
        pool
    }

    fn carries_pods(&self, eni: &Ec2Eni) -> bool {
        !(self.custom_networking && eni.device == 0)
    }

    /// Addresses a pod may be given now, by the model: on an ENI that carries pods, in a CIDR of the mode in
    /// use, held by nobody, and not released less than the cooldown ago.
    fn usable(&self) -> BTreeSet<Ipv4Addr> {
        let held: BTreeSet<Ipv4Addr> = self.held.values().copied().collect();
        self.pod_addresses()
            .filter(|ip| !held.contains(ip) && !self.is_cooling(*ip))
            .collect()
    }

    fn is_cooling(&self, ip: Ipv4Addr) -> bool {
        self.released_at
            .get(&ip)
            .is_some_and(|at| self.now < at + self.config.ip_cooldown_ms)
    }

    /// Every address on ENIs that carry pods, in the mode in use.
    fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let prefixes = self.config.prefix_delegation;
        self.ec2
            .values()
            .filter(|eni| self.carries_pods(eni))
            .flat_map(|eni| eni.cidrs.iter())
            .filter(move |net| (net.prefix_len() < 32) == prefixes)
            .flat_map(addresses_of)
    }

    fn new_cidrs(&mut self, count: u32, prefixes: bool) -> Vec<Ipv4Net> {
        (0..count)
            .map(|_| {
                if prefixes {
                    let net = Ipv4Net::new(Ipv4Addr::from(self.next_prefix), 28).unwrap();
                    self.next_prefix += PREFIX_SIZE as u32;
                    net
                } else {
                    let net = Ipv4Net::new(Ipv4Addr::from(self.next_ip), 32).unwrap();
                    self.next_ip += 1;
                    net
                }
            })
            .collect()
    }

    fn add(&mut self, k: u8) {
        let pod = PodInfo {
            namespace: "ns".into(),
            name: format!("p{k}"),
        };
        let usable = self.usable();
        let result = self.pool.assign(&key(k), &pod, self.now);
        if let Some(held) = self.held.get(&k) {
            let again = result.expect("a repeated ADD is answered");
            assert_eq!(again.ip, *held, "a repeated ADD returns the same address");
            return;
        }
        match result {
            Ok(assignment) => {
                assert!(
                    usable.contains(&assignment.ip),
                    "k{k} got {} at {} ms, which is not usable: held by {:?}, released at {:?} (cooldown {} ms), \
                     on the node: {}",
                    assignment.ip,
                    self.now,
                    self.held.iter().find(|(_, ip)| **ip == assignment.ip),
                    self.released_at.get(&assignment.ip),
                    self.config.ip_cooldown_ms,
                    self.pod_addresses().any(|ip| ip == assignment.ip)
                );
                assert_eq!(
                    self.ec2.get(&assignment.eni_id).map(|e| e.device),
                    Some(assignment.device_number),
                    "{assignment:?}"
                );
                self.held.insert(k, assignment.ip);
            }
            Err(refusal) => {
                assert!(
                    usable.is_empty(),
                    "k{k} refused ({:?}: {}) while {} addresses were usable: {usable:?}",
                    refusal.reason,
                    refusal.message,
                    usable.len()
                );
                assert!(!refusal.message.is_empty());
                if refusal.reason == NoAddressReason::AllCoolingDown {
                    let cooling = self.pod_addresses().filter(|ip| self.is_cooling(*ip)).count();
                    assert!(cooling > 0, "refused as all cooling down, but none is");
                }
            }
        }
    }

    fn del(&mut self, k: u8) {
        let released = self.pool.unassign(&key(k), self.now);
        let expected = self.held.remove(&k);
        assert_eq!(released.map(|a| a.ip), expected, "DEL of k{k}");
        if let Some(ip) = expected {
            self.released_at.insert(ip, self.now);
        }
    }

    /// One pool cycle: decide, check the decision against the model, carry it out as EC2 (failing a
    /// request for addresses if told to), advance by the original's 5 s cycle. Returns whether `fail` was
    /// used.
    fn cycle(&mut self, fail: Option<&GrowFailure>) -> bool {
        let decision = self.pool.decide(self.now);
        let held: BTreeSet<Ipv4Addr> = self.held.values().copied().collect();
        let slots = self.limits.slots_per_eni as usize;
        let mut failed = false;
        match decision {
            Decision::Nothing { .. } => {}
            Decision::AddIps { ref eni_id, count } | Decision::AddPrefixes { ref eni_id, count } => {
                let prefixes = matches!(decision, Decision::AddPrefixes { .. });
                let eni = self.ec2.get(eni_id).expect("addresses for an ENI EC2 has");
                assert!(count > 0, "{decision:?}");
                assert!(
                    eni.cidrs.len() + count as usize <= slots,
                    "{decision:?}: {eni_id} has {} of {slots} slots used; EC2 would refuse",
                    eni.cidrs.len()
                );
                assert!(self.carries_pods(eni), "{decision:?} on an ENI without pods");
                if let Some(failure) = fail {
                    self.pool.record_grow_failure(failure.clone(), self.now);
                    failed = true;
                } else {
                    let cidrs = self.new_cidrs(count, prefixes);
                    self.ec2
                        .get_mut(eni_id)
                        .unwrap()
                        .cidrs
                        .extend(cidrs.iter().copied());
                    self.pool.add_cidrs(eni_id, &cidrs).unwrap();
                    self.pool.record_grow_success();
                }
            }
            Decision::CreateEni { ips, prefixes } => {
                let reserved = u32::from(self.limits.reserve_trunk_slot);
                assert!(
                    self.ec2.len() as u32 + reserved < self.limits.max_enis,
                    "{decision:?} with {} ENIs of {} (trunk slot kept: {reserved})",
                    self.ec2.len(),
                    self.limits.max_enis
                );
                assert!((ips + prefixes) as usize <= slots, "{decision:?}");
                assert!(ips == 0 || prefixes == 0, "{decision:?}");
                if let Some(failure) = fail {
                    self.pool.record_grow_failure(failure.clone(), self.now);
                    failed = true;
                } else {
                    let device = self.next_device;
                    self.next_device += 1;
                    let primary_ip = self.new_cidrs(1, false)[0].addr();
                    let cidrs = if prefixes > 0 {
                        self.new_cidrs(prefixes, true)
                    } else {
                        self.new_cidrs(ips, false)
                    };
                    let id = format!("eni-{device}");
                    self.ec2.insert(
                        id.clone(),
                        Ec2Eni {
                            device,
                            primary_ip,
                            cidrs: cidrs.iter().copied().collect(),
                        },
                    );
                    let eni = Eni::new(
                        &id,
                        device,
                        EniFlags::default(),
                        SUBNET.parse().unwrap(),
                        primary_ip,
                        self.now,
                    );
                    self.pool.add_eni(eni).unwrap();
                    self.pool.add_cidrs(&id, &cidrs).unwrap();
                    self.pool.record_grow_success();
                }
            }
            Decision::Release { ref cidrs } => {
                for (eni_id, net) in cidrs {
                    let eni = self.ec2.get_mut(eni_id).expect("a release from an ENI EC2 has");
                    assert!(eni.cidrs.remove(net), "{net} is not on {eni_id}");
                    assert!(
                        !addresses_of(net).any(|ip| held.contains(&ip)),
                        "releasing {net}, which a pod holds"
                    );
                    self.pool.remove_cidrs(eni_id, &[*net]).unwrap();
                }
                self.pool.record_release(self.now);
            }
            Decision::FreeEni { ref eni_id } => {
                let eni = self.ec2.remove(eni_id).expect("freeing an ENI EC2 has");
                assert_ne!(eni.device, 0, "freeing the primary ENI");
                assert!(
                    !eni.cidrs
                        .iter()
                        .flat_map(addresses_of)
                        .any(|ip| held.contains(&ip)),
                    "freeing {eni_id}, where a pod holds an address"
                );
                self.pool.remove_eni(eni_id).unwrap();
            }
        }
        self.now += 5_000;
        failed
    }

    /// The daemon restarts: the checkpoint it wrote (through its file format), a pool of what EC2 lists.
    fn restart(&mut self) {
        let text = serde_json::to_string(&Checkpoint::from_pool(&self.pool, self.now)).unwrap();
        let checkpoint = Checkpoint::parse(&text, Path::new("ipam.json")).unwrap();
        let mut pool = self.pool_from_ec2();
        let dropped = checkpoint.restore_into(&mut pool);
        assert!(dropped.is_empty(), "restore dropped {dropped:?}");
        self.pool = pool;
    }

    /// The pool matches the model: the addresses EC2 gave, the pods' addresses.
    fn check_invariants(&self) {
        let pool_enis: BTreeMap<String, BTreeSet<Ipv4Net>> = self
            .pool
            .enis()
            .map(|e| (e.id.clone(), e.cidrs.keys().copied().collect()))
            .collect();
        let ec2_enis: BTreeMap<String, BTreeSet<Ipv4Net>> = self
            .ec2
            .iter()
            .map(|(id, e)| (id.clone(), e.cidrs.clone()))
            .collect();
        assert_eq!(pool_enis, ec2_enis, "the pool holds what EC2 gave, and only that");
        let allocations: BTreeMap<String, Ipv4Addr> = self
            .pool
            .allocations()
            .into_iter()
            .map(|(key, _, a)| (key.container_id, a.ip))
            .collect();
        let expected: BTreeMap<String, Ipv4Addr> =
            self.held.iter().map(|(k, ip)| (format!("k{k}"), *ip)).collect();
        assert_eq!(
            allocations, expected,
            "every ADDed pod, and only those, holds its address"
        );
        for (k, ip) in &self.held {
            assert_eq!(self.pool.holder_of(*ip), Some(key(*k)));
        }
        assert!(self.ec2.len() as u32 <= self.limits.max_enis);
    }

    /// After a long quiet spell: the pool meets the settings' targets unless the node cannot grow or holds
    /// max pods, and keeps no surplus the settings say to give back. Counted from the model.
    fn check_settled(&self) {
        let config = &self.config;
        let slots = self.limits.slots_per_eni as usize;
        let per_eni = if config.prefix_delegation {
            slots * PREFIX_SIZE
        } else {
            slots
        };
        let held: BTreeSet<Ipv4Addr> = self.held.values().copied().collect();
        let total = self.pod_addresses().count();
        let assigned = held.len();
        let available = total - assigned;
        let prefix_nets: Vec<&Ipv4Net> = self
            .ec2
            .values()
            .filter(|eni| self.carries_pods(eni))
            .flat_map(|eni| eni.cidrs.iter())
            .filter(|net| net.prefix_len() < 32)
            .collect();
        let total_prefixes = prefix_nets.len();
        let free_prefixes = prefix_nets
            .iter()
            .filter(|net| !addresses_of(net).any(|ip| held.contains(&ip)))
            .count();
        let enis_for_pods: Vec<&Ec2Eni> = self.ec2.values().filter(|e| self.carries_pods(e)).collect();
        let reserved = usize::from(self.limits.reserve_trunk_slot);
        let can_grow = enis_for_pods.iter().any(|e| e.cidrs.len() < slots)
            || self.ec2.len() + reserved < self.limits.max_enis as usize;
        let at_max_pods = total >= self.limits.max_pods as usize;
        let shape = format!(
            "{config:?}, {:?}: {total} addresses ({available} free, {total_prefixes} prefixes, {free_prefixes} \
             free) on {} ENIs",
            self.limits,
            self.ec2.len()
        );

        let uses_ip_targets = config.warm_ip_target > 0 || config.minimum_ip_target > 0;
        let low = if uses_ip_targets {
            available < config.warm_ip_target as usize || total < config.minimum_ip_target as usize
        } else if config.prefix_delegation {
            available < PREFIX_SIZE * config.warm_prefix_target as usize
                || (config.warm_prefix_target == 0 && available == 0)
        } else {
            available < per_eni * config.warm_eni_target as usize
                || (config.warm_eni_target == 0 && available == 0)
        };
        assert!(
            !low || !can_grow || at_max_pods,
            "settled below its targets though it could grow: {shape}"
        );

        // Surplus the settings give back.
        if uses_ip_targets && !config.prefix_delegation {
            assert!(
                available <= config.warm_ip_target as usize || total <= config.minimum_ip_target as usize,
                "settled with surplus addresses: {shape}"
            );
        } else if uses_ip_targets {
            let needed = (assigned + config.warm_ip_target as usize).div_ceil(PREFIX_SIZE);
            let floor = (config.minimum_ip_target as usize).div_ceil(PREFIX_SIZE);
            assert!(
                free_prefixes == 0 || total_prefixes <= needed.max(floor),
                "settled with surplus prefixes: {shape}"
            );
        } else if config.prefix_delegation {
            assert!(
                free_prefixes <= config.warm_prefix_target as usize,
                "settled with more free prefixes than WARM_PREFIX_TARGET: {shape}"
            );
        }
    }
}

proptest! {
    // A thousand cases: fewer missed a refusal bug planted in `assign` (about one case in a few hundred hits it).
    // Seeded, so every run tries the same cases (a test that fails one run in fifty is a broken build);
    // PROPTEST_RNG_SEED=<n> explores others.
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: match ProptestConfig::default().rng_seed {
            proptest::test_runner::RngSeed::Random => proptest::test_runner::RngSeed::Fixed(20_261_201),
            chosen => chosen,
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_workloads_keep_every_invariant(
        config in config(),
        (instance_type, max_eni, custom, sgp) in instance(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let limits = NodeLimits::for_instance(vpcni_limits::builtin().get(instance_type).unwrap(), max_eni, sgp);
        let mut node = Harness::new(config, limits, custom);
        for op in ops {
            match op {
                Op::Add(k) => node.add(k),
                Op::Del(k) => node.del(k),
                Op::Cycles(n, failure) => {
                    let mut failure = failure;
                    for _ in 0..n {
                        if node.cycle(failure.as_ref()) {
                            failure = None;
                        }
                    }
                }
                Op::Advance(ms) => node.now += u64::from(ms),
                Op::Restart => node.restart(),
            }
            node.check_invariants();
        }

        // Left alone, with EC2 saying yes and every timer run out, the pool settles where the settings say.
        for _ in 0..400 {
            node.cycle(None);
            node.now += 60_000;
        }
        node.check_invariants();
        let decision = node.pool.decide(node.now);
        prop_assert!(matches!(decision, Decision::Nothing { .. }), "not settled: {:?}", decision);
        node.check_settled();
    }
}
