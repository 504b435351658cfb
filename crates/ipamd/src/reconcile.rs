//! Reconcile (the original's `nodeIPPoolReconcile`,
//! <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/pkg/ipamd/ipamd.go>), cheap when nothing changed:
//! instance metadata is read first, and EC2 is asked only when metadata and the pool disagree; EC2's answer
//! is then the truth (stale metadata must never add an address EC2 took away: aws/amazon-vpc-cni-k8s#3887,
//! #711). ENIs that are gone are force-removed with their pods; ENIs attached behind the daemon's back are
//! classified, tagged, set up on the host and added; addresses EC2 no longer lists are dropped, ones it lists
//! that the pool lacks are added, except those given back less than a minute ago. Restored pods whose host
//! veth was missing at start-up are checked again here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpcni_ec2::{Ec2Error, ImdsInterface, NetworkInterface};
use vpcni_engine::{Eni, EniFlags};
use vpcni_layout::EniSlot;

use crate::discovery::{EniRole, classify};
use crate::enis::eni_tags;
use crate::host::eni_spec;
use crate::node::{Node, now_ms};
use crate::pool_loop::PoolManager;

/// The pool's CIDRs per ENI.
fn pool_view(node: &Node) -> BTreeMap<String, BTreeSet<Ipv4Net>> {
    node.pool()
        .enis()
        .map(|e| (e.id.clone(), e.cidrs.keys().copied().collect()))
        .collect()
}

fn imds_cidrs(interface: &ImdsInterface, primary_ip: Ipv4Addr) -> BTreeSet<Ipv4Net> {
    // The ENI's own primary address is listed too; it is never a pod's.
    let mut cidrs: BTreeSet<Ipv4Net> = interface
        .local_ipv4s
        .iter()
        .filter(|ip| **ip != primary_ip)
        .map(|ip| Ipv4Net::from(*ip))
        .collect();
    cidrs.extend(interface.ipv4_prefixes.iter().map(|p| p.trunc()));
    cidrs
}

fn ec2_cidrs(eni: &NetworkInterface) -> BTreeSet<Ipv4Net> {
    let mut cidrs: BTreeSet<Ipv4Net> = eni.secondary_ips.iter().map(|ip| Ipv4Net::from(*ip)).collect();
    cidrs.extend(eni.ipv4_prefixes.iter().map(|p| p.trunc()));
    cidrs
}

/// Whether instance metadata and the pool disagree about card 0 (freed ENIs and addresses ignored).
async fn metadata_disagrees(manager: &PoolManager) -> Result<bool, Ec2Error> {
    let node = &manager.node;
    let now = now_ms();
    let mut metadata = BTreeMap::new();
    for mac in manager.imds.macs().await? {
        let interface = manager.imds.interface(&mac).await?;
        if interface.network_card == 0 {
            metadata.insert(interface.interface_id.clone(), interface);
        }
    }
    let pool = pool_view(node);
    let primaries: BTreeMap<String, Ipv4Addr> =
        node.pool().enis().map(|e| (e.id.clone(), e.primary_ip)).collect();
    let unknown = metadata
        .keys()
        .any(|id| !pool.contains_key(id) && !node.is_recently_freed_eni(id, now));
    let missing = pool.keys().any(|id| !metadata.contains_key(id));
    let differs = pool.iter().any(|(id, cidrs)| {
        metadata.get(id).is_some_and(|m| {
            let listed: BTreeSet<Ipv4Net> =
                imds_cidrs(m, primaries.get(id).copied().unwrap_or(Ipv4Addr::UNSPECIFIED))
                    .into_iter()
                    .filter(|c| !node.is_recently_freed_cidr(c, now))
                    .collect();
            listed != *cidrs
        })
    });
    Ok(unknown || missing || differs)
}

