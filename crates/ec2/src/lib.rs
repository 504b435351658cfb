//! The EC2 and instance-metadata (IMDS) calls vpcni needs, behind two traits: [`Ec2`] and [`Imds`].
//!
//! Two backends implement them: the AWS SDK (crate `vpcni-ec2-sdk`, kept apart because it is huge to
//! compile) and the embedded simulator in [`sim`], which enforces EC2's rules (ENI and address limits,
//! subnet exhaustion, /28 alignment, throttling) so the daemon, the lab, the planner and the tests run the
//! production code paths with no AWS account.
//!
//! Errors are typed ([`Ec2ErrorKind`]) so the daemon can tell a pod *why* it got no address.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod imds_text;
pub mod sim;
mod types;

pub use error::{Ec2Error, Ec2ErrorKind};
pub use types::*;

use std::net::{Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};

/// The EC2 API calls the node daemon makes. Every method maps to one EC2 action (named in its doc).
#[async_trait]
pub trait Ec2: Send + Sync {
    /// DescribeInstances for one instance, with its attached ENIs.
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance, Ec2Error>;

    /// DescribeInstanceTypes: network limits as EC2 reports them.
    async fn describe_instance_types(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, Ec2Error>;

    /// DescribeSubnets by ids and/or filters (`vpc-id`, `availability-zone`, `tag:…`, `tag-key`).
    async fn describe_subnets(
        &self,
        subnet_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Subnet>, Ec2Error>;

    /// DescribeNetworkInterfaces by ids and/or filters, one page. Filters understood by both backends:
    /// `network-interface-id`, `attachment.instance-id`, `status`, `vpc-id`, `subnet-id`, `tag-key`, `tag:<key>`,
    /// `description`.
    async fn describe_network_interfaces(
        &self,
        request: &DescribeNetworkInterfacesRequest,
    ) -> Result<NetworkInterfacePage, Ec2Error>;

    /// CreateNetworkInterface, optionally with secondary IPs or prefixes requested inline.
    async fn create_network_interface(
        &self,
        request: &CreateNetworkInterfaceRequest,
    ) -> Result<NetworkInterface, Ec2Error>;

    /// AttachNetworkInterface; returns the attachment id.
    async fn attach_network_interface(
        &self,
        network_interface_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card_index: u32,
    ) -> Result<String, Ec2Error>;

    /// ModifyNetworkInterfaceAttribute(Attachment.DeleteOnTermination).
    async fn set_delete_on_termination(
        &self,
        network_interface_id: &str,
        attachment_id: &str,
        delete_on_termination: bool,
    ) -> Result<(), Ec2Error>;

    /// DetachNetworkInterface.
    async fn detach_network_interface(&self, attachment_id: &str, force: bool) -> Result<(), Ec2Error>;

    /// DeleteNetworkInterface (the ENI must be `available`, i.e. detached).
    async fn delete_network_interface(&self, network_interface_id: &str) -> Result<(), Ec2Error>;

    /// AssignPrivateIpAddresses with a count or explicit addresses; returns the addresses assigned by this call.
    async fn assign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>, Ec2Error>;

    /// UnassignPrivateIpAddresses.
    async fn unassign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<(), Ec2Error>;

    /// AssignPrivateIpAddresses with `Ipv4Prefix` / `Ipv4PrefixCount`; returns the /28 prefixes assigned by this call.
    async fn assign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv4Net>,
    ) -> Result<Vec<Ipv4Net>, Ec2Error>;

    /// UnassignPrivateIpAddresses with `Ipv4Prefix`.
    async fn unassign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv4Net],
    ) -> Result<(), Ec2Error>;

    /// AssignIpv6Addresses with `Ipv6AddressCount` / `Ipv6Addresses`; returns the addresses assigned by this call.
    async fn assign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>, Ec2Error>;

    /// UnassignIpv6Addresses with `Ipv6Addresses`.
    async fn unassign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv6Addr],
    ) -> Result<(), Ec2Error>;

    /// AssignIpv6Addresses with `Ipv6PrefixCount` / `Ipv6Prefixes`; returns the /80 prefixes assigned by this call.
    async fn assign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv6Net>,
    ) -> Result<Vec<Ipv6Net>, Ec2Error>;

    /// UnassignIpv6Addresses with `Ipv6Prefixes`.
    async fn unassign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv6Net],
    ) -> Result<(), Ec2Error>;

    /// CreateTags on any resources.
    async fn create_tags(&self, resource_ids: &[String], tags: &Tags) -> Result<(), Ec2Error>;
}

/// The instance metadata reads the daemon makes (IMDSv2). Paths are those under `/latest/meta-data/`.
#[async_trait]
pub trait Imds: Send + Sync {
    /// `instance-id`.
    async fn instance_id(&self) -> Result<String, Ec2Error>;
    /// `instance-type`.
    async fn instance_type(&self) -> Result<String, Ec2Error>;
    /// `placement/region`.
    async fn region(&self) -> Result<String, Ec2Error>;
    /// `placement/availability-zone`.
    async fn availability_zone(&self) -> Result<String, Ec2Error>;
    /// `local-ipv4`: the primary ENI's primary address.
    async fn local_ipv4(&self) -> Result<Ipv4Addr, Ec2Error>;
    /// `mac`: the primary ENI's MAC.
    async fn primary_mac(&self) -> Result<String, Ec2Error>;
    /// `network/interfaces/macs/`: MACs of every attached ENI.
    async fn macs(&self) -> Result<Vec<String>, Ec2Error>;
    /// Everything under `network/interfaces/macs/<mac>/` that vpcni reads, in one struct.
    async fn interface(&self, mac: &str) -> Result<ImdsInterface, Ec2Error>;
}
