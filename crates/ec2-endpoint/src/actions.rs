//! EC2 actions served over the Query API: each parses its parameters, calls the simulator and renders EC2's
//! XML answer. Element names follow EC2's 2016-11-15 API (botocore's service model), which every SDK parses.

use ipnet::Ipv6Net;
use vpcni_ec2::sim::{CidrReservation, ReservationType, Simulator};
use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error, Instance,
    NetworkInterface, Subnet, Tags,
};

use crate::query::Params;
use crate::xml::Xml;

/// Every action this endpoint serves.
pub const ACTIONS: [&str; 25] = [
    "AssignPrivateIpAddresses",
    "AttachNetworkInterface",
    "CreateNetworkInterface",
    "CreateSubnet",
    "CreateSubnetCidrReservation",
    "CreateTags",
    "CreateVpc",
    "DeleteNetworkInterface",
    "DescribeInstanceTypes",
    "DescribeInstances",
    "DescribeNetworkInterfaces",
    "DescribeSubnets",
    "DescribeVpcs",
    "DetachNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "RunInstances",
    "TerminateInstances",
    "UnassignPrivateIpAddresses",
    "AssociateVpcCidrBlock",
    "DescribeAvailabilityZones",
    "GetSubnetCidrReservations",
    "DeleteSubnetCidrReservation",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "AssociateSubnetCidrBlock",
];

const OWNER: &str = "000000000000";

fn reservation_xml(xml: &mut Xml, reservation: &CidrReservation) {
    xml.text("subnetCidrReservationId", &reservation.id)
        .text("subnetId", &reservation.subnet_id)
        .text("cidr", reservation.cidr)
        .text("reservationType", reservation.kind.as_str())
        .text("ownerId", OWNER);
}

fn tag_set(xml: &mut Xml, tags: &Tags) {
    xml.list("tagSet", tags.iter(), |xml, (k, v)| {
        xml.text("key", k).text("value", v);
    });
}

fn eni_xml(xml: &mut Xml, eni: &NetworkInterface) {
    xml.text("networkInterfaceId", &eni.network_interface_id)
        .text("subnetId", &eni.subnet_id)
        .text("vpcId", &eni.vpc_id)
        .text("availabilityZone", &eni.availability_zone)
        .text("description", &eni.description)
        .text("ownerId", OWNER)
        .text("requesterManaged", "false")
        .text("status", eni.status.as_str())
        .text("macAddress", &eni.mac_address)
        .text("privateIpAddress", eni.private_ip)
        .text("sourceDestCheck", "true")
        .text("interfaceType", &eni.interface_type)
        .list("groupSet", &eni.security_groups, |xml, group| {
            xml.text("groupId", group).text("groupName", group);
        });
    if let Some(a) = &eni.attachment {
        xml.node("attachment", |xml| {
            xml.text("attachmentId", &a.attachment_id)
                .text("instanceId", &a.instance_id)
                .text("instanceOwnerId", OWNER)
                .text("deviceIndex", a.device_index)
                .text("networkCardIndex", a.network_card_index)
                .text("status", a.status.as_str())
                .text("deleteOnTermination", a.delete_on_termination);
        });
    }
    tag_set(xml, &eni.tags);
    let addresses =
        std::iter::once((eni.private_ip, true)).chain(eni.secondary_ips.iter().map(|ip| (*ip, false)));
    xml.list("privateIpAddressesSet", addresses, |xml, (ip, primary)| {
        xml.text("privateIpAddress", ip).text("primary", primary);
    });
    xml.list("ipv4PrefixSet", &eni.ipv4_prefixes, |xml, prefix| {
        xml.text("ipv4Prefix", prefix);
    });
    xml.list("ipv6AddressesSet", &eni.ipv6_addresses, |xml, address| {
        xml.text("ipv6Address", address).text("isPrimaryIpv6", "false");
    });
    xml.list("ipv6PrefixSet", &eni.ipv6_prefixes, |xml, prefix| {
        xml.text("ipv6Prefix", prefix);
    });
}

/// An IPv6 CIDR association (`ipv6CidrBlockAssociation` of a VPC or a subnet); VPC blocks name their pool.
fn ipv6_association_xml(xml: &mut Xml, owner: &str, cidr: Ipv6Net, vpc: bool) {
    xml.text("associationId", format!("{owner}-ipv6-cidr-assoc"))
        .text("ipv6CidrBlock", cidr)
        .node("ipv6CidrBlockState", |xml| {
            xml.text("state", "associated");
        });
    if vpc {
        xml.text("ipv6Pool", "Amazon");
    }
}

