//! Start-up, in the order of the original's `nodeInit`
//! (<https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/pkg/ipamd/ipamd.go>): identity from instance
//! metadata; limits; ENIs from EC2 (the truth) joined with metadata and classified; the node's network
//! programmed (primary interface, rules, SNAT and CONNMARK); every managed secondary ENI set up on the host;
//! the checkpoint (ours, or the original's when a node moves from aws-node) restored and reconciled with EC2
//! (addresses the node no longer has are dropped and logged) and with the host (pods whose veth is gone are
//! released).
//!
//! In IPv6 mode (ENABLE_IPv6=true) the node uses its primary ENI only: the instance type must be Nitro or
//! bare metal; the primary ENI's /80 is kept if it has one (the first, if several, as the original), else one
//! is assigned (AssignIpv6Addresses with Ipv6PrefixCount=1) and awaited in EC2; the host gets the IPv6
//! sysctls instead of the IPv4 rules; no secondary ENI is set up.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_dataplane::DataplaneError;
use vpcni_dataplane::naming::host_veth_name;
use vpcni_ec2::{AddressRequest, DescribeNetworkInterfacesRequest, Ec2, Imds};
use vpcni_engine::checkpoint::{Checkpoint, CheckpointError};
use vpcni_engine::{Eni, EniFlags, Ipv6Block, NodeLimits, Pool, PoolConfig};
use vpcni_layout::EniSlot;

use crate::config::Config;
use crate::discovery::{
    DiscoveredEni, DiscoveryError, EniRole, discover_enis, discover_enis_from_metadata, discover_identity,
};
use crate::enis::eni_tags;
use crate::host::{Host, NodeNetwork, eni_spec};
use crate::metrics::Metrics;
use crate::node::{Node, VethCheck, now_ms};

/// A restored pod whose veth is missing is released at once if its address was given longer ago than this;
/// a younger one may be in the middle of its CNI ADD, and is checked again when this much time has passed.
pub const VETH_GRACE_MS: u64 = 60_000;

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
    /// ENABLE_IPv6=true on an instance type that cannot have IPv6 prefixes.
    #[error(
        "ENABLE_IPv6=true needs a Nitro or bare-metal instance type (IPv6 pods take their addresses from a /80 \
         prefix, which EC2 delegates to those only); {instance_type} is {hypervisor}: use ENABLE_IPv4=true on it, \
         or a Nitro type"
    )]
    Ipv6NeedsNitro {
        /// The instance type.
        instance_type: String,
        /// Its hypervisor as the limits table records it.
        hypervisor: String,
    },
    /// IPv6 mode without a /80 on the primary ENI, and none may be assigned, or EC2 did not show it.
    #[error("IPv6 mode: the primary ENI {eni} has no IPv6 /80 prefix: {why}")]
    NoIpv6Prefix {
        /// The primary ENI.
        eni: String,
        /// Why none could be had.
        why: String,
    },
    /// The host could not be programmed.
    #[error("programming the host: {what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: DataplaneError,
    },
}

