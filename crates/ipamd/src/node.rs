//! The node: the engine's pool behind a lock, the checkpoint written on every change, metrics kept in step,
//! and the views the gRPC server and introspection read.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_engine::checkpoint::{Checkpoint, CheckpointError};
use vpcni_engine::{Decision, Millis, NoAddressReason, PodInfo, Pool};
use vpcni_layout::ORIGINAL_NETWORK_NAME;
use vpcni_rpc::FailureReason;

pub use crate::clock::now_ms;
use crate::config::Config;
use crate::cooldown::ReturnedCooldowns;
use crate::discovery::NodeIdentity;
use crate::host::Host;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::server::{AddressBook, Assigned, PodKey, PodRequest, PoolStatus, Refusal};

/// Decisions kept for `/v1/pool`.
const RECENT_DECISIONS: usize = 32;

/// A restored pod whose host veth was missing at start-up but whose address was given too recently to
/// release at once (its plugin may still be wiring it): checked again once `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethCheck {
    /// The allocation.
    pub key: vpcni_engine::PodKey,
    /// The host veth that should exist.
    pub veth: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// When to look again.
    pub due: Millis,
}

/// How long reconcile ignores an address or ENI given back to EC2 (the original's `ipReconcileCooldown`):
/// instance metadata may still list it for a while.
pub const RECONCILE_COOLDOWN_MS: Millis = 60_000;

/// CIDRs and ENIs given back to EC2 lately.
#[derive(Debug, Default)]
pub struct RecentlyFreed {
    cidrs: HashMap<Ipv4Net, Millis>,
    enis: HashMap<String, Millis>,
}

/// One node's state.
#[derive(Debug)]
pub struct Node {
    pool: Mutex<Pool>,
    /// Who the node is.
    pub identity: NodeIdentity,
    /// Settings.
    pub config: Config,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    journal: Journal,
    pub(crate) decisions: Mutex<VecDeque<(Millis, Decision)>>,
    ready: AtomicBool,
    /// The host the daemon programs.
    pub host: Arc<dyn Host>,
    /// Restored pods to check for their veth again.
    pub veth_checks: Mutex<Vec<VethCheck>>,
    recently_freed: Mutex<RecentlyFreed>,
    /// Cooldowns of addresses given back to EC2 while cooling.
    pub returned: ReturnedCooldowns,
    /// The VPC's CIDRs as last read (a CIDR associated later joins them).
    vpc_cidrs: Mutex<Vec<Ipv4Net>>,
    /// ENIs this daemon created or freed whose deletion failed: retried every pool cycle, so none waits
    /// for the hourly leaked-ENI sweep.
    pub eni_deletes: Mutex<std::collections::BTreeSet<String>>,
    /// Custom networking: the node's ENIConfig as its sources (API, directory) last said.
    pub eni_configs: vpcni_k8s::ViewHandle,
    /// Custom networking: why the last attempt to create a pod ENI found the ENIConfig unusable (its
    /// subnet missing, or in another VPC or zone), or `None` once one was usable.
    pub eni_config_problem: tokio::sync::watch::Sender<Option<String>>,
}

fn reason_code(reason: NoAddressReason) -> FailureReason {
    match reason {
        NoAddressReason::NodeMaxPods => FailureReason::NodeMaxPods,
        NoAddressReason::SubnetExhausted => FailureReason::SubnetExhausted,
        NoAddressReason::NoFreePrefix => FailureReason::NoFreePrefix,
        NoAddressReason::Ec2Throttled => FailureReason::Ec2Throttled,
        NoAddressReason::EniAttachInProgress => FailureReason::EniAttachInProgress,
        NoAddressReason::PoolEmptyGrowing => FailureReason::PoolEmptyGrowing,
        NoAddressReason::AllCoolingDown => FailureReason::AllCoolingDown,
        NoAddressReason::NodeAddressLimit => FailureReason::NodeAddressLimit,
        NoAddressReason::Ec2Error => FailureReason::Ec2Error,
        NoAddressReason::EniConfigUnavailable => FailureReason::EniConfigUnavailable,
    }
}

