//! Plain data exchanged through the [`Ec2`](crate::Ec2) and [`Imds`](crate::Imds) traits.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

/// Resource tags, sorted by key.
pub type Tags = BTreeMap<String, String>;

/// An EC2 filter (`Name` and its `Values`, any of which may match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// Filter name, e.g. `status` or `tag:cluster.k8s.amazonaws.com/name`.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

impl Filter {
    /// A filter with one value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            values: vec![value.into()],
        }
    }
}

/// Ask EC2 to choose `Count` addresses, or assign these exact ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AddressRequest<T> {
    /// Let EC2 pick this many.
    Count(u32),
    /// These exact addresses or prefixes.
    Explicit(Vec<T>),
}

/// An EC2 instance and its attached ENIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// `i-…`.
    pub instance_id: String,
    /// e.g. `m5.xlarge`.
    pub instance_type: String,
    /// Availability zone.
    pub availability_zone: String,
    /// VPC of the primary ENI.
    pub vpc_id: String,
    /// Subnet of the primary ENI.
    pub subnet_id: String,
    /// Primary ENI's primary address.
    pub private_ip: Ipv4Addr,
    /// `pending`, `running`, `terminated`, …
    pub state: String,
    /// Attached ENIs, any order.
    pub network_interfaces: Vec<NetworkInterface>,
    /// Instance tags.
    pub tags: Tags,
}

/// Status of an ENI as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceStatus {
    /// Not attached.
    Available,
    /// Being attached.
    Attaching,
    /// Attached.
    InUse,
    /// Being detached.
    Detaching,
}

impl InterfaceStatus {
    /// EC2's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Attaching => "attaching",
            Self::InUse => "in-use",
            Self::Detaching => "detaching",
        }
    }

    /// Parses EC2's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "available" => Self::Available,
            "attaching" => Self::Attaching,
            "in-use" => Self::InUse,
            "detaching" => Self::Detaching,
            _ => return None,
        })
    }
}

/// Status of an ENI attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentStatus {
    /// Attach in progress.
    Attaching,
    /// Attached.
    Attached,
    /// Detach in progress.
    Detaching,
    /// Detached.
    Detached,
}

impl AttachmentStatus {
    /// EC2's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attaching => "attaching",
            Self::Attached => "attached",
            Self::Detaching => "detaching",
            Self::Detached => "detached",
        }
    }

    /// Parses EC2's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "attaching" => Self::Attaching,
            "attached" => Self::Attached,
            "detaching" => Self::Detaching,
            "detached" => Self::Detached,
            _ => return None,
        })
    }
}

/// How an ENI is attached to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// `eni-attach-…`.
    pub attachment_id: String,
    /// Instance it is attached to.
    pub instance_id: String,
    /// Device index on its network card (0 = primary ENI).
    pub device_index: u32,
    /// Network card index.
    pub network_card_index: u32,
    /// Whether EC2 deletes the ENI when the instance terminates.
    pub delete_on_termination: bool,
    /// Attachment status.
    pub status: AttachmentStatus,
}

/// An elastic network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInterface {
    /// `eni-…`.
    pub network_interface_id: String,
    /// MAC address, lowercase `02:xx:…`.
    pub mac_address: String,
    /// Subnet.
    pub subnet_id: String,
    /// VPC.
    pub vpc_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Free-text description (vpcni writes `aws-K8S-<instance id>`, as the original does).
    pub description: String,
    /// The ENI's own primary address.
    pub private_ip: Ipv4Addr,
    /// Secondary addresses (the primary is not in this list).
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Delegated /28 prefixes.
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// IPv6 addresses (`Ipv6Addresses`), in address order.
    pub ipv6_addresses: Vec<Ipv6Addr>,
    /// Delegated /80 IPv6 prefixes (`Ipv6Prefixes`), in address order.
    pub ipv6_prefixes: Vec<Ipv6Net>,
    /// Security group ids.
    pub security_groups: Vec<String>,
    /// Tags.
    pub tags: Tags,
    /// Status.
    pub status: InterfaceStatus,
    /// `interface`, `trunk`, `efa`, `branch`, …
    pub interface_type: String,
    /// Attachment, if attached or being attached/detached.
    pub attachment: Option<Attachment>,
}

/// One page of DescribeNetworkInterfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkInterfacePage {
    /// ENIs on this page.
    pub network_interfaces: Vec<NetworkInterface>,
    /// Token for the next page; `None` on the last.
    pub next_token: Option<String>,
}

/// DescribeNetworkInterfaces arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DescribeNetworkInterfacesRequest {
    /// Only these ENIs (empty = any).
    pub network_interface_ids: Vec<String>,
    /// Filters, all of which must match.
    pub filters: Vec<Filter>,
    /// Page size (EC2 accepts 5–1000); `None` = unpaginated.
    pub max_results: Option<u32>,
    /// Continuation token from the previous page.
    pub next_token: Option<String>,
}