/// One reconcile pass.
pub async fn reconcile(manager: &PoolManager) {
    let node = &manager.node;
    recheck_veths(node).await;
    match metadata_disagrees(manager).await {
        Ok(false) => return,
        Ok(true) => {}
        Err(error) => {
            tracing::warn!("reconcile: instance metadata: {error}");
            return;
        }
    }
    if node.config.pool.imds_only {
        tracing::warn!(
            "reconcile: instance metadata differs from the pool; ENABLE_IMDS_ONLY_MODE forbids asking EC2"
        );
        return;
    }
    let instance = match manager.ec2.describe_instance(&node.identity.instance_id).await {
        Ok(instance) => instance,
        Err(error) => {
            tracing::warn!("reconcile: DescribeInstances: {error}");
            return;
        }
    };
    let attached: BTreeMap<String, NetworkInterface> = instance
        .network_interfaces
        .into_iter()
        .filter(|e| e.attachment.as_ref().is_some_and(|a| a.network_card_index == 0))
        .map(|e| (e.network_interface_id.clone(), e))
        .collect();
    let now = now_ms();

    // ENIs the pool holds that EC2 no longer shows attached.
    for eni_id in pool_view(node).keys().filter(|id| !attached.contains_key(*id)) {
        let removed = {
            let mut pool = node.pool();
            let primary = pool.eni(eni_id).map(|e| (e.primary_ip, e.route_table_id()));
            if let Some(eni) = pool.eni(eni_id) {
                node.returned
                    .remember(eni.cidrs.values(), pool.config().ip_cooldown_ms, now);
            }
            let keys = pool.force_remove_eni(eni_id);
            node.persist(&pool);
            primary.map(|p| (p, keys))
        };
        if let Some(((primary_ip, table), keys)) = removed {
            node.metrics.force_removed_enis.inc();
            node.metrics.force_removed_ips.inc_by(keys.len() as u64);
            node.metrics
                .reconcile_count
                .with_label_values(&["eniReconcileDel"])
                .inc();
            tracing::warn!(eni = %eni_id, pods = keys.len(), "ENI is no longer attached; removed from the pool");
            if let Err(error) = node.host.teardown_eni(primary_ip, table).await {
                tracing::warn!(
                    eni = %eni_id, table,
                    "removing the rules of a detached ENI failed (start-up prunes them): {error}"
                );
            }
        }
    }

    let mut unmanaged = 0;
    for (eni_id, eni) in &attached {
        let Some(attachment) = &eni.attachment else {
            continue;
        };
        let role = classify(
            eni,
            attachment.device_index,
            attachment.network_card_index,
            &node.identity,
            node.config.pool.manage_untagged_eni,
        );
        if role == EniRole::Unmanaged {
            unmanaged += 1;
            continue;
        }
        let known = node.pool().eni(eni_id).is_some();
        if known {
            reconcile_addresses(node, eni_id, &ec2_cidrs(eni), now);
        } else if !node.is_recently_freed_eni(eni_id, now) && role != EniRole::Efa {
            adopt(manager, eni, role, attachment.device_index).await;
        }
    }
    {
        let mut pool = node.pool();
        let mut limits = pool.limits().clone();
        if limits.unmanaged_enis != unmanaged {
            limits.unmanaged_enis = unmanaged;
            pool.set_limits(limits);
        }
        node.persist(&pool);
    }
}

/// Makes the pool's addresses of one ENI what EC2 lists.
fn reconcile_addresses(node: &Node, eni_id: &str, listed: &BTreeSet<Ipv4Net>, now: u64) {
    let mut pool = node.pool();
    let Some(held) = pool
        .eni(eni_id)
        .map(|e| e.cidrs.keys().copied().collect::<BTreeSet<_>>())
    else {
        return;
    };
    let gone: Vec<Ipv4Net> = held.difference(listed).copied().collect();
    if !gone.is_empty() {
        node.returned.remember_nets(&pool, eni_id, &gone, now);
        let keys = pool.force_remove_cidrs(eni_id, &gone);
        node.metrics.force_removed_ips.inc_by(gone.len() as u64);
        node.metrics
            .reconcile_count
            .with_label_values(&["eniIPPoolReconcileDel"])
            .inc();
        tracing::warn!(eni = %eni_id, ?gone, pods = ?keys, "EC2 no longer lists these addresses; dropped");
    }
    let new: Vec<Ipv4Net> = listed
        .difference(&held)
        .filter(|c| !node.is_recently_freed_cidr(c, now))
        .copied()
        .collect();
    if !new.is_empty() {
        match pool.add_cidrs(eni_id, &new) {
            Ok(()) => {
                node.returned.reapply(&mut pool, now);
                node.metrics
                    .reconcile_count
                    .with_label_values(&["eniIPPoolReconcileAdd"])
                    .inc();
                tracing::info!(eni = %eni_id, ?new, "EC2 lists addresses the pool lacked; added");
            }
            Err(error) => tracing::warn!(eni = %eni_id, "adding {new:?}: {error}"),
        }
    }
}

