//! The checkpoint file: the node's allocations, written on every change so a restarted daemon gives every
//! pod back its address.
//!
//! Format: the Amazon VPC CNI's `vpc-cni-ipam/1` (so a node moving from aws-node keeps its pods):
//!
//! ```json
//! {"version":"vpc-cni-ipam/1",
//!  "allocations":[{"networkName":"aws-cni","containerID":"…","ifName":"eth0","ipv4":"10.0.1.5",
//!                  "allocationTimestamp":1700000000000000000,
//!                  "metadata":{"k8sPodNamespace":"ns","k8sPodName":"p","interfacesCount":1}}],
//!  "vpcniCooling":[{"ipv4":"10.0.1.9","unassignedTimestamp":1700000000000000000}]}
//! ```
//!
//! `vpcniCooling` is vpcni's addition (the original ignores unknown fields): addresses released shortly
//! before a restart keep their cooldown. Timestamps are Unix nanoseconds, as the original writes them.
//!
//! In IPv6 mode each allocation has `ipv6` instead of `ipv4`, as the original writes it, and
//! `vpcniIpv6Cursor` (vpcni's addition) keeps the offset in the node's /80 from which the next address is
//! looked for, so an address released just before a restart is not handed out again at once after it.

use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipv6::{Ipv6Block, Ipv6Error};
use crate::model::{Millis, PodInfo, PodKey};
use crate::pool::{Pool, PoolError};

/// The only version this build reads and writes.
pub const VERSION: &str = "vpc-cni-ipam/1";

/// One allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// CNI network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// The address.
    #[serde(rename = "ipv4", default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// The address in IPv6 mode.
    #[serde(rename = "ipv6", default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Unix nanoseconds.
    #[serde(rename = "allocationTimestamp", default)]
    pub allocation_timestamp: u64,
    /// The pod.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// Pod metadata of an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Namespace.
    #[serde(rename = "k8sPodNamespace", default, skip_serializing_if = "String::is_empty")]
    pub pod_namespace: String,
    /// Name.
    #[serde(rename = "k8sPodName", default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// Interfaces of the pod.
    #[serde(rename = "interfacesCount", default, skip_serializing_if = "is_zero")]
    pub interfaces_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Metadata {
    fn is_empty(&self) -> bool {
        self.pod_namespace.is_empty() && self.pod_name.is_empty() && self.interfaces_count == 0
    }
}

/// An address cooling down at checkpoint time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooling {
    /// The address.
    pub ipv4: Ipv4Addr,
    /// Unix nanoseconds.
    #[serde(rename = "unassignedTimestamp")]
    pub unassigned_timestamp: u64,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: String,
    /// Allocations.
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    /// vpcni: addresses still cooling down.
    #[serde(rename = "vpcniCooling", default, skip_serializing_if = "Vec::is_empty")]
    pub cooling: Vec<Cooling>,
    /// vpcni, IPv6 mode: the offset in the node's /80 the next address is looked for from.
    #[serde(rename = "vpcniIpv6Cursor", default, skip_serializing_if = "Option::is_none")]
    pub ipv6_cursor: Option<u64>,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file is not valid JSON of this shape.
    #[error(
        "checkpoint {path} is corrupt: {detail}; it was left untouched: move it away to start with no allocations"
    )]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Parser's message.
        detail: String,
    },
    /// The version is not one this build reads.
    #[error("checkpoint {path} has version {found:?}, this build reads {VERSION:?}; it was left untouched")]
    UnknownVersion {
        /// File.
        path: PathBuf,
        /// Version found.
        found: String,
    },
    /// The file system refused.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
}

const NANOS_PER_MILLI: u64 = 1_000_000;

