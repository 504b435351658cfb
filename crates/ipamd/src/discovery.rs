//! Start-up discovery: who this node is (instance metadata) and which ENIs it has (EC2, the truth, checked
//! against metadata), each classified the way the original does (its `pkg/ipamd/ipamd.go`,
//! <https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/pkg/ipamd/ipamd.go>).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_ec2::{Ec2, Ec2Error, Imds, ImdsInterface, NetworkInterface};

/// Tag that keeps an ENI out of ipamd's hands.
pub const NO_MANAGE_TAG: &str = "node.k8s.amazonaws.com/no_manage";
/// Tag ipamd puts on ENIs it creates: the owning instance.
pub const INSTANCE_ID_TAG: &str = "node.k8s.amazonaws.com/instance_id";
/// Tag ipamd puts on ENIs it creates: creation time (leaked-ENI cleanup waits 5 minutes past it).
pub const CREATED_AT_TAG: &str = "node.k8s.amazonaws.com/createdAt";
/// Tag with the cluster name, when CLUSTER_NAME is set.
pub const CLUSTER_NAME_TAG: &str = "cluster.k8s.amazonaws.com/name";
/// Description prefix of ENIs ipamd creates (`aws-K8S-<instance id>`), as the original writes it, so
/// either daemon's leaked-ENI sweep recognises the other's.
pub const ENI_DESCRIPTION_PREFIX: &str = "aws-K8S-";

/// Who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// `i-…`.
    pub instance_id: String,
    /// e.g. `m5.xlarge`.
    pub instance_type: String,
    /// Region.
    pub region: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Primary ENI's primary address (SNAT source).
    pub primary_ip: Ipv4Addr,
    /// Primary ENI's MAC.
    pub primary_mac: String,
    /// Primary ENI's id.
    pub primary_eni_id: String,
    /// Primary ENI's subnet.
    pub primary_subnet_id: String,
    /// Primary ENI's subnet CIDR.
    pub primary_subnet_cidr: Ipv4Net,
    /// VPC CIDRs (primary and secondary).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// The VPC's IPv6 CIDRs (`vpc-ipv6-cidr-blocks`; empty when it has none).
    pub vpc_ipv6_cidrs: Vec<Ipv6Net>,
    /// The VPC (from EC2's view of the primary ENI; empty until ENIs are discovered).
    pub vpc_id: String,
    /// Primary ENI's security groups (new ENIs get the same).
    pub security_groups: Vec<String>,
}

/// How ipamd treats an ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EniRole {
    /// Device 0 on card 0: always managed, never freed.
    Primary,
    /// Pod addresses come from it.
    Managed,
    /// Tagged `no_manage=true`, or untagged with MANAGE_UNTAGGED_ENI=false: left alone, counts against MAX_ENI.
    Unmanaged,
    /// Trunk ENI for security groups per pod: never freed, no pod addresses.
    Trunk,
    /// EFA-only ENI: never freed, no pod addresses.
    Efa,
    /// On a network card > 0 (multi-NIC is not enabled): ignored.
    OtherCard,
}

impl EniRole {
    /// Whether pod addresses may come from this ENI.
    pub fn carries_pods(self) -> bool {
        matches!(self, Self::Primary | Self::Managed)
    }
}

/// One ENI as found at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredEni {
    /// What EC2 says.
    pub eni: NetworkInterface,
    /// What instance metadata says (`None` while metadata lags behind EC2).
    pub metadata: Option<ImdsInterface>,
    /// Classification.
    pub role: EniRole,
    /// Device index.
    pub device_number: u32,
    /// Network card.
    pub network_card: u32,
}

/// Why start-up discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Instance metadata did not answer.
    #[error("instance metadata: reading {what}: {source}")]
    Metadata {
        /// What was being read.
        what: &'static str,
        /// The error.
        source: Ec2Error,
    },
    /// EC2 did not answer.
    #[error("EC2: {what}: {source}")]
    Ec2 {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: Ec2Error,
    },
    /// The instance's own primary ENI is missing from EC2's answer.
    #[error("EC2 lists no primary ENI (device 0, card 0) for {instance_id}")]
    NoPrimaryEni {
        /// The instance.
        instance_id: String,
    },
}

fn metadata_error(what: &'static str) -> impl FnOnce(Ec2Error) -> DiscoveryError {
    move |source| DiscoveryError::Metadata { what, source }
}

