//! An ENI's life as the daemon drives it: created with the original's description and tags in the subnet
//! subnet discovery picks, attached at the lowest free device index, DeleteOnTermination set, then — once
//! its link shows up on the host — set up there, and only then its addresses join the pool. An ENI whose
//! attach fails, or whose link never appears, is given back to EC2, so none is left behind. Freeing one
//! removes it from the pool first, then detaches and deletes it and removes its host rules.

use std::time::Duration;

use ipnet::Ipv4Net;
use vpcni_ec2::{
    CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error, Ec2ErrorKind, Filter,
    NetworkInterface, Subnet, Tags,
};
use vpcni_engine::subnets::subnet_excluded;
use vpcni_engine::{Eni, EniFlags, GrowFailure};
use vpcni_layout::EniSlot;

use crate::clock::{now_ms, rfc3339};
use crate::config::Config;
use crate::discovery::{CLUSTER_NAME_TAG, CREATED_AT_TAG, ENI_DESCRIPTION_PREFIX, INSTANCE_ID_TAG};
use crate::host::eni_spec;
use crate::node::Node;

/// `eks:eni:owner`, set with the cluster tag as the original does.
pub const OWNER_TAG: &str = "eks:eni:owner";
/// Its value.
pub const OWNER_TAG_VALUE: &str = "amazon-vpc-cni";
pub use vpcni_engine::subnets::{CLUSTER_SUBNET_TAG_PREFIX, CNI_ROLE_TAG};

/// The tags every managed ENI carries (the original's `buildENITags`): the instance, and with CLUSTER_NAME
/// the cluster and owner, plus ADDITIONAL_ENI_TAGS.
pub fn eni_tags(instance_id: &str, config: &Config) -> Tags {
    let mut tags = Tags::new();
    tags.extend(config.additional_eni_tags.iter().cloned());
    tags.insert(INSTANCE_ID_TAG.into(), instance_id.to_owned());
    if !config.cluster_name.is_empty() {
        tags.insert(CLUSTER_NAME_TAG.into(), config.cluster_name.clone());
        tags.insert(OWNER_TAG.into(), OWNER_TAG_VALUE.into());
    }
    tags
}

/// Whether a subnet may take new pod ENIs (the engine's rule, which the planner shares).
pub fn subnet_eligible(subnet: &Subnet, primary_subnet_id: &str, cluster_name: &str) -> bool {
    vpcni_engine::subnets::subnet_eligible(&subnet.subnet_id, &subnet.tags, primary_subnet_id, cluster_name)
}

/// The eligible subnets among `subnets`, most free addresses first (EC2's order among equals, as the
/// original's stable sort).
pub fn eligible_subnets(
    mut subnets: Vec<Subnet>,
    primary_subnet_id: &str,
    cluster_name: &str,
) -> Vec<Subnet> {
    subnets.retain(|s| subnet_eligible(s, primary_subnet_id, cluster_name));
    subnets.sort_by_key(|s| std::cmp::Reverse(s.available_ip_address_count));
    subnets
}

/// Subnets a new ENI may go to, best first, as the original chooses them. With ENABLE_SUBNET_DISCOVERY:
/// the eligible same-AZ subnets of the VPC; if EC2 cannot list them, the node's subnet. Without: the node's
/// subnet. Either way a node's subnet tagged `kubernetes.io/role/cni=0` with nothing else eligible is an
/// error naming the tag, never a silent fallback to it.
pub async fn candidate_subnets(node: &Node, ec2: &dyn Ec2) -> Result<Vec<(String, Ipv4Net)>, Ec2Error> {
    let identity = &node.identity;
    let primary = vec![(identity.primary_subnet_id.clone(), identity.primary_subnet_cidr)];
    let no_subnet = |why: &str| Ec2Error::new("NoEligibleSubnet", why);
    if node.config.pool.subnet_discovery && !identity.vpc_id.is_empty() {
        let filters = [
            Filter::new("vpc-id", &identity.vpc_id),
            Filter::new("availability-zone", &identity.availability_zone),
        ];
        match ec2.describe_subnets(&[], &filters).await {
            Ok(subnets) => {
                let eligible =
                    eligible_subnets(subnets, &identity.primary_subnet_id, &node.config.cluster_name);
                if eligible.is_empty() {
                    return Err(no_subnet(vpcni_engine::subnets::NOTHING_ELIGIBLE));
                }
                return Ok(eligible
                    .into_iter()
                    .map(|s| (s.subnet_id, s.cidr_block))
                    .collect());
            }
            Err(error) => {
                tracing::warn!("subnet discovery: DescribeSubnets: {error}; using the node's subnet")
            }
        }
    }
    // The node's own subnet, unless it is excluded. If EC2 cannot say, go ahead, as the original does.
    match ec2
        .describe_subnets(std::slice::from_ref(&identity.primary_subnet_id), &[])
        .await
    {
        Ok(subnets) if subnets.iter().any(|s| subnet_excluded(&s.tags)) => {
            Err(no_subnet(vpcni_engine::subnets::NODE_SUBNET_EXCLUDED))
        }
        Ok(_) => Ok(primary),
        Err(error) => {
            tracing::warn!("checking whether the node's subnet is excluded: {error}; using it");
            Ok(primary)
        }
    }
}

