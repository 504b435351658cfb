//! The topology file: a VPC, its subnets and the instances to start, plus simulator settings.
//!
//! ```toml
//! [vpc]
//! cidr = "10.0.0.0/16"
//! amazon_ipv6 = true              # an Amazon-provided IPv6 /56, chosen from the seed
//! # ipv6_cidr = "2600:1f14:1:100::/56"   # or this /56
//!
//! [[subnets]]
//! name = "a"
//! cidr = "10.0.0.0/24"
//! az = "us-west-2a"
//! tags = { "kubernetes.io/role/cni" = "1" }
//! prefix_reservations = ["10.0.0.128/26"]
//! ipv6_index = 0                  # the VPC /56's first /64 (or ipv6_cidr = "…/64")
//!
//! [[instances]]
//! name = "node-1"
//! type = "m5.xlarge"
//! subnet = "a"
//! primary_ip = "10.0.0.10"
//! default = true
//!
//! [sim]
//! attach_delay_ms = 500
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use vpcni_ec2::sim::{SimConfig, Simulator};
use vpcni_ec2::{Ec2Error, Tags};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The VPC.
    pub vpc: VpcSpec,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
    /// Instances.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Simulator settings.
    #[serde(default)]
    pub sim: SimConfig,
}

/// The VPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// Primary CIDR.
    pub cidr: Ipv4Net,
    /// Secondary CIDRs.
    #[serde(default)]
    pub secondary_cidrs: Vec<Ipv4Net>,
    /// An Amazon-provided IPv6 /56 (chosen from the simulator's seed).
    #[serde(default)]
    pub amazon_ipv6: bool,
    /// This IPv6 /56 (instead of an Amazon-provided one).
    #[serde(default)]
    pub ipv6_cidr: Option<Ipv6Net>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

/// A subnet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Name instances refer to.
    pub name: String,
    /// CIDR.
    pub cidr: Ipv4Net,
    /// Availability zone (default: the region's `a`).
    #[serde(default)]
    pub az: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Ranges kept for /28 prefixes.
    #[serde(default)]
    pub prefix_reservations: Vec<Ipv4Net>,
    /// The subnet's IPv6 /64, inside the VPC's /56.
    #[serde(default)]
    pub ipv6_cidr: Option<Ipv6Net>,
    /// The subnet's IPv6 /64 as its number inside the VPC's /56 (0 to 255): what to write when the /56 is
    /// Amazon-provided.
    #[serde(default)]
    pub ipv6_index: Option<u8>,
}

/// An instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Name (becomes the `Name` tag).
    pub name: String,
    /// Instance type.
    #[serde(rename = "type")]
    pub instance_type: String,
    /// Subnet name.
    pub subnet: String,
    /// Primary address (default: the lowest free one).
    #[serde(default)]
    pub primary_ip: Option<Ipv4Addr>,
    /// Instance metadata answers loopback callers as this instance.
    #[serde(default)]
    pub default: bool,
}

/// Why a topology could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Not valid TOML of this shape.
    #[error("topology: {0}")]
    Parse(#[from] toml::de::Error),
    /// An instance names a subnet that is not declared.
    #[error("topology: instance {instance} refers to unknown subnet {subnet:?} (declared: {known})")]
    UnknownSubnet {
        /// Instance name.
        instance: String,
        /// Subnet asked for.
        subnet: String,
        /// Subnets declared.
        known: String,
    },
    /// The simulator refused part of it (overlapping subnets, unknown instance type, …).
    #[error("topology: {what}: {source}")]
    Rejected {
        /// What was being created.
        what: String,
        /// EC2's error.
        source: Ec2Error,
    },
}

/// What a topology created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    /// VPC id.
    pub vpc_id: String,
    /// Subnet ids by name.
    pub subnets: BTreeMap<String, String>,
    /// `(name, instance id, primary address)` in file order.
    pub instances: Vec<(String, String, Ipv4Addr)>,
    /// The instance loopback callers see.
    pub default_instance: Option<String>,
}