impl Node {
    /// A node around a pool that start-up has filled.
    pub fn new(
        pool: Pool,
        identity: NodeIdentity,
        config: Config,
        metrics: Arc<Metrics>,
        host: Arc<dyn Host>,
    ) -> Self {
        let vpc_cidrs = Mutex::new(identity.vpc_cidrs.clone());
        let k8s = &config.kubernetes;
        let eni_configs = vpcni_k8s::ViewHandle::new(vpcni_k8s::View::new(
            vpcni_k8s::SelectionRule::from_values(
                Some(&k8s.eni_config_label_def),
                Some(&k8s.eni_config_annotation_def),
            ),
            &k8s.node_name,
            k8s.eni_config_dir.clone(),
            vpcni_k8s::ApiState::NotConfigured,
        ));
        Self {
            eni_configs,
            eni_config_problem: tokio::sync::watch::Sender::new(None),
            journal: Journal::new(config.backing_store.clone()),
            pool: Mutex::new(pool),
            identity,
            config,
            metrics,
            decisions: Mutex::default(),
            ready: AtomicBool::new(false),
            host,
            veth_checks: Mutex::default(),
            recently_freed: Mutex::default(),
            returned: ReturnedCooldowns::default(),
            vpc_cidrs,
            eni_deletes: Mutex::default(),
        }
    }

    /// Remembers an ENI whose deletion failed, for [`crate::enis::retry_eni_deletes`].
    pub fn delete_later(&self, eni_id: &str) {
        self.eni_deletes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(eni_id.to_owned());
    }