/// Whether an ENI's subnet keeps it from carrying pods (the original's `IsSubnetExcluded`, applied to
/// existing ENIs with ENABLE_SUBNET_DISCOVERY): tagged `kubernetes.io/role/cni=0`, or tagged for pods but
/// reserved for other clusters (`cni.networking.k8s.aws/cluster/<name>` tags, none for this one; not
/// checked with an empty CLUSTER_NAME). An untagged subnet is not excluded.
pub fn subnet_excludes_pods(subnet: &Subnet, cluster_name: &str) -> bool {
    match subnet.tags.get(CNI_ROLE_TAG).map(String::as_str) {
        None | Some("") => false,
        Some("0") => true,
        // Tagged for pods: excluded only if reserved for other clusters.
        Some(_) => !subnet_eligible(subnet, "", cluster_name),
    }
}

/// Where a new pod ENI goes and with which security groups, under custom networking: the node's ENIConfig,
/// checked against EC2 (its subnet must exist, in the node's VPC and zone) so that a wrong ENIConfig is a
/// reason naming it, never an ENI elsewhere.
async fn eni_config_target(
    node: &Node,
    ec2: &dyn Ec2,
) -> Result<(String, Ipv4Net, Vec<String>), GrowFailure> {
    let (choice, spec, source) = match node.eni_configs.resolve() {
        vpcni_k8s::Resolution::Use { choice, spec, source } => (choice, spec, source),
        vpcni_k8s::Resolution::Unavailable { reason, .. } => {
            // The view says why; what EC2 said of an earlier ENIConfig no longer applies.
            node.eni_config_problem.send_replace(None);
            return Err(GrowFailure::NoEniConfig(reason));
        }
    };
    let checked = check_eni_config_subnet(node, ec2, &choice, spec, &source).await;
    node.eni_config_problem.send_replace(match &checked {
        Err(GrowFailure::NoEniConfig(reason)) => Some(reason.clone()),
        _ => None,
    });
    checked
}

/// The ENIConfig's subnet as EC2 has it: it must exist, in the node's VPC and zone.
async fn check_eni_config_subnet(
    node: &Node,
    ec2: &dyn Ec2,
    choice: &vpcni_k8s::Choice,
    spec: vpcni_k8s::EniConfigSpec,
    source: &vpcni_k8s::Source,
) -> Result<(String, Ipv4Net, Vec<String>), GrowFailure> {
    let named = format!(
        "ENIConfig {:?} (chosen by {}, from {source})",
        choice.name, choice.by
    );
    let identity = &node.identity;
    let subnet = match ec2
        .describe_subnets(std::slice::from_ref(&spec.subnet), &[])
        .await
    {
        Ok(subnets) => subnets.into_iter().find(|s| s.subnet_id == spec.subnet),
        Err(error) if error.kind == Ec2ErrorKind::NotFound => None,
        Err(error) => return Err(grow_failure(&error, &spec.subnet)),
    };
    let Some(subnet) = subnet else {
        return Err(GrowFailure::NoEniConfig(format!(
            "{named} names subnet {}, which does not exist",
            spec.subnet
        )));
    };
    if !identity.vpc_id.is_empty() && subnet.vpc_id != identity.vpc_id {
        return Err(GrowFailure::NoEniConfig(format!(
            "{named} names subnet {} of {}, not of this node's VPC {}",
            spec.subnet, subnet.vpc_id, identity.vpc_id
        )));
    }
    if !identity.availability_zone.is_empty() && subnet.availability_zone != identity.availability_zone {
        return Err(GrowFailure::NoEniConfig(format!(
            "{named} names subnet {} in {}, not in this node's zone {}",
            spec.subnet, subnet.availability_zone, identity.availability_zone
        )));
    }
    let security_groups = if spec.security_groups.is_empty() {
        identity.security_groups.clone()
    } else {
        spec.security_groups
    };
    Ok((subnet.subnet_id, subnet.cidr_block, security_groups))
}

