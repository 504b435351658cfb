//! The simulated account: VPCs, subnets, instances and ENIs, and every EC2 rule vpcni depends on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use vpcni_limits::InstanceLimits;

use super::addressing::{ReservationType, SubnetAddresses};
use super::ipv6::{self, SubnetIpv6};
use super::rng::SplitMix64;
use crate::{
    AddressRequest, Attachment, AttachmentStatus, CreateNetworkInterfaceRequest, Ec2Error, Filter, Instance,
    InterfaceStatus, NetworkInterface, Subnet, Tags,
};

/// A VPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VpcRecord {
    /// `vpc-…`.
    pub id: String,
    /// Primary CIDR first, then secondary ones.
    pub cidrs: Vec<Ipv4Net>,
    /// The VPC's IPv6 /56, if it has one (at most one).
    #[serde(default)]
    pub ipv6_cidr: Option<Ipv6Net>,
    /// Tags.
    pub tags: Tags,
}

/// A subnet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubnetRecord {
    /// `subnet-…`.
    pub id: String,
    /// VPC.
    pub vpc_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Addresses.
    pub addresses: SubnetAddresses,
    /// Tags.
    pub tags: Tags,
    /// Subnet CIDR reservations.
    #[serde(default)]
    pub reservations: Vec<CidrReservation>,
    /// The subnet's IPv6 /64 and what is in use in it, if it has one.
    #[serde(default)]
    pub ipv6: Option<SubnetIpv6>,
}

/// A subnet CIDR reservation (CreateSubnetCidrReservation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrReservation {
    /// `scr-…`.
    pub id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// The reserved range.
    pub cidr: Ipv4Net,
    /// `prefix` or `explicit`.
    pub kind: ReservationType,
}

/// An instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `i-…`.
    pub id: String,
    /// Type.
    pub instance_type: String,
    /// Subnet of the primary ENI.
    pub subnet_id: String,
    /// `running` or `terminated`.
    pub state: String,
    /// Primary ENI.
    pub primary_eni: String,
    /// Tags.
    pub tags: Tags,
}

/// An ENI attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// `eni-attach-…`.
    pub id: String,
    /// Instance.
    pub instance_id: String,
    /// Device index.
    pub device_index: u32,
    /// Network card.
    pub network_card: u32,
    /// DeleteOnTermination.
    pub delete_on_termination: bool,
    /// When AttachNetworkInterface was called.
    pub requested_ms: u64,
    /// When the attachment completes.
    pub attached_ms: u64,
}

/// An ENI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EniRecord {
    /// `eni-…`.
    pub id: String,
    /// MAC.
    pub mac: String,
    /// Subnet.
    pub subnet_id: String,
    /// Description.
    pub description: String,
    /// Its own primary address.
    pub primary_ip: Ipv4Addr,
    /// Secondary addresses, with when each was assigned.
    pub secondary: BTreeMap<Ipv4Addr, u64>,
    /// Prefixes, with when each was assigned.
    pub prefixes: BTreeMap<Ipv4Net, u64>,
    /// Addresses and prefixes removed recently, with when: instance metadata still shows them for a while.
    pub removed: Vec<(Ipv4Net, u64)>,
    /// IPv6 addresses, with when each was assigned.
    #[serde(default)]
    pub ipv6_addresses: BTreeMap<Ipv6Addr, u64>,
    /// IPv6 /80 prefixes, with when each was assigned.
    #[serde(default)]
    pub ipv6_prefixes: BTreeMap<Ipv6Net, u64>,
    /// IPv6 addresses (as /128s) and prefixes removed recently, with when.
    #[serde(default)]
    pub removed_ipv6: Vec<(Ipv6Net, u64)>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Tags.
    pub tags: Tags,
    /// `interface`, `trunk`, `efa`.
    pub interface_type: String,
    /// Attachment.
    pub attachment: Option<AttachmentRecord>,
}

impl EniRecord {
    /// Address slots in use: the primary, each secondary address and each prefix.
    pub fn slots_used(&self) -> u32 {
        1 + self.secondary.len() as u32 + self.prefixes.len() as u32
    }

    /// IPv6 slots in use: each IPv6 address and each /80 prefix. They count against the instance type's IPv6
    /// limit per interface, not its IPv4 one (docs/ec2-simulator.md, "IPv6").
    pub fn ipv6_slots_used(&self) -> u32 {
        self.ipv6_addresses.len() as u32 + self.ipv6_prefixes.len() as u32
    }
}

/// Everything in the account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountState {
    /// Deterministic ids and fault rolls.
    pub rng: SplitMix64,
    /// Id counter.
    pub next_id: u64,
    /// Region.
    pub region: String,
    /// VPCs.
    pub vpcs: BTreeMap<String, VpcRecord>,
    /// Subnets.
    pub subnets: BTreeMap<String, SubnetRecord>,
    /// Instances.
    pub instances: BTreeMap<String, InstanceRecord>,
    /// ENIs.
    pub enis: BTreeMap<String, EniRecord>,
    /// ENIs detached within the metadata lag, as they were when attached: instance metadata still lists
    /// them for a while, as the real service does.
    #[serde(default)]
    pub departed: Vec<DepartedEni>,
    /// Which ENIs are attached where, kept with every attach and detach: per-instance questions
    /// (DescribeInstances, AttachNetworkInterface's limits, metadata) then cost the instance's ENIs, not
    /// the account's, which is what lets the planner run thousands of nodes against one account. Derived
    /// from `enis`, so not saved: [`AccountState::reindex`] rebuilds it after loading.
    #[serde(skip)]
    attachments: AttachmentIndex,
}

/// ENIs by the instance they are attached to, and by attachment id.
#[derive(Debug, Clone, Default)]
struct AttachmentIndex {
    /// Instance id → ids of the ENIs attached to it (in id order, the order every scan used to give).
    by_instance: HashMap<String, BTreeSet<String>>,
    /// Attachment id → ENI id.
    by_attachment: HashMap<String, String>,
}

impl AttachmentIndex {
    fn attached(&mut self, eni_id: &str, attachment: &AttachmentRecord) {
        self.by_instance
            .entry(attachment.instance_id.clone())
            .or_default()
            .insert(eni_id.to_owned());
        self.by_attachment
            .insert(attachment.id.clone(), eni_id.to_owned());
    }

    fn detached(&mut self, eni_id: &str, attachment: &AttachmentRecord) {
        if let Some(enis) = self.by_instance.get_mut(&attachment.instance_id) {
            enis.remove(eni_id);
            if enis.is_empty() {
                self.by_instance.remove(&attachment.instance_id);
            }
        }
        self.by_attachment.remove(&attachment.id);
    }
}

/// An ENI as it was when it was detached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepartedEni {
    /// When it was detached.
    pub detached_ms: u64,
    /// The ENI, its attachment included.
    pub eni: EniRecord,
}

