//! `vpcnictl plan --from-node URL`: a running daemon's introspection (`/v1/enis`, `/v1/pool`,
//! `/v1/ipamd-env-settings`, see `docs/ipamd.md`) turned into a cluster file to start planning from: the
//! node's settings, its instance type (from its limits), its subnets and the pods it runs now.
//!
//! What introspection does not say is guessed and marked so in the file: the subnets' CIDRs (the
//! smallest block holding every address the node has, at least a /24) and the VPC's. Plain HTTP/1.0
//! over a TCP socket: introspection listens on 127.0.0.1 and needs nothing more.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::Value;

/// Why the node could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FromNodeError {
    /// Not an `http://host:port` URL.
    #[error("{0:?} is not an http://HOST:PORT URL (introspection listens on http://127.0.0.1:61679)")]
    Url(String),
    /// The connection or the request failed.
    #[error("GET {url}{path}: {source}")]
    Io {
        /// Base URL.
        url: String,
        /// Path.
        path: &'static str,
        /// What failed.
        source: std::io::Error,
    },
    /// The answer was not what ipamd serves.
    #[error("GET {url}{path}: {what}")]
    Answer {
        /// Base URL.
        url: String,
        /// Path.
        path: &'static str,
        /// What is wrong.
        what: String,
    },
}

fn get(url: &str, path: &'static str) -> Result<Value, FromNodeError> {
    let authority = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .ok_or_else(|| FromNodeError::Url(url.to_owned()))?;
    let io = |source| FromNodeError::Io {
        url: url.to_owned(),
        path,
        source,
    };
    let mut stream = TcpStream::connect(authority).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let answer = |what: String| FromNodeError::Answer {
        url: url.to_owned(),
        path,
        what,
    };
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| answer("no HTTP answer".into()))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1).is_none_or(|code| code != "200") {
        return Err(answer(format!("answered {status:?}")));
    }
    serde_json::from_str(body).map_err(|e| answer(format!("not JSON: {e}")))
}

/// What was read from the node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    /// Settings as ipamd reports them.
    pub settings: BTreeMap<String, String>,
    /// Instance types whose limits match the node's, first is used.
    pub instance_types: Vec<String>,
    /// Subnet id → addresses the node holds in it.
    pub subnets: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Pods holding an address.
    pub pods: u64,
    /// Addresses the pool holds.
    pub total_ips: u64,
    /// ENIs.
    pub enis: usize,
}

/// Reads a running daemon's introspection.
pub fn read(url: &str) -> Result<NodeSnapshot, FromNodeError> {
    let enis = get(url, "/v1/enis")?;
    let pool = get(url, "/v1/pool")?;
    let env = get(url, "/v1/ipamd-env-settings")?;
    let bad = |path: &'static str, what: &str| FromNodeError::Answer {
        url: url.to_owned(),
        path,
        what: what.to_owned(),
    };
    let mut subnets: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    let mut pods = 0;
    let mut total = 0;
    let mut eni_count = 0;
    let cards = enis
        .as_object()
        .ok_or_else(|| bad("/v1/enis", "not an object of cards"))?;
    for card in cards.values() {
        total += card["TotalIPs"].as_u64().unwrap_or(0);
        pods += card["AssignedIPs"].as_u64().unwrap_or(0);
        let list = card["ENIs"]
            .as_object()
            .ok_or_else(|| bad("/v1/enis", "a card without ENIs"))?;
        for eni in list.values() {
            eni_count += 1;
            let subnet = eni["SubnetID"].as_str().unwrap_or("subnet-unknown").to_owned();
            let held = subnets.entry(subnet).or_default();
            if let Some(cidrs) = eni["AvailableIPv4Cidrs"].as_object() {
                for cidr in cidrs.keys() {
                    if let Ok(net) = cidr.parse::<Ipv4Net>() {
                        held.push(net.network());
                        held.push(net.broadcast());
                    }
                }
            }
        }
    }
    let limits = &pool["limits"];
    let config = &pool["config"];
    let max_enis = limits["max_enis"]
        .as_u64()
        .ok_or_else(|| bad("/v1/pool", "no limits.max_enis"))?;
    let slots = limits["slots_per_eni"]
        .as_u64()
        .ok_or_else(|| bad("/v1/pool", "no limits.slots_per_eni"))?;
    let capped = limits["max_eni_configured"].as_bool().unwrap_or(false);
    let instance_types: Vec<String> = vpcni_limits::builtin()
        .iter()
        .filter(|l| u64::from(l.ipv4_per_eni) == slots + 1 && (capped || u64::from(l.max_enis) == max_enis))
        .map(|l| l.instance_type.clone())
        .collect();
    let mut settings = BTreeMap::new();
    let number = |v: &Value| v.as_u64().map(|n| n.to_string());
    let flag = |v: &Value| v.as_bool().map(|b| b.to_string());
    for (name, value) in [
        ("WARM_ENI_TARGET", number(&config["warm_eni_target"])),
        ("WARM_IP_TARGET", number(&config["warm_ip_target"])),
        ("MINIMUM_IP_TARGET", number(&config["minimum_ip_target"])),
        ("WARM_PREFIX_TARGET", number(&config["warm_prefix_target"])),
        ("ENABLE_PREFIX_DELEGATION", flag(&config["prefix_delegation"])),
        (
            "IP_COOLDOWN_PERIOD",
            config["ip_cooldown_ms"]
                .as_u64()
                .map(|ms| (ms / 1000).to_string()),
        ),
        (
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
            flag(&env["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"]),
        ),
        ("ENABLE_SUBNET_DISCOVERY", flag(&env["ENABLE_SUBNET_DISCOVERY"])),
    ] {
        if let Some(value) = value {
            settings.insert(name.to_owned(), value);
        }
    }
    if capped {
        settings.insert("MAX_ENI".into(), max_enis.to_string());
    }
    Ok(NodeSnapshot {
        settings,
        instance_types,
        subnets,
        pods,
        total_ips: total,
        enis: eni_count,
    })
}