fn instance_xml(xml: &mut Xml, instance: &Instance) {
    let (code, name) = match instance.state.as_str() {
        "running" => (16, "running"),
        _ => (48, "terminated"),
    };
    xml.text("instanceId", &instance.instance_id)
        .text("imageId", "ami-00000000000000000")
        .node("instanceState", |xml| {
            xml.text("code", code).text("name", name);
        })
        .text(
            "privateDnsName",
            format!(
                "ip-{}.ec2.internal",
                instance.private_ip.to_string().replace('.', "-")
            ),
        )
        .text("instanceType", &instance.instance_type)
        .node("placement", |xml| {
            xml.text("availabilityZone", &instance.availability_zone)
                .text("tenancy", "default");
        })
        .text("subnetId", &instance.subnet_id)
        .text("vpcId", &instance.vpc_id)
        .text("privateIpAddress", instance.private_ip)
        .text("hypervisor", "nitro")
        .text("architecture", "x86_64")
        .text("rootDeviceType", "ebs")
        // InstanceNetworkInterface is a subset of NetworkInterface: parsers skip the extra elements.
        .list("networkInterfaceSet", &instance.network_interfaces, |xml, eni| {
            eni_xml(xml, eni)
        });
    tag_set(xml, &instance.tags);
}

fn subnet_xml(xml: &mut Xml, subnet: &Subnet) {
    xml.text("subnetId", &subnet.subnet_id)
        .text("state", "available")
        .text("vpcId", &subnet.vpc_id)
        .text("cidrBlock", subnet.cidr_block)
        .list(
            "ipv6CidrBlockAssociationSet",
            subnet.ipv6_cidr_block,
            |xml, cidr| ipv6_association_xml(xml, &subnet.subnet_id, cidr, false),
        )
        .text("assignIpv6AddressOnCreation", "false")
        .text("availableIpAddressCount", subnet.available_ip_address_count)
        .text("availabilityZone", &subnet.availability_zone)
        .text("defaultForAz", "false")
        .text("mapPublicIpOnLaunch", "false")
        .text("ownerId", OWNER);
    tag_set(xml, &subnet.tags);
}

fn vpc_xml(xml: &mut Xml, id: &str, cidrs: &[ipnet::Ipv4Net], ipv6: Option<Ipv6Net>) {
    xml.text("vpcId", id)
        .text("state", "available")
        .text(
            "cidrBlock",
            cidrs.first().map(ToString::to_string).unwrap_or_default(),
        )
        .text("ownerId", OWNER)
        .text("isDefault", "false")
        .text("instanceTenancy", "default")
        .list(
            "cidrBlockAssociationSet",
            cidrs.iter().enumerate(),
            |xml, (i, cidr)| {
                xml.text("associationId", format!("{id}-cidr-assoc-{i}"))
                    .text("cidrBlock", cidr)
                    .node("cidrBlockState", |xml| {
                        xml.text("state", "associated");
                    });
            },
        )
        .list("ipv6CidrBlockAssociationSet", ipv6, |xml, cidr| {
            ipv6_association_xml(xml, id, cidr, true)
        });
}

/// `Ipv6Prefix.N` (the SDKs' spelling), or `Ipv6Prefixes.N`.
fn ipv6_prefixes(params: &Params) -> Result<Vec<Ipv6Net>, Ec2Error> {
    let prefixes = params.ipv6_cidr_list("Ipv6Prefix")?;
    if prefixes.is_empty() {
        return params.ipv6_cidr_list("Ipv6Prefixes");
    }
    Ok(prefixes)
}

fn returned_true(body: &mut Xml) {
    body.text("return", "true");
}

