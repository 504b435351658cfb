//! A secondary ENI on the host, set up as the original does it (docs/node-layout.md, "ENIs on the node"): the
//! link found by its MAC, its MTU set and brought up, its global addresses replaced by the ENI's primary
//! address with the subnet's mask, the kernel's connected route for that subnet deleted from the main table,
//! and the ENI's own table (device number + 1) holding `<gw> dev ethX scope link` and `default via <gw> dev
//! ethX`, chosen by `from <ENI primary IP> lookup <table>` at priority 32765. Each step checks before it
//! changes, so running it again is a no-op; [`teardown_eni`] undoes it when the ENI is freed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::DataplaneError;
use crate::netlink::{connect, delete_rule, format_mac, link_by_name, mac_of, netlink_error, rules_at};
use vpcni_layout::MAIN_TABLE;
use vpcni_layout::priority::ENI_PRIMARY_IP as ENI_RULE_PRIORITY;

/// One secondary ENI, as the host must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniSpec {
    /// The ENI's MAC (`0a:1b:…`, any case).
    pub mac: String,
    /// Its primary address.
    pub primary_ip: Ipv4Addr,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// AWS_VPC_ENI_MTU.
    pub mtu: u32,
    /// Its route table (device number + 1 on card 0).
    pub table: u32,
}

impl EniSpec {
    /// The subnet's router: its base address + 1, in every VPC subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()).wrapping_add(1))
    }
}

async fn links(handle: &Handle) -> Result<Vec<LinkMessage>, DataplaneError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing links"))
}

