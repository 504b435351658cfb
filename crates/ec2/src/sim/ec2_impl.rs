//! The [`Ec2`] trait over the simulator: each method is one EC2 action, counted and throttled.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};

use super::Simulator;
use super::state::{EniRecord, eni_matches, subnet_matches, type_limits};
use crate::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error, Filter,
    Instance, InstanceTypeInfo, NetworkInterface, NetworkInterfacePage, Subnet, Tags,
};

#[async_trait]
impl Ec2 for Simulator {
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance, Ec2Error> {
        self.call("DescribeInstances", |account, now, _| {
            account.instance_view(instance_id, now)
        })
    }

    async fn describe_instance_types(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        self.call("DescribeInstanceTypes", |_, _, _| {
            instance_types
                .iter()
                .map(|name| {
                    let limits = type_limits(name)?;
                    Ok(InstanceTypeInfo {
                        instance_type: limits.instance_type.clone(),
                        max_enis: limits.max_enis,
                        ipv4_per_eni: limits.ipv4_per_eni,
                        ipv6_per_eni: limits.ipv6_per_eni.unwrap_or(limits.ipv4_per_eni),
                        ipv6_supported: limits.ipv6_per_eni.unwrap_or(limits.ipv4_per_eni) > 0,
                        hypervisor: match limits.hypervisor {
                            vpcni_limits::Hypervisor::Unknown => String::new(),
                            other => other.as_str().to_owned(),
                        },
                        bare_metal: limits.bare_metal,
                        default_vcpus: limits.default_vcpus,
                        network_cards: limits
                            .network_cards
                            .iter()
                            .map(|c| (c.index, c.max_enis))
                            .collect(),
                    })
                })
                .collect()
        })
    }