fn grow_failure(error: &Ec2Error, subnet: &str) -> GrowFailure {
    match error.kind {
        Ec2ErrorKind::InsufficientFreeAddressesInSubnet => GrowFailure::SubnetExhausted(subnet.to_owned()),
        Ec2ErrorKind::InsufficientCidrBlocks => GrowFailure::NoFreePrefix(subnet.to_owned()),
        Ec2ErrorKind::Throttled => GrowFailure::Throttled,
        _ => GrowFailure::Other(error.to_string()),
    }
}

/// Records the outcome of an EC2 call that was to add addresses.
pub fn record_grow(node: &Node, result: &Result<Vec<Ipv4Net>, Ec2Error>, eni_id: &str, subnet: &str) {
    let mut pool = node.pool();
    match result {
        Ok(cidrs) => {
            if let Err(error) = pool.add_cidrs(eni_id, cidrs) {
                tracing::warn!("adding {cidrs:?} to {eni_id}: {error}");
            }
            node.returned.reapply(&mut pool, now_ms());
            pool.record_grow_success();
            node.persist(&pool);
        }
        Err(error) => pool.record_grow_failure(grow_failure(error, subnet), now_ms()),
    }
}

/// Why an ENI could not be added.
#[derive(Debug)]
enum AddEniError {
    Ec2(Ec2Error, String),
    Host(String),
    /// Custom networking without a usable ENIConfig (or another failure found before any EC2 write).
    Before(GrowFailure),
}