/// Reads the node's identity from instance metadata.
pub async fn discover_identity(imds: &dyn Imds) -> Result<NodeIdentity, DiscoveryError> {
    let instance_id = imds.instance_id().await.map_err(metadata_error("instance-id"))?;
    let instance_type = imds
        .instance_type()
        .await
        .map_err(metadata_error("instance-type"))?;
    let region = imds.region().await.map_err(metadata_error("placement/region"))?;
    let availability_zone = imds
        .availability_zone()
        .await
        .map_err(metadata_error("placement/availability-zone"))?;
    let primary_ip = imds.local_ipv4().await.map_err(metadata_error("local-ipv4"))?;
    let primary_mac = imds.primary_mac().await.map_err(metadata_error("mac"))?;
    let primary = imds
        .interface(&primary_mac)
        .await
        .map_err(metadata_error("the primary ENI's interface"))?;
    Ok(NodeIdentity {
        instance_id,
        instance_type,
        region,
        availability_zone,
        primary_ip,
        primary_mac,
        primary_eni_id: primary.interface_id,
        primary_subnet_id: primary.subnet_id,
        primary_subnet_cidr: primary.subnet_ipv4_cidr_block,
        vpc_cidrs: primary.vpc_ipv4_cidr_blocks,
        vpc_ipv6_cidrs: primary.vpc_ipv6_cidr_blocks,
        vpc_id: String::new(),
        security_groups: primary.security_group_ids,
    })
}

/// Lists the instance's ENIs from EC2 (the truth) joined with instance metadata, and classifies them.
pub async fn discover_enis(
    ec2: &dyn Ec2,
    imds: &dyn Imds,
    identity: &NodeIdentity,
    manage_untagged: bool,
) -> Result<Vec<DiscoveredEni>, DiscoveryError> {
    let instance = ec2
        .describe_instance(&identity.instance_id)
        .await
        .map_err(|source| DiscoveryError::Ec2 {
            what: "DescribeInstances",
            source,
        })?;
    let mut metadata: BTreeMap<String, ImdsInterface> = BTreeMap::new();
    for mac in imds
        .macs()
        .await
        .map_err(metadata_error("network/interfaces/macs"))?
    {
        // An ENI detached a moment ago can vanish between the two reads: skip it, EC2 is the truth.
        if let Ok(interface) = imds.interface(&mac).await {
            metadata.insert(interface.interface_id.clone(), interface);
        }
    }
    let mut found: Vec<DiscoveredEni> = instance
        .network_interfaces
        .into_iter()
        .filter_map(|eni| {
            let attachment = eni.attachment.clone()?;
            let role = classify(
                &eni,
                attachment.device_index,
                attachment.network_card_index,
                identity,
                manage_untagged,
            );
            Some(DiscoveredEni {
                metadata: metadata.remove(&eni.network_interface_id),
                role,
                device_number: attachment.device_index,
                network_card: attachment.network_card_index,
                eni,
            })
        })
        .collect();
    found.sort_by_key(|d| (d.network_card, d.device_number));
    if !found.iter().any(|d| d.role == EniRole::Primary) {
        return Err(DiscoveryError::NoPrimaryEni {
            instance_id: identity.instance_id.clone(),
        });
    }
    Ok(found)
}

/// ENABLE_IMDS_ONLY_MODE: the ENIs as instance metadata lists them, with no EC2 call. Metadata carries no
/// tags or interface type, so every ENI but the primary is managed unless MANAGE_UNTAGGED_ENI=false.
pub async fn discover_enis_from_metadata(
    imds: &dyn Imds,
    identity: &NodeIdentity,
    manage_untagged: bool,
) -> Result<Vec<DiscoveredEni>, DiscoveryError> {
    let mut found = Vec::new();
    for mac in imds
        .macs()
        .await
        .map_err(metadata_error("network/interfaces/macs"))?
    {
        let interface = imds
            .interface(&mac)
            .await
            .map_err(metadata_error("an ENI's interface"))?;
        let Some((&primary_ip, secondary)) = interface.local_ipv4s.split_first() else {
            continue;
        };
        let eni = NetworkInterface {
            network_interface_id: interface.interface_id.clone(),
            mac_address: interface.mac.clone(),
            subnet_id: interface.subnet_id.clone(),
            vpc_id: String::new(),
            availability_zone: identity.availability_zone.clone(),
            description: String::new(),
            private_ip: primary_ip,
            secondary_ips: secondary.to_vec(),
            ipv4_prefixes: interface.ipv4_prefixes.clone(),
            ipv6_addresses: interface.ipv6s.clone(),
            ipv6_prefixes: interface.ipv6_prefixes.clone(),
            security_groups: interface.security_group_ids.clone(),
            tags: Default::default(),
            status: vpcni_ec2::InterfaceStatus::InUse,
            interface_type: "interface".into(),
            attachment: Some(vpcni_ec2::Attachment {
                attachment_id: String::new(),
                instance_id: identity.instance_id.clone(),
                device_index: interface.device_number,
                network_card_index: interface.network_card,
                delete_on_termination: true,
                status: vpcni_ec2::AttachmentStatus::Attached,
            }),
        };
        let role = classify(
            &eni,
            interface.device_number,
            interface.network_card,
            identity,
            manage_untagged,
        );
        found.push(DiscoveredEni {
            device_number: interface.device_number,
            network_card: interface.network_card,
            role,
            eni,
            metadata: Some(interface),
        });
    }
    found.sort_by_key(|d| (d.network_card, d.device_number));
    if !found.iter().any(|d| d.role == EniRole::Primary) {
        return Err(DiscoveryError::NoPrimaryEni {
            instance_id: identity.instance_id.clone(),
        });
    }
    Ok(found)
}