fn not_found(kind: &str, id: &str) -> Ec2Error {
    let noun = match kind {
        "NetworkInterface" => "network interface",
        "Subnet" => "subnet",
        "Instance" => "instance",
        "Vpc" => "vpc",
        _ => "resource",
    };
    let code = match kind {
        "NetworkInterface" => "InvalidNetworkInterfaceID.NotFound",
        "Subnet" => "InvalidSubnetID.NotFound",
        "Instance" => "InvalidInstanceID.NotFound",
        "Vpc" => "InvalidVpcID.NotFound",
        "Attachment" => "InvalidAttachmentID.NotFound",
        _ => "InvalidID.NotFound",
    };
    Ec2Error::new(code, format!("The {noun} ID '{id}' does not exist"))
}

fn invalid(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new("InvalidParameterValue", message)
}

/// Address slots (primary, secondaries, prefixes) of an ENI attached to nothing: the most any instance type
/// allows per ENI. Attaching checks the instance type's own limit.
const UNATTACHED_SLOT_LIMIT: u32 = 50;

fn combination(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new("InvalidParameterCombination", message)
}

/// CreateNetworkInterface's rules for combining its address parameters, as EC2's API reference states them:
/// - only one primary: `PrivateIpAddress`, or one entry of `PrivateIpAddresses.N` marked primary, not both;
/// - exact addresses (`PrivateIpAddresses.N`) exclude prefixes (exact or counted), and a count of secondary
///   addresses goes with at most one of them ("You can't specify this option and specify more than one private
///   IP address using privateIpAddresses");
/// - a count of secondary addresses excludes prefixes (exact or counted);
/// - exact prefixes exclude a count of prefixes;
/// - no address or prefix twice.
fn check_create_combination(request: &CreateNetworkInterfaceRequest) -> Result<(), Ec2Error> {
    let listed_primaries = request.private_ips.iter().filter(|p| p.primary).count();
    if listed_primaries > 1 {
        return Err(invalid(
            "Only one of the PrivateIpAddresses can be designated as primary.",
        ));
    }
    if listed_primaries == 1 && request.private_ip.is_some() {
        return Err(combination(
            "PrivateIpAddress is the primary address: none of PrivateIpAddresses can be designated as primary as well.",
        ));
    }
    let any_prefixes = !request.ipv4_prefixes.is_empty() || request.ipv4_prefix_count > 0;
    if !request.private_ips.is_empty() && any_prefixes {
        return Err(combination(
            "PrivateIpAddresses cannot be combined with Ipv4Prefix or Ipv4PrefixCount.",
        ));
    }
    if request.secondary_ip_count > 0 && request.private_ips.len() > 1 {
        return Err(combination(
            "SecondaryPrivateIpAddressCount cannot be combined with more than one of PrivateIpAddresses.",
        ));
    }
    if request.secondary_ip_count > 0 && any_prefixes {
        return Err(combination(
            "SecondaryPrivateIpAddressCount cannot be combined with Ipv4Prefix or Ipv4PrefixCount.",
        ));
    }
    if !request.ipv4_prefixes.is_empty() && request.ipv4_prefix_count > 0 {
        return Err(combination("Ipv4Prefix and Ipv4PrefixCount cannot be combined."));
    }
    let mut addresses: Vec<Ipv4Addr> = request.private_ips.iter().map(|p| p.address).collect();
    addresses.extend(request.private_ip);
    addresses.sort_unstable();
    if let Some(twice) = addresses.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(invalid(format!(
            "The address {} is specified more than once.",
            twice[0]
        )));
    }
    let mut prefixes = request.ipv4_prefixes.clone();
    prefixes.sort_unstable();
    if let Some(twice) = prefixes.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(invalid(format!(
            "The prefix {} is specified more than once.",
            twice[0]
        )));
    }
    Ok(())
}

/// The instance type's limits, or EC2's error for an unknown type.
pub fn type_limits(instance_type: &str) -> Result<&'static InstanceLimits, Ec2Error> {
    vpcni_limits::builtin()
        .get(instance_type)
        .map_err(|_| invalid(format!("Invalid value '{instance_type}' for InstanceType.")))
}

