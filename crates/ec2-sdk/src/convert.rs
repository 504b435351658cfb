//! SDK shapes to vpcni's, and SDK errors to typed [`Ec2Error`]s.

use std::net::{Ipv4Addr, Ipv6Addr};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types as sdk;
use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_ec2::{
    Attachment, AttachmentStatus, Ec2Error, Filter, InterfaceStatus, NetworkInterface, Subnet, Tags,
};

/// EC2's code and message when EC2 answered; a transport error otherwise.
pub fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> Ec2Error {
    match error.code() {
        Some(code) => Ec2Error::new(code, error.message().unwrap_or_default()),
        None => Ec2Error::unavailable(format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&error))),
    }
}

pub fn filters(filters: &[Filter]) -> Vec<sdk::Filter> {
    filters
        .iter()
        .map(|f| {
            sdk::Filter::builder()
                .name(&f.name)
                .set_values(Some(f.values.clone()))
                .build()
        })
        .collect()
}

pub fn tags(tags: &[sdk::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
        .collect()
}

pub fn sdk_tags(tags: &Tags) -> Vec<sdk::Tag> {
    tags.iter()
        .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
        .collect()
}

fn ip(text: Option<&str>) -> Option<Ipv4Addr> {
    text?.parse().ok()
}

fn missing(what: &str) -> Ec2Error {
    Ec2Error::new("InvalidResponse", format!("EC2's answer lacks {what}"))
}

pub fn network_interface(eni: &sdk::NetworkInterface) -> Result<NetworkInterface, Ec2Error> {
    let mut ipv6_addresses: Vec<Ipv6Addr> = eni
        .ipv6_addresses()
        .iter()
        .filter_map(|a| a.ipv6_address()?.parse().ok())
        .collect();
    ipv6_addresses.sort_unstable();
    let mut ipv6_prefixes: Vec<Ipv6Net> = eni
        .ipv6_prefixes()
        .iter()
        .filter_map(|p| p.ipv6_prefix()?.parse().ok())
        .collect();
    ipv6_prefixes.sort_unstable();
    let attachment = eni.attachment().and_then(|a| {
        Some(Attachment {
            attachment_id: a.attachment_id()?.to_owned(),
            instance_id: a.instance_id().unwrap_or_default().to_owned(),
            device_index: a.device_index().unwrap_or(0) as u32,
            network_card_index: a.network_card_index().unwrap_or(0) as u32,
            delete_on_termination: a.delete_on_termination().unwrap_or(false),
            status: a
                .status()
                .and_then(|s| AttachmentStatus::parse(s.as_str()))
                .unwrap_or(AttachmentStatus::Attached),
        })
    });
    Ok(NetworkInterface {
        network_interface_id: eni
            .network_interface_id()
            .ok_or_else(|| missing("NetworkInterfaceId"))?
            .to_owned(),
        mac_address: eni.mac_address().unwrap_or_default().to_owned(),
        subnet_id: eni.subnet_id().unwrap_or_default().to_owned(),
        vpc_id: eni.vpc_id().unwrap_or_default().to_owned(),
        availability_zone: eni.availability_zone().unwrap_or_default().to_owned(),
        description: eni.description().unwrap_or_default().to_owned(),
        private_ip: ip(eni.private_ip_address()).ok_or_else(|| missing("PrivateIpAddress"))?,
        secondary_ips: eni
            .private_ip_addresses()
            .iter()
            .filter(|a| !a.primary().unwrap_or(false))
            .filter_map(|a| ip(a.private_ip_address()))
            .collect(),
        ipv4_prefixes: eni
            .ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix()?.parse::<Ipv4Net>().ok())
            .collect(),
        ipv6_addresses,
        ipv6_prefixes,
        security_groups: eni
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        tags: tags(eni.tag_set()),
        status: eni
            .status()
            .and_then(|s| InterfaceStatus::parse(s.as_str()))
            .unwrap_or(InterfaceStatus::Available),
        interface_type: eni
            .interface_type()
            .map_or("interface", |t| t.as_str())
            .to_owned(),
        attachment,
    })
}

pub fn subnet(subnet: &sdk::Subnet) -> Result<Subnet, Ec2Error> {
    Ok(Subnet {
        subnet_id: subnet.subnet_id().ok_or_else(|| missing("SubnetId"))?.to_owned(),
        vpc_id: subnet.vpc_id().unwrap_or_default().to_owned(),
        availability_zone: subnet.availability_zone().unwrap_or_default().to_owned(),
        cidr_block: subnet
            .cidr_block()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| missing("CidrBlock"))?,
        ipv6_cidr_block: subnet_ipv6(subnet),
        available_ip_address_count: subnet.available_ip_address_count().unwrap_or(0).max(0) as u32,
        tags: tags(subnet.tags()),
    })
}

/// The subnet's IPv6 block: the association not on its way out. A state the SDK does not know counts as
/// associated (moto writes the state as a Python dict, `{'State': 'associated'}`).
fn subnet_ipv6(subnet: &sdk::Subnet) -> Option<Ipv6Net> {
    use sdk::SubnetCidrBlockStateCode as State;
    subnet
        .ipv6_cidr_block_association_set()
        .iter()
        .filter(|association| {
            !matches!(
                association.ipv6_cidr_block_state().and_then(|s| s.state()),
                Some(State::Disassociated | State::Disassociating | State::Failed | State::Failing)
            )
        })
        .find_map(|association| association.ipv6_cidr_block()?.parse().ok())
}
