//! The pool manager, on the original's timers: every cycle the engine decides one action and this module
//! carries it out against EC2 and reports the result back; half a cycle later, when no pool action happened
//! for the reconcile interval (60 s), the pool is reconciled with EC2 and instance metadata. EC2 calls
//! happen without the pool lock held, so ADDs and DELs never wait on EC2.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use vpcni_ec2::{AddressRequest, Ec2, Ec2Error, Imds};
use vpcni_engine::Decision;

use crate::enis::{create_eni, free_eni, record_grow};
use crate::node::{Node, now_ms};
use crate::reconcile::reconcile;

/// What the pool manager works with.
#[derive(Clone)]
pub struct PoolManager {
    /// The node.
    pub node: Arc<Node>,
    /// EC2.
    pub ec2: Arc<dyn Ec2>,
    /// Instance metadata.
    pub imds: Arc<dyn Imds>,
}

impl std::fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolManager").finish_non_exhaustive()
    }
}

/// One cycle: decide, act, report. Returns the decision taken and whether it was carried out.
pub async fn cycle(node: &Node, ec2: &dyn Ec2) -> (Decision, bool) {
    let now = now_ms();
    let decision = node.pool().decide(now);
    let pool_settings = &node.config.pool;
    if pool_settings.disable_provisioning || pool_settings.imds_only {
        // DISABLE_NETWORK_RESOURCE_PROVISIONING / ENABLE_IMDS_ONLY_MODE: only what is attached is used.
        return (decision, false);
    }
    crate::enis::retry_eni_deletes(node, ec2).await;
    node.record_decision(now, &decision);
    if !matches!(decision, Decision::Nothing { .. }) {
        tracing::info!(?decision, "pool decision");
    }
    let result = match &decision {
        Decision::Nothing { .. } => return (decision, false),
        Decision::AddIps { eni_id, count } => add_ips(node, ec2, eni_id, *count).await,
        Decision::AddPrefixes { eni_id, count } => add_prefixes(node, ec2, eni_id, *count).await,
        Decision::CreateEni { ips, prefixes } => create_eni(node, ec2, *ips, *prefixes).await,
        Decision::Release { cidrs } => release(node, ec2, cidrs).await,
        Decision::FreeEni { eni_id } => free_eni(node, ec2, eni_id).await,
    };
    match result {
        Ok(()) => (decision, true),
        Err(error) => {
            tracing::warn!(?decision, "not done: {error}");
            (decision, false)
        }
    }
}

/// Runs the pool manager until `stop` changes; the cycle under way when it does is finished first, and no
/// ENI is ever detached on the way out.
pub async fn run(manager: PoolManager, mut stop: tokio::sync::watch::Receiver<bool>) {
    if manager.node.config.pool.ipv6 {
        // IPv6 mode: the /80 taken at start-up is all the node ever needs, so there is nothing to grow,
        // shrink or reconcile (the original's pool manager does nothing after start-up either).
        tracing::info!("IPv6 mode: no pool management after start-up");
        // `changed` fails only once the sender is gone, which also means stop.
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        return;
    }
    let interval = manager.node.config.pool_interval;
    let reconcile_interval = manager.node.config.reconcile_interval;
    let mut last_action = Instant::now();
    let mut last_cidr_check = Instant::now();
    let mut first_cycle = true;
    if crate::leaked::enabled(&manager.node) {
        match crate::leaked::delete_own_unattached(&manager.node, manager.ec2.as_ref()).await {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(
                    ?deleted,
                    "deleted this node's unattached ENIs left by an earlier run"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("looking for this node's unattached ENIs: {error}"),
        }
    }
    loop {
        if last_cidr_check.elapsed() >= VPC_CIDR_CHECK_INTERVAL {
            refresh_vpc_cidrs(&manager).await;
            last_cidr_check = Instant::now();
        }
        let (decision, acted) = cycle(&manager.node, manager.ec2.as_ref()).await;
        if acted {
            last_action = Instant::now();
        }
        if first_cycle {
            first_cycle = false;
            count_node_init_failure(&manager.node, &decision, acted);
        }
        if pause(&mut stop, interval / 2).await {
            return;
        }
        if last_action.elapsed() >= reconcile_interval {
            manager
                .node
                .metrics
                .ipamd_action_inprogress
                .with_label_values(&["nodeIPPoolReconcile"])
                .inc();
            reconcile(&manager).await;
            manager
                .node
                .metrics
                .ipamd_action_inprogress
                .with_label_values(&["nodeIPPoolReconcile"])
                .dec();
            last_action = Instant::now();
        }
        if pause(&mut stop, interval / 2).await {
            return;
        }
    }
}

/// The first cycle is the original's pre-scaling at the end of its node initialisation, where it counts
/// `awscni_pod_eni_error_count{fn="nodeInit"}` when growing the pool fails, or when custom networking is
/// left without a single pod address (the original also refuses to become ready then; vpcni keeps serving
/// and keeps trying, and says so in the log).
fn count_node_init_failure(node: &Node, decision: &Decision, acted: bool) {
    let settings = &node.config.pool;
    if settings.disable_provisioning || settings.imds_only {
        return;
    }
    let grow = matches!(
        decision,
        Decision::AddIps { .. } | Decision::AddPrefixes { .. } | Decision::CreateEni { .. }
    );
    if grow && !acted {
        node.metrics.pod_eni_error("nodeInit");
    } else if settings.custom_networking && node.pool().stats(now_ms()).total == 0 {
        tracing::error!("custom networking: no ENI with pod addresses could be attached yet");
        node.metrics.pod_eni_error("nodeInit");
    }
}

/// How often the VPC's CIDRs are read again (the original's 30 s): a CIDR associated with the VPC later
/// must join the SNAT and CONNMARK exemptions and the plugin's VPC CIDRs.
const VPC_CIDR_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Reads the VPC's CIDRs from instance metadata and reprograms the node's rules if they changed.
pub async fn refresh_vpc_cidrs(manager: &PoolManager) {
    let node = &manager.node;
    let cidrs = match manager.imds.interface(&node.identity.primary_mac).await {
        Ok(primary) => primary.vpc_ipv4_cidr_blocks,
        Err(error) => {
            tracing::debug!("reading the VPC's CIDRs: {error}");
            return;
        }
    };
    if cidrs.is_empty() || !node.set_vpc_cidrs(cidrs.clone()) {
        return;
    }
    tracing::info!(?cidrs, "the VPC's CIDRs changed; reprogramming the node's rules");
    let network = crate::host::NodeNetwork::new(&node.config, &node.identity, &cidrs);
    let result = if node.host.program_node(&network).await.is_ok() {
        "success"
    } else {
        "failure"
    };
    node.metrics
        .connmark_reconcile_total
        .with_label_values(&[result])
        .inc();
}

/// Sleeps; true if told to stop meanwhile.
async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, duration: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.changed() => true,
    }
}

