//! The leaked-ENI sweep (the original's `pkg/awsutils/awsutils.go`,
//! <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/pkg/awsutils/awsutils.go>): ENIs ipamd created
//! that nobody attached — the window between detach and delete, a node terminated mid-way, an attach whose
//! clean-up failed — are deleted. As the original: ENIs of this VPC that are `available`, carry the
//! `node.k8s.amazonaws.com/instance_id` tag (and the cluster tag when CLUSTER_NAME is set), have an
//! `aws-K8S-` description and a `createdAt` tag older than five minutes; one without `createdAt` is stamped
//! now and left for a later sweep. Runs every hour after a random pause of up to five minutes (the first one
//! shortly after start-up), so a fleet started together does not sweep together.

use std::time::Duration;

use vpcni_ec2::{DescribeNetworkInterfacesRequest, Ec2, Ec2Error, Filter, NetworkInterface, Tags};

use crate::clock::{now_ms, parse_rfc3339, rfc3339};
use crate::discovery::{CLUSTER_NAME_TAG, CREATED_AT_TAG, ENI_DESCRIPTION_PREFIX, INSTANCE_ID_TAG};
use crate::node::Node;

/// An ENI younger than this is never swept: it may be between create and attach.
pub const MIN_LEAKED_AGE_MS: u64 = 5 * 60 * 1000;
/// The longest random pause before a sweep.
const MAX_JITTER: Duration = Duration::from_secs(300);

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// ENIs deleted.
    pub deleted: Vec<String>,
    /// ENIs stamped with `createdAt`.
    pub stamped: Vec<String>,
}

/// One sweep, now.
pub async fn sweep(node: &Node, ec2: &dyn Ec2) -> Result<Sweep, Ec2Error> {
    sweep_at(node, ec2, now_ms()).await
}

/// One sweep, judging ages at `now` (milliseconds since the epoch).
pub async fn sweep_at(node: &Node, ec2: &dyn Ec2, now: u64) -> Result<Sweep, Ec2Error> {
    let mut filters = vec![
        Filter {
            name: "tag-key".into(),
            values: vec![INSTANCE_ID_TAG.into()],
        },
        Filter::new("status", "available"),
    ];
    if !node.identity.vpc_id.is_empty() {
        filters.push(Filter::new("vpc-id", &node.identity.vpc_id));
    }
    if !node.config.cluster_name.is_empty() {
        filters.push(Filter::new(
            format!("tag:{CLUSTER_NAME_TAG}"),
            &node.config.cluster_name,
        ));
    }
    // Every page first, then the deletions: deleting while paging would move what the next page holds.
    let candidates: Vec<_> = unattached(ec2, &filters)
        .await?
        .into_iter()
        .filter(|eni| eni.description.starts_with(ENI_DESCRIPTION_PREFIX))
        .collect();
    let mut result = Sweep::default();
    for eni in candidates {
        let id = eni.network_interface_id.clone();
        match eni.tags.get(CREATED_AT_TAG).map(|t| parse_rfc3339(t)) {
            None => {
                let mut tags = Tags::new();
                tags.insert(CREATED_AT_TAG.into(), rfc3339(now));
                ec2.create_tags(std::slice::from_ref(&id), &tags).await?;
                result.stamped.push(id);
            }
            Some(Some(created)) if now >= created.saturating_add(MIN_LEAKED_AGE_MS) => {
                match ec2.delete_network_interface(&id).await {
                    Ok(()) => {
                        tracing::info!(eni = %id, created = %rfc3339(created), "deleted a leaked ENI");
                        result.deleted.push(id);
                    }
                    Err(error) => {
                        node.metrics.aws_utils_error("cleanUpLeakedENIDeleteErr", &error);
                        tracing::warn!(eni = %id, "deleting a leaked ENI: {error}");
                    }
                }
            }
            // Young, or a createdAt we cannot read: left alone.
            Some(_) => {}
        }
    }
    Ok(result)
}