    /// The VPC's CIDRs.
    pub fn vpc_cidrs(&self) -> Vec<Ipv4Net> {
        self.vpc_cidrs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the VPC's CIDRs; returns whether they changed.
    pub fn set_vpc_cidrs(&self, cidrs: Vec<Ipv4Net>) -> bool {
        let mut current = self
            .vpc_cidrs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = *current != cidrs;
        *current = cidrs;
        changed
    }

    fn freed(&self) -> MutexGuard<'_, RecentlyFreed> {
        self.recently_freed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes CIDRs given back to EC2 now.
    pub fn recently_freed_cidrs(&self, nets: &[Ipv4Net]) {
        let now = now_ms();
        let mut freed = self.freed();
        freed.cidrs.retain(|_, at| now < *at + RECONCILE_COOLDOWN_MS);
        freed.cidrs.extend(nets.iter().map(|n| (*n, now)));
    }

    /// Notes an ENI given back to EC2 now.
    pub fn recently_freed_eni(&self, eni_id: &str) {
        let now = now_ms();
        let mut freed = self.freed();
        freed.enis.retain(|_, at| now < *at + RECONCILE_COOLDOWN_MS);
        freed.enis.insert(eni_id.to_owned(), now);
    }

    /// Whether a CIDR was given back less than [`RECONCILE_COOLDOWN_MS`] ago.
    pub fn is_recently_freed_cidr(&self, net: &Ipv4Net, now: Millis) -> bool {
        self.freed()
            .cidrs
            .get(net)
            .is_some_and(|at| now < at + RECONCILE_COOLDOWN_MS)
    }

    /// Whether an ENI was given back less than [`RECONCILE_COOLDOWN_MS`] ago.
    pub fn is_recently_freed_eni(&self, eni_id: &str, now: Millis) -> bool {
        self.freed()
            .enis
            .get(eni_id)
            .is_some_and(|at| now < at + RECONCILE_COOLDOWN_MS)
    }

    /// The pool, locked. A panic while holding it cannot leave it torn: every pool method is all-or-nothing.
    pub fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks start-up done (or, on shutdown, undone: requests still in flight are told to retry).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Releases an allocation the daemon found stale (its pod is gone); returns what it held.
    pub fn release_stale(&self, key: &vpcni_engine::PodKey, why: &str) -> Option<vpcni_engine::Assignment> {
        let mut pool = self.pool();
        let released = pool.unassign(key, now_ms())?;
        self.persist(&pool);
        tracing::warn!(container = %key.container_id, ip = %released.ip, "released: {why}");
        Some(released)
    }

    /// Writes the checkpoint (durably, before returning) and refreshes the gauges. Called with the pool
    /// locked, so the file always matches a state the pool was in.
    pub fn persist(&self, pool: &Pool) {
        let seq = self.stage(pool);
        if let Err(error) = self.commit(seq) {
            tracing::error!("{error}");
        }
    }

    /// Makes checkpoint `seq` (or a newer one) durable; see [`Journal`].
    pub fn commit(&self, seq: u64) -> Result<(), CheckpointError> {
        let result = self.journal.commit(seq);
        if result.is_err() {
            self.metrics
                .ipamd_error_count
                .with_label_values(&["checkpoint"])
                .inc();
        }
        result
    }

    /// Stages a checkpoint of the pool and refreshes the gauges; returns the checkpoint's sequence number
    /// for [`Node::commit`]. Called with the pool locked.
    pub fn stage(&self, pool: &Pool) -> u64 {
        let now = now_ms();
        let mut checkpoint = Checkpoint::from_pool(pool, now);
        for (ip, at) in self.returned.running(pool.config().ip_cooldown_ms, now) {
            if !checkpoint.cooling.iter().any(|c| c.ipv4 == ip) {
                checkpoint.cooling.push(vpcni_engine::checkpoint::Cooling {
                    ipv4: ip,
                    unassigned_timestamp: at.saturating_mul(1_000_000),
                });
            }
        }
        let seq = self.journal.stage(checkpoint);
        if let Some(block) = pool.ipv6_block() {
            // IPv6 mode, counted as the original counts it: the /80's size and the pods in it.
            let assigned = block.assigned() as i64;
            self.metrics
                .total_ip_addresses
                .set(i64::try_from(block.size()).unwrap_or(i64::MAX));
            self.metrics.assigned_ip_addresses.set(assigned);
            self.metrics.total_ipv4_prefixes.set(0);
            self.metrics.eni_allocated.set(pool.enis().count() as i64);
            self.metrics.cooling_ip_addresses.set(0);
            self.metrics.assigned_ip_per_eni.reset();
            self.metrics
                .assigned_ip_per_eni
                .with_label_values(&[block.eni_id()])
                .set(assigned);
            self.metrics.assigned_ip_per_cidr.reset();
            self.metrics
                .assigned_ip_per_cidr
                .with_label_values(&[block.prefix().to_string().as_str()])
                .set(assigned);
            return seq;
        }
        let stats = pool.stats(now);
        self.metrics.total_ip_addresses.set(stats.total as i64);
        self.metrics.assigned_ip_addresses.set(stats.assigned as i64);
        self.metrics.total_ipv4_prefixes.set(stats.total_prefixes as i64);
        self.metrics.eni_allocated.set(stats.enis as i64);
        self.metrics.cooling_ip_addresses.set(stats.cooling as i64);
        self.metrics.assigned_ip_per_eni.reset();
        for eni in pool.eni_stats(now) {
            self.metrics
                .assigned_ip_per_eni
                .with_label_values(&[eni.eni_id.as_str()])
                .set(eni.assigned as i64);
        }
        self.metrics.assigned_ip_per_cidr.reset();
        for cidr in pool.enis().flat_map(|e| e.cidrs.values()) {
            self.metrics
                .assigned_ip_per_cidr
                .with_label_values(&[cidr.net.to_string().as_str()])
                .set(cidr.assigned() as i64);
        }
        seq
    }

    /// Records a decision for `/v1/pool`.
    pub fn record_decision(&self, at: Millis, decision: &Decision) {
        if let Ok(mut decisions) = self.decisions.lock() {
            if decisions.len() == RECENT_DECISIONS {
                decisions.pop_front();
            }
            decisions.push_back((at, decision.clone()));
        }
    }

    fn engine_key(key: &PodKey) -> vpcni_engine::PodKey {
        vpcni_engine::PodKey::new(&key.network_name, &key.container_id, &key.if_name)
    }

    /// The key the pool knows this pod by. A pod started under the original is recorded under the
    /// original's network name (its checkpoint, imported at start-up); after the switch the runtime names it
    /// with the conflist's. The same sandbox and interface is the same pod, so that allocation is the pod's.
    fn pool_key(pool: &Pool, key: &PodKey) -> vpcni_engine::PodKey {
        let exact = Self::engine_key(key);
        if Self::holds(pool, &exact) || key.network_name == ORIGINAL_NETWORK_NAME {
            return exact;
        }
        let migrated = vpcni_engine::PodKey::new(ORIGINAL_NETWORK_NAME, &key.container_id, &key.if_name);
        if Self::holds(pool, &migrated) {
            migrated
        } else {
            exact
        }
    }

    /// Whether the key holds an address (of either family).
    fn holds(pool: &Pool, key: &vpcni_engine::PodKey) -> bool {
        match pool.ipv6_block() {
            Some(block) => block.lookup(key).is_some(),
            None => pool.lookup(key).is_some(),
        }
    }

    /// Gives the key an address of the node's family.
    fn assign(
        pool: &mut Pool,
        key: &vpcni_engine::PodKey,
        pod: &PodInfo,
    ) -> Result<Assigned, vpcni_engine::NoAddress> {
        let now = now_ms();
        match pool.ipv6_block_mut() {
            Some(block) => block.assign(key, pod, now).map(|a| ipv6_assigned(&a)),
            None => pool.assign(key, pod, now).map(|a| ipv4_assigned(&a)),
        }
    }

    /// Releases the key's address, of either family.
    fn release(pool: &mut Pool, key: &vpcni_engine::PodKey) -> Option<Assigned> {
        match pool.ipv6_block_mut() {
            Some(block) => block.unassign(key).map(|a| ipv6_assigned(&a)),
            None => pool.unassign(key, now_ms()).map(|a| ipv4_assigned(&a)),
        }
    }

    /// Every key holding an address, of either family.
    fn keys(pool: &Pool) -> Vec<vpcni_engine::PodKey> {
        match pool.ipv6_block() {
            Some(block) => block.allocations().into_iter().map(|(key, _, _)| key).collect(),
            None => pool.allocations().into_iter().map(|(key, _, _)| key).collect(),
        }
    }
}

fn ipv4_assigned(assignment: &vpcni_engine::Assignment) -> Assigned {
    Assigned {
        ipv4: assignment.ip,
        ipv6: None,
        device_number: assignment.device_number,
        route_table_id: assignment.route_table_id,
        eni_id: assignment.eni_id.clone(),
    }
}

fn ipv6_assigned(assignment: &vpcni_engine::Ipv6Assignment) -> Assigned {
    Assigned {
        ipv4: Ipv4Addr::UNSPECIFIED,
        ipv6: Some(assignment.ip),
        device_number: assignment.device_number,
        route_table_id: assignment.route_table_id,
        eni_id: assignment.eni_id.clone(),
    }
}

impl AddressBook for Node {
    fn add(&self, request: &PodRequest) -> Result<Assigned, Refusal> {
        self.metrics.add_ip_req_count.inc();
        if !self.ready.load(Ordering::SeqCst) {
            return Err(Refusal {
                reason: FailureReason::NotReady,
                message: "ipamd is starting or shutting down; retry shortly".into(),
            });
        }
        let mut pool = self.pool();
        let pod = PodInfo {
            namespace: request.pod_namespace.clone(),
            name: request.pod_name.clone(),
        };
        let key = Self::pool_key(&pool, &request.key);
        match Self::assign(&mut pool, &key, &pod) {
            Ok(assignment) => {
                let seq = self.stage(&pool);
                drop(pool);
                // The reply waits until the checkpoint holds the allocation: a crash after it must not forget it.
                if let Err(error) = self.commit(seq) {
                    let mut pool = self.pool();
                    let still_held = match pool.ipv6_block() {
                        Some(block) => block.lookup(&key).map(|a| Ipv6Addr::into(a.ip)),
                        None => pool.lookup(&key).map(|a| a.ip.into()),
                    };
                    if still_held == Some(assignment.address()) {
                        Self::release(&mut pool, &key);
                        self.stage(&pool);
                    }
                    tracing::error!("{error}");
                    return Err(Refusal {
                        reason: FailureReason::NotReady,
                        message: format!(
                            "ipamd could not write its checkpoint, so it gives out no address it might forget: {error}"
                        ),
                    });
                }
                Ok(assignment)
            }
            Err(no) => {
                self.metrics.no_available_ip_addresses.inc();
                let reason = reason_code(no.reason);
                self.metrics
                    .no_ip_reason_count
                    .with_label_values(&[reason.as_str_name()])
                    .inc();
                Err(Refusal {
                    reason,
                    message: no.message,
                })
            }
        }
    }