fn host_error(what: impl Into<String>) -> impl FnOnce(DataplaneError) -> StartupError {
    let what = what.into();
    move |source| StartupError::Host { what, source }
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

/// The subnet CIDR of an ENI: from metadata, else from EC2.
async fn subnet_cidr(found: &DiscoveredEni, ec2: &dyn Ec2, fallback: Ipv4Net) -> Ipv4Net {
    if let Some(metadata) = &found.metadata {
        return metadata.subnet_ipv4_cidr_block;
    }
    match ec2
        .describe_subnets(std::slice::from_ref(&found.eni.subnet_id), &[])
        .await
    {
        Ok(subnets) => subnets.first().map_or(fallback, |s| s.cidr_block),
        Err(error) => {
            tracing::warn!(subnet = %found.eni.subnet_id, "DescribeSubnets: {error}");
            fallback
        }
    }
}

/// The subnets of these ENIs that give pods no addresses (with ENABLE_SUBNET_DISCOVERY, as the original:
/// see [`crate::enis::subnet_excludes_pods`]). If EC2 cannot say, none: the ENIs keep serving, as the
/// original's do when its check fails.
async fn excluded_subnets(enis: &[DiscoveredEni], ec2: &dyn Ec2, config: &Config) -> Vec<String> {
    if !config.pool.subnet_discovery || config.pool.imds_only {
        return Vec::new();
    }
    let mut ids: Vec<String> = enis.iter().map(|e| e.eni.subnet_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids.retain(|id| !id.is_empty());
    if ids.is_empty() {
        return Vec::new();
    }
    match ec2.describe_subnets(&ids, &[]).await {
        Ok(subnets) => subnets
            .into_iter()
            .filter(|s| crate::enis::subnet_excludes_pods(s, &config.cluster_name))
            .map(|s| s.subnet_id)
            .collect(),
        Err(error) => {
            tracing::warn!(
                "checking the ENIs' subnets for kubernetes.io/role/cni=0: {error}; treating none as excluded"
            );
            Vec::new()
        }
    }
}

/// Builds the node from EC2 and metadata, programs the host, and restores the checkpoint.
pub async fn start(
    config: Config,
    ec2: &dyn Ec2,
    imds: &dyn Imds,
    host: Arc<dyn Host>,
    metrics: Arc<Metrics>,
) -> Result<Arc<Node>, StartupError> {
    let mut identity = discover_identity(imds).await?;
    let limits = vpcni_limits::builtin().get(&identity.instance_type)?;
    if config.pool.ipv6 && !limits.supports_prefix_delegation() {
        return Err(StartupError::Ipv6NeedsNitro {
            instance_type: identity.instance_type.clone(),
            hypervisor: limits.hypervisor.to_string(),
        });
    }
    let enis = if config.pool.imds_only {
        discover_enis_from_metadata(imds, &identity, config.pool.manage_untagged_eni).await?
    } else {
        discover_enis(ec2, imds, &identity, config.pool.manage_untagged_eni).await?
    };
    if let Some(primary) = enis.iter().find(|e| e.role == EniRole::Primary) {
        identity.vpc_id = primary.eni.vpc_id.clone();
    }

    host.program_node(&NodeNetwork::new(&config, &identity, &identity.vpc_cidrs))
        .await
        .map_err(host_error("the node's rules"))?;
    metrics.connmark_backend.with_label_values(&["iptables"]).set(1);

    let mut pool_config = pool_config(&config);
    if pool_config.prefix_delegation && !limits.supports_prefix_delegation() {
        tracing::warn!(instance_type = %identity.instance_type, "prefix delegation needs Nitro or bare metal; using secondary IPs");
        pool_config.prefix_delegation = false;
    }
    let mut node_limits = NodeLimits::for_node(
        limits,
        config.pool.max_eni,
        config.pool.pod_eni,
        config.pool.custom_networking,
    );
    node_limits.unmanaged_enis = enis.iter().filter(|e| e.role == EniRole::Unmanaged).count() as u32;
    if config.pool.ipv6 {
        // The pods an IPv6 node takes: prefix delegation's number, as EKS gives it (STATUS reports it).
        let options = vpcni_limits::max_pods::MaxPodsOptions {
            max_eni: config.pool.max_eni,
            security_groups_for_pods: config.pool.pod_eni,
            ..Default::default()
        };
        if let Ok(ipv6) = vpcni_limits::max_pods::max_pods_ipv6(limits, &options) {
            node_limits.max_pods = ipv6.max_pods;
        }
    }
    let mut pool = Pool::new(pool_config, node_limits);
    let now = now_ms();
    let excluded_subnets = excluded_subnets(&enis, ec2, &config).await;
    let mut set_up: Vec<Ipv4Addr> = Vec::new();
    for found in enis
        .iter()
        .filter(|e| e.role != EniRole::Unmanaged && e.role != EniRole::OtherCard)
    {
        let eni_id = &found.eni.network_interface_id;
        if config.pool.ipv6 && found.role != EniRole::Primary {
            tracing::info!(eni = %eni_id, "IPv6 mode uses the primary ENI only: this ENI is left alone");
            continue;
        }
        let subnet = subnet_cidr(found, ec2, identity.primary_subnet_cidr).await;
        if matches!(found.role, EniRole::Managed | EniRole::Trunk) {
            let spec = eni_spec(
                &found.eni.mac_address,
                found.eni.private_ip,
                subnet,
                config.network.eni_mtu,
                EniSlot::new(found.network_card, found.device_number).route_table(),
            );
            host.wait_for_eni(&spec.mac, config.eni_link_timeout)
                .await
                .map_err(host_error(format!("waiting for the link of {eni_id}")))?;
            host.setup_eni(&spec)
                .await
                .map_err(host_error(format!("setting up {eni_id}")))?;
            set_up.push(found.eni.private_ip);
            let wanted = eni_tags(&identity.instance_id, &config);
            let missing: vpcni_ec2::Tags = wanted
                .into_iter()
                .filter(|(k, v)| found.eni.tags.get(k) != Some(v))
                .collect();
            if !missing.is_empty()
                && !config.pool.imds_only
                && let Err(error) = ec2.create_tags(std::slice::from_ref(eni_id), &missing).await
            {
                tracing::warn!(eni = %eni_id, "tagging: {error}");
            }
        }
        let flags = EniFlags {
            primary: found.role == EniRole::Primary,
            trunk: found.role == EniRole::Trunk,
            efa: found.role == EniRole::Efa,
            // In IPv6 mode the primary ENI's IPv4 addresses are the node's, never a pod's.
            excluded: (found.role == EniRole::Primary && config.pool.custom_networking)
                || config.pool.ipv6
                || excluded_subnets.contains(&found.eni.subnet_id),
        };
        if excluded_subnets.contains(&found.eni.subnet_id) {
            tracing::info!(eni = %eni_id, subnet = %found.eni.subnet_id, "ENI in a subnet excluded from pod addresses (kubernetes.io/role/cni): its addresses are not given to pods");
        }
        // The ENI lifetime clock starts now: a restarted daemon must not free an ENI pods may be on before
        // the checkpoint is read.
        let mut eni = Eni::new(
            eni_id,
            found.device_number,
            flags,
            subnet,
            found.eni.private_ip,
            now,
        )
        .with_subnet_id(&found.eni.subnet_id);
        eni.network_card = found.network_card;
        if let Err(error) = pool.add_eni(eni) {
            tracing::warn!("skipping ENI {eni_id}: {error}");
            continue;
        }
        if config.pool.ipv6 {
            let prefix = ipv6_prefix(ec2, &config, found).await?;
            tracing::info!(eni = %eni_id, %prefix, "IPv6 mode: pods get their addresses from this /80");
            pool.set_ipv6_block(Ipv6Block::new(eni_id, prefix));
            continue;
        }
        let mut cidrs: Vec<Ipv4Net> = found
            .eni
            .secondary_ips
            .iter()
            .map(|ip| Ipv4Net::from(*ip))
            .collect();
        cidrs.extend(found.eni.ipv4_prefixes.iter().copied());
        if let Err(error) = pool.add_cidrs(eni_id, &cidrs) {
            tracing::warn!("addresses of {eni_id}: {error}");
        }
    }
    let pruned = host
        .prune_eni_rules(&set_up)
        .await
        .map_err(host_error("removing rules of ENIs that are gone"))?;
    if !pruned.is_empty() {
        tracing::info!(?pruned, "removed ENI rules left by ENIs no longer attached");
    }

    let mut cooldowns = Vec::new();
    let checkpoint = match Checkpoint::load(&config.backing_store)? {
        Some(checkpoint) => Some(checkpoint),
        None => {
            let imported = Checkpoint::load(&config.import_checkpoint)?;
            if imported.is_some() {
                tracing::info!(from = %config.import_checkpoint.display(), "importing the original's checkpoint");
            }
            imported
        }
    };
    if let Some(checkpoint) = checkpoint {
        cooldowns.extend(
            checkpoint
                .cooling
                .iter()
                .map(|c| (c.ipv4, c.unassigned_timestamp / 1_000_000)),
        );
        for (allocation, why) in checkpoint.restore_into(&mut pool) {
            tracing::warn!(
                container = %allocation.container_id, ipv4 = ?allocation.ipv4, ipv6 = ?allocation.ipv6,
                "dropped from the checkpoint: EC2 does not list this address on the node any more ({why})"
            );
        }
    }
    let veth_checks = release_pods_without_veth(&config, &mut pool, host.as_ref()).await;

    metrics.eni_max.set(i64::from(
        pool.limits()
            .max_enis
            .saturating_sub(pool.limits().unmanaged_enis),
    ));
    let ip_max = match pool.ipv6_block() {
        Some(block) => i64::try_from(block.size()).unwrap_or(i64::MAX),
        None => i64::from(pool.limits().max_enis * pool.limits().slots_per_eni),
    };
    metrics.ip_max.set(ip_max);
    let node = Arc::new(Node::new(pool, identity, config, metrics, host));
    node.metrics
        .connmark_reconcile_total
        .with_label_values(&["success"])
        .inc();
    node.veth_checks
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(veth_checks);
    {
        // Addresses given back to EC2 while cooling, before the restart, keep cooling if they return.
        node.returned.load(cooldowns);
        let mut pool = node.pool();
        node.returned.reapply(&mut pool, now_ms());
        node.persist(&pool);
    }
    Ok(node)
}

/// Releases restored pods whose host veth is gone (the plugin's DEL came while the daemon was down) and
/// removes their rules; returns checks for pods too young to judge yet.
async fn release_pods_without_veth(config: &Config, pool: &mut Pool, host: &dyn Host) -> Vec<VethCheck> {
    let now = now_ms();
    let mut later = Vec::new();
    for (key, pod, assignment) in pool.allocations() {
        if pod.namespace.is_empty() || pod.name.is_empty() {
            continue;
        }
        let veth = host_veth_name(&config.network.veth_prefix, &pod.namespace, &pod.name);
        match host.veth_exists(&veth).await {
            Ok(true) => {}
            Ok(false) if now >= assignment.assigned_at.saturating_add(VETH_GRACE_MS) => {
                pool.unassign(&key, now);
                tracing::warn!(
                    pod = %format!("{}/{}", pod.namespace, pod.name), ip = %assignment.ip, %veth,
                    "released: the pod's host veth is gone"
                );
                if let Err(error) = host.remove_pod_rules(&veth, assignment.ip).await {
                    tracing::warn!(%veth, "removing its rules: {error}");
                }
            }
            Ok(false) => later.push(VethCheck {
                key,
                veth,
                ip: assignment.ip,
                due: assignment.assigned_at.saturating_add(VETH_GRACE_MS),
            }),
            Err(error) => tracing::warn!(%veth, "checking: {error}"),
        }
    }
    if let Some(block) = pool.ipv6_block_mut() {
        for (key, pod, assignment) in block.allocations() {
            if pod.namespace.is_empty() || pod.name.is_empty() {
                continue;
            }
            let veth = host_veth_name(&config.network.veth_prefix, &pod.namespace, &pod.name);
            match host.veth_exists(&veth).await {
                Ok(true) => {}
                // A young one may be mid-ADD: it stays, and the CNI's DEL or GC releases it if it never
                // comes (IPv6 mode runs no reconcile to look again).
                Ok(false) if now >= assignment.assigned_at.saturating_add(VETH_GRACE_MS) => {
                    block.unassign(&key);
                    tracing::warn!(
                        pod = %format!("{}/{}", pod.namespace, pod.name), ip = %assignment.ip, %veth,
                        "released: the pod's host veth is gone"
                    );
                    if let Err(error) = host.remove_ipv6_pod_rules(&veth, assignment.ip).await {
                        tracing::warn!(%veth, "removing its rules: {error}");
                    }
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%veth, "checking: {error}"),
            }
        }
    }
    later
}

/// How long start-up waits for EC2 to list a /80 it has just assigned.
const IPV6_PREFIX_WAIT: Duration = Duration::from_secs(30);

/// IPv6 mode: the primary ENI's /80 as EC2 (or, in IMDS-only mode, instance metadata) lists it, the first
/// if it has several (the others are left alone, as the original leaves them); if it has none, one is
/// assigned and awaited until DescribeNetworkInterfaces lists it.
async fn ipv6_prefix(
    ec2: &dyn Ec2,
    config: &Config,
    primary: &DiscoveredEni,
) -> Result<Ipv6Net, StartupError> {
    let eni_id = &primary.eni.network_interface_id;
    let mut held = primary.eni.ipv6_prefixes.clone();
    if let Some(metadata) = &primary.metadata
        && config.pool.imds_only
    {
        held.extend(metadata.ipv6_prefixes.iter().copied());
    }
    held.sort();
    held.dedup();
    if let Some(first) = held.first() {
        if held.len() > 1 {
            tracing::warn!(eni = %eni_id, ?held, kept = %first, "the primary ENI has several IPv6 prefixes: the first is used, the others are left alone");
        }
        return Ok(*first);
    }
    let no_prefix = |why: String| StartupError::NoIpv6Prefix {
        eni: eni_id.clone(),
        why,
    };
    if config.pool.imds_only || config.pool.disable_provisioning {
        return Err(no_prefix(
            "ENABLE_IMDS_ONLY_MODE or DISABLE_NETWORK_RESOURCE_PROVISIONING forbids assigning one; assign one \
             (aws ec2 assign-ipv6-addresses --ipv6-prefix-count 1) or unset that variable"
                .to_owned(),
        ));
    }
    let assigned = ec2
        .assign_ipv6_prefixes(eni_id, &AddressRequest::Count(1))
        .await
        .map_err(|source| DiscoveryError::Ec2 {
            what: "AssignIpv6Addresses (Ipv6PrefixCount=1) on the primary ENI",
            source,
        })?;
    let Some(prefix) = assigned.first().copied() else {
        return Err(no_prefix("EC2 assigned no prefix and gave no error".to_owned()));
    };
    tracing::info!(eni = %eni_id, %prefix, "assigned an IPv6 /80 to the primary ENI");
    let request = DescribeNetworkInterfacesRequest {
        network_interface_ids: vec![eni_id.clone()],
        ..DescribeNetworkInterfacesRequest::default()
    };
    let deadline = tokio::time::Instant::now() + IPV6_PREFIX_WAIT;
    let mut pause = Duration::from_millis(100);
    loop {
        match ec2.describe_network_interfaces(&request).await {
            Ok(page)
                if page
                    .network_interfaces
                    .iter()
                    .any(|eni| eni.ipv6_prefixes.contains(&prefix)) =>
            {
                return Ok(prefix);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(eni = %eni_id, "DescribeNetworkInterfaces: {error}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(no_prefix(format!(
                "{prefix} was assigned but EC2 did not list it within {} s",
                IPV6_PREFIX_WAIT.as_secs()
            )));
        }
        // EC2 is eventually consistent: ask again, less and less often.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