/// Creates, attaches and sets up an ENI with `ips` addresses or `prefixes` prefixes requested inline.
pub async fn create_eni(node: &Node, ec2: &dyn Ec2, ips: u32, prefixes: u32) -> Result<(), Ec2Error> {
    node.pool().set_eni_attach_in_progress(true);
    node.metrics
        .ipamd_action_inprogress
        .with_label_values(&["increaseIPPool"])
        .inc();
    let outcome = attach_new_eni(node, ec2, ips, prefixes).await;
    node.metrics
        .ipamd_action_inprogress
        .with_label_values(&["increaseIPPool"])
        .dec();
    let mut pool = node.pool();
    pool.set_eni_attach_in_progress(false);
    match outcome {
        Ok((eni, device, subnet_cidr)) => {
            let mut cidrs: Vec<Ipv4Net> = eni.secondary_ips.iter().map(|ip| Ipv4Net::from(*ip)).collect();
            cidrs.extend(eni.ipv4_prefixes.iter().copied());
            let entry = Eni::new(
                &eni.network_interface_id,
                device,
                EniFlags::default(),
                subnet_cidr,
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
            node.returned.reapply(&mut pool, now_ms());
            pool.record_grow_success();
            node.persist(&pool);
            tracing::info!(eni = %eni.network_interface_id, device, addresses = cidrs.len(), "ENI attached and set up");
            Ok(())
        }
        Err(AddEniError::Ec2(error, subnet)) => {
            pool.record_grow_failure(grow_failure(&error, &subnet), now_ms());
            Err(error)
        }
        Err(AddEniError::Before(failure)) => {
            let text = match &failure {
                GrowFailure::NoEniConfig(reason) => reason.clone(),
                other => format!("{other:?}"),
            };
            pool.record_grow_failure(failure, now_ms());
            Err(Ec2Error::new("NoEniConfig", text))
        }
        Err(AddEniError::Host(text)) => {
            node.metrics
                .ipamd_error_count
                .with_label_values(&["setupENI"])
                .inc();
            pool.record_grow_failure(GrowFailure::Other(text.clone()), now_ms());
            Err(Ec2Error::new("HostSetupFailed", text))
        }
    }
}

async fn attach_new_eni(
    node: &Node,
    ec2: &dyn Ec2,
    ips: u32,
    prefixes: u32,
) -> Result<(NetworkInterface, u32, Ipv4Net), AddEniError> {
    let identity = &node.identity;
    let mut tags = eni_tags(&identity.instance_id, &node.config);
    tags.insert(CREATED_AT_TAG.into(), rfc3339(now_ms()));
    let mut last = None;
    let mut created = None;
    // Custom networking: the ENIConfig's subnet and security groups, and nothing else; otherwise subnet
    // discovery's subnets with the node's security groups.
    let (subnets, security_groups) = if node.config.pool.custom_networking {
        let (subnet_id, cidr, groups) = eni_config_target(node, ec2).await.map_err(AddEniError::Before)?;
        (vec![(subnet_id, cidr)], groups)
    } else {
        let subnets = candidate_subnets(node, ec2)
            .await
            .map_err(|error| AddEniError::Ec2(error, identity.primary_subnet_id.clone()))?;
        (subnets, identity.security_groups.clone())
    };
    for (subnet_id, subnet_cidr) in subnets {
        let request = CreateNetworkInterfaceRequest {
            subnet_id: subnet_id.clone(),
            description: format!("{ENI_DESCRIPTION_PREFIX}{}", identity.instance_id),
            security_groups: security_groups.clone(),
            tags: tags.clone(),
            secondary_ip_count: ips,
            ipv4_prefix_count: prefixes,
            ..Default::default()
        };
        match ec2.create_network_interface(&request).await {
            Ok(eni) => {
                created = Some((eni, subnet_cidr));
                break;
            }
            // Another subnet may still have room.
            Err(error)
                if matches!(
                    error.kind,
                    Ec2ErrorKind::InsufficientFreeAddressesInSubnet | Ec2ErrorKind::InsufficientCidrBlocks
                ) =>
            {
                last = Some(AddEniError::Ec2(error, subnet_id));
            }
            Err(error) => return Err(AddEniError::Ec2(error, subnet_id)),
        }
    }
    let Some((eni, subnet_cidr)) = created else {
        return Err(last.unwrap_or_else(|| {
            AddEniError::Ec2(
                Ec2Error::unavailable("no subnet to create an ENI in"),
                String::new(),
            )
        }));
    };
    let eni_id = eni.network_interface_id.clone();
    let subnet = eni.subnet_id.clone();
    let ec2_error = |error: Ec2Error| AddEniError::Ec2(error, subnet.clone());
    let used: Vec<u32> = match ec2.describe_instance(&identity.instance_id).await {
        Ok(instance) => instance
            .network_interfaces
            .iter()
            .filter_map(|e| e.attachment.as_ref())
            .filter(|a| a.network_card_index == 0)
            .map(|a| a.device_index)
            .collect(),
        Err(error) => {
            delete_after_failed_attach(node, ec2, &eni_id).await;
            return Err(ec2_error(error));
        }
    };
    let device = (1..100).find(|d| !used.contains(d)).unwrap_or(1);
    let attachment = match ec2
        .attach_network_interface(&eni_id, &identity.instance_id, device, 0)
        .await
    {
        Ok(attachment) => attachment,
        Err(error) => {
            delete_after_failed_attach(node, ec2, &eni_id).await;
            return Err(ec2_error(error));
        }
    };
    if let Err(error) = ec2.set_delete_on_termination(&eni_id, &attachment, true).await {
        // The ENI works without it; only a terminated instance would leave it behind for the sweep.
        tracing::warn!(eni = %eni_id, "DeleteOnTermination not set: {error}");
    }
    let spec = eni_spec(
        &eni.mac_address,
        eni.private_ip,
        subnet_cidr,
        node.config.network.eni_mtu,
        // vpcni attaches ENIs on network card 0 only.
        EniSlot::new(0, device).route_table(),
    );
    let host = node.host.clone();
    let on_host = async {
        host.wait_for_eni(&eni.mac_address, node.config.eni_link_timeout)
            .await?;
        host.setup_eni(&spec).await
    }
    .await;
    if let Err(error) = on_host {
        let text = format!("ENI {eni_id} was attached but could not be set up on the host: {error}");
        tracing::error!("{text}; giving it back to EC2");
        if let Err(error) = detach_and_delete(node, ec2, &eni_id).await {
            tracing::error!(eni = %eni_id, "giving it back failed (the leaked-ENI sweep will delete it once detached): {error}");
        }
        // Whatever part of the set-up was done comes off the host, so no rule points at the table of an
        // ENI that is gone; what cannot be removed now is pruned at the next start-up.
        if let Err(error) = host.teardown_eni(spec.primary_ip, spec.table).await {
            tracing::warn!(
                eni = %eni_id, table = spec.table,
                "removing its partial host set-up failed (start-up prunes rules of ENIs no longer attached): {error}"
            );
        }
        return Err(AddEniError::Host(text));
    }
    Ok((eni, device, subnet_cidr))
}

/// Deletes an ENI whose attach failed; a failure is counted as the original counts it
/// (`awscni_aws_utils_error_count{fn="AllocENIDeleteErr"}`) and left to the leaked-ENI sweep.
async fn delete_after_failed_attach(node: &Node, ec2: &dyn Ec2, eni_id: &str) {
    if let Err(error) = ec2.delete_network_interface(eni_id).await {
        node.metrics.aws_utils_error("AllocENIDeleteErr", &error);
        tracing::error!(eni = %eni_id, "attach failed and delete failed too (retried every pool cycle): {error}");
        node.delete_later(eni_id);
    }
}

/// Retries the deletions that failed: each ENI still unattached is deleted; one attached again (adopted by
/// reconcile, or attached after all) is the pool's business, not a leak.
pub async fn retry_eni_deletes(node: &Node, ec2: &dyn Ec2) {
    let pending: Vec<String> = node
        .eni_deletes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .cloned()
        .collect();
    for eni_id in pending {
        let done = if node.pool().eni(&eni_id).is_some() {
            true
        } else {
            match ec2
                .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                    network_interface_ids: vec![eni_id.clone()],
                    ..Default::default()
                })
                .await
            {
                Err(error) if error.kind == Ec2ErrorKind::NotFound => true,
                Err(error) => {
                    tracing::debug!(eni = %eni_id, "deleting later: {error}");
                    false
                }
                Ok(page) if page.network_interfaces.iter().any(|e| e.attachment.is_some()) => {
                    // Attached: a detach under way completes first; reconcile adopts it if it stays.
                    false
                }
                Ok(_) => match ec2.delete_network_interface(&eni_id).await {
                    Ok(()) => {
                        tracing::info!(eni = %eni_id, "deleted, after an earlier failure");
                        true
                    }
                    Err(error) if error.kind == Ec2ErrorKind::NotFound => true,
                    Err(error) => {
                        tracing::debug!(eni = %eni_id, "deleting later: {error}");
                        false
                    }
                },
            }
        };
        if done {
            node.eni_deletes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&eni_id);
        }
    }
}