impl AccountState {
    /// An empty account.
    pub fn new(seed: u64, region: &str) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            next_id: 1,
            region: region.to_owned(),
            vpcs: BTreeMap::new(),
            subnets: BTreeMap::new(),
            instances: BTreeMap::new(),
            enis: BTreeMap::new(),
            departed: Vec::new(),
            attachments: AttachmentIndex::default(),
        }
    }

    /// Rebuilds what is derived from the ENIs (the attachment index): needed once after loading a saved
    /// state, before any operation. [`super::Simulator::from_account`] does it.
    pub fn reindex(&mut self) {
        let mut index = AttachmentIndex::default();
        for eni in self.enis.values() {
            if let Some(attachment) = &eni.attachment {
                index.attached(&eni.id, attachment);
            }
        }
        self.attachments = index;
    }

    /// The ENIs attached to an instance, in id order.
    pub fn attached_enis<'a>(&'a self, instance_id: &str) -> impl Iterator<Item = &'a EniRecord> + 'a {
        self.attachments
            .by_instance
            .get(instance_id)
            .into_iter()
            .flatten()
            .map(|id| &self.enis[id])
    }

    /// Whether the attachment index says what a scan of every ENI says: for tests.
    pub fn index_is_consistent(&self) -> bool {
        let mut rebuilt = self.clone();
        rebuilt.reindex();
        rebuilt.attachments.by_instance == self.attachments.by_instance
            && rebuilt.attachments.by_attachment == self.attachments.by_attachment
    }

    /// A new id: the prefix and 17 hex digits, deterministic from the seed.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let bits = self.rng.next_u64();
        format!("{prefix}-{:017x}", bits ^ self.next_id)
    }

    fn new_mac(&mut self) -> String {
        let bits = self.rng.next_u64();
        let b = bits.to_be_bytes();
        format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4]
        )
    }

    /// CreateVpc.
    pub fn create_vpc(&mut self, cidr: Ipv4Net, tags: Tags) -> Result<String, Ec2Error> {
        if !(16..=28).contains(&cidr.prefix_len()) {
            return Err(invalid(format!(
                "Value ({cidr}) for parameter cidrBlock is invalid. The block size must be between /16 and /28."
            )));
        }
        let id = self.new_id("vpc");
        self.vpcs.insert(
            id.clone(),
            VpcRecord {
                id: id.clone(),
                cidrs: vec![cidr.trunc()],
                ipv6_cidr: None,
                tags,
            },
        );
        Ok(id)
    }

    /// AssociateVpcCidrBlock.
    pub fn add_vpc_cidr(&mut self, vpc_id: &str, cidr: Ipv4Net) -> Result<(), Ec2Error> {
        let vpc = self
            .vpcs
            .get_mut(vpc_id)
            .ok_or_else(|| not_found("Vpc", vpc_id))?;
        if vpc.cidrs.iter().any(|c| c.contains(&cidr) || cidr.contains(c)) {
            return Err(invalid(format!(
                "The CIDR '{cidr}' conflicts with another CIDR of the VPC"
            )));
        }
        vpc.cidrs.push(cidr.trunc());
        Ok(())
    }

    /// CreateSubnet.
    pub fn create_subnet(
        &mut self,
        vpc_id: &str,
        cidr: Ipv4Net,
        az: &str,
        tags: Tags,
    ) -> Result<String, Ec2Error> {
        let vpc = self.vpcs.get(vpc_id).ok_or_else(|| not_found("Vpc", vpc_id))?;
        if !vpc.cidrs.iter().any(|c| c.contains(&cidr)) {
            return Err(invalid(format!("The CIDR '{cidr}' is invalid for the VPC.")));
        }
        if !(16..=28).contains(&cidr.prefix_len()) {
            return Err(invalid(format!(
                "The CIDR '{cidr}' is invalid: subnets are /16 to /28."
            )));
        }
        let overlapping = self.subnets.values().any(|s| {
            s.vpc_id == vpc_id && (s.addresses.cidr().contains(&cidr) || cidr.contains(&s.addresses.cidr()))
        });
        if overlapping {
            return Err(Ec2Error::new(
                "InvalidSubnet.Conflict",
                format!("The CIDR '{cidr}' conflicts with another subnet"),
            ));
        }
        let id = self.new_id("subnet");
        self.subnets.insert(
            id.clone(),
            SubnetRecord {
                id: id.clone(),
                vpc_id: vpc_id.to_owned(),
                availability_zone: az.to_owned(),
                addresses: SubnetAddresses::new(cidr),
                tags,
                reservations: Vec::new(),
                ipv6: None,
            },
        );
        Ok(id)
    }

    /// CreateSubnetCidrReservation (type prefix).
    pub fn reserve_subnet_prefixes(&mut self, subnet_id: &str, cidr: Ipv4Net) -> Result<String, Ec2Error> {
        self.reserve_subnet_cidr(subnet_id, cidr, ReservationType::Prefix)
            .map(|r| r.id)
    }

    /// CreateSubnetCidrReservation.
    pub fn reserve_subnet_cidr(
        &mut self,
        subnet_id: &str,
        cidr: Ipv4Net,
        kind: ReservationType,
    ) -> Result<CidrReservation, Ec2Error> {
        let subnet = self
            .subnets
            .get_mut(subnet_id)
            .ok_or_else(|| not_found("Subnet", subnet_id))?;
        subnet.addresses.reserve(cidr, kind)?;
        let id = self.new_id("scr");
        let reservation = CidrReservation {
            id,
            subnet_id: subnet_id.to_owned(),
            cidr,
            kind,
        };
        if let Some(subnet) = self.subnets.get_mut(subnet_id) {
            subnet.reservations.push(reservation.clone());
        }
        Ok(reservation)
    }

    /// GetSubnetCidrReservations: a subnet's reservations.
    pub fn subnet_cidr_reservations(&self, subnet_id: &str) -> Result<Vec<CidrReservation>, Ec2Error> {
        self.subnets
            .get(subnet_id)
            .map(|s| s.reservations.clone())
            .ok_or_else(|| not_found("Subnet", subnet_id))
    }

    /// DeleteSubnetCidrReservation.
    pub fn delete_subnet_cidr_reservation(&mut self, id: &str) -> Result<CidrReservation, Ec2Error> {
        for subnet in self.subnets.values_mut() {
            if let Some(at) = subnet.reservations.iter().position(|r| r.id == id) {
                let reservation = subnet.reservations.remove(at);
                subnet.addresses.unreserve(reservation.cidr, reservation.kind);
                return Ok(reservation);
            }
        }
        Err(Ec2Error::new(
            "InvalidSubnetCidrReservationID.NotFound",
            format!("The subnet CIDR reservation ID '{id}' does not exist"),
        ))
    }

    fn subnet_mut(&mut self, id: &str) -> Result<&mut SubnetRecord, Ec2Error> {
        self.subnets.get_mut(id).ok_or_else(|| not_found("Subnet", id))
    }

    /// RunInstances (one instance): its primary ENI, attached at device 0, deleted on termination.
    pub fn run_instance(
        &mut self,
        instance_type: &str,
        subnet_id: &str,
        private_ip: Option<Ipv4Addr>,
        tags: Tags,
        now: u64,
    ) -> Result<String, Ec2Error> {
        type_limits(instance_type)?;
        let instance_id = self.new_id("i");
        let request = CreateNetworkInterfaceRequest {
            subnet_id: subnet_id.to_owned(),
            description: "Primary network interface".to_owned(),
            private_ip,
            ..Default::default()
        };
        let eni_id = self.create_eni(&request)?;
        let attachment = AttachmentRecord {
            id: format!("eni-attach-{}", &eni_id[4..]),
            instance_id: instance_id.clone(),
            device_index: 0,
            network_card: 0,
            delete_on_termination: true,
            requested_ms: now,
            attached_ms: now,
        };
        self.attachments.attached(&eni_id, &attachment);
        self.enis.get_mut(&eni_id).expect("just created").attachment = Some(attachment);
        self.instances.insert(
            instance_id.clone(),
            InstanceRecord {
                id: instance_id.clone(),
                instance_type: instance_type.to_owned(),
                subnet_id: subnet_id.to_owned(),
                state: "running".to_owned(),
                primary_eni: eni_id,
                tags,
            },
        );
        Ok(instance_id)
    }

    /// TerminateInstances: ENIs with DeleteOnTermination go, the others stay behind `available` (leaked).
    pub fn terminate_instance(&mut self, instance_id: &str) -> Result<(), Ec2Error> {
        let instance = self
            .instances
            .get_mut(instance_id)
            .ok_or_else(|| not_found("Instance", instance_id))?;
        if instance.state == "terminated" {
            return Ok(());
        }
        instance.state = "terminated".to_owned();
        let attached: Vec<String> = self.attached_enis(instance_id).map(|e| e.id.clone()).collect();
        for eni_id in attached {
            let eni = self.enis.get_mut(&eni_id).expect("indexed ENIs exist");
            let attachment = eni.attachment.take().expect("indexed ENIs are attached");
            self.attachments.detached(&eni_id, &attachment);
            if attachment.delete_on_termination {
                self.delete_eni(&eni_id)?;
            }
        }
        Ok(())
    }

    /// CreateNetworkInterface, with the addresses and prefixes EC2 accepts at creation: an exact primary
    /// (`PrivateIpAddress`, or the entry of `PrivateIpAddresses.N` marked primary), exact secondaries, a count
    /// of secondaries, exact prefixes or a count of prefixes, combined as EC2 allows (see
    /// [`check_create_combination`]).
    pub fn create_eni(&mut self, request: &CreateNetworkInterfaceRequest) -> Result<String, Ec2Error> {
        check_create_combination(request)?;
        let listed_primary = request.private_ips.iter().find(|p| p.primary).map(|p| p.address);
        let primary_ip = request.private_ip.or(listed_primary);
        let exact_secondaries: Vec<Ipv4Addr> = request
            .private_ips
            .iter()
            .filter(|p| !p.primary)
            .map(|p| p.address)
            .collect();
        let prefix_slots = request.ipv4_prefix_count as usize + request.ipv4_prefixes.len();
        let slots = 1 + exact_secondaries.len() + request.secondary_ip_count as usize + prefix_slots;
        // An ENI not yet attached may hold at most what the largest types allow; attach checks the type.
        if slots > UNATTACHED_SLOT_LIMIT as usize {
            return Err(Ec2Error::new(
                "PrivateIpAddressLimitExceeded",
                format!(
                    "Number of private addresses will exceed limit: {slots} requested, limit {UNATTACHED_SLOT_LIMIT}"
                ),
            ));
        }
        let subnet = self.subnet_mut(&request.subnet_id)?;
        // Take everything or nothing: work on a copy, and keep it only if every step succeeded. Exact
        // addresses and prefixes are claimed before EC2 picks any, so a pick never takes a requested one.
        let mut snapshot = subnet.addresses.clone();
        if let Some(ip) = primary_ip {
            snapshot.claim_ip(ip)?;
        }
        for ip in &exact_secondaries {
            snapshot.claim_ip(*ip)?;
        }
        let mut prefixes = Vec::new();
        for prefix in &request.ipv4_prefixes {
            snapshot.claim_prefix(*prefix)?;
            prefixes.push(*prefix);
        }
        let primary = match primary_ip {
            Some(ip) => ip,
            None => snapshot.allocate_ip()?,
        };
        let mut secondary = exact_secondaries;
        for _ in 0..request.secondary_ip_count {
            secondary.push(snapshot.allocate_ip()?);
        }
        for _ in 0..request.ipv4_prefix_count {
            prefixes.push(snapshot.allocate_prefix()?);
        }
        subnet.addresses = snapshot;
        let vpc_groups = vec![format!("sg-default-{}", &subnet.vpc_id)];
        let id = self.new_id("eni");
        let mac = self.new_mac();
        self.enis.insert(
            id.clone(),
            EniRecord {
                id: id.clone(),
                mac,
                subnet_id: request.subnet_id.clone(),
                description: request.description.clone(),
                primary_ip: primary,
                secondary: secondary.into_iter().map(|ip| (ip, 0)).collect(),
                prefixes: prefixes.into_iter().map(|p| (p, 0)).collect(),
                removed: Vec::new(),
                ipv6_addresses: BTreeMap::new(),
                ipv6_prefixes: BTreeMap::new(),
                removed_ipv6: Vec::new(),
                security_groups: if request.security_groups.is_empty() {
                    vpc_groups
                } else {
                    request.security_groups.clone()
                },
                tags: request.tags.clone(),
                interface_type: "interface".to_owned(),
                attachment: None,
            },
        );
        Ok(id)
    }

    fn eni_mut(&mut self, id: &str) -> Result<&mut EniRecord, Ec2Error> {
        self.enis
            .get_mut(id)
            .ok_or_else(|| not_found("NetworkInterface", id))
    }

    /// The type limits of the instance an ENI is attached to, if it is.
    fn attached_limits(&self, eni: &EniRecord) -> Option<&'static InstanceLimits> {
        let attachment = eni.attachment.as_ref()?;
        let instance = self.instances.get(&attachment.instance_id)?;
        type_limits(&instance.instance_type).ok()
    }

    /// AttachNetworkInterface.
    pub fn attach_eni(
        &mut self,
        eni_id: &str,
        instance_id: &str,
        device_index: u32,
        card: u32,
        now: u64,
        delay_ms: u64,
    ) -> Result<String, Ec2Error> {
        let instance = self
            .instances
            .get(instance_id)
            .ok_or_else(|| not_found("Instance", instance_id))?
            .clone();
        if instance.state != "running" {
            return Err(Ec2Error::new(
                "IncorrectInstanceState",
                format!("The instance '{instance_id}' is not in a state from which it can be attached."),
            ));
        }
        let limits = type_limits(&instance.instance_type)?;
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| not_found("NetworkInterface", eni_id))?;
        if let Some(attachment) = &eni.attachment {
            return Err(Ec2Error::new(
                "InvalidNetworkInterface.InUse",
                format!("Interface: [{eni_id}] in use by {}.", attachment.instance_id),
            ));
        }
        let eni_az = &self.subnets[&eni.subnet_id].availability_zone;
        let instance_az = &self.subnets[&instance.subnet_id].availability_zone;
        if eni_az != instance_az {
            return Err(Ec2Error::new(
                "InvalidParameterCombination",
                format!(
                    "You may not attach a network interface to an instance if they are not in the same availability zone ({eni_az} vs {instance_az})"
                ),
            ));
        }
        let Some(card_limit) = limits
            .network_cards
            .iter()
            .find(|c| c.index == card)
            .map(|c| c.max_enis)
        else {
            return Err(invalid(format!(
                "Network card index {card} is not valid for {}",
                instance.instance_type
            )));
        };
        if eni.slots_used() > limits.ipv4_per_eni {
            return Err(Ec2Error::new(
                "PrivateIpAddressLimitExceeded",
                format!(
                    "The network interface has more addresses than {} allows per interface ({}).",
                    instance.instance_type, limits.ipv4_per_eni
                ),
            ));
        }
        self.check_ipv6_fits(eni, limits, 0)?;
        let on_card: Vec<u32> = self
            .attached_enis(instance_id)
            .filter_map(|e| e.attachment.as_ref())
            .filter(|a| a.network_card == card)
            .map(|a| a.device_index)
            .collect();
        if on_card.len() as u32 >= card_limit {
            return Err(Ec2Error::new(
                "AttachmentLimitExceeded",
                format!(
                    "Interface count {} exceeds the limit for {}",
                    on_card.len() + 1,
                    instance.instance_type
                ),
            ));
        }
        if on_card.contains(&device_index) {
            return Err(invalid(format!(
                "Instance '{instance_id}' already has an interface attached at device index '{device_index}'."
            )));
        }
        let attachment_id = format!("eni-attach-{}", &self.new_id("x")[2..]);
        let attachment = AttachmentRecord {
            id: attachment_id.clone(),
            instance_id: instance_id.to_owned(),
            device_index,
            network_card: card,
            delete_on_termination: false,
            requested_ms: now,
            attached_ms: now + delay_ms,
        };
        self.attachments.attached(eni_id, &attachment);
        self.eni_mut(eni_id)?.attachment = Some(attachment);
        Ok(attachment_id)
    }

    fn eni_by_attachment(&mut self, attachment_id: &str) -> Result<&mut EniRecord, Ec2Error> {
        let eni_id = self
            .attachments
            .by_attachment
            .get(attachment_id)
            .ok_or_else(|| not_found("Attachment", attachment_id))?;
        Ok(self.enis.get_mut(eni_id).expect("indexed ENIs exist"))
    }

    /// ModifyNetworkInterfaceAttribute(Attachment.DeleteOnTermination).
    pub fn set_delete_on_termination(
        &mut self,
        eni_id: &str,
        attachment_id: &str,
        value: bool,
    ) -> Result<(), Ec2Error> {
        let eni = self.eni_mut(eni_id)?;
        match eni.attachment.as_mut() {
            Some(a) if a.id == attachment_id => {
                a.delete_on_termination = value;
                Ok(())
            }
            _ => Err(not_found("Attachment", attachment_id)),
        }
    }

    /// DetachNetworkInterface.
    /// Instance metadata keeps showing the ENI for `metadata_lag_ms`.
    pub fn detach_eni(
        &mut self,
        attachment_id: &str,
        now: u64,
        metadata_lag_ms: u64,
    ) -> Result<(), Ec2Error> {
        self.departed
            .retain(|d| now < d.detached_ms.saturating_add(metadata_lag_ms));
        let eni = self.eni_by_attachment(attachment_id)?;
        if eni
            .attachment
            .as_ref()
            .is_some_and(|a| a.device_index == 0 && a.network_card == 0)
        {
            return Err(Ec2Error::new(
                "OperationNotPermitted",
                "The network interface at device index 0 cannot be detached.",
            ));
        }
        let snapshot = eni.clone();
        let eni_id = eni.id.clone();
        let attachment = eni.attachment.take().expect("found by its attachment");
        self.attachments.detached(&eni_id, &attachment);
        if metadata_lag_ms > 0 {
            self.departed.push(DepartedEni {
                detached_ms: now,
                eni: snapshot,
            });
        }
        Ok(())
    }

    /// DeleteNetworkInterface.
    pub fn delete_eni(&mut self, eni_id: &str) -> Result<(), Ec2Error> {
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| not_found("NetworkInterface", eni_id))?;
        if eni.attachment.is_some() {
            return Err(Ec2Error::new(
                "InvalidNetworkInterface.InUse",
                format!("The network interface '{eni_id}' is currently in use."),
            ));
        }
        let eni = self.enis.remove(eni_id).expect("checked");
        if let Some(subnet) = self.subnets.get_mut(&eni.subnet_id) {
            subnet.addresses.release_ip(eni.primary_ip);
            for ip in eni.secondary.keys() {
                subnet.addresses.release_ip(*ip);
            }
            for prefix in eni.prefixes.keys() {
                subnet.addresses.release_prefix(*prefix);
            }
            if let Some(block) = subnet.ipv6.as_mut() {
                for ip in eni.ipv6_addresses.keys() {
                    block.release_address(*ip);
                }
                for prefix in eni.ipv6_prefixes.keys() {
                    block.release_prefix(*prefix);
                }
            }
        }
        Ok(())
    }

    fn check_room(&self, eni: &EniRecord, adding: u32) -> Result<(), Ec2Error> {
        let limit = self
            .attached_limits(eni)
            .map_or(UNATTACHED_SLOT_LIMIT, |l| l.ipv4_per_eni);
        if eni.slots_used() + adding > limit {
            return Err(Ec2Error::new(
                "PrivateIpAddressLimitExceeded",
                format!(
                    "Number of private addresses will exceed limit: {} in use on {}, {} requested, limit {limit}",
                    eni.slots_used(),
                    eni.id,
                    adding
                ),
            ));
        }
        Ok(())
    }

    /// AssignPrivateIpAddresses (addresses).
    pub fn assign_ips(
        &mut self,
        eni_id: &str,
        request: &AddressRequest<Ipv4Addr>,
        now: u64,
    ) -> Result<Vec<Ipv4Addr>, Ec2Error> {
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| not_found("NetworkInterface", eni_id))?;
        let count = match request {
            AddressRequest::Count(0) => {
                return Err(invalid("SecondaryPrivateIpAddressCount must be at least 1"));
            }
            AddressRequest::Count(n) => *n,
            AddressRequest::Explicit(ips) if ips.is_empty() => {
                return Err(Ec2Error::new("MissingParameter", "No addresses given"));
            }
            AddressRequest::Explicit(ips) => ips.len() as u32,
        };
        self.check_room(eni, count)?;
        let subnet_id = eni.subnet_id.clone();
        let subnet = self.subnet_mut(&subnet_id)?;
        let mut snapshot = subnet.addresses.clone();
        let assigned: Vec<Ipv4Addr> = match request {
            AddressRequest::Count(n) => (0..*n)
                .map(|_| snapshot.allocate_ip())
                .collect::<Result<_, _>>()?,
            AddressRequest::Explicit(ips) => {
                for ip in ips {
                    snapshot.claim_ip(*ip)?;
                }
                ips.clone()
            }
        };
        subnet.addresses = snapshot;
        let eni = self.eni_mut(eni_id)?;
        for ip in &assigned {
            eni.secondary.insert(*ip, now);
        }
        Ok(assigned)
    }

    /// AssignPrivateIpAddresses (prefixes).
    pub fn assign_prefixes(
        &mut self,
        eni_id: &str,
        request: &AddressRequest<Ipv4Net>,
        now: u64,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| not_found("NetworkInterface", eni_id))?;
        if let Some(limits) = self.attached_limits(eni)
            && !limits.supports_prefix_delegation()
        {
            return Err(invalid(format!(
                "Prefix delegation is not supported for instance type {}",
                limits.instance_type
            )));
        }
        let count = match request {
            AddressRequest::Count(0) => return Err(invalid("Ipv4PrefixCount must be at least 1")),
            AddressRequest::Count(n) => *n,
            AddressRequest::Explicit(p) if p.is_empty() => {
                return Err(Ec2Error::new("MissingParameter", "No prefixes given"));
            }
            AddressRequest::Explicit(p) => p.len() as u32,
        };
        self.check_room(eni, count)?;
        let subnet_id = eni.subnet_id.clone();
        let subnet = self.subnet_mut(&subnet_id)?;
        let mut snapshot = subnet.addresses.clone();
        let assigned: Vec<Ipv4Net> = match request {
            AddressRequest::Count(n) => (0..*n)
                .map(|_| snapshot.allocate_prefix())
                .collect::<Result<_, _>>()?,
            AddressRequest::Explicit(prefixes) => {
                for prefix in prefixes {
                    snapshot.claim_prefix(*prefix)?;
                }
                prefixes.clone()
            }
        };
        subnet.addresses = snapshot;
        let eni = self.eni_mut(eni_id)?;
        for prefix in &assigned {
            eni.prefixes.insert(*prefix, now);
        }
        Ok(assigned)
    }

    /// UnassignPrivateIpAddresses (addresses).
    pub fn unassign_ips(&mut self, eni_id: &str, ips: &[Ipv4Addr], now: u64) -> Result<(), Ec2Error> {
        let eni = self.eni_mut(eni_id)?;
        if let Some(missing) = ips.iter().find(|ip| !eni.secondary.contains_key(ip)) {
            return Err(invalid(format!(
                "Some of the specified addresses are not assigned to interface {eni_id}: {missing}"
            )));
        }
        for ip in ips {
            eni.secondary.remove(ip);
            eni.removed.push((Ipv4Net::from(*ip), now));
        }
        let subnet_id = eni.subnet_id.clone();
        let subnet = self.subnet_mut(&subnet_id)?;
        for ip in ips {
            subnet.addresses.release_ip(*ip);
        }
        Ok(())
    }

    /// UnassignPrivateIpAddresses (prefixes).
    pub fn unassign_prefixes(
        &mut self,
        eni_id: &str,
        prefixes: &[Ipv4Net],
        now: u64,
    ) -> Result<(), Ec2Error> {
        let eni = self.eni_mut(eni_id)?;
        if let Some(missing) = prefixes.iter().find(|p| !eni.prefixes.contains_key(p)) {
            return Err(invalid(format!(
                "Some of the specified prefixes are not assigned to interface {eni_id}: {missing}"
            )));
        }
        for prefix in prefixes {
            eni.prefixes.remove(prefix);
            eni.removed.push((*prefix, now));
        }
        let subnet_id = eni.subnet_id.clone();
        let subnet = self.subnet_mut(&subnet_id)?;
        for prefix in prefixes {
            subnet.addresses.release_prefix(*prefix);
        }
        Ok(())
    }

    /// AssociateVpcCidrBlock for IPv6: `None` asks for an Amazon-provided /56 (chosen from the seed), `Some`
    /// gives one (a /56 no other VPC of the account holds). A VPC holds one IPv6 block at most.
    pub fn associate_vpc_ipv6(&mut self, vpc_id: &str, cidr: Option<Ipv6Net>) -> Result<Ipv6Net, Ec2Error> {
        let vpc = self.vpcs.get(vpc_id).ok_or_else(|| not_found("Vpc", vpc_id))?;
        if let Some(existing) = vpc.ipv6_cidr {
            return Err(Ec2Error::new(
                "CidrLimitExceeded",
                format!(
                    "This network '{vpc_id}' has met its maximum number of allowed IPv6 CIDRs: 1 ({existing})"
                ),
            ));
        }
        let taken: Vec<Ipv6Net> = self.vpcs.values().filter_map(|v| v.ipv6_cidr).collect();
        let block = match cidr {
            Some(cidr) => {
                ipv6::check_vpc_block(cidr)?;
                if let Some(other) = self.vpcs.values().find(|v| {
                    v.ipv6_cidr
                        .is_some_and(|c| c.contains(&cidr) || cidr.contains(&c))
                }) {
                    return Err(invalid(format!(
                        "The IPv6 CIDR '{cidr}' conflicts with the IPv6 block of {}",
                        other.id
                    )));
                }
                cidr
            }
            None => ipv6::amazon_provided_block(&mut self.rng, &taken),
        };
        if let Some(vpc) = self.vpcs.get_mut(vpc_id) {
            vpc.ipv6_cidr = Some(block);
        }
        Ok(block)
    }

    /// Whether `cidr` can be the IPv6 block of a new subnet, or of subnet `subnet_id`, of VPC `vpc_id`: a /64
    /// of the VPC's /56 no other subnet holds.
    fn check_subnet_ipv6(
        &self,
        vpc_id: &str,
        subnet_id: Option<&str>,
        cidr: Ipv6Net,
    ) -> Result<(), Ec2Error> {
        if cidr.prefix_len() != ipv6::SUBNET_PREFIX_LEN || cidr.trunc() != cidr {
            return Err(invalid(format!(
                "invalid value for parameter ipv6-cidr-block: {cidr} (a subnet's IPv6 block is a /64 without host bits)"
            )));
        }
        let vpc = self.vpcs.get(vpc_id).ok_or_else(|| not_found("Vpc", vpc_id))?;
        if !vpc.ipv6_cidr.is_some_and(|block| block.contains(&cidr)) {
            return Err(Ec2Error::new(
                "InvalidSubnet.Range",
                format!(
                    "The IPv6 CIDR '{cidr}' is invalid: it is not inside the IPv6 block of {vpc_id} ({}).",
                    vpc.ipv6_cidr.map_or_else(|| "none".to_owned(), |c| c.to_string())
                ),
            ));
        }
        if let Some(subnet) = subnet_id.and_then(|id| self.subnets.get(id))
            && let Some(existing) = &subnet.ipv6
        {
            return Err(invalid(format!(
                "The subnet '{}' already has the IPv6 CIDR block {}",
                subnet.id,
                existing.cidr()
            )));
        }
        if let Some(other) = self
            .subnets
            .values()
            .find(|s| s.vpc_id == vpc_id && s.ipv6.as_ref().is_some_and(|b| b.cidr() == cidr))
        {
            return Err(Ec2Error::new(
                "InvalidSubnet.Conflict",
                format!("The IPv6 CIDR '{cidr}' conflicts with subnet {}", other.id),
            ));
        }
        Ok(())
    }

    /// CreateSubnet with `Ipv6CidrBlock`: all or nothing.
    pub fn create_subnet_with_ipv6(
        &mut self,
        vpc_id: &str,
        cidr: Ipv4Net,
        ipv6_cidr: Ipv6Net,
        az: &str,
        tags: Tags,
    ) -> Result<String, Ec2Error> {
        self.check_subnet_ipv6(vpc_id, None, ipv6_cidr)?;
        let id = self.create_subnet(vpc_id, cidr, az, tags)?;
        self.subnet_mut(&id)?.ipv6 = Some(SubnetIpv6::new(ipv6_cidr));
        Ok(id)
    }

    /// AssociateSubnetCidrBlock with `Ipv6CidrBlock`.
    pub fn associate_subnet_ipv6(&mut self, subnet_id: &str, cidr: Ipv6Net) -> Result<(), Ec2Error> {
        let vpc_id = self
            .subnets
            .get(subnet_id)
            .ok_or_else(|| not_found("Subnet", subnet_id))?
            .vpc_id
            .clone();
        self.check_subnet_ipv6(&vpc_id, Some(subnet_id), cidr)?;
        self.subnet_mut(subnet_id)?.ipv6 = Some(SubnetIpv6::new(cidr));
        Ok(())
    }

    /// The rules for IPv6 on an ENI with `adding` more IPv6 slots (0 when attaching): an instance type
    /// without IPv6 (`ipv6_per_eni` 0) takes none, a type without prefix delegation (not Nitro, not bare
    /// metal) takes no IPv6 prefix, and no ENI holds more addresses and prefixes together than the type's
    /// IPv6 limit per interface (unattached: the most any type allows). A type the table has no IPv6 limit
    /// for gets its IPv4 one, as EC2 documents ("as many IPv6 addresses to a network interface as you can
    /// assign private IPv4 addresses").
    fn check_ipv6_fits(&self, eni: &EniRecord, limits: &InstanceLimits, adding: u32) -> Result<(), Ec2Error> {
        let limit = limits.ipv6_per_eni.unwrap_or(limits.ipv4_per_eni);
        let used = eni.ipv6_slots_used();
        if used + adding == 0 {
            return Ok(());
        }
        if limit == 0 {
            return Err(invalid(format!(
                "IPv6 is not supported for instance type {}",
                limits.instance_type
            )));
        }
        if !limits.supports_prefix_delegation() && !eni.ipv6_prefixes.is_empty() {
            return Err(invalid(format!(
                "Prefix delegation is not supported for instance type {}",
                limits.instance_type
            )));
        }
        if used + adding > limit {
            return Err(Ec2Error::new(
                "PrivateIpAddressLimitExceeded",
                format!(
                    "Number of IPv6 addresses and prefixes will exceed limit: {used} in use on {}, {adding} requested, limit {limit} for {}",
                    eni.id, limits.instance_type
                ),
            ));
        }
        Ok(())
    }

    /// The ENI, its subnet's IPv6 block (a copy to change), and the checks every IPv6 assignment makes.
    fn ipv6_assignment(&self, eni_id: &str, count: u32, prefixes: bool) -> Result<SubnetIpv6, Ec2Error> {
        let eni = self
            .enis
            .get(eni_id)
            .ok_or_else(|| not_found("NetworkInterface", eni_id))?;
        match self.attached_limits(eni) {
            Some(limits) => {
                if prefixes && !limits.supports_prefix_delegation() {
                    return Err(invalid(format!(
                        "Prefix delegation is not supported for instance type {}",
                        limits.instance_type
                    )));
                }
                self.check_ipv6_fits(eni, limits, count)?;
            }
            None => {
                if eni.ipv6_slots_used() + count > UNATTACHED_SLOT_LIMIT {
                    return Err(Ec2Error::new(
                        "PrivateIpAddressLimitExceeded",
                        format!(
                            "Number of IPv6 addresses and prefixes will exceed limit: {} in use on {eni_id}, {count} requested, limit {UNATTACHED_SLOT_LIMIT}",
                            eni.ipv6_slots_used()
                        ),
                    ));
                }
            }
        }
        let subnet = self
            .subnets
            .get(&eni.subnet_id)
            .ok_or_else(|| not_found("Subnet", &eni.subnet_id))?;
        subnet.ipv6.clone().ok_or_else(|| {
            invalid(format!(
                "The subnet {} of {eni_id} has no IPv6 CIDR block: associate one first",
                subnet.id
            ))
        })
    }

    fn store_ipv6(&mut self, eni_id: &str, block: SubnetIpv6) -> Result<&mut EniRecord, Ec2Error> {
        let subnet_id = self.eni_mut(eni_id)?.subnet_id.clone();
        self.subnet_mut(&subnet_id)?.ipv6 = Some(block);
        self.eni_mut(eni_id)
    }

    /// AssignIpv6Addresses (addresses).
    pub fn assign_ipv6_addresses(
        &mut self,
        eni_id: &str,
        request: &AddressRequest<Ipv6Addr>,
        now: u64,
    ) -> Result<Vec<Ipv6Addr>, Ec2Error> {
        let count = match request {
            AddressRequest::Count(0) => return Err(invalid("Ipv6AddressCount must be at least 1")),
            AddressRequest::Count(n) => *n,
            AddressRequest::Explicit(ips) if ips.is_empty() => {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain Ipv6AddressCount, Ipv6Addresses, Ipv6PrefixCount or Ipv6Prefixes",
                ));
            }
            AddressRequest::Explicit(ips) => {
                let mut sorted = ips.clone();
                sorted.sort_unstable();
                if let Some(twice) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
                    return Err(invalid(format!(
                        "The address {} is specified more than once.",
                        twice[0]
                    )));
                }
                ips.len() as u32
            }
        };
        let mut block = self.ipv6_assignment(eni_id, count, false)?;
        let assigned = match request {
            AddressRequest::Count(n) => (0..*n)
                .map(|_| block.allocate_address())
                .collect::<Result<Vec<_>, _>>()?,
            AddressRequest::Explicit(ips) => {
                for ip in ips {
                    block.claim_address(*ip)?;
                }
                ips.clone()
            }
        };
        let eni = self.store_ipv6(eni_id, block)?;
        for ip in &assigned {
            eni.ipv6_addresses.insert(*ip, now);
        }
        Ok(assigned)
    }

    /// AssignIpv6Addresses (prefixes).
    pub fn assign_ipv6_prefixes(
        &mut self,
        eni_id: &str,
        request: &AddressRequest<Ipv6Net>,
        now: u64,
    ) -> Result<Vec<Ipv6Net>, Ec2Error> {
        let count = match request {
            AddressRequest::Count(0) => return Err(invalid("Ipv6PrefixCount must be at least 1")),
            AddressRequest::Count(n) => *n,
            AddressRequest::Explicit(prefixes) if prefixes.is_empty() => {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain Ipv6AddressCount, Ipv6Addresses, Ipv6PrefixCount or Ipv6Prefixes",
                ));
            }
            AddressRequest::Explicit(prefixes) => {
                let mut sorted = prefixes.clone();
                sorted.sort_unstable();
                if let Some(twice) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
                    return Err(invalid(format!(
                        "The prefix {} is specified more than once.",
                        twice[0]
                    )));
                }
                prefixes.len() as u32
            }
        };
        let mut block = self.ipv6_assignment(eni_id, count, true)?;
        let assigned = match request {
            AddressRequest::Count(n) => (0..*n)
                .map(|_| block.allocate_prefix())
                .collect::<Result<Vec<_>, _>>()?,
            AddressRequest::Explicit(prefixes) => {
                for prefix in prefixes {
                    block.claim_prefix(*prefix)?;
                }
                prefixes.clone()
            }
        };
        let eni = self.store_ipv6(eni_id, block)?;
        for prefix in &assigned {
            eni.ipv6_prefixes.insert(*prefix, now);
        }
        Ok(assigned)
    }

    /// UnassignIpv6Addresses (addresses).
    pub fn unassign_ipv6_addresses(
        &mut self,
        eni_id: &str,
        ips: &[Ipv6Addr],
        now: u64,
    ) -> Result<(), Ec2Error> {
        let eni = self.eni_mut(eni_id)?;
        if ips.is_empty() {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain Ipv6Addresses or Ipv6Prefixes",
            ));
        }
        if let Some(missing) = ips.iter().find(|ip| !eni.ipv6_addresses.contains_key(ip)) {
            return Err(invalid(format!(
                "Some of the specified IPv6 addresses are not assigned to interface {eni_id}: {missing}"
            )));
        }
        for ip in ips {
            eni.ipv6_addresses.remove(ip);
            eni.removed_ipv6.push((Ipv6Net::from(*ip), now));
        }
        let subnet_id = eni.subnet_id.clone();
        if let Some(block) = self.subnet_mut(&subnet_id)?.ipv6.as_mut() {
            for ip in ips {
                block.release_address(*ip);
            }
        }
        Ok(())
    }

    /// UnassignIpv6Addresses (prefixes).
    pub fn unassign_ipv6_prefixes(
        &mut self,
        eni_id: &str,
        prefixes: &[Ipv6Net],
        now: u64,
    ) -> Result<(), Ec2Error> {
        let eni = self.eni_mut(eni_id)?;
        if prefixes.is_empty() {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain Ipv6Addresses or Ipv6Prefixes",
            ));
        }
        if let Some(missing) = prefixes.iter().find(|p| !eni.ipv6_prefixes.contains_key(p)) {
            return Err(invalid(format!(
                "Some of the specified IPv6 prefixes are not assigned to interface {eni_id}: {missing}"
            )));
        }
        for prefix in prefixes {
            eni.ipv6_prefixes.remove(prefix);
            eni.removed_ipv6.push((*prefix, now));
        }
        let subnet_id = eni.subnet_id.clone();
        if let Some(block) = self.subnet_mut(&subnet_id)?.ipv6.as_mut() {
            for prefix in prefixes {
                block.release_prefix(*prefix);
            }
        }
        Ok(())
    }

    /// CreateTags.
    pub fn create_tags(&mut self, resource_ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        for id in resource_ids {
            let target = if let Some(e) = self.enis.get_mut(id) {
                &mut e.tags
            } else if let Some(i) = self.instances.get_mut(id) {
                &mut i.tags
            } else if let Some(s) = self.subnets.get_mut(id) {
                &mut s.tags
            } else if let Some(v) = self.vpcs.get_mut(id) {
                &mut v.tags
            } else {
                let kind = match id.split('-').next() {
                    Some("eni") => "NetworkInterface",
                    Some("i") => "Instance",
                    Some("subnet") => "Subnet",
                    Some("vpc") => "Vpc",
                    _ => "",
                };
                return Err(not_found(kind, id));
            };
            target.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }

    /// The EC2 view of an ENI at `now`.
    pub fn eni_view(&self, eni: &EniRecord, now: u64) -> NetworkInterface {
        let subnet = &self.subnets[&eni.subnet_id];
        let attachment = eni.attachment.as_ref().map(|a| Attachment {
            attachment_id: a.id.clone(),
            instance_id: a.instance_id.clone(),
            device_index: a.device_index,
            network_card_index: a.network_card,
            delete_on_termination: a.delete_on_termination,
            status: if now >= a.attached_ms {
                AttachmentStatus::Attached
            } else {
                AttachmentStatus::Attaching
            },
        });
        let status = match &attachment {
            None => InterfaceStatus::Available,
            Some(a) if a.status == AttachmentStatus::Attaching => InterfaceStatus::Attaching,
            Some(_) => InterfaceStatus::InUse,
        };
        NetworkInterface {
            network_interface_id: eni.id.clone(),
            mac_address: eni.mac.clone(),
            subnet_id: eni.subnet_id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            availability_zone: subnet.availability_zone.clone(),
            description: eni.description.clone(),
            private_ip: eni.primary_ip,
            secondary_ips: eni.secondary.keys().copied().collect(),
            ipv4_prefixes: eni.prefixes.keys().copied().collect(),
            ipv6_addresses: eni.ipv6_addresses.keys().copied().collect(),
            ipv6_prefixes: eni.ipv6_prefixes.keys().copied().collect(),
            security_groups: eni.security_groups.clone(),
            tags: eni.tags.clone(),
            status,
            interface_type: eni.interface_type.clone(),
            attachment,
        }
    }

    /// The EC2 view of an instance.
    pub fn instance_view(&self, instance_id: &str, now: u64) -> Result<Instance, Ec2Error> {
        let instance = self
            .instances
            .get(instance_id)
            .ok_or_else(|| not_found("Instance", instance_id))?;
        let subnet = &self.subnets[&instance.subnet_id];
        let primary_ip = self
            .enis
            .get(&instance.primary_eni)
            .map_or(Ipv4Addr::UNSPECIFIED, |e| e.primary_ip);
        Ok(Instance {
            instance_id: instance.id.clone(),
            instance_type: instance.instance_type.clone(),
            availability_zone: subnet.availability_zone.clone(),
            vpc_id: subnet.vpc_id.clone(),
            subnet_id: instance.subnet_id.clone(),
            private_ip: primary_ip,
            state: instance.state.clone(),
            network_interfaces: self
                .attached_enis(instance_id)
                .map(|e| self.eni_view(e, now))
                .collect(),
            tags: instance.tags.clone(),
        })
    }

    /// The EC2 view of a subnet.
    pub fn subnet_view(&self, subnet: &SubnetRecord) -> Subnet {
        Subnet {
            subnet_id: subnet.id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            availability_zone: subnet.availability_zone.clone(),
            cidr_block: subnet.addresses.cidr(),
            ipv6_cidr_block: subnet.ipv6.as_ref().map(SubnetIpv6::cidr),
            available_ip_address_count: subnet.addresses.available(),
            tags: subnet.tags.clone(),
        }
    }
}

