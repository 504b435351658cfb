//! The pool manager: every cycle the engine decides one action and this module carries it out against EC2,
//! then reports the result back to the engine. EC2 calls happen without the pool lock held, so ADDs and DELs
//! never wait on EC2.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error,
    Ec2ErrorKind, Tags,
};
use vpcni_engine::{Decision, Eni, EniFlags, GrowFailure};

use crate::discovery::{CLUSTER_NAME_TAG, CREATED_AT_TAG, ENI_DESCRIPTION_PREFIX, INSTANCE_ID_TAG};
use crate::node::{Node, now_ms};

/// One cycle: decide, act, report. Returns the decision taken.
pub async fn cycle(node: &Node, ec2: &dyn Ec2) -> Decision {
    let now = now_ms();
    let decision = node.pool().decide(now);
    node.record_decision(now, &decision);
    if !matches!(decision, Decision::Nothing { .. }) {
        tracing::info!(?decision, "pool decision");
    }
    let result = match &decision {
        Decision::Nothing { .. } => Ok(()),
        Decision::AddIps { eni_id, count } => add_ips(node, ec2, eni_id, *count).await,
        Decision::AddPrefixes { eni_id, count } => add_prefixes(node, ec2, eni_id, *count).await,
        Decision::CreateEni { ips, prefixes } => create_eni(node, ec2, *ips, *prefixes).await,
        Decision::Release { cidrs } => release(node, ec2, cidrs).await,
        Decision::FreeEni { eni_id } => free_eni(node, ec2, eni_id).await,
    };
    if let Err(error) = result {
        node.metrics
            .aws_api_error_count
            .with_label_values(&["pool", error.code.as_str()])
            .inc();
        tracing::warn!(?decision, "EC2 refused: {error}");
    }
    decision
}

