//! The simulator's account as saved in `ec2-state.json` after each mutating request: the parts tests and
//! the hot-plug watcher look at, plus the raw JSON for the rest.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::{Result, setup_error};

/// An ENI attachment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SimAttachment {
    /// `eni-attach-…`.
    pub id: String,
    /// Instance it is attached to.
    pub instance_id: String,
    /// Device index (0 = primary ENI).
    pub device_index: u32,
    /// Network card.
    #[serde(default)]
    pub network_card: u32,
    /// When the attachment completes (ms since the epoch): until then EC2 shows it `attaching`.
    #[serde(default)]
    pub attached_ms: u64,
}

/// An ENI.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SimEni {
    /// `eni-…`.
    pub id: String,
    /// MAC, `02:…`.
    pub mac: String,
    /// Subnet.
    pub subnet_id: String,
    /// Its own primary address.
    pub primary_ip: Ipv4Addr,
    /// Secondary addresses (with when each was assigned).
    #[serde(default)]
    pub secondary: BTreeMap<Ipv4Addr, u64>,
    /// /28 prefixes (with when each was assigned).
    #[serde(default)]
    pub prefixes: BTreeMap<Ipv4Net, u64>,
    /// Attachment, if any.
    pub attachment: Option<SimAttachment>,
}

impl SimEni {
    /// Whether it is attached to `instance` and the attachment has completed at `now_ms`.
    pub fn attached_to(&self, instance: &str, now_ms: u64) -> bool {
        self.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance && a.attached_ms <= now_ms)
    }
}

/// An instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SimInstance {
    /// `i-…`.
    pub id: String,
    /// Type.
    pub instance_type: String,
    /// Subnet of its primary ENI.
    pub subnet_id: String,
    /// `running` or `terminated`.
    pub state: String,
    /// Primary ENI id.
    pub primary_eni: String,
}

/// The account.
#[derive(Debug, Clone)]
pub struct SimState {
    /// Instances by id.
    pub instances: BTreeMap<String, SimInstance>,
    /// ENIs by id.
    pub enis: BTreeMap<String, SimEni>,
    /// Subnet CIDRs by id.
    pub subnet_cidrs: BTreeMap<String, Ipv4Net>,
    /// The whole file.
    pub raw: serde_json::Value,
}

#[derive(Deserialize)]
struct Wire {
    instances: BTreeMap<String, SimInstance>,
    enis: BTreeMap<String, SimEni>,
    subnets: BTreeMap<String, WireSubnet>,
}

#[derive(Deserialize)]
struct WireSubnet {
    addresses: WireAddresses,
}

#[derive(Deserialize)]
struct WireAddresses {
    cidr: Ipv4Net,
}

impl SimState {
    /// Reads a saved state file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| setup_error(format!("reading {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| setup_error(format!("parsing {}", path.display()), e))
    }

    /// Parses the JSON.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: serde_json::Value = serde_json::from_str(text)?;
        let wire: Wire = serde_json::from_value(raw.clone())?;
        Ok(Self {
            instances: wire.instances,
            enis: wire.enis,
            subnet_cidrs: wire
                .subnets
                .into_iter()
                .map(|(id, s)| (id, s.addresses.cidr))
                .collect(),
            raw,
        })
    }

    /// ENIs attached to `instance` (attachment complete at `now_ms`), by device index.
    pub fn attached_enis(&self, instance: &str, now_ms: u64) -> BTreeMap<u32, &SimEni> {
        self.enis
            .values()
            .filter(|e| e.attached_to(instance, now_ms))
            .filter_map(|e| e.attachment.as_ref().map(|a| (a.device_index, e)))
            .collect()
    }

    /// Every address EC2 has assigned to `instance`'s ENIs (secondary addresses and each prefix's
    /// addresses), excluding the ENIs' own primary addresses.
    pub fn assigned_addresses(&self, instance: &str) -> Vec<Ipv4Addr> {
        let mut addresses = Vec::new();
        for eni in self.attached_enis(instance, u64::MAX).values() {
            addresses.extend(eni.secondary.keys().copied());
            for prefix in eni.prefixes.keys() {
                addresses.extend(prefix.hosts());
                addresses.push(prefix.network());
                addresses.push(prefix.broadcast());
            }
        }
        addresses.sort();
        addresses.dedup();
        addresses
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
