//! `lab status`: pods with their addresses, nodes and ENIs (a `kubectl get pod -o wide` for the lab), and
//! per node its ENIs, pod addresses and how many are free. EC2's side is read from the simulator's saved
//! account, which the endpoint rewrites after every change.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use vpcni_ec2::sim::AccountState;

use crate::LabError;
use crate::spec::{INTERNET_IP, INTERNET_IP_V6, INTERNET_PORT, INTROSPECTION};
use crate::state::{LabState, StatePaths};

/// The whole lab, as `lab status --output json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStatus {
    /// Nodes in index order.
    pub nodes: Vec<NodeStatus>,
    /// Pods in creation order.
    pub pods: Vec<PodStatus>,
    /// The what-is-my-IP service.
    pub internet: InternetStatus,
    /// The VPC's CIDRs.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// IPv6 labs: the VPC's IPv6 /56.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_ipv6_cidr: Option<Ipv6Net>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `node-<n>`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// EC2 instance id.
    pub instance_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Primary address.
    pub primary_ip: Ipv4Addr,
    /// Public address at the internet gateway.
    pub public_ip: Ipv4Addr,
    /// ipamd's unix socket.
    pub ipamd_socket: String,
    /// ipamd's introspection address inside the node's namespace.
    pub introspection: String,
    /// Attached ENIs by device number.
    pub enis: Vec<EniStatus>,
    /// Custom networking: the ENIConfig the lab gave the node (its zone's), else `null`.
    #[serde(default)]
    pub eni_config: Option<String>,
    /// IPv6 labs: the primary ENI's IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// IPv6 labs: the /80 prefixes on its ENIs, which its pods' addresses come from (absent in IPv4 labs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefixes: Option<Vec<Ipv6Net>>,
}

/// One attached ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniStatus {
    /// `eni-…`.
    pub id: String,
    /// Device number (0 = primary ENI).
    pub device_number: u32,
    /// Its addresses, primary first (as instance metadata's `local-ipv4s`).
    pub ips: Vec<Ipv4Addr>,
    /// Its /28 prefixes.
    pub prefixes: Vec<Ipv4Net>,
    /// Its subnet.
    #[serde(default)]
    pub subnet_id: String,
    /// That subnet's CIDR, if the simulator knows the subnet.
    #[serde(default)]
    pub subnet_cidr: Option<Ipv4Net>,
    /// Its IPv6 addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6s: Vec<Ipv6Addr>,
    /// Its IPv6 /80 prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_prefixes: Vec<Ipv6Net>,
}

impl EniStatus {
    /// Addresses pods can get from it: secondary addresses and every address of every prefix.
    pub fn pod_addresses(&self) -> usize {
        self.ips.len().saturating_sub(1)
            + self
                .prefixes
                .iter()
                .map(|p| 1usize << (32 - p.prefix_len()))
                .sum::<usize>()
    }

    fn holds(&self, ip: Ipv4Addr) -> bool {
        self.ips.iter().skip(1).any(|a| *a == ip) || self.prefixes.iter().any(|p| p.contains(&ip))
    }

    fn holds_v6(&self, ip: Ipv6Addr) -> bool {
        self.ipv6_prefixes.iter().any(|p| p.contains(&ip))
    }
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// `pod-<n>`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Node name.
    pub node: String,
    /// Its IPv4 address: the VPC one in an IPv4 lab; in an IPv6 lab the node-local egress one (as
    /// `egress_ipv4`), or 0.0.0.0 without one.
    pub ip: Ipv4Addr,
    /// The ENI its VPC address is on (`None` if EC2 no longer has the address on that node).
    pub eni: Option<String>,
    /// That ENI's device number.
    pub device_number: Option<u32>,
    /// IPv6 labs: its VPC IPv6 address, from its node's /80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// IPv6 labs: its node-local IPv4 egress address, SNATed to the node's primary IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_ipv4: Option<Ipv4Addr>,
}

/// The internet service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetStatus {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// IPv6 labs: its IPv6 address (it answers on both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