    async fn describe_subnets(
        &self,
        subnet_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Subnet>, Ec2Error> {
        self.call("DescribeSubnets", |account, _, _| {
            for id in subnet_ids {
                if !account.subnets.contains_key(id) {
                    return Err(Ec2Error::new(
                        "InvalidSubnetID.NotFound",
                        format!("The subnet ID '{id}' does not exist"),
                    ));
                }
            }
            let mut found = Vec::new();
            for subnet in account.subnets.values() {
                if !subnet_ids.is_empty() && !subnet_ids.contains(&subnet.id) {
                    continue;
                }
                let view = account.subnet_view(subnet);
                if subnet_matches(&view, filters)? {
                    found.push(view);
                }
            }
            Ok(found)
        })
    }

    async fn describe_network_interfaces(
        &self,
        request: &DescribeNetworkInterfacesRequest,
    ) -> Result<NetworkInterfacePage, Ec2Error> {
        self.call("DescribeNetworkInterfaces", |account, now, _| {
            if let Some(max) = request.max_results {
                if !(5..=1000).contains(&max) {
                    return Err(Ec2Error::new(
                        "InvalidParameterValue",
                        format!("MaxResults {max} is not between 5 and 1000"),
                    ));
                }
                if !request.network_interface_ids.is_empty() {
                    return Err(Ec2Error::new(
                        "InvalidParameterCombination",
                        "MaxResults cannot be used with NetworkInterfaceIds",
                    ));
                }
            }
            for id in &request.network_interface_ids {
                if !account.enis.contains_key(id) {
                    return Err(Ec2Error::new(
                        "InvalidNetworkInterfaceID.NotFound",
                        format!("The networkInterface ID '{id}' does not exist"),
                    ));
                }
            }
            // Asked by id: only those ENIs (in id order, as the whole account is listed), not a pass over
            // every ENI of the account per call.
            let named: BTreeSet<&String> = request.network_interface_ids.iter().collect();
            let candidates: Box<dyn Iterator<Item = &EniRecord>> = if named.is_empty() {
                Box::new(account.enis.values())
            } else {
                Box::new(named.into_iter().map(|id| &account.enis[id]))
            };
            let mut matching = Vec::new();
            for eni in candidates {
                let view = account.eni_view(eni, now);
                if eni_matches(&view, &request.filters)? {
                    matching.push(view);
                }
            }
            // The token names the last ENI of the page (ENIs are listed in id order), so it stays valid,
            // and skips nothing, when ENIs are deleted between pages, as EC2's opaque tokens do.
            let start = match &request.next_token {
                None => 0,
                Some(token) => {
                    let after = token
                        .strip_prefix("after-")
                        .filter(|id| id.starts_with("eni-"))
                        .ok_or_else(|| {
                            Ec2Error::new("InvalidParameterValue", format!("Invalid NextToken '{token}'"))
                        })?;
                    matching.partition_point(|view| view.network_interface_id.as_str() <= after)
                }
            };
            let size = request.max_results.map_or(usize::MAX, |m| m as usize);
            let end = start.saturating_add(size).min(matching.len());
            let next_token =
                (end < matching.len()).then(|| format!("after-{}", matching[end - 1].network_interface_id));
            Ok(NetworkInterfacePage {
                network_interfaces: matching[start..end].to_vec(),
                next_token,
            })
        })
    }

    async fn create_network_interface(
        &self,
        request: &CreateNetworkInterfaceRequest,
    ) -> Result<NetworkInterface, Ec2Error> {
        self.call("CreateNetworkInterface", |account, now, _| {
            let id = account.create_eni(request)?;
            Ok(account.eni_view(&account.enis[&id], now))
        })
    }

    async fn attach_network_interface(
        &self,
        network_interface_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card_index: u32,
    ) -> Result<String, Ec2Error> {
        self.call("AttachNetworkInterface", |account, now, config| {
            account.attach_eni(
                network_interface_id,
                instance_id,
                device_index,
                network_card_index,
                now,
                config.attach_delay_ms,
            )
        })
    }

    async fn set_delete_on_termination(
        &self,
        network_interface_id: &str,
        attachment_id: &str,
        delete_on_termination: bool,
    ) -> Result<(), Ec2Error> {
        self.call("ModifyNetworkInterfaceAttribute", |account, _, _| {
            account.set_delete_on_termination(network_interface_id, attachment_id, delete_on_termination)
        })
    }

    async fn detach_network_interface(&self, attachment_id: &str, _force: bool) -> Result<(), Ec2Error> {
        self.call("DetachNetworkInterface", |account, now, config| {
            account.detach_eni(attachment_id, now, config.imds_lag_ms)
        })
    }

    async fn delete_network_interface(&self, network_interface_id: &str) -> Result<(), Ec2Error> {
        self.call("DeleteNetworkInterface", |account, _, _| {
            account.delete_eni(network_interface_id)
        })
    }

    async fn assign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>, Ec2Error> {
        self.call("AssignPrivateIpAddresses", |account, now, _| {
            account.assign_ips(network_interface_id, addresses, now)
        })
    }

    async fn unassign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<(), Ec2Error> {
        self.call("UnassignPrivateIpAddresses", |account, now, _| {
            account.unassign_ips(network_interface_id, addresses, now)
        })
    }

    async fn assign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv4Net>,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        self.call("AssignPrivateIpAddresses", |account, now, _| {
            account.assign_prefixes(network_interface_id, prefixes, now)
        })
    }

    async fn unassign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv4Net],
    ) -> Result<(), Ec2Error> {
        self.call("UnassignPrivateIpAddresses", |account, now, _| {
            account.unassign_prefixes(network_interface_id, prefixes, now)
        })
    }

    async fn assign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>, Ec2Error> {
        self.call("AssignIpv6Addresses", |account, now, _| {
            account.assign_ipv6_addresses(network_interface_id, addresses, now)
        })
    }

    async fn unassign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv6Addr],
    ) -> Result<(), Ec2Error> {
        self.call("UnassignIpv6Addresses", |account, now, _| {
            account.unassign_ipv6_addresses(network_interface_id, addresses, now)
        })
    }

    async fn assign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv6Net>,
    ) -> Result<Vec<Ipv6Net>, Ec2Error> {
        self.call("AssignIpv6Addresses", |account, now, _| {
            account.assign_ipv6_prefixes(network_interface_id, prefixes, now)
        })
    }

    async fn unassign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv6Net],
    ) -> Result<(), Ec2Error> {
        self.call("UnassignIpv6Addresses", |account, now, _| {
            account.unassign_ipv6_prefixes(network_interface_id, prefixes, now)
        })
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        self.call("CreateTags", |account, _, _| {
            account.create_tags(resource_ids, tags)
        })
    }
}