/// Runs `action` against the simulator; the XML body (without the envelope) or EC2's error.
pub async fn run(sim: &Simulator, action: &str, params: &Params) -> Result<Xml, Ec2Error> {
    let mut body = Xml::new();
    match action {
        "DescribeInstances" => {
            let ids = params.list("InstanceId");
            let instances: Vec<Instance> = if ids.is_empty() {
                sim.instances()
            } else {
                let mut found = Vec::new();
                for id in &ids {
                    found.push(sim.describe_instance(id).await?);
                }
                found
            };
            body.list("reservationSet", instances, |xml, instance| {
                xml.text("reservationId", format!("r-{}", &instance.instance_id[2..]))
                    .text("ownerId", OWNER)
                    .node("groupSet", |_| {})
                    .list("instancesSet", [instance], |xml, instance| {
                        instance_xml(xml, &instance)
                    });
            });
        }
        "DescribeInstanceTypes" => {
            let types = params.list("InstanceType");
            let infos = sim.describe_instance_types(&types).await?;
            body.list("instanceTypeSet", infos, |xml, info| {
                xml.text("instanceType", &info.instance_type)
                    .text("currentGeneration", "true")
                    .text("bareMetal", info.bare_metal)
                    .opt(
                        "hypervisor",
                        (!info.hypervisor.is_empty()).then_some(&info.hypervisor),
                    )
                    .node("vCpuInfo", |xml| {
                        xml.opt("defaultVCpus", info.default_vcpus);
                    })
                    .node("networkInfo", |xml| {
                        xml.text("maximumNetworkInterfaces", info.max_enis)
                            .text("ipv4AddressesPerInterface", info.ipv4_per_eni)
                            .text("ipv6AddressesPerInterface", info.ipv6_per_eni)
                            .text("ipv6Supported", info.ipv6_supported)
                            .text("defaultNetworkCardIndex", 0)
                            .text("maximumNetworkCards", info.network_cards.len())
                            .list("networkCards", &info.network_cards, |xml, (index, max)| {
                                xml.text("networkCardIndex", index)
                                    .text("maximumNetworkInterfaces", max);
                            });
                    });
            });
        }
        "DescribeSubnets" => {
            let subnets = sim
                .describe_subnets(&params.list("SubnetId"), &params.filters()?)
                .await?;
            body.list("subnetSet", subnets, |xml, subnet| subnet_xml(xml, &subnet));
        }
        "DescribeVpcs" => {
            let wanted = params.list("VpcId");
            let vpcs: Vec<_> = sim
                .vpcs()
                .into_iter()
                .filter(|(id, _)| wanted.is_empty() || wanted.contains(id))
                .collect();
            if let Some(missing) = wanted.iter().find(|id| !vpcs.iter().any(|(v, _)| v == *id)) {
                return Err(Ec2Error::new(
                    "InvalidVpcID.NotFound",
                    format!("The vpc ID '{missing}' does not exist"),
                ));
            }
            body.list("vpcSet", vpcs, |xml, (id, cidrs)| {
                let ipv6 = sim.vpc_ipv6_cidr(&id);
                vpc_xml(xml, &id, &cidrs, ipv6)
            });
        }
        "DescribeAvailabilityZones" => {
            let region = sim.config().region;
            body.list("availabilityZoneInfo", ["a", "b", "c"], |xml, suffix| {
                xml.text("zoneName", format!("{region}{suffix}"))
                    .text("zoneState", "available")
                    .text("regionName", &region);
            });
        }
        "DescribeNetworkInterfaces" => {
            let request = DescribeNetworkInterfacesRequest {
                network_interface_ids: params.list("NetworkInterfaceId"),
                filters: params.filters()?,
                max_results: params.number("MaxResults")?,
                next_token: params
                    .get("NextToken")
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            };
            let page = sim.describe_network_interfaces(&request).await?;
            body.list("networkInterfaceSet", &page.network_interfaces, |xml, eni| {
                eni_xml(xml, eni)
            });
            body.opt("nextToken", page.next_token.as_ref());
        }
        "CreateNetworkInterface" => {
            let request = CreateNetworkInterfaceRequest {
                subnet_id: params.required("SubnetId")?.to_owned(),
                description: params.get("Description").unwrap_or_default().to_owned(),
                security_groups: params.list("SecurityGroupId"),
                tags: params.tag_specifications("network-interface")?,
                private_ip: params.ip("PrivateIpAddress")?,
                private_ips: params.private_ip_specs()?,
                secondary_ip_count: params.number("SecondaryPrivateIpAddressCount")?.unwrap_or(0),
                ipv4_prefixes: params.cidr_member_list("Ipv4Prefix", "Ipv4Prefix")?,
                ipv4_prefix_count: params.number("Ipv4PrefixCount")?.unwrap_or(0),
            };
            let eni = sim.create_network_interface(&request).await?;
            body.node("networkInterface", |xml| eni_xml(xml, &eni));
        }
        "AttachNetworkInterface" => {
            let attachment = sim
                .attach_network_interface(
                    params.required("NetworkInterfaceId")?,
                    params.required("InstanceId")?,
                    params.number("DeviceIndex")?.ok_or_else(|| {
                        Ec2Error::new(
                            "MissingParameter",
                            "The request must contain the parameter DeviceIndex",
                        )
                    })?,
                    params.number("NetworkCardIndex")?.unwrap_or(0),
                )
                .await?;
            body.text("attachmentId", attachment).text(
                "networkCardIndex",
                params.number("NetworkCardIndex")?.unwrap_or(0),
            );
        }
        "ModifyNetworkInterfaceAttribute" => {
            let eni = params.required("NetworkInterfaceId")?;
            let attachment = params.required("Attachment.AttachmentId")?;
            let delete = params.boolean("Attachment.DeleteOnTermination")?.ok_or_else(|| {
                Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter Attachment.DeleteOnTermination",
                )
            })?;
            sim.set_delete_on_termination(eni, attachment, delete).await?;
            returned_true(&mut body);
        }
        "DetachNetworkInterface" => {
            sim.detach_network_interface(
                params.required("AttachmentId")?,
                params.boolean("Force")?.unwrap_or(false),
            )
            .await?;
            returned_true(&mut body);
        }
        "DeleteNetworkInterface" => {
            sim.delete_network_interface(params.required("NetworkInterfaceId")?)
                .await?;
            returned_true(&mut body);
        }
        "AssignPrivateIpAddresses" => {
            let eni = params.required("NetworkInterfaceId")?;
            let ip_count = params.number("SecondaryPrivateIpAddressCount")?;
            let ips = params.ip_list("PrivateIpAddress")?;
            let prefix_count = params.number("Ipv4PrefixCount")?;
            let prefixes = params.cidr_list("Ipv4Prefix")?;
            let asks = [
                ip_count.is_some(),
                !ips.is_empty(),
                prefix_count.is_some(),
                !prefixes.is_empty(),
            ];
            if asks.iter().filter(|a| **a).count() != 1 {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "Specify exactly one of SecondaryPrivateIpAddressCount, PrivateIpAddress, Ipv4PrefixCount, Ipv4Prefix",
                ));
            }
            body.text("networkInterfaceId", eni);
            if ip_count.is_some() || !ips.is_empty() {
                let request = ip_count.map_or(AddressRequest::Explicit(ips), AddressRequest::Count);
                let assigned = sim.assign_private_ip_addresses(eni, &request).await?;
                body.list("assignedPrivateIpAddressesSet", assigned, |xml, ip| {
                    xml.text("privateIpAddress", ip);
                });
            } else {
                let request = prefix_count.map_or(AddressRequest::Explicit(prefixes), AddressRequest::Count);
                let assigned = sim.assign_ipv4_prefixes(eni, &request).await?;
                body.list("assignedIpv4PrefixSet", assigned, |xml, prefix| {
                    xml.text("ipv4Prefix", prefix);
                });
            }
            returned_true(&mut body);
        }
        "AssignIpv6Addresses" => {
            let eni = params.required("NetworkInterfaceId")?;
            let address_count = params.number("Ipv6AddressCount")?;
            let addresses = params.ipv6_list("Ipv6Addresses")?;
            let prefix_count = params.number("Ipv6PrefixCount")?;
            let prefixes = ipv6_prefixes(params)?;
            let asks = [
                address_count.is_some(),
                !addresses.is_empty(),
                prefix_count.is_some(),
                !prefixes.is_empty(),
            ];
            if asks.iter().filter(|a| **a).count() != 1 {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "Specify exactly one of Ipv6AddressCount, Ipv6Addresses, Ipv6PrefixCount, Ipv6Prefix",
                ));
            }
            let mut assigned_addresses = Vec::new();
            let mut assigned_prefixes = Vec::new();
            if address_count.is_some() || !addresses.is_empty() {
                let request =
                    address_count.map_or(AddressRequest::Explicit(addresses), AddressRequest::Count);
                assigned_addresses = sim.assign_ipv6_addresses(eni, &request).await?;
            } else {
                let request = prefix_count.map_or(AddressRequest::Explicit(prefixes), AddressRequest::Count);
                assigned_prefixes = sim.assign_ipv6_prefixes(eni, &request).await?;
            }
            body.text("networkInterfaceId", eni)
                .list("assignedIpv6Addresses", assigned_addresses, |xml, address| {
                    xml.out_text(address);
                })
                .list("assignedIpv6PrefixSet", assigned_prefixes, |xml, prefix| {
                    xml.out_text(prefix);
                });
        }
        "UnassignIpv6Addresses" => {
            let eni = params.required("NetworkInterfaceId")?;
            let addresses = params.ipv6_list("Ipv6Addresses")?;
            let prefixes = ipv6_prefixes(params)?;
            if addresses.is_empty() && prefixes.is_empty() {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter Ipv6Addresses or Ipv6Prefix",
                ));
            }
            if !addresses.is_empty() {
                sim.unassign_ipv6_addresses(eni, &addresses).await?;
            }
            if !prefixes.is_empty() {
                sim.unassign_ipv6_prefixes(eni, &prefixes).await?;
            }
            body.text("networkInterfaceId", eni)
                .list("unassignedIpv6Addresses", addresses, |xml, address| {
                    xml.out_text(address);
                })
                .list("unassignedIpv6PrefixSet", prefixes, |xml, prefix| {
                    xml.out_text(prefix);
                });
        }
        "AssociateSubnetCidrBlock" => {
            let subnet = params.required("SubnetId")?;
            let cidr = params.ipv6_cidr("Ipv6CidrBlock")?.ok_or_else(|| {
                Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter Ipv6CidrBlock",
                )
            })?;
            sim.associate_subnet_ipv6_cidr(subnet, cidr)?;
            body.text("subnetId", subnet)
                .node("ipv6CidrBlockAssociation", |xml| {
                    ipv6_association_xml(xml, subnet, cidr, false)
                });
        }
        "UnassignPrivateIpAddresses" => {
            let eni = params.required("NetworkInterfaceId")?;
            let ips = params.ip_list("PrivateIpAddress")?;
            let prefixes = params.cidr_list("Ipv4Prefix")?;
            if ips.is_empty() && prefixes.is_empty() {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter PrivateIpAddress or Ipv4Prefix",
                ));
            }
            if !ips.is_empty() {
                sim.unassign_private_ip_addresses(eni, &ips).await?;
            }
            if !prefixes.is_empty() {
                sim.unassign_ipv4_prefixes(eni, &prefixes).await?;
            }
            returned_true(&mut body);
        }
        "CreateTags" => {
            let resources = params.list("ResourceId");
            if resources.is_empty() {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter ResourceId.1",
                ));
            }
            sim.create_tags(&resources, &params.tags("Tag")?).await?;
            returned_true(&mut body);
        }
        "CreateVpc" => {
            let amazon_ipv6 = params.boolean("AmazonProvidedIpv6CidrBlock")?.unwrap_or(false);
            let given_ipv6 = params.ipv6_cidr("Ipv6CidrBlock")?;
            if amazon_ipv6 && given_ipv6.is_some() {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "AmazonProvidedIpv6CidrBlock and Ipv6CidrBlock cannot be combined",
                ));
            }
            let id = sim.create_vpc(params.cidr("CidrBlock")?, params.tag_specifications("vpc")?)?;
            if amazon_ipv6 || given_ipv6.is_some() {
                sim.associate_vpc_ipv6_cidr(&id, given_ipv6)?;
            }
            let ipv6 = sim.vpc_ipv6_cidr(&id);
            let cidrs = sim
                .vpcs()
                .into_iter()
                .find(|(v, _)| *v == id)
                .map(|(_, c)| c)
                .unwrap_or_default();
            body.node("vpc", |xml| vpc_xml(xml, &id, &cidrs, ipv6));
        }
        "AssociateVpcCidrBlock" if params.get("CidrBlock").is_none() => {
            let vpc = params.required("VpcId")?;
            let amazon = params.boolean("AmazonProvidedIpv6CidrBlock")?.unwrap_or(false);
            let given = params.ipv6_cidr("Ipv6CidrBlock")?;
            if amazon == given.is_some() {
                return Err(Ec2Error::new(
                    "InvalidParameterCombination",
                    "Specify exactly one of CidrBlock, AmazonProvidedIpv6CidrBlock, Ipv6CidrBlock",
                ));
            }
            let cidr = sim.associate_vpc_ipv6_cidr(vpc, given)?;
            body.text("vpcId", vpc).node("ipv6CidrBlockAssociation", |xml| {
                ipv6_association_xml(xml, vpc, cidr, true)
            });
        }
        "AssociateVpcCidrBlock" => {
            let vpc = params.required("VpcId")?;
            let cidr = params.cidr("CidrBlock")?;
            sim.add_vpc_cidr(vpc, cidr)?;
            body.text("vpcId", vpc).node("cidrBlockAssociation", |xml| {
                xml.text("cidrBlock", cidr).node("cidrBlockState", |xml| {
                    xml.text("state", "associated");
                });
            });
        }
        "CreateSubnet" => {
            let vpc = params.required("VpcId")?;
            let az = params
                .get("AvailabilityZone")
                .map_or_else(|| format!("{}a", sim.config().region), str::to_owned);
            let cidr = params.cidr("CidrBlock")?;
            let tags = params.tag_specifications("subnet")?;
            let id = match params.ipv6_cidr("Ipv6CidrBlock")? {
                Some(ipv6) => sim.create_subnet_with_ipv6(vpc, cidr, ipv6, &az, tags)?,
                None => sim.create_subnet(vpc, cidr, &az, tags)?,
            };
            let subnet = sim.describe_subnets(std::slice::from_ref(&id), &[]).await?;
            body.node("subnet", |xml| subnet_xml(xml, &subnet[0]));
        }
        "CreateSubnetCidrReservation" => {
            let subnet = params.required("SubnetId")?;
            let cidr = params.cidr("Cidr")?;
            let kind = ReservationType::parse(params.required("ReservationType")?)?;
            let reservation = sim.create_subnet_cidr_reservation_of(subnet, cidr, kind)?;
            body.node("subnetCidrReservation", |xml| reservation_xml(xml, &reservation));
        }
        "GetSubnetCidrReservations" => {
            let subnet = params.required("SubnetId")?;
            let reservations = sim.get_subnet_cidr_reservations(subnet)?;
            body.list(
                "subnetIpv4CidrReservationSet",
                reservations,
                |xml, reservation| reservation_xml(xml, &reservation),
            );
            body.list("subnetIpv6CidrReservationSet", Vec::<()>::new(), |_, ()| {});
        }
        "DeleteSubnetCidrReservation" => {
            let id = params.required("SubnetCidrReservationId")?;
            let reservation = sim.delete_subnet_cidr_reservation(id)?;
            body.node("deletedSubnetCidrReservation", |xml| {
                reservation_xml(xml, &reservation)
            });
        }
        "RunInstances" => {
            let count = params
                .number("MinCount")?
                .unwrap_or(1)
                .max(params.number("MaxCount")?.unwrap_or(1));
            if count != 1 {
                return Err(Ec2Error::new(
                    "InvalidParameterValue",
                    "This simulator runs one instance per RunInstances call",
                ));
            }
            let subnet = params
                .get("SubnetId")
                .or_else(|| params.get("NetworkInterface.1.SubnetId"))
                .ok_or_else(|| {
                    Ec2Error::new(
                        "MissingParameter",
                        "The request must contain the parameter SubnetId",
                    )
                })?;
            let instance_type = params.get("InstanceType").unwrap_or("m5.large");
            let id = sim.run_instance(
                instance_type,
                subnet,
                params.ip("PrivateIpAddress")?,
                params.tag_specifications("instance")?,
            )?;
            let instance = sim.describe_instance(&id).await?;
            body.text("reservationId", format!("r-{}", &id[2..]))
                .text("ownerId", OWNER)
                .node("groupSet", |_| {})
                .list("instancesSet", [instance], |xml, instance| {
                    instance_xml(xml, &instance)
                });
        }
        "TerminateInstances" => {
            let ids = params.list("InstanceId");
            if ids.is_empty() {
                return Err(Ec2Error::new(
                    "MissingParameter",
                    "The request must contain the parameter InstanceId.1",
                ));
            }
            for id in &ids {
                sim.terminate_instance(id)?;
            }
            body.list("instancesSet", ids, |xml, id| {
                xml.text("instanceId", id)
                    .node("currentState", |xml| {
                        xml.text("code", 48).text("name", "terminated");
                    })
                    .node("previousState", |xml| {
                        xml.text("code", 16).text("name", "running");
                    });
            });
        }
        other => {
            return Err(Ec2Error::new(
                "InvalidAction",
                format!("The action {other} is not valid for this web service."),
            ));
        }
    }
    Ok(body)
}