/// At start-up, before the pool manager creates any ENI: this node's own ENIs (tagged with its instance id,
/// described `aws-K8S-<instance id>`) that are attached to nothing were left by an earlier run of this
/// daemon, killed between create and attach or after a failed delete. Nothing can be creating one now,
/// so they are deleted at once rather than after the sweep's five minutes. Returns the deleted ENIs; one
/// whose deletion fails is retried every pool cycle.
pub async fn delete_own_unattached(node: &Node, ec2: &dyn Ec2) -> Result<Vec<String>, Ec2Error> {
    let instance = &node.identity.instance_id;
    let mut filters = vec![
        Filter::new(format!("tag:{INSTANCE_ID_TAG}"), instance),
        Filter::new("status", "available"),
    ];
    if !node.identity.vpc_id.is_empty() {
        filters.push(Filter::new("vpc-id", &node.identity.vpc_id));
    }
    let description = format!("{ENI_DESCRIPTION_PREFIX}{instance}");
    let own: Vec<String> = unattached(ec2, &filters)
        .await?
        .into_iter()
        .filter(|eni| eni.description == description)
        .map(|eni| eni.network_interface_id)
        .collect();
    let mut deleted = Vec::new();
    for eni_id in own {
        match ec2.delete_network_interface(&eni_id).await {
            Ok(()) => deleted.push(eni_id),
            Err(error) => {
                tracing::warn!(eni = %eni_id, "deleting this node's unattached ENI (retried every pool cycle): {error}");
                node.delete_later(&eni_id);
            }
        }
    }
    Ok(deleted)
}

/// Every ENI matching `filters` that is attached to nothing, over all pages of DescribeNetworkInterfaces.
async fn unattached(ec2: &dyn Ec2, filters: &[Filter]) -> Result<Vec<NetworkInterface>, Ec2Error> {
    let mut found = Vec::new();
    let mut next_token = None;
    loop {
        let page = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: filters.to_vec(),
                max_results: Some(1000),
                next_token: next_token.take(),
                ..Default::default()
            })
            .await?;
        found.extend(
            page.network_interfaces
                .into_iter()
                .filter(|eni| eni.attachment.is_none()),
        );
        match page.next_token {
            Some(token) if !token.is_empty() => next_token = Some(token),
            _ => return Ok(found),
        }
    }
}

/// Whether this node sweeps at all: not with DISABLE_LEAKED_ENI_CLEANUP, nor when EC2 must not be
/// changed (DISABLE_NETWORK_RESOURCE_PROVISIONING, ENABLE_IMDS_ONLY_MODE).
pub fn enabled(node: &Node) -> bool {
    let pool = &node.config.pool;
    // Off in IPv6 mode too, as in the original: that mode creates no ENIs to leak.
    !(pool.disable_leaked_eni_cleanup || pool.disable_provisioning || pool.imds_only || pool.ipv6)
}

/// A random pause in `[0, min(5 min, interval))`.
fn jitter(interval: Duration) -> Duration {
    let limit = MAX_JITTER.min(interval).as_millis().max(1) as u64;
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut urandom| {
        use std::io::Read;
        urandom.read_exact(&mut bytes)
    });
    if let Err(error) = read {
        // Only the spread of the fleet's sweeps is lost: this node sweeps without a pause.
        tracing::warn!("no random pause before the leaked-ENI sweep (/dev/urandom: {error})");
    }
    Duration::from_millis(u64::from_le_bytes(bytes) % limit)
}

/// Sweeps after a random pause, then every interval (plus a random pause), until `stop` changes.
pub async fn run(
    node: std::sync::Arc<Node>,
    ec2: std::sync::Arc<dyn Ec2>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if !enabled(&node) {
        return;
    }
    let interval = node.config.leaked_eni_cleanup_interval;
    let mut pause = jitter(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = interval + jitter(interval);
        match sweep(&node, ec2.as_ref()).await {
            Ok(done) if !done.deleted.is_empty() || !done.stamped.is_empty() => {
                tracing::info!(deleted = ?done.deleted, stamped = ?done.stamped, "leaked-ENI sweep");
            }
            Ok(_) => tracing::debug!("leaked-ENI sweep: nothing to do"),
            Err(error) => tracing::warn!("leaked-ENI sweep: {error}"),
        }
    }
}