/// The original's rules: primary first; then `no_manage`; trunk and EFA by interface type; other cards
/// ignored; untagged ENIs managed unless MANAGE_UNTAGGED_ENI=false.
pub fn classify(
    eni: &NetworkInterface,
    device_index: u32,
    network_card: u32,
    identity: &NodeIdentity,
    manage_untagged: bool,
) -> EniRole {
    if network_card == 0 && device_index == 0 {
        return EniRole::Primary;
    }
    if network_card > 0 {
        return EniRole::OtherCard;
    }
    if eni
        .tags
        .get(NO_MANAGE_TAG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return EniRole::Unmanaged;
    }
    match eni.interface_type.as_str() {
        "trunk" => return EniRole::Trunk,
        "efa" | "efa-only" => return EniRole::Efa,
        _ => {}
    }
    let ours = eni
        .tags
        .get(INSTANCE_ID_TAG)
        .is_some_and(|id| *id == identity.instance_id);
    if ours || manage_untagged || eni.tags.contains_key(NO_MANAGE_TAG) {
        EniRole::Managed
    } else {
        EniRole::Unmanaged
    }
}

/// The subnet gateway: the subnet's base address + 1, as in every VPC.
pub fn subnet_gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use vpcni_ec2::{Attachment, AttachmentStatus, InterfaceStatus, Tags};

    use super::*;

    fn identity() -> NodeIdentity {
        NodeIdentity {
            instance_id: "i-1".into(),
            instance_type: "m5.xlarge".into(),
            region: "us-west-2".into(),
            availability_zone: "us-west-2a".into(),
            primary_ip: "10.0.0.10".parse().unwrap(),
            primary_mac: "02:00:00:00:00:01".into(),
            primary_eni_id: "eni-1".into(),
            primary_subnet_id: "subnet-1".into(),
            primary_subnet_cidr: "10.0.0.0/24".parse().unwrap(),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            vpc_ipv6_cidrs: vec![],
            vpc_id: "vpc-1".into(),
            security_groups: vec![],
        }
    }

    fn eni(tags: &[(&str, &str)], interface_type: &str) -> NetworkInterface {
        NetworkInterface {
            network_interface_id: "eni-2".into(),
            mac_address: "02:00:00:00:00:02".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "us-west-2a".into(),
            description: String::new(),
            private_ip: "10.0.0.20".parse().unwrap(),
            secondary_ips: vec![],
            ipv4_prefixes: vec![],
            ipv6_addresses: vec![],
            ipv6_prefixes: vec![],
            security_groups: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Tags>(),
            status: InterfaceStatus::InUse,
            interface_type: interface_type.into(),
            attachment: Some(Attachment {
                attachment_id: "eni-attach-2".into(),
                instance_id: "i-1".into(),
                device_index: 1,
                network_card_index: 0,
                delete_on_termination: true,
                status: AttachmentStatus::Attached,
            }),
        }
    }

    #[test]
    fn classification_follows_the_original() {
        let id = identity();
        assert_eq!(
            classify(&eni(&[], "interface"), 0, 0, &id, true),
            EniRole::Primary
        );
        assert_eq!(
            classify(&eni(&[(NO_MANAGE_TAG, "true")], "interface"), 0, 0, &id, true),
            EniRole::Primary
        );
        assert_eq!(
            classify(&eni(&[(NO_MANAGE_TAG, "true")], "interface"), 1, 0, &id, true),
            EniRole::Unmanaged
        );
        // The tag present with any other value means managed.
        assert_eq!(
            classify(&eni(&[(NO_MANAGE_TAG, "false")], "interface"), 1, 0, &id, false),
            EniRole::Managed
        );
        assert_eq!(classify(&eni(&[], "trunk"), 1, 0, &id, true), EniRole::Trunk);
        assert_eq!(classify(&eni(&[], "efa"), 1, 0, &id, true), EniRole::Efa);
        assert_eq!(
            classify(&eni(&[], "interface"), 0, 1, &id, true),
            EniRole::OtherCard
        );
        assert_eq!(
            classify(&eni(&[], "interface"), 1, 0, &id, true),
            EniRole::Managed
        );
        assert_eq!(
            classify(&eni(&[], "interface"), 1, 0, &id, false),
            EniRole::Unmanaged
        );
        assert_eq!(
            classify(&eni(&[(INSTANCE_ID_TAG, "i-1")], "interface"), 1, 0, &id, false),
            EniRole::Managed
        );
        assert_eq!(
            classify(&eni(&[(INSTANCE_ID_TAG, "i-9")], "interface"), 1, 0, &id, false),
            EniRole::Unmanaged
        );
    }

    #[test]
    fn subnet_gateway_is_the_base_address_plus_one() {
        assert_eq!(
            subnet_gateway("10.0.32.0/19".parse().unwrap()),
            "10.0.32.1".parse::<Ipv4Addr>().unwrap()
        );
    }
}