fn link_name(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The link with this MAC: `(index, name)`.
pub async fn link_by_mac(mac: &str) -> Result<Option<(u32, String)>, DataplaneError> {
    let handle = connect()?;
    find_by_mac(&handle, mac).await
}

async fn find_by_mac(handle: &Handle, mac: &str) -> Result<Option<(u32, String)>, DataplaneError> {
    let wanted = mac.to_ascii_lowercase();
    Ok(links(handle)
        .await?
        .into_iter()
        .find(|l| format_mac(&mac_of(l)) == wanted)
        .map(|l| (l.header.index, link_name(&l))))
}

/// Waits for a link with this MAC to appear (an ENI just attached shows up a moment after EC2 says it is
/// attached), polling with a backoff from 100 ms up to 1 s, as the original polls instance metadata.
pub async fn wait_for_link_by_mac(mac: &str, timeout: Duration) -> Result<String, DataplaneError> {
    let handle = connect()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        if let Some((_, name)) = find_by_mac(&handle, mac).await? {
            return Ok(name);
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(DataplaneError::System(format!(
                "no link with MAC {mac} appeared within {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Whether a link of this name exists (a pod's host veth, for instance).
pub async fn link_exists(name: &str) -> Result<bool, DataplaneError> {
    let handle = connect()?;
    Ok(link_by_name(&handle, name).await?.is_some())
}

/// Sets a link's MTU and brings it up.
pub async fn set_mtu_and_up(index: u32, mtu: u32) -> Result<(), DataplaneError> {
    let handle = connect()?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(netlink_error(format!("setting MTU {mtu} and up on link {index}")))
}

fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn route_destination(route: &RouteMessage) -> Option<Ipv4Addr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
        _ => None,
    })
}

async fn ipv4_routes(handle: &Handle) -> Result<Vec<RouteMessage>, DataplaneError> {
    handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing routes"))
}

pub(crate) fn rule_table(rule: &RuleMessage) -> u32 {
    rule.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(rule.header.table))
}

fn rule_source(rule: &RuleMessage) -> Option<Ipv4Addr> {
    rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::Source(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })
}

/// Sets up a secondary ENI; returns its interface name.
pub async fn setup_eni(spec: &EniSpec) -> Result<String, DataplaneError> {
    let handle = connect()?;
    let (index, name) = find_by_mac(&handle, &spec.mac)
        .await?
        .ok_or_else(|| DataplaneError::LinkNotFound(format!("with MAC {}", spec.mac)))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(spec.mtu).up().build())
        .execute()
        .await
        .map_err(netlink_error(format!(
            "setting MTU {} and up on {name}",
            spec.mtu
        )))?;

    // Global IPv4 addresses: exactly the ENI's primary address with the subnet's mask.
    let prefix = spec.subnet.prefix_len();
    let addresses: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error(format!("listing addresses of {name}")))?;
    let mut present = false;
    for address in addresses {
        let ip = address.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let Some(ip) = ip else { continue };
        if address.header.scope != AddressScope::Universe {
            continue;
        }
        if ip == spec.primary_ip && address.header.prefix_len == prefix {
            present = true;
        } else {
            handle
                .address()
                .del(address)
                .execute()
                .await
                .map_err(netlink_error(format!("removing {ip} from {name}")))?;
        }
    }
    if !present {
        handle
            .address()
            .add(index, IpAddr::V4(spec.primary_ip), prefix)
            .execute()
            .await
            .map_err(netlink_error(format!(
                "adding {}/{prefix} to {name}",
                spec.primary_ip
            )))?;
    }

    // The kernel's connected route would send the whole subnet out of this ENI from the main table.
    for route in ipv4_routes(&handle).await? {
        let connected = route_table(&route) == MAIN_TABLE
            && route.header.protocol == RouteProtocol::Kernel
            && route.header.destination_prefix_length == prefix
            && route_destination(&route) == Some(spec.subnet.network())
            && route
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index));
        if connected {
            handle
                .route()
                .del(route)
                .execute()
                .await
                .map_err(netlink_error(format!("removing the connected route of {name}")))?;
        }
    }

    let gateway = spec.gateway();
    let gateway_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(gateway, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .table_id(spec.table)
        .protocol(RouteProtocol::Boot)
        .build();
    let default_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .table_id(spec.table)
        .protocol(RouteProtocol::Boot)
        .build();
    for (what, route) in [("gateway", gateway_route), ("default", default_route)] {
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(netlink_error(format!(
                "{what} route in table {} for {name}",
                spec.table
            )))?;
    }

    let mut rule_present = false;
    for rule in rules_at(&handle, ENI_RULE_PRIORITY).await? {
        if rule_source(&rule) != Some(spec.primary_ip) {
            continue;
        }
        if rule_table(&rule) == spec.table && !rule_present {
            rule_present = true;
        } else {
            delete_rule(&handle, rule, "removing a stale ENI rule").await?;
        }
    }
    if !rule_present {
        handle
            .rule()
            .add()
            .v4()
            .source_prefix(spec.primary_ip, 32)
            .table_id(spec.table)
            .priority(ENI_RULE_PRIORITY)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(netlink_error(format!(
                "adding 'from {} lookup {}'",
                spec.primary_ip, spec.table
            )))?;
    }
    Ok(name)
}

/// Undoes [`setup_eni`] for an ENI being freed: its rule, and the routes left in its table (the link
/// itself goes away when EC2 detaches the ENI).
pub async fn teardown_eni(primary_ip: Ipv4Addr, table: u32) -> Result<(), DataplaneError> {
    let handle = connect()?;
    for rule in rules_at(&handle, ENI_RULE_PRIORITY).await? {
        if rule_source(&rule) == Some(primary_ip) {
            delete_rule(&handle, rule, &format!("removing 'from {primary_ip}' rule")).await?;
        }
    }
    for route in ipv4_routes(&handle).await? {
        if route_table(&route) == table {
            // A route gone already (its link went with the detach) is fine.
            let _ = handle.route().del(route).execute().await;
        }
    }
    Ok(())
}

/// Removes ENI rules (priority 32765) whose source is not one of `keep`: left by an ENI freed while the
/// daemon was down. Returns the addresses whose rules were removed.
pub async fn prune_eni_rules(keep: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>, DataplaneError> {
    let handle = connect()?;
    let mut removed = Vec::new();
    for rule in rules_at(&handle, ENI_RULE_PRIORITY).await? {
        let Some(source) = rule_source(&rule) else {
            continue;
        };
        if !keep.contains(&source) {
            delete_rule(&handle, rule, &format!("removing stale rule from {source}")).await?;
            removed.push(source);
        }
    }
    Ok(removed)
}