/// CreateNetworkInterface arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CreateNetworkInterfaceRequest {
    /// Subnet to create the ENI in.
    pub subnet_id: String,
    /// Description.
    pub description: String,
    /// Security groups (empty = the VPC's default group).
    pub security_groups: Vec<String>,
    /// Tags applied at creation.
    pub tags: Tags,
    /// The primary address (`PrivateIpAddress`); `None` lets EC2 pick one from the subnet.
    pub private_ip: Option<Ipv4Addr>,
    /// Exact addresses (`PrivateIpAddresses.N`), at most one of them primary (none if `private_ip` is set);
    /// the others become secondary addresses.
    pub private_ips: Vec<PrivateIpSpec>,
    /// Secondary addresses EC2 picks at creation (`SecondaryPrivateIpAddressCount`).
    pub secondary_ip_count: u32,
    /// Exact /28 prefixes to assign at creation (`Ipv4Prefix.N`).
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// /28 prefixes EC2 picks at creation (`Ipv4PrefixCount`).
    pub ipv4_prefix_count: u32,
}

/// One entry of CreateNetworkInterface's `PrivateIpAddresses.N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PrivateIpSpec {
    /// The address.
    pub address: Ipv4Addr,
    /// Whether it is the ENI's primary address.
    pub primary: bool,
}

impl PrivateIpSpec {
    /// A secondary address.
    pub fn secondary(address: Ipv4Addr) -> Self {
        Self {
            address,
            primary: false,
        }
    }

    /// The primary address.
    pub fn primary(address: Ipv4Addr) -> Self {
        Self {
            address,
            primary: true,
        }
    }
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subnet {
    /// `subnet-…`.
    pub subnet_id: String,
    /// VPC.
    pub vpc_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// IPv4 CIDR.
    pub cidr_block: Ipv4Net,
    /// The subnet's IPv6 /64 (`Ipv6CidrBlockAssociationSet`, the associated one), if it has one.
    pub ipv6_cidr_block: Option<Ipv6Net>,
    /// `AvailableIpAddressCount`.
    pub available_ip_address_count: u32,
    /// Tags.
    pub tags: Tags,
}

/// Network limits of an instance type as DescribeInstanceTypes reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceTypeInfo {
    /// e.g. `m5.xlarge`.
    pub instance_type: String,
    /// `NetworkInfo.MaximumNetworkInterfaces` of the default card.
    pub max_enis: u32,
    /// `Ipv4AddressesPerInterface`.
    pub ipv4_per_eni: u32,
    /// `Ipv6Supported`.
    pub ipv6_supported: bool,
    /// `Ipv6AddressesPerInterface` (0 when IPv6 is not supported).
    pub ipv6_per_eni: u32,
    /// `Hypervisor` (`nitro`, `xen`, or empty for bare metal).
    pub hypervisor: String,
    /// `BareMetal`.
    pub bare_metal: bool,
    /// `VCpuInfo.DefaultVCpus`.
    pub default_vcpus: Option<u32>,
    /// `(NetworkCardIndex, MaximumNetworkInterfaces)` per card.
    pub network_cards: Vec<(u32, u32)>,
}

/// What instance metadata says about one attached ENI (`network/interfaces/macs/<mac>/…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImdsInterface {
    /// `mac`.
    pub mac: String,
    /// `device-number`.
    pub device_number: u32,
    /// `network-card` (absent on single-card types → 0).
    pub network_card: u32,
    /// `interface-id`.
    pub interface_id: String,
    /// `subnet-id`.
    pub subnet_id: String,
    /// `subnet-ipv4-cidr-block`.
    pub subnet_ipv4_cidr_block: Ipv4Net,
    /// `local-ipv4s`: primary first, then secondaries.
    pub local_ipv4s: Vec<Ipv4Addr>,
    /// `ipv4-prefix` (404 → empty).
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// `vpc-ipv4-cidr-blocks`.
    pub vpc_ipv4_cidr_blocks: Vec<Ipv4Net>,
    /// `ipv6s` (404 → empty): the interface's IPv6 addresses.
    pub ipv6s: Vec<Ipv6Addr>,
    /// `ipv6-prefix` (404 → empty): the interface's delegated /80 prefixes.
    pub ipv6_prefixes: Vec<Ipv6Net>,
    /// `subnet-ipv6-cidr-blocks` (404 → empty).
    pub subnet_ipv6_cidr_blocks: Vec<Ipv6Net>,
    /// `vpc-ipv6-cidr-blocks` (404 → empty).
    pub vpc_ipv6_cidr_blocks: Vec<Ipv6Net>,
    /// `security-group-ids`.
    pub security_group_ids: Vec<String>,
}