/// The smallest block (at least a /24, at most a /16) holding every address.
fn covering(addresses: &[Ipv4Addr]) -> Option<Ipv4Net> {
    let first = addresses.iter().min()?;
    let last = addresses.iter().max()?;
    (16..=24)
        .rev()
        .filter_map(|len| Ipv4Net::new(*first, len).ok().map(|n| n.trunc()))
        .find(|net| net.contains(last))
}

impl NodeSnapshot {
    /// The cluster file to start from: one node group of `nodes` such nodes, each with the pods this one
    /// runs now.
    /// `instance_type`, when given, replaces the guess from the limits.
    pub fn cluster_file(&self, url: &str, nodes: u32, instance_type: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Starting point read from {url}: {} ENIs, {} addresses, {} pods on the node.\n\
             # Check every line marked GUESSED, then: vpcnictl plan this-file.toml",
            self.enis, self.total_ips, self.pods
        );
        let cidrs: Vec<(String, Option<Ipv4Net>)> = self
            .subnets
            .iter()
            .map(|(id, addresses)| (id.clone(), covering(addresses)))
            .collect();
        let vpc: Vec<String> = {
            let mut blocks: Vec<Ipv4Net> = cidrs
                .iter()
                .filter_map(|(_, c)| {
                    c.and_then(|c| Ipv4Net::new(c.network(), 16).ok())
                        .map(|n| n.trunc())
                })
                .collect();
            blocks.sort();
            blocks.dedup();
            if blocks.is_empty() {
                vec!["10.0.0.0/16".to_owned()]
            } else {
                blocks.iter().map(ToString::to_string).collect()
            }
        };
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\n[vpc]\ncidrs = [{}]  # GUESSED from the node's addresses",
            quoted(&vpc)
        );
        let mut names = Vec::new();
        for (index, (id, cidr)) in cidrs.iter().enumerate() {
            let name = format!("subnet-{}", index + 1);
            let cidr = cidr.map_or_else(|| "10.0.0.0/24".to_owned(), |c| c.to_string());
            let _ = writeln!(
                out,
                "\n[[subnets]]\nname = {name:?}  # {id}\ncidr = {cidr:?}  # GUESSED: the smallest block holding the node's addresses; write the subnet's own CIDR\nzone = \"us-west-2a\"  # GUESSED"
            );
            names.push(name);
        }
        let examples: Vec<String> = self.instance_types.iter().take(4).cloned().collect();
        let note = match instance_type {
            Some(_) => "given with --instance-type".to_owned(),
            None => format!(
                "GUESSED: introspection gives limits, not the type; {} types have these limits, e.g. {}",
                self.instance_types.len(),
                examples.join(", ")
            ),
        };
        let instance_type = instance_type
            .map(str::to_owned)
            .or_else(|| self.instance_types.first().cloned())
            .unwrap_or_else(|| "m5.xlarge".into());
        let _ = writeln!(
            out,
            "\n[[node_groups]]\nname = \"from-node\"\ninstance_type = {instance_type:?}  # {note}\nnodes = {nodes}\nsubnets = [{}]",
            quoted(&names[..names.len().min(1)])
        );
        out.push_str("\n[settings]\n");
        for (name, value) in &self.settings {
            let _ = writeln!(out, "{name} = {value:?}");
        }
        let _ = writeln!(
            out,
            "\n[workload]\npods_per_node = {}\nduration = \"1h\"",
            self.pods
        );
        out
    }
}