impl Checkpoint {
    /// A checkpoint of the pool's allocations and cooling addresses at `now`.
    pub fn from_pool(pool: &Pool, now: Millis) -> Self {
        let mut allocations: Vec<Allocation> = pool
            .allocations()
            .into_iter()
            .map(|(key, pod, assignment)| Allocation {
                network_name: key.network_name,
                container_id: key.container_id,
                if_name: key.if_name,
                ipv4: Some(assignment.ip),
                ipv6: None,
                allocation_timestamp: assignment.assigned_at.saturating_mul(NANOS_PER_MILLI),
                metadata: Metadata {
                    pod_namespace: pod.namespace,
                    pod_name: pod.name,
                    interfaces_count: 1,
                },
            })
            .collect();
        if let Some(block) = pool.ipv6_block() {
            allocations.extend(
                block
                    .allocations()
                    .into_iter()
                    .map(|(key, pod, assignment)| Allocation {
                        network_name: key.network_name,
                        container_id: key.container_id,
                        if_name: key.if_name,
                        ipv4: None,
                        ipv6: Some(assignment.ip),
                        allocation_timestamp: assignment.assigned_at.saturating_mul(NANOS_PER_MILLI),
                        metadata: Metadata {
                            pod_namespace: pod.namespace,
                            pod_name: pod.name,
                            interfaces_count: 1,
                        },
                    }),
            );
        }
        let mut cooling: Vec<Cooling> = pool
            .cooling_addresses(now)
            .into_iter()
            .map(|(ipv4, at)| Cooling {
                ipv4,
                unassigned_timestamp: at.saturating_mul(NANOS_PER_MILLI),
            })
            .collect();
        cooling.sort_by_key(|c| c.ipv4);
        Self {
            version: VERSION.to_owned(),
            allocations,
            cooling,
            ipv6_cursor: pool.ipv6_block().map(Ipv6Block::cursor),
        }
    }

    /// Parses and validates file contents.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CheckpointError> {
        // Check the version before the shape, so a future format gets the right message.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| CheckpointError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        match value.get("version").and_then(|v| v.as_str()) {
            Some(VERSION) => {}
            Some(other) => {
                return Err(CheckpointError::UnknownVersion {
                    path: path.to_owned(),
                    found: other.to_owned(),
                });
            }
            None => {
                return Err(CheckpointError::Corrupt {
                    path: path.to_owned(),
                    detail: "no \"version\" field".into(),
                });
            }
        }
        serde_json::from_value(value).map_err(|e| CheckpointError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Reads a checkpoint; `Ok(None)` if the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, CheckpointError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes atomically: a temporary file in the same directory, fsync, rename over the old one, fsync of
    /// the directory. A crash leaves either the old file or the new one, never a torn one.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io)?;
        let temp = dir.join(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint")
        ));
        let json = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        {
            let mut file = File::create(&temp).map_err(io)?;
            file.write_all(&json).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        fs::rename(&temp, path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }

    /// Re-marks every allocation in `pool`. Allocations whose address the node no longer has, or that
    /// collide with another, are returned as dropped (with why) rather than failing the restore.
    pub fn restore_into(&self, pool: &mut Pool) -> Vec<(Allocation, PoolError)> {
        let mut dropped = Vec::new();
        if let (Some(cursor), Some(block)) = (self.ipv6_cursor, pool.ipv6_block_mut()) {
            block.advance_cursor(cursor);
        }
        for allocation in &self.allocations {
            let key = PodKey::new(
                &allocation.network_name,
                &allocation.container_id,
                &allocation.if_name,
            );
            let pod = PodInfo {
                namespace: allocation.metadata.pod_namespace.clone(),
                name: allocation.metadata.pod_name.clone(),
            };
            let at = allocation.allocation_timestamp / NANOS_PER_MILLI;
            let Some(ip) = allocation.ipv4 else {
                if let Some(ip) = allocation.ipv6 {
                    let restored = match pool.ipv6_block_mut() {
                        Some(block) => block.restore(&key, &pod, ip, at).map(|_| ()),
                        None => Err(Ipv6Error::OutsidePrefix {
                            ip,
                            prefix: "none: the node is not in IPv6 mode".to_owned(),
                        }),
                    };
                    if let Err(error) = restored {
                        dropped.push((allocation.clone(), PoolError::from(error)));
                    }
                }
                continue;
            };
            if let Err(error) =
                pool.restore(&key, &pod, ip, allocation.allocation_timestamp / NANOS_PER_MILLI)
            {
                dropped.push((allocation.clone(), error));
            }
        }
        for cooling in &self.cooling {
            pool.restore_cooldown(cooling.ipv4, cooling.unassigned_timestamp / NANOS_PER_MILLI);
        }
        dropped
    }
}