/// Whether an ENI matches every filter (values of one filter are alternatives).
pub fn eni_matches(eni: &NetworkInterface, filters: &[Filter]) -> Result<bool, Ec2Error> {
    for filter in filters {
        let actual: Vec<String> = match filter.name.as_str() {
            "network-interface-id" => vec![eni.network_interface_id.clone()],
            "attachment.instance-id" => eni.attachment.iter().map(|a| a.instance_id.clone()).collect(),
            "attachment.status" => eni
                .attachment
                .iter()
                .map(|a| a.status.as_str().to_owned())
                .collect(),
            "status" => vec![eni.status.as_str().to_owned()],
            "vpc-id" => vec![eni.vpc_id.clone()],
            "subnet-id" => vec![eni.subnet_id.clone()],
            "availability-zone" => vec![eni.availability_zone.clone()],
            "description" => vec![eni.description.clone()],
            "interface-type" => vec![eni.interface_type.clone()],
            "ipv6-addresses.ipv6-address" => eni.ipv6_addresses.iter().map(ToString::to_string).collect(),
            "tag-key" => eni.tags.keys().cloned().collect(),
            name if name.starts_with("tag:") => eni.tags.get(&name[4..]).cloned().into_iter().collect(),
            other => return Err(invalid(format!("The filter '{other}' is invalid"))),
        };
        let matched = filter
            .values
            .iter()
            .any(|wanted| actual.iter().any(|a| glob(wanted, a)));
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a subnet matches every filter.
pub fn subnet_matches(subnet: &Subnet, filters: &[Filter]) -> Result<bool, Ec2Error> {
    for filter in filters {
        let actual: Vec<String> = match filter.name.as_str() {
            "subnet-id" => vec![subnet.subnet_id.clone()],
            "vpc-id" => vec![subnet.vpc_id.clone()],
            "availability-zone" => vec![subnet.availability_zone.clone()],
            "cidr-block" => vec![subnet.cidr_block.to_string()],
            "ipv6-cidr-block-association.ipv6-cidr-block" => {
                subnet.ipv6_cidr_block.iter().map(ToString::to_string).collect()
            }
            "tag-key" => subnet.tags.keys().cloned().collect(),
            name if name.starts_with("tag:") => subnet.tags.get(&name[4..]).cloned().into_iter().collect(),
            other => return Err(invalid(format!("The filter '{other}' is invalid"))),
        };
        if !filter
            .values
            .iter()
            .any(|wanted| actual.iter().any(|a| glob(wanted, a)))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// EC2 filter values accept `*` as a wildcard (e.g. `aws-K8S-*`).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head) && {
                let rest = &text[head.len()..];
                (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
            }
        }
    }
}
