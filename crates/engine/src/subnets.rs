//! Which subnets may take a new pod ENI, as the original decides it (`isSubnetValidForENICreation` and
//! `createENI`, <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/pkg/awsutils/awsutils.go>): the
//! daemon and the planner both choose with these rules, so they cannot pick differently.

use std::collections::BTreeMap;

/// Subnet tag that opts a subnet in (any value but "0") or out ("0") of pod ENIs.
pub const CNI_ROLE_TAG: &str = "kubernetes.io/role/cni";
/// Prefix of the tags that reserve a subnet for named clusters.
pub const CLUSTER_SUBNET_TAG_PREFIX: &str = "cni.networking.k8s.aws/cluster/";

/// Why no subnet may take a new ENI, with discovery on.
pub const NOTHING_ELIGIBLE: &str = "no subnet may take a new ENI: the node's subnet is tagged kubernetes.io/role/cni=0 and \
     no other subnet in its zone is tagged kubernetes.io/role/cni (≠ 0) for this cluster";
/// Why the node's own subnet may not take a new ENI, with discovery off (or failing).
pub const NODE_SUBNET_EXCLUDED: &str = "the node's subnet is tagged kubernetes.io/role/cni=0, and subnet discovery \
     (ENABLE_SUBNET_DISCOVERY) found no other subnet";

/// Whether a subnet is excluded from pod addresses (`kubernetes.io/role/cni=0`).
pub fn subnet_excluded(tags: &BTreeMap<String, String>) -> bool {
    tags.get(CNI_ROLE_TAG).is_some_and(|v| v == "0")
}

/// Whether a subnet may take new pod ENIs: tagged `kubernetes.io/role/cni=0`, never; untagged (or tagged
/// with an empty value), only the node's own subnet; tagged otherwise, unless it carries
/// `cni.networking.k8s.aws/cluster/<name>` tags and none for this cluster (not checked when CLUSTER_NAME
/// is empty).
pub fn subnet_eligible(
    subnet_id: &str,
    tags: &BTreeMap<String, String>,
    primary_subnet_id: &str,
    cluster_name: &str,
) -> bool {
    match tags.get(CNI_ROLE_TAG).map(String::as_str) {
        Some("0") => false,
        None | Some("") => subnet_id == primary_subnet_id,
        Some(_) => {
            if cluster_name.is_empty() {
                return true;
            }
            let own = format!("{CLUSTER_SUBNET_TAG_PREFIX}{cluster_name}");
            let tagged_for_clusters = tags.keys().any(|k| k.starts_with(CLUSTER_SUBNET_TAG_PREFIX));
            !tagged_for_clusters || tags.contains_key(&own)
        }
    }
}
