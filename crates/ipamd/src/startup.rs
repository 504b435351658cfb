//! Start-up: identity from instance metadata, ENIs from EC2, the pool built from them, and the checkpoint
//! restored into it (ours, or the original's when a node moves from aws-node).

use std::path::Path;
use std::sync::Arc;

use vpcni_ec2::{Ec2, Imds};
use vpcni_engine::checkpoint::{Checkpoint, CheckpointError};
use vpcni_engine::{Eni, EniFlags, NodeLimits, Pool, PoolConfig};

use crate::config::Config;
use crate::discovery::{DiscoveryError, EniRole, discover_enis, discover_identity};
use crate::metrics::Metrics;
use crate::node::{Node, now_ms};

/// Where the original keeps its checkpoint; imported once if ours does not exist yet.
pub const ORIGINAL_CHECKPOINT: &str = "/var/run/aws-node/ipam.json";

/// Why start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Metadata or EC2 did not answer.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The instance type is not in the limits table.
    #[error("{0}; refresh the table with `vpcnictl limits import`")]
    UnknownType(#[from] vpcni_limits::UnknownInstanceType),
    /// The checkpoint is unreadable; it is never overwritten.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Engine settings from the environment's.
pub fn pool_config(config: &Config) -> PoolConfig {
    let pool = &config.pool;
    PoolConfig {
        warm_eni_target: pool.warm_eni_target,
        warm_ip_target: pool.warm_ip_target,
        minimum_ip_target: pool.minimum_ip_target,
        warm_prefix_target: pool.warm_prefix_target,
        prefix_delegation: pool.prefix_delegation,
        ip_cooldown_ms: pool.ip_cooldown.as_millis() as u64,
        ..PoolConfig::default()
    }
}

/// Builds the node from EC2 and metadata, and restores the checkpoint.
pub async fn start(
    config: Config,
    ec2: &dyn Ec2,
    imds: &dyn Imds,
    original_checkpoint: &Path,
) -> Result<Arc<Node>, StartupError> {
    let identity = discover_identity(imds).await?;
    let limits = vpcni_limits::builtin().get(&identity.instance_type)?;
    let enis = discover_enis(ec2, imds, &identity, config.pool.manage_untagged_eni).await?;
    let mut pool_config = pool_config(&config);
    if pool_config.prefix_delegation && !limits.supports_prefix_delegation() {
        tracing::warn!(instance_type = %identity.instance_type, "prefix delegation needs Nitro or bare metal; using secondary IPs");
        pool_config.prefix_delegation = false;
    }
    let mut node_limits = NodeLimits::for_instance(limits, config.pool.max_eni, config.pool.pod_eni);
    node_limits.unmanaged_enis = enis.iter().filter(|e| e.role == EniRole::Unmanaged).count() as u32;
    let mut pool = Pool::new(pool_config, node_limits);
    let now = now_ms();
    for found in enis
        .iter()
        .filter(|e| e.role != EniRole::Unmanaged && e.role != EniRole::OtherCard)
    {
        let flags = EniFlags {
            primary: found.role == EniRole::Primary,
            trunk: found.role == EniRole::Trunk,
            efa: found.role == EniRole::Efa,
            excluded: found.role == EniRole::Primary && config.pool.custom_networking,
        };
        let subnet_cidr = found
            .metadata
            .as_ref()
            .map_or(identity.primary_subnet_cidr, |m| m.subnet_ipv4_cidr_block);
        let mut eni = Eni::new(
            &found.eni.network_interface_id,
            found.device_number,
            flags,
            subnet_cidr,
            found.eni.private_ip,
            now,
        )
        .with_subnet_id(&found.eni.subnet_id);
        eni.network_card = found.network_card;
        // Restarted daemons must not free ENIs that pods may be on before the checkpoint is read: the ENI
        // lifetime clock starts now.
        if let Err(error) = pool.add_eni(eni) {
            tracing::warn!("skipping ENI {}: {error}", found.eni.network_interface_id);
            continue;
        }
        let mut cidrs: Vec<ipnet::Ipv4Net> = found
            .eni
            .secondary_ips
            .iter()
            .map(|ip| ipnet::Ipv4Net::from(*ip))
            .collect();
        cidrs.extend(found.eni.ipv4_prefixes.iter().copied());
        if let Err(error) = pool.add_cidrs(&found.eni.network_interface_id, &cidrs) {
            tracing::warn!("addresses of {}: {error}", found.eni.network_interface_id);
        }
    }

    let ours = Checkpoint::load(&config.backing_store)?;
    let checkpoint = match ours {
        Some(checkpoint) => Some(checkpoint),
        None => {
            let imported = Checkpoint::load(original_checkpoint)?;
            if imported.is_some() {
                tracing::info!(from = %original_checkpoint.display(), "importing the original's checkpoint");
            }
            imported
        }
    };
    if let Some(checkpoint) = checkpoint {
        for (allocation, why) in checkpoint.restore_into(&mut pool) {
            tracing::warn!(container = %allocation.container_id, ip = ?allocation.ipv4, "dropped from checkpoint: {why}");
        }
    }
    let metrics = Arc::new(Metrics::new());
    metrics.eni_max.set(i64::from(
        pool.limits()
            .max_enis
            .saturating_sub(pool.limits().unmanaged_enis),
    ));
    metrics
        .ip_max
        .set(i64::from(pool.limits().max_enis * pool.limits().slots_per_eni));
    let node = Arc::new(Node::new(pool, identity, config, metrics));
    {
        let pool = node.pool();
        node.persist(&pool);
    }
    Ok(node)
}
