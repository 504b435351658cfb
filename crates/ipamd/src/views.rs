//! The node's views for introspection: `/v1/enis` in the original's shape, `/v1/pods`, `/v1/pool`, and the
//! environment settings.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::clock::{now_ms, rfc3339};
use crate::introspection::{
    AddressInfo, CardInfo, CidrInfo, EniInfo, IntrospectionSource, IpamKey, IpamMetadata,
};
use crate::node::Node;

/// Go's zero time, which the original prints for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

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
            let mut ipv6_cidrs = BTreeMap::new();
            if let Some(block) = pool.ipv6_block().filter(|b| b.eni_id() == eni.id) {
                let addresses = block
                    .allocations()
                    .into_iter()
                    .map(|(key, pod, assignment)| {
                        let info = AddressInfo {
                            address: assignment.ip.to_string(),
                            ipam_key: IpamKey {
                                network_name: key.network_name,
                                ..IpamKey::default()
                            },
                            ipam_metadata: IpamMetadata {
                                pod_namespace: pod.namespace,
                                pod_name: pod.name,
                                interfaces_count: 1,
                            },
                            assigned_time: rfc3339(assignment.assigned_at),
                            unassigned_time: ZERO_TIME.to_owned(),
                        };
                        (assignment.ip.to_string(), info)
                    })
                    .collect();
                ipv6_cidrs.insert(
                    block.prefix().to_string(),
                    CidrInfo {
                        cidr: block.prefix().to_string(),
                        ip_addresses: addresses,
                        is_prefix: true,
                        address_family: "6".into(),
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
                    ipv6_cidrs,
                    is_excluded_for_pod_ips: eni.flags.excluded,
                    route_table_id: eni.route_table_id(),
                    subnet_id: eni.subnet_id.clone(),
                },
            );
        }
        let (total_ips, assigned_ips) = match pool.ipv6_block() {
            Some(block) => (block.size(), block.assigned() as u32),
            None => (stats.total as u64, stats.assigned as u32),
        };
        let card = CardInfo {
            total_ips,
            assigned_ips,
            enis,
        };
        BTreeMap::from([("0".to_owned(), card)])
    }

    fn pods(&self) -> Value {
        let pool = self.pool();
        if let Some(block) = pool.ipv6_block() {
            let pods: Vec<Value> = block
                .allocations()
                .into_iter()
                .map(|(key, pod, assignment)| {
                    json!({
                        "namespace": pod.namespace, "name": pod.name, "containerID": key.container_id, "ifName": key.if_name,
                        "networkName": key.network_name, "ipv6": assignment.ip.to_string(), "eni": assignment.eni_id,
                        "deviceNumber": assignment.device_number, "routeTableId": assignment.route_table_id,
                    })
                })
                .collect();
            return Value::Array(pods);
        }
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
        if let Some(block) = pool.ipv6_block() {
            // IPv6 mode: no warm pool and no decisions, the /80 and who holds what in it.
            let assignments: Vec<Value> = block
                .allocations()
                .into_iter()
                .map(|(key, pod, assignment)| {
                    json!({
                        "namespace": pod.namespace, "name": pod.name, "containerID": key.container_id,
                        "ifName": key.if_name, "networkName": key.network_name,
                        "ipv6": assignment.ip.to_string(), "assignedAt": rfc3339(assignment.assigned_at),
                    })
                })
                .collect();
            return json!({
                "family": "ipv6",
                "ipv6": {
                    "prefix": block.prefix().to_string(),
                    "eni": block.eni_id(),
                    "size": block.size(),
                    "assigned": block.assigned(),
                    "assignments": assignments,
                },
                "limits": pool.limits(),
                "config": pool.config(),
                "recentDecisions": decisions,
            });
        }
        json!({
            "family": "ipv4",
            "stats": pool.stats(now),
            "enis": pool.eni_stats(now),
            "limits": pool.limits(),
            "config": pool.config(),
            "belowTarget": pool.is_below_target(now),
            "nextDecision": pool.decide(now),
            "recentDecisions": decisions,
        })
    }

    /// Without custom networking, `""` (no ENIConfig is used). With it, what the node uses and why: the
    /// ENIConfig's name, the label or annotation that chose it, its subnet and security groups, the source
    /// (API or directory), and the API's state — or, when none can be used, the reason ADDs are refused.
    fn eni_config(&self) -> Value {
        if self.config.pool.custom_networking {
            self.eni_configs.snapshot().report()
        } else {
            Value::String(String::new())
        }
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
            "ENABLE_IPv4": !p.ipv6,
            "ENABLE_IPv6": p.ipv6,
        })
    }
}
