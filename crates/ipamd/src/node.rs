//! The node: the engine's pool behind a lock, the checkpoint written on every change, metrics kept in step,
//! and the views the gRPC server and introspection read.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use serde_json::{Value, json};
use vpcni_engine::checkpoint::Checkpoint;
use vpcni_engine::{Decision, Millis, NoAddressReason, PodInfo, Pool};
use vpcni_rpc::FailureReason;

use crate::config::Config;
use crate::discovery::NodeIdentity;
use crate::introspection::{
    AddressInfo, CardInfo, CidrInfo, EniInfo, IntrospectionSource, IpamKey, IpamMetadata,
};
use crate::metrics::Metrics;
use crate::server::{AddressBook, Assigned, PodKey, PodRequest, PoolStatus, Refusal};

/// Decisions kept for `/v1/pool`.
const RECENT_DECISIONS: usize = 32;

/// Milliseconds since the epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
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
    checkpoint_path: PathBuf,
    decisions: Mutex<VecDeque<(Millis, Decision)>>,
    ready: AtomicBool,
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
    }
}

impl Node {
    /// A node around a pool that start-up has filled.
    pub fn new(pool: Pool, identity: NodeIdentity, config: Config, metrics: Arc<Metrics>) -> Self {
        Self {
            checkpoint_path: config.backing_store.clone(),
            pool: Mutex::new(pool),
            identity,
            config,
            metrics,
            decisions: Mutex::default(),
            ready: AtomicBool::new(false),
        }
    }