/// Builds the status from the lab's state and the simulator's account.
pub fn collect(paths: &StatePaths, state: &LabState) -> Result<LabStatus, LabError> {
    let path = paths.ec2_state_file();
    let text = std::fs::read_to_string(&path).map_err(LabError::io(&path))?;
    let account: AccountState = serde_json::from_str(&text).map_err(|e| LabError::State {
        path: path.clone(),
        detail: format!("not a simulator account: {e}"),
    })?;
    let nodes: Vec<NodeStatus> = state
        .nodes
        .iter()
        .map(|node| {
            let mut enis: Vec<EniStatus> = account
                .enis
                .values()
                .filter(|e| {
                    e.attachment
                        .as_ref()
                        .is_some_and(|a| a.instance_id == node.instance_id && a.network_card == 0)
                })
                .map(|e| EniStatus {
                    id: e.id.clone(),
                    device_number: e.attachment.as_ref().map_or(0, |a| a.device_index),
                    ips: std::iter::once(e.primary_ip)
                        .chain(e.secondary.keys().copied())
                        .collect(),
                    prefixes: e.prefixes.keys().copied().collect(),
                    subnet_id: e.subnet_id.clone(),
                    subnet_cidr: account.subnets.get(&e.subnet_id).map(|s| s.addresses.cidr()),
                    ipv6s: e.ipv6_addresses.keys().copied().collect(),
                    ipv6_prefixes: e.ipv6_prefixes.keys().copied().collect(),
                })
                .collect();
            enis.sort_by_key(|e| e.device_number);
            NodeStatus {
                name: node.name.clone(),
                netns: node.netns.clone(),
                instance_id: node.instance_id.clone(),
                instance_type: state.spec.instance_type.clone(),
                primary_ip: node.primary_ip,
                public_ip: node.public_ip,
                ipamd_socket: paths
                    .node_dir(&node.name)
                    .join("ipamd.sock")
                    .display()
                    .to_string(),
                introspection: INTROSPECTION.to_string(),
                ipv6_prefixes: state.spec.ipv6.then(|| {
                    enis.iter()
                        .flat_map(|e| e.ipv6_prefixes.iter().copied())
                        .collect()
                }),
                ipv6: node.ipv6,
                enis,
                eni_config: state.spec.eni_config_of(node.index),
            }
        })
        .collect();
    let pods = state
        .pods
        .iter()
        .map(|pod| {
            let eni = nodes.iter().find(|n| n.name == pod.node).and_then(|n| {
                n.enis.iter().find(|e| match pod.ipv6 {
                    Some(ipv6) => e.holds_v6(ipv6),
                    None => e.holds(pod.ip),
                })
            });
            PodStatus {
                name: pod.name.clone(),
                netns: pod.netns.clone(),
                node: pod.node.clone(),
                ip: pod.ip,
                eni: eni.map(|e| e.id.clone()),
                device_number: eni.map(|e| e.device_number),
                ipv6: pod.ipv6,
                egress_ipv4: pod.egress_ipv4,
            }
        })
        .collect();
    let vpc_cidrs = account
        .vpcs
        .values()
        .flat_map(|v| v.cidrs.iter().copied())
        .collect();
    let vpc_ipv6_cidr = account.vpcs.values().find_map(|v| v.ipv6_cidr);
    Ok(LabStatus {
        nodes,
        pods,
        internet: InternetStatus {
            ip: INTERNET_IP,
            port: INTERNET_PORT,
            ipv6: state.spec.ipv6.then_some(INTERNET_IP_V6),
        },
        vpc_cidrs,
        vpc_ipv6_cidr: vpc_ipv6_cidr.filter(|_| state.spec.ipv6),
    })
}

/// Left-aligned columns, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table's header row.
fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// A cell for a value that may be missing: `-` then.
fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The columns every node table starts with.
const NODE_COLUMNS: [&str; 5] = ["NODE", "INSTANCE", "TYPE", "PRIMARY IP", "PUBLIC IP"];

impl LabStatus {
    /// The pod table, as `kubectl get pod -o wide`; an IPv6 lab's shows the pod's IPv6 address and its IPv4
    /// egress address where an IPv4 lab's shows the pod's IP.
    pub fn pods_table(&self) -> String {
        let ipv6 = self.internet.ipv6.is_some();
        let mut rows = vec![if ipv6 {
            header(&["NAME", "IPV6", "EGRESS IPV4", "NODE", "ENI", "DEVICE"])
        } else {
            header(&["NAME", "IP", "NODE", "ENI", "DEVICE"])
        }];
        for pod in &self.pods {
            let mut row = vec![pod.name.clone()];
            if ipv6 {
                row.extend([or_dash(pod.ipv6), or_dash(pod.egress_ipv4)]);
            } else {
                row.push(pod.ip.to_string());
            }
            row.extend([
                pod.node.clone(),
                or_dash(pod.eni.as_deref()),
                or_dash(pod.device_number),
            ]);
            rows.push(row);
        }
        table(&rows)
    }