/// Runs cycles until `stop` resolves.
pub async fn run(
    node: Arc<Node>,
    ec2: Arc<dyn Ec2>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        cycle(&node, ec2.as_ref()).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

fn grow_failure(error: &Ec2Error, subnet: &str) -> GrowFailure {
    match error.kind {
        Ec2ErrorKind::InsufficientFreeAddressesInSubnet => GrowFailure::SubnetExhausted(subnet.to_owned()),
        Ec2ErrorKind::InsufficientCidrBlocks => GrowFailure::NoFreePrefix(subnet.to_owned()),
        Ec2ErrorKind::Throttled => GrowFailure::Throttled,
        _ => GrowFailure::Other(error.to_string()),
    }
}

fn record(node: &Node, result: &Result<Vec<Ipv4Net>, Ec2Error>, eni_id: &str, subnet: &str) {
    let mut pool = node.pool();
    match result {
        Ok(cidrs) => {
            if let Err(error) = pool.add_cidrs(eni_id, cidrs) {
                tracing::warn!("adding {cidrs:?} to {eni_id}: {error}");
            }
            pool.record_grow_success();
            node.persist(&pool);
        }
        Err(error) => pool.record_grow_failure(grow_failure(error, subnet), now_ms()),
    }
}

fn subnet_of(node: &Node, eni_id: &str) -> String {
    node.pool().eni(eni_id).map_or_else(
        || node.identity.primary_subnet_id.clone(),
        |e| e.subnet_id.clone(),
    )
}

async fn add_ips(node: &Node, ec2: &dyn Ec2, eni_id: &str, count: u32) -> Result<(), Ec2Error> {
    node.metrics
        .ec2api_req_count
        .with_label_values(&["AssignPrivateIpAddresses"])
        .inc();
    let result = ec2
        .assign_private_ip_addresses(eni_id, &AddressRequest::Count(count))
        .await
        .map(|ips| ips.into_iter().map(Ipv4Net::from).collect::<Vec<_>>());
    record(node, &result, eni_id, &subnet_of(node, eni_id));
    result.map(|_| ())
}

async fn add_prefixes(node: &Node, ec2: &dyn Ec2, eni_id: &str, count: u32) -> Result<(), Ec2Error> {
    node.metrics
        .ec2api_req_count
        .with_label_values(&["AssignPrivateIpAddresses"])
        .inc();
    let result = ec2
        .assign_ipv4_prefixes(eni_id, &AddressRequest::Count(count))
        .await;
    record(node, &result, eni_id, &subnet_of(node, eni_id));
    result.map(|_| ())
}

/// Creates, attaches and registers an ENI; an ENI whose attach fails is deleted, so none leaks.
async fn create_eni(node: &Node, ec2: &dyn Ec2, ips: u32, prefixes: u32) -> Result<(), Ec2Error> {
    let identity = &node.identity;
    let subnet = identity.primary_subnet_id.clone();
    let mut tags = Tags::new();
    tags.insert(INSTANCE_ID_TAG.into(), identity.instance_id.clone());
    tags.insert(CREATED_AT_TAG.into(), now_ms().to_string());
    if !node.config.cluster_name.is_empty() {
        tags.insert(CLUSTER_NAME_TAG.into(), node.config.cluster_name.clone());
    }
    tags.extend(node.config.additional_eni_tags.iter().cloned());
    node.pool().set_eni_attach_in_progress(true);
    let outcome = async {
        let request = CreateNetworkInterfaceRequest {
            subnet_id: subnet.clone(),
            description: format!("{ENI_DESCRIPTION_PREFIX}{}", identity.instance_id),
            security_groups: identity.security_groups.clone(),
            tags,
            secondary_ip_count: ips,
            ipv4_prefix_count: prefixes,
        };
        let eni = ec2.create_network_interface(&request).await?;
        let instance = ec2.describe_instance(&identity.instance_id).await;
        let used: Vec<u32> = instance
            .map(|i| i.network_interfaces.iter().filter_map(|e| e.attachment.as_ref()).filter(|a| a.network_card_index == 0).map(|a| a.device_index).collect())
            .unwrap_or_default();
        let device = (1..100).find(|d| !used.contains(d)).unwrap_or(1);
        let attachment = match ec2.attach_network_interface(&eni.network_interface_id, &identity.instance_id, device, 0).await {
            Ok(attachment) => attachment,
            Err(error) => {
                if let Err(delete) = ec2.delete_network_interface(&eni.network_interface_id).await {
                    tracing::error!(eni = %eni.network_interface_id, "attach failed and delete failed too (leaked-ENI cleanup will retry): {delete}");
                }
                return Err(error);
            }
        };
        ec2.set_delete_on_termination(&eni.network_interface_id, &attachment, true).await?;
        Ok((eni, device))
    }
    .await;
    let mut pool = node.pool();
    pool.set_eni_attach_in_progress(false);
    match outcome {
        Ok((eni, device)) => {
            let mut cidrs: Vec<Ipv4Net> = eni.secondary_ips.iter().map(|ip| Ipv4Net::from(*ip)).collect();
            cidrs.extend(eni.ipv4_prefixes.iter().copied());
            let entry = Eni::new(
                &eni.network_interface_id,
                device,
                EniFlags::default(),
                identity.primary_subnet_cidr,
                eni.private_ip,
                now_ms(),
            )
            .with_subnet_id(&eni.subnet_id);
            if let Err(error) = pool
                .add_eni(entry)
                .and_then(|()| pool.add_cidrs(&eni.network_interface_id, &cidrs))
            {
                tracing::error!("registering {}: {error}", eni.network_interface_id);
            }
            pool.record_grow_success();
            node.persist(&pool);
            tracing::info!(eni = %eni.network_interface_id, device, addresses = cidrs.len(), "attached ENI");
            Ok(())
        }
        Err(error) => {
            pool.record_grow_failure(grow_failure(&error, &subnet), now_ms());
            Err(error)
        }
    }
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
            if let Err(error) = pool.remove_cidrs(eni_id, &nets) {
                tracing::info!("not releasing from {eni_id}: {error}");
                continue;
            }
            pool.record_release(now_ms());
            node.persist(&pool);
        }
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

async fn free_eni(node: &Node, ec2: &dyn Ec2, eni_id: &str) -> Result<(), Ec2Error> {
    {
        let mut pool = node.pool();
        if let Err(error) = pool.remove_eni(eni_id) {
            tracing::info!("not freeing {eni_id}: {error}");
            return Ok(());
        }
        node.persist(&pool);
    }
    let described = ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            network_interface_ids: vec![eni_id.to_owned()],
            ..Default::default()
        })
        .await?;
    if let Some(attachment) = described
        .network_interfaces
        .first()
        .and_then(|e| e.attachment.as_ref())
    {
        ec2.detach_network_interface(&attachment.attachment_id, false)
            .await?;
    }
    // EC2 needs the detach to finish before the delete; retry briefly as the original does.
    let mut last = None;
    for attempt in 0..12u32 {
        match ec2.delete_network_interface(eni_id).await {
            Ok(()) => return Ok(()),
            Err(error) if error.kind == Ec2ErrorKind::NotFound => return Ok(()),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
    }
    Err(last.unwrap_or_else(|| Ec2Error::unavailable("delete did not complete")))
}