    /// The pool, locked. A panic while holding it cannot leave it torn: every pool method is all-or-nothing.
    pub fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks start-up done.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Writes the checkpoint and refreshes the gauges. Called with the pool locked, so the file always
    /// matches a state the pool was in.
    pub fn persist(&self, pool: &Pool) {
        let now = now_ms();
        if let Err(error) = Checkpoint::from_pool(pool, now).write(&self.checkpoint_path) {
            self.metrics
                .ipamd_error_count
                .with_label_values(&["checkpoint"])
                .inc();
            tracing::error!("{error}");
        }
        let stats = pool.stats(now);
        self.metrics.total_ip_addresses.set(stats.total as i64);
        self.metrics.assigned_ip_addresses.set(stats.assigned as i64);
        self.metrics.total_ipv4_prefixes.set(stats.total_prefixes as i64);
        self.metrics.eni_allocated.set(stats.enis as i64);
        self.metrics.cooling_ip_addresses.set(stats.cooling as i64);
        for eni in pool.eni_stats(now) {
            self.metrics
                .assigned_ip_per_eni
                .with_label_values(&[eni.eni_id.as_str()])
                .set(eni.assigned as i64);
        }
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
}

impl AddressBook for Node {
    fn add(&self, request: &PodRequest) -> Result<Assigned, Refusal> {
        self.metrics.add_ip_req_count.inc();
        if !self.ready.load(Ordering::SeqCst) {
            return Err(Refusal {
                reason: FailureReason::NotReady,
                message: "ipamd is still starting".into(),
            });
        }
        let mut pool = self.pool();
        let pod = PodInfo {
            namespace: request.pod_namespace.clone(),
            name: request.pod_name.clone(),
        };
        match pool.assign(&Self::engine_key(&request.key), &pod, now_ms()) {
            Ok(assignment) => {
                self.persist(&pool);
                Ok(Assigned {
                    ipv4: assignment.ip,
                    device_number: assignment.device_number,
                    route_table_id: assignment.route_table_id,
                    eni_id: assignment.eni_id,
                })
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
        let released = pool.unassign(&Self::engine_key(key), now_ms())?;
        self.persist(&pool);
        Some(Assigned {
            ipv4: released.ip,
            device_number: released.device_number,
            route_table_id: released.route_table_id,
            eni_id: released.eni_id,
        })
    }

    fn status(&self) -> PoolStatus {
        let pool = self.pool();
        let now = now_ms();
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
        let now = now_ms();
        let stale: Vec<vpcni_engine::PodKey> = pool
            .allocations()
            .into_iter()
            .map(|(key, _, _)| key)
            .filter(|key| key.network_name == network_name)
            .filter(|key| {
                !valid
                    .iter()
                    .any(|v| v.container_id == key.container_id && v.if_name == key.if_name)
            })
            .collect();
        for key in &stale {
            pool.unassign(key, now);
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
        let mut cidrs = self.identity.vpc_cidrs.clone();
        if !self.config.network.external_snat {
            cidrs.extend(self.config.network.exclude_snat_cidrs.iter().copied());
        }
        (cidrs, self.config.network.external_snat)
    }
}

/// Go's zero time, which the original prints for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(ms: Millis) -> String {
    // Seconds-resolution RFC 3339 without a date library: days from the epoch by the civil calendar.
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl IntrospectionSource for Node {
    fn enis(&self) -> BTreeMap<String, CardInfo> {
        let pool = self.pool();
        let now = now_ms();
        let stats = pool.stats(now);
        let mut enis = BTreeMap::new();
        for eni in pool.enis() {
            let mut cidrs = BTreeMap::new();
            for cidr in eni.cidrs.values() {
                let addresses = cidr
                    .slots
                    .iter()
                    .filter(|s| s.holder.is_some() || s.unassigned_at.is_some())
                    .map(|slot| {
                        let (key, metadata, assigned) = match &slot.holder {
                            Some((key, pod, at)) => (
                                IpamKey {
                                    network_name: key.network_name.clone(),
                                    ..IpamKey::default()
                                },
                                IpamMetadata {
                                    pod_namespace: pod.namespace.clone(),
                                    pod_name: pod.name.clone(),
                                    interfaces_count: 1,
                                },
                                rfc3339(*at),
                            ),
                            None => (IpamKey::default(), IpamMetadata::default(), ZERO_TIME.to_owned()),
                        };
                        let info = AddressInfo {
                            address: slot.ip.to_string(),
                            ipam_key: key,
                            ipam_metadata: metadata,
                            assigned_time: assigned,
                            unassigned_time: slot.unassigned_at.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
                        };
                        (slot.ip.to_string(), info)
                    })
                    .collect();
                cidrs.insert(
                    cidr.net.to_string(),
                    CidrInfo {
                        cidr: cidr.net.to_string(),
                        ip_addresses: addresses,
                        is_prefix: cidr.is_prefix,
                        address_family: "4".into(),
                    },
                );
            }
            enis.insert(
                eni.id.clone(),
                EniInfo {
                    id: eni.id.clone(),
                    is_primary: eni.flags.primary,
                    is_trunk: eni.flags.trunk,
                    is_efa: eni.flags.efa,
                    device_number: eni.device_number,
                    available_ipv4_cidrs: cidrs,
                    ipv6_cidrs: BTreeMap::new(),
                    is_excluded_for_pod_ips: eni.flags.excluded,
                    route_table_id: eni.route_table_id(),
                    subnet_id: eni.subnet_id.clone(),
                },
            );
        }
        let card = CardInfo {
            total_ips: stats.total as u32,
            assigned_ips: stats.assigned as u32,
            enis,
        };
        BTreeMap::from([("0".to_owned(), card)])
    }

    fn pods(&self) -> Value {
        let pool = self.pool();
        let pods: Vec<Value> = pool
            .allocations()
            .into_iter()
            .map(|(key, pod, assignment)| {
                json!({
                    "namespace": pod.namespace, "name": pod.name, "containerID": key.container_id, "ifName": key.if_name,
                    "networkName": key.network_name, "ipv4": assignment.ip.to_string(), "eni": assignment.eni_id,
                    "deviceNumber": assignment.device_number, "routeTableId": assignment.route_table_id,
                })
            })
            .collect();
        Value::Array(pods)
    }

    fn pool(&self) -> Value {
        let pool = self.pool();
        let now = now_ms();
        let decisions: Vec<Value> = self
            .decisions
            .lock()
            .map(|d| {
                d.iter()
                    .map(|(at, decision)| json!({ "at": rfc3339(*at), "decision": decision }))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "stats": pool.stats(now),
            "enis": pool.eni_stats(now),
            "limits": pool.limits(),
            "config": pool.config(),
            "belowTarget": pool.is_below_target(now),
            "nextDecision": pool.decide(now),
            "recentDecisions": decisions,
        })
    }

    fn eni_config(&self) -> Value {
        Value::String(if self.config.pool.custom_networking {
            "default".into()
        } else {
            String::new()
        })
    }

    fn networkutils_env(&self) -> Value {
        let n = &self.config.network;
        json!({
            "AWS_VPC_K8S_CNI_CONNMARK": n.connmark,
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS": n.exclude_snat_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "AWS_VPC_K8S_CNI_EXTERNALSNAT": n.external_snat,
            "AWS_EXTERNAL_SERVICE_CIDRS": n.external_service_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "AWS_VPC_ENI_MTU": n.eni_mtu,
            "AWS_VPC_K8S_CNI_VETHPREFIX": n.veth_prefix,
            "AWS_VPC_CNI_NODE_PORT_SUPPORT": n.node_port_support,
            "AWS_VPC_K8S_CNI_RANDOMIZESNAT": n.randomize_snat,
        })
    }

    fn ipamd_env(&self) -> Value {
        let p = &self.config.pool;
        json!({
            "WARM_IP_TARGET": p.warm_ip_target,
            "WARM_ENI_TARGET": p.warm_eni_target,
            "MINIMUM_IP_TARGET": p.minimum_ip_target,
            "WARM_PREFIX_TARGET": p.warm_prefix_target,
            "ENABLE_PREFIX_DELEGATION": p.prefix_delegation,
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": p.custom_networking,
            "AWS_MANAGE_ENIS_NON_SCHEDULABLE": p.manage_enis_non_schedulable,
            "ENABLE_SUBNET_DISCOVERY": p.subnet_discovery,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_000_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