    fn del(&self, key: &PodKey) -> Option<Assigned> {
        self.metrics
            .del_ip_req_count
            .with_label_values(&["PodDeleted"])
            .inc();
        let mut pool = self.pool();
        let key = Self::pool_key(&pool, key);
        let released = Self::release(&mut pool, &key)?;
        let seq = self.stage(&pool);
        drop(pool);
        if let Err(error) = self.commit(seq) {
            // The release stands; a restart before the next good write restores the allocation, and the
            // pod's missing veth releases it then.
            tracing::error!("{error}");
        }
        Some(released)
    }

    fn status(&self) -> PoolStatus {
        let pool = self.pool();
        let now = now_ms();
        if let Some(block) = pool.ipv6_block() {
            // A /80 never runs short: every address but the first and the held ones is free.
            let free = block.size().saturating_sub(1 + block.assigned() as u64);
            return PoolStatus {
                ready: self.ready.load(Ordering::SeqCst),
                // The reply's field is an int32.
                available: u32::try_from(free.min(i32::MAX as u64)).unwrap_or(0),
                remaining_pods: pool.limits().max_pods.saturating_sub(block.assigned() as u32 + 2),
                refusal: (free == 0).then(|| Refusal {
                    reason: FailureReason::NodeAddressLimit,
                    message: format!(
                        "every address of the node's IPv6 prefix {} is held",
                        block.prefix()
                    ),
                }),
            };
        }
        let stats = pool.stats(now);
        let usable = stats.available.saturating_sub(stats.cooling) as u32;
        let refusal = (usable == 0).then(|| {
            let no = pool.why_no_address(now);
            Refusal {
                reason: reason_code(no.reason),
                message: no.message,
            }
        });
        PoolStatus {
            ready: self.ready.load(Ordering::SeqCst),
            available: usable,
            remaining_pods: pool.limits().max_pods.saturating_sub(stats.assigned as u32 + 2),
            refusal,
        }
    }