/// The IPv6 /64 a subnet declares, given its VPC's /56.
fn subnet_ipv6(subnet: &SubnetSpec, vpc_block: Option<Ipv6Net>) -> Result<Option<Ipv6Net>, Ec2Error> {
    match (subnet.ipv6_cidr, subnet.ipv6_index) {
        (Some(_), Some(_)) => Err(Ec2Error::new(
            "InvalidParameterCombination",
            "ipv6_cidr and ipv6_index cannot be combined",
        )),
        (Some(cidr), None) => Ok(Some(cidr)),
        (None, None) => Ok(None),
        (None, Some(index)) => {
            let block = vpc_block.ok_or_else(|| {
                Ec2Error::new(
                    "InvalidParameterValue",
                    format!(
                        "ipv6_index {index}: the VPC has no IPv6 /56 (set amazon_ipv6 or ipv6_cidr under [vpc])"
                    ),
                )
            })?;
            let network = u128::from(block.network()) | (u128::from(index) << 64);
            Ipv6Net::new(Ipv6Addr::from(network), 64)
                .map(Some)
                .map_err(|e| Ec2Error::new("InvalidParameterValue", format!("ipv6_index {index}: {e}")))
        }
    }
}

impl Topology {
    /// Parses TOML.
    pub fn parse(text: &str) -> Result<Self, TopologyError> {
        Ok(toml::from_str(text)?)
    }

    /// Creates everything in `sim`.
    pub fn apply(&self, sim: &Simulator) -> Result<Created, TopologyError> {
        let rejected = |what: String| move |source| TopologyError::Rejected { what, source };
        let region = sim.config().region;
        let vpc_id = sim
            .create_vpc(self.vpc.cidr, self.vpc.tags.clone())
            .map_err(rejected(format!("VPC {}", self.vpc.cidr)))?;
        for cidr in &self.vpc.secondary_cidrs {
            sim.add_vpc_cidr(&vpc_id, *cidr)
                .map_err(rejected(format!("VPC CIDR {cidr}")))?;
        }
        let vpc_ipv6 = match (self.vpc.amazon_ipv6, self.vpc.ipv6_cidr) {
            (true, Some(_)) => {
                return Err(TopologyError::Rejected {
                    what: "VPC IPv6 block".into(),
                    source: Ec2Error::new(
                        "InvalidParameterCombination",
                        "amazon_ipv6 and ipv6_cidr cannot be combined: one IPv6 /56 per VPC",
                    ),
                });
            }
            (false, None) => None,
            (_, given) => Some(
                sim.associate_vpc_ipv6_cidr(&vpc_id, given)
                    .map_err(rejected("VPC IPv6 block".to_owned()))?,
            ),
        };
        let mut created = Created {
            vpc_id: vpc_id.clone(),
            ..Created::default()
        };
        for subnet in &self.subnets {
            let az = subnet.az.clone().unwrap_or_else(|| format!("{region}a"));
            let what = format!("subnet {} ({})", subnet.name, subnet.cidr);
            let id = match subnet_ipv6(subnet, vpc_ipv6).map_err(rejected(what.clone()))? {
                Some(ipv6) => {
                    sim.create_subnet_with_ipv6(&vpc_id, subnet.cidr, ipv6, &az, subnet.tags.clone())
                }
                None => sim.create_subnet(&vpc_id, subnet.cidr, &az, subnet.tags.clone()),
            }
            .map_err(rejected(what))?;
            for reservation in &subnet.prefix_reservations {
                sim.create_subnet_cidr_reservation(&id, *reservation)
                    .map_err(rejected(format!(
                        "prefix reservation {reservation} in subnet {}",
                        subnet.name
                    )))?;
            }
            created.subnets.insert(subnet.name.clone(), id);
        }
        for instance in &self.instances {
            let subnet_id =
                created
                    .subnets
                    .get(&instance.subnet)
                    .ok_or_else(|| TopologyError::UnknownSubnet {
                        instance: instance.name.clone(),
                        subnet: instance.subnet.clone(),
                        known: created.subnets.keys().cloned().collect::<Vec<_>>().join(", "),
                    })?;
            let mut tags = Tags::new();
            tags.insert("Name".into(), instance.name.clone());
            let id = sim
                .run_instance(&instance.instance_type, subnet_id, instance.primary_ip, tags)
                .map_err(rejected(format!("instance {}", instance.name)))?;
            let ip = sim
                .instances()
                .into_iter()
                .find(|i| i.instance_id == id)
                .map_or(Ipv4Addr::UNSPECIFIED, |i| i.private_ip);
            if instance.default || created.default_instance.is_none() {
                created.default_instance = Some(id.clone());
            }
            created.instances.push((instance.name.clone(), id, ip));
        }
        if let Some(first) = self.instances.iter().position(|i| i.default) {
            created.default_instance = Some(created.instances[first].1.clone());
        }
        Ok(created)
    }
}