/// Takes in an ENI attached without the daemon (by hand, or one whose set-up was cut short).
async fn adopt(manager: &PoolManager, eni: &NetworkInterface, role: EniRole, device: u32) {
    let node = &manager.node;
    let eni_id = &eni.network_interface_id;
    let wanted = eni_tags(&node.identity.instance_id, &node.config);
    let missing: vpcni_ec2::Tags = wanted
        .into_iter()
        .filter(|(k, v)| eni.tags.get(k) != Some(v))
        .collect();
    if !missing.is_empty()
        && let Err(error) = manager
            .ec2
            .create_tags(std::slice::from_ref(eni_id), &missing)
            .await
    {
        tracing::warn!(eni = %eni_id, "tagging: {error}");
    }
    let excluded;
    let subnet = match manager
        .ec2
        .describe_subnets(std::slice::from_ref(&eni.subnet_id), &[])
        .await
    {
        Ok(subnets) => match subnets.first() {
            Some(subnet) => {
                excluded = node.config.pool.subnet_discovery
                    && crate::enis::subnet_excludes_pods(subnet, &node.config.cluster_name);
                subnet.cidr_block
            }
            None => return,
        },
        Err(error) => {
            tracing::warn!(eni = %eni_id, "reconcile: DescribeSubnets: {error}");
            return;
        }
    };
    let spec = eni_spec(
        &eni.mac_address,
        eni.private_ip,
        subnet,
        node.config.network.eni_mtu,
        EniSlot::new(0, device).route_table(),
    );
    // Its link should be there already; if not, the next reconcile tries again.
    if let Err(error) = node.host.setup_eni(&spec).await {
        tracing::warn!(eni = %eni_id, "found attached but not set up on the host yet: {error}");
        return;
    }
    let flags = EniFlags {
        trunk: role == EniRole::Trunk,
        excluded,
        ..EniFlags::default()
    };
    let entry =
        Eni::new(eni_id, device, flags, subnet, eni.private_ip, now_ms()).with_subnet_id(&eni.subnet_id);
    let cidrs: Vec<Ipv4Net> = ec2_cidrs(eni).into_iter().collect();
    let mut pool = node.pool();
    match pool.add_eni(entry).and_then(|()| pool.add_cidrs(eni_id, &cidrs)) {
        Ok(()) => {
            node.returned.reapply(&mut pool, now_ms());
            node.metrics
                .reconcile_count
                .with_label_values(&["eniReconcileAdd"])
                .inc();
            tracing::info!(eni = %eni_id, device, addresses = cidrs.len(), "attached ENI adopted");
        }
        Err(error) => tracing::warn!(eni = %eni_id, "adopting: {error}"),
    }
    node.persist(&pool);
}

/// Releases restored pods whose host veth still does not exist.
async fn recheck_veths(node: &Node) {
    let now = now_ms();
    let due: Vec<_> = {
        let mut checks = node
            .veth_checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (due, later): (Vec<_>, Vec<_>) = checks.drain(..).partition(|c| c.due <= now);
        *checks = later;
        due
    };
    for check in due {
        match node.host.veth_exists(&check.veth).await {
            Ok(true) => {}
            Ok(false) => {
                if node
                    .release_stale(&check.key, &format!("host veth {} never appeared", check.veth))
                    .is_some()
                    && let Err(error) = node.host.remove_pod_rules(&check.veth, check.ip).await
                {
                    tracing::warn!(
                        veth = %check.veth, ip = %check.ip,
                        "removing the rules of a released pod failed; they stay on the host for its \
                         address: {error}"
                    );
                }
            }
            Err(error) => tracing::warn!(veth = %check.veth, "checking: {error}"),
        }
    }
}