    fn garbage_collect(&self, network_name: &str, valid: &[PodKey]) -> Vec<PodKey> {
        let mut pool = self.pool();
        let stale: Vec<vpcni_engine::PodKey> = Self::keys(&pool)
            .into_iter()
            // The original's allocations are this network's pods too (see `pool_key`).
            .filter(|key| key.network_name == network_name || key.network_name == ORIGINAL_NETWORK_NAME)
            .filter(|key| {
                !valid
                    .iter()
                    .any(|v| v.container_id == key.container_id && v.if_name == key.if_name)
            })
            .collect();
        for key in &stale {
            Self::release(&mut pool, key);
        }
        if !stale.is_empty() {
            self.persist(&pool);
        }
        stale
            .into_iter()
            .map(|k| PodKey {
                network_name: k.network_name,
                container_id: k.container_id,
                if_name: k.if_name,
            })
            .collect()
    }

    fn snat_info(&self) -> (Vec<Ipv4Net>, bool) {
        let mut cidrs = self.vpc_cidrs();
        if !self.config.network.external_snat {
            cidrs.extend(self.config.network.exclude_snat_cidrs.iter().copied());
        }
        (cidrs, self.config.network.external_snat)
    }

    fn vpc_ipv6_cidrs(&self) -> Vec<Ipv6Net> {
        self.identity.vpc_ipv6_cidrs.clone()
    }
}