fn subnet_of(node: &Node, eni_id: &str) -> String {
    node.pool().eni(eni_id).map_or_else(
        || node.identity.primary_subnet_id.clone(),
        |e| e.subnet_id.clone(),
    )
}

async fn add_ips(node: &Node, ec2: &dyn Ec2, eni_id: &str, count: u32) -> Result<(), Ec2Error> {
    let result = ec2
        .assign_private_ip_addresses(eni_id, &AddressRequest::Count(count))
        .await
        .map(|ips| ips.into_iter().map(Ipv4Net::from).collect::<Vec<_>>());
    record_grow(node, &result, eni_id, &subnet_of(node, eni_id));
    result.map(|_| ())
}

async fn add_prefixes(node: &Node, ec2: &dyn Ec2, eni_id: &str, count: u32) -> Result<(), Ec2Error> {
    let result = ec2
        .assign_ipv4_prefixes(eni_id, &AddressRequest::Count(count))
        .await;
    record_grow(node, &result, eni_id, &subnet_of(node, eni_id));
    result.map(|_| ())
}

async fn release(node: &Node, ec2: &dyn Ec2, cidrs: &[(String, Ipv4Net)]) -> Result<(), Ec2Error> {
    let mut by_eni: std::collections::BTreeMap<&str, Vec<Ipv4Net>> = std::collections::BTreeMap::new();
    for (eni, net) in cidrs {
        by_eni.entry(eni.as_str()).or_default().push(*net);
    }
    for (eni_id, nets) in by_eni {
        // Out of the pool first, so no pod can be given an address on its way back to EC2.
        {
            let mut pool = node.pool();
            node.returned.remember_nets(&pool, eni_id, &nets, now_ms());
            if let Err(error) = pool.remove_cidrs(eni_id, &nets) {
                tracing::info!("not releasing from {eni_id}: {error}");
                continue;
            }
            pool.record_release(now_ms());
            node.persist(&pool);
        }
        node.recently_freed_cidrs(&nets);
        let ips: Vec<Ipv4Addr> = nets
            .iter()
            .filter(|n| n.prefix_len() == 32)
            .map(|n| n.addr())
            .collect();
        let prefixes: Vec<Ipv4Net> = nets.iter().filter(|n| n.prefix_len() < 32).copied().collect();
        if !ips.is_empty() {
            ec2.unassign_private_ip_addresses(eni_id, &ips).await?;
        }
        if !prefixes.is_empty() {
            ec2.unassign_ipv4_prefixes(eni_id, &prefixes).await?;
        }
    }
    Ok(())
}