/// Detaches (if attached) and deletes an ENI, retrying the delete while the detach completes. Failing to
/// read its attachment or to delete it is counted as the original counts it in `FreeENI`.
pub async fn detach_and_delete(node: &Node, ec2: &dyn Ec2, eni_id: &str) -> Result<(), Ec2Error> {
    let described = ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            network_interface_ids: vec![eni_id.to_owned()],
            ..Default::default()
        })
        .await;
    match described {
        Ok(page) => {
            if let Some(attachment) = page
                .network_interfaces
                .first()
                .and_then(|e| e.attachment.as_ref())
            {
                ec2.detach_network_interface(&attachment.attachment_id, false)
                    .await?;
            }
        }
        Err(error) if error.kind == Ec2ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            node.metrics.aws_utils_error("getENIAttachmentIDFailed", &error);
            return Err(error);
        }
    }
    let mut last = None;
    for attempt in 0..12u32 {
        match ec2.delete_network_interface(eni_id).await {
            Ok(()) => return Ok(()),
            Err(error) if error.kind == Ec2ErrorKind::NotFound => return Ok(()),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
    }
    let error = last.unwrap_or_else(|| Ec2Error::unavailable("delete did not complete"));
    node.metrics.aws_utils_error("FreeENIDeleteErr", &error);
    Err(error)
}