    /// The cells of [`NODE_COLUMNS`] for a node, and its pod count.
    fn node_cells(&self, node: &NodeStatus) -> (Vec<String>, usize) {
        let pods = self.pods.iter().filter(|p| p.node == node.name).count();
        let cells = vec![
            node.name.clone(),
            node.instance_id.clone(),
            node.instance_type.clone(),
            node.primary_ip.to_string(),
            node.public_ip.to_string(),
        ];
        (cells, pods)
    }

    /// The node table of an IPv6 lab: addresses of both families and the /80 pods come from.
    fn nodes_table_v6(&self) -> String {
        let mut rows = vec![header(
            &[&NODE_COLUMNS[..], &["IPV6", "/80 PREFIXES", "PODS"]].concat(),
        )];
        for node in &self.nodes {
            let prefixes = node.ipv6_prefixes.as_deref().unwrap_or_default();
            let (mut row, pods) = self.node_cells(node);
            row.extend([
                or_dash(node.ipv6),
                if prefixes.is_empty() {
                    "-".into()
                } else {
                    prefixes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
                pods.to_string(),
            ]);
            rows.push(row);
        }
        table(&rows)
    }

    /// The node table: ENIs, pod addresses held, pods, free.
    pub fn nodes_table(&self) -> String {
        if self.internet.ipv6.is_some() {
            return self.nodes_table_v6();
        }
        let mut rows = vec![header(
            &[&NODE_COLUMNS[..], &["ENIS", "IPS", "PODS", "FREE"]].concat(),
        )];
        for node in &self.nodes {
            let ips: usize = node.enis.iter().map(EniStatus::pod_addresses).sum();
            let (mut row, pods) = self.node_cells(node);
            row.extend([
                node.enis.len().to_string(),
                ips.to_string(),
                pods.to_string(),
                ips.saturating_sub(pods).to_string(),
            ]);
            rows.push(row);
        }
        table(&rows)
    }

    /// Per ENI: node, device, primary address, pod addresses, pods on it.
    pub fn enis_table(&self) -> String {
        let ipv6 = self.internet.ipv6.is_some();
        let names: &[&str] = if ipv6 {
            &[
                "ENI",
                "NODE",
                "DEVICE",
                "PRIMARY IP",
                "IPV6",
                "/80 PREFIXES",
                "PODS",
            ]
        } else {
            &["ENI", "NODE", "DEVICE", "PRIMARY IP", "IPS", "PREFIXES", "PODS"]
        };
        let mut rows = vec![header(names)];
        for node in &self.nodes {
            for eni in &node.enis {
                let pods = self
                    .pods
                    .iter()
                    .filter(|p| p.eni.as_deref() == Some(eni.id.as_str()))
                    .count();
                let (addresses, prefixes) = if ipv6 {
                    (or_dash(eni.ipv6s.first()), eni.ipv6_prefixes.len().to_string())
                } else {
                    (eni.pod_addresses().to_string(), eni.prefixes.len().to_string())
                };
                rows.push(vec![
                    eni.id.clone(),
                    node.name.clone(),
                    eni.device_number.to_string(),
                    or_dash(eni.ips.first()),
                    addresses,
                    prefixes,
                    pods.to_string(),
                ]);
            }
        }
        table(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_labs_print_no_ipv6_fields() {
        let pod = PodStatus {
            name: "pod-1".into(),
            netns: "vpcni-pod-1".into(),
            node: "node-1".into(),
            ip: "10.0.0.21".parse().unwrap(),
            eni: None,
            device_number: None,
            ipv6: None,
            egress_ipv4: None,
        };
        let json = serde_json::to_value(&pod).unwrap();
        assert!(
            json.get("ipv6").is_none() && json.get("egress_ipv4").is_none(),
            "{json}"
        );
        let internet = serde_json::to_value(InternetStatus {
            ip: INTERNET_IP,
            port: INTERNET_PORT,
            ipv6: None,
        })
        .unwrap();
        assert_eq!(internet, serde_json::json!({"ip": "203.0.113.10", "port": 80}));

        let v6 = PodStatus {
            ipv6: Some("2600:1f14::1".parse().unwrap()),
            egress_ipv4: Some("169.254.172.2".parse().unwrap()),
            ..pod
        };
        let json = serde_json::to_value(&v6).unwrap();
        assert_eq!(json["ipv6"], "2600:1f14::1");
        assert_eq!(json["egress_ipv4"], "169.254.172.2");
    }
}