/// Frees an ENI the engine chose: out of the pool first (so no pod can get one of its addresses), then
/// detached and deleted, then its host rules removed.
pub async fn free_eni(node: &Node, ec2: &dyn Ec2, eni_id: &str) -> Result<(), Ec2Error> {
    let removed = {
        let mut pool = node.pool();
        match pool.remove_eni(eni_id) {
            Ok(eni) => {
                node.returned
                    .remember(eni.cidrs.values(), pool.config().ip_cooldown_ms, now_ms());
                node.persist(&pool);
                eni
            }
            Err(error) => {
                tracing::info!("not freeing {eni_id}: {error}");
                return Ok(());
            }
        }
    };
    node.recently_freed_eni(eni_id);
    node.metrics
        .ipamd_action_inprogress
        .with_label_values(&["decreaseIPPool"])
        .inc();
    let result = detach_and_delete(node, ec2, eni_id).await;
    node.metrics
        .ipamd_action_inprogress
        .with_label_values(&["decreaseIPPool"])
        .dec();
    if let Err(error) = node
        .host
        .teardown_eni(removed.primary_ip, removed.route_table_id())
        .await
    {
        tracing::warn!(eni = %eni_id, "removing its host rules: {error}");
    }
    tracing::info!(eni = %eni_id, ok = result.is_ok(), "ENI freed");
    if result.is_err() {
        node.delete_later(eni_id);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn subnet(id: &str, free: u32, tags: &[(&str, &str)]) -> Subnet {
        Subnet {
            subnet_id: id.into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "us-west-2a".into(),
            cidr_block: "10.0.0.0/24".parse().unwrap(),
            ipv6_cidr_block: None,
            available_ip_address_count: free,
            tags: tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        }
    }

    const ROLE: &str = "kubernetes.io/role/cni";

    /// One row per rule of the original's `isSubnetValidForENICreation`.
    #[test]
    fn which_subnets_take_new_enis() {
        let cases: &[(&str, Subnet, &str, bool)] = &[
            (
                "node's subnet, untagged",
                subnet("subnet-node", 10, &[]),
                "",
                true,
            ),
            (
                "node's subnet, role 0",
                subnet("subnet-node", 10, &[(ROLE, "0")]),
                "",
                false,
            ),
            (
                "node's subnet, role 1",
                subnet("subnet-node", 10, &[(ROLE, "1")]),
                "",
                true,
            ),
            ("other subnet, untagged", subnet("subnet-b", 10, &[]), "", false),
            (
                "other subnet, empty role",
                subnet("subnet-b", 10, &[(ROLE, "")]),
                "",
                false,
            ),
            (
                "other subnet, role 1",
                subnet("subnet-b", 10, &[(ROLE, "1")]),
                "",
                true,
            ),
            (
                "other subnet, role 0",
                subnet("subnet-b", 10, &[(ROLE, "0")]),
                "",
                false,
            ),
            (
                "another cluster's, CLUSTER_NAME empty: not checked",
                subnet(
                    "subnet-b",
                    10,
                    &[(ROLE, "1"), ("cni.networking.k8s.aws/cluster/other", "")],
                ),
                "",
                true,
            ),
            (
                "another cluster's",
                subnet(
                    "subnet-b",
                    10,
                    &[(ROLE, "1"), ("cni.networking.k8s.aws/cluster/other", "")],
                ),
                "prod",
                false,
            ),
            (
                "this cluster's and another's",
                subnet(
                    "subnet-b",
                    10,
                    &[
                        (ROLE, "1"),
                        ("cni.networking.k8s.aws/cluster/other", ""),
                        ("cni.networking.k8s.aws/cluster/prod", ""),
                    ],
                ),
                "prod",
                true,
            ),
            (
                "no cluster tags, CLUSTER_NAME set",
                subnet("subnet-b", 10, &[(ROLE, "1")]),
                "prod",
                true,
            ),
            (
                "node's subnet, untagged for roles, another cluster's: roles decide first",
                subnet("subnet-node", 10, &[("cni.networking.k8s.aws/cluster/other", "")]),
                "prod",
                true,
            ),
        ];
        for (what, subnet, cluster, expected) in cases {
            assert_eq!(
                subnet_eligible(subnet, "subnet-node", cluster),
                *expected,
                "{what}"
            );
        }
    }

    #[test]
    fn most_free_addresses_first_in_ec2_order_among_equals() {
        let subnets = vec![
            subnet("subnet-node", 5, &[]),
            subnet("subnet-b", 50, &[(ROLE, "1")]),
            subnet("subnet-c", 50, &[(ROLE, "1")]),
            subnet("subnet-d", 500, &[(ROLE, "0")]),
        ];
        let order: Vec<String> = eligible_subnets(subnets, "subnet-node", "")
            .into_iter()
            .map(|s| s.subnet_id)
            .collect();
        assert_eq!(order, ["subnet-b", "subnet-c", "subnet-node"]);
    }
}
