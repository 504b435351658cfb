//! The per-pod wiring the CNI plugin does, as the original does it (docs/node-layout.md, "Pods"):
//! a veth pair created with its peer already inside the pod's namespace, the pod's /32 on the pod side,
//! `169.254.1.1 dev eth0 scope link` and `default via 169.254.1.1`, a permanent ARP entry for that gateway
//! pointing at the host veth's MAC, a host route to the pod, `to <pod> lookup main` at priority 512 and, for
//! pods on a secondary ENI, `from <pod> lookup <ENI table>` at 1536.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkFlags};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{RouteAttribute, RouteProtocol, RouteScope};
use rtnetlink::packet_route::rule::RuleAction;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::DataplaneError;
use crate::netlink::{
    connect, format_mac, in_netns, link_by_name, mac_of, netlink_error, random_mac, rules_for,
};

use vpcni_layout::priority::{FROM_POD as FROM_POD_RULE_PRIORITY, TO_POD as TO_POD_RULE_PRIORITY};
use vpcni_layout::{MAIN_TABLE, POD_GATEWAY as GATEWAY};

/// What to wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod's network namespace (a path such as `/var/run/netns/cni-…`).
    pub netns: String,
    /// Interface name in the pod (`eth0`).
    pub ifname: String,
    /// Host-side veth name.
    pub host_veth: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// MTU of both ends.
    pub mtu: u32,
    /// Route table of the ENI holding the address (254 for the primary ENI); `None` when unknown (CHECK).
    pub route_table: Option<u32>,
}

/// What was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    /// Host veth MAC.
    pub host_mac: String,
    /// Pod interface MAC.
    pub container_mac: String,
}

/// Wires a pod. On failure, whatever was created is removed again.
pub async fn setup_pod(spec: &PodSpec) -> Result<Wired, DataplaneError> {
    let host = connect()?;
    match wire(&host, spec).await {
        Ok(wired) => Ok(wired),
        Err(error) => {
            let _ = teardown_with(&host, &spec.host_veth, Some(spec.ip)).await;
            Err(error)
        }
    }
}

async fn wire(host: &Handle, spec: &PodSpec) -> Result<Wired, DataplaneError> {
    let netns = File::open(&spec.netns).map_err(|source| DataplaneError::Netns {
        path: spec.netns.clone(),
        source,
    })?;
    // A veth left behind by an earlier pod of the same name would block ours.
    if let Some(stale) = link_by_name(host, &spec.host_veth).await? {
        host.link()
            .del(stale.header.index)
            .execute()
            .await
            .map_err(netlink_error("removing a stale host veth"))?;
    }
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.ifname.clone())
        .mtu(spec.mtu)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let veth = LinkVeth::new(&spec.host_veth, &spec.ifname)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(spec.mtu)
        .address(random_mac())
        .build();
    host.link()
        .add(veth)
        .execute()
        .await
        .map_err(netlink_error(format!("creating veth {}", spec.host_veth)))?;
    let host_link = link_by_name(host, &spec.host_veth)
        .await?
        .ok_or_else(|| DataplaneError::LinkNotFound(spec.host_veth.clone()))?;
    let host_index = host_link.header.index;
    let host_mac = mac_of(&host_link);
    host.link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(netlink_error("bringing the host veth up"))?;

    let ifname = spec.ifname.clone();
    let ip = spec.ip;
    let gateway_mac = host_mac.clone();
    let container_mac = in_netns(&spec.netns, move |pod| {
        Box::pin(async move {
            let link = link_by_name(&pod, &ifname)
                .await?
                .ok_or_else(|| DataplaneError::LinkNotFound(ifname.clone()))?;
            let index = link.header.index;
            pod.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(netlink_error("bringing eth0 up"))?;
            if let Some(lo) = link_by_name(&pod, "lo").await? {
                let _ = pod
                    .link()
                    .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                    .execute()
                    .await;
            }
            pod.address()
                .add(index, IpAddr::V4(ip), 32)
                .execute()
                .await
                .map_err(netlink_error(format!("adding {ip}/32")))?;
            let gateway_route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(GATEWAY, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .protocol(RouteProtocol::Boot)
                .build();
            pod.route()
                .add(gateway_route)
                .execute()
                .await
                .map_err(netlink_error("adding the gateway route"))?;
            let default_route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(GATEWAY)
                .output_interface(index)
                .protocol(RouteProtocol::Boot)
                .build();
            pod.route()
                .add(default_route)
                .execute()
                .await
                .map_err(netlink_error("adding the default route"))?;
            pod.neighbours()
                .add(index, IpAddr::V4(GATEWAY))
                .link_layer_address(&gateway_mac)
                .state(NeighbourState::Permanent)
                .execute()
                .await
                .map_err(netlink_error("adding the gateway's ARP entry"))?;
            Ok(format_mac(&mac_of(&link)))
        })
    })?;

    let host_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(spec.ip, 32)
        .output_interface(host_index)
        .scope(RouteScope::Link)
        .protocol(RouteProtocol::Boot)
        .build();
    // Replace: a route left by a pod that had this address before (DEL leaves the veth to its namespace)
    // must not block this one.
    host.route()
        .add(host_route)
        .replace()
        .execute()
        .await
        .map_err(netlink_error("adding the host route"))?;
    host.rule()
        .add()
        .v4()
        .destination_prefix(spec.ip, 32)
        .table_id(MAIN_TABLE)
        .priority(TO_POD_RULE_PRIORITY)
        .action(RuleAction::ToTable)
        .execute()
        .await
        .map_err(netlink_error("adding the to-pod rule"))?;
    if let Some(table) = spec.route_table.filter(|t| *t != MAIN_TABLE) {
        host.rule()
            .add()
            .v4()
            .source_prefix(spec.ip, 32)
            .table_id(table)
            .priority(FROM_POD_RULE_PRIORITY)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(netlink_error("adding the from-pod rule"))?;
    }
    Ok(Wired {
        host_mac: format_mac(&host_mac),
        container_mac,
    })
}

/// Removes a pod's wiring: its rules, and the host veth (which takes the pod end, the host route and, when
/// the namespace still exists, everything inside it). Missing pieces are fine: DEL may come twice, or after
/// the namespace is gone.
pub async fn teardown_pod(host_veth: &str, ip: Option<Ipv4Addr>) -> Result<(), DataplaneError> {
    let host = connect()?;
    teardown_with(&host, host_veth, ip).await
}

/// What the original's DEL does: removes the pod's rules and the node's route to it, and leaves the veth
/// pair to the pod's namespace, which the runtime deletes next (the kernel then destroys the pair in its
/// batched namespace cleanup). Deleting a veth here would cost the caller an RCU grace period, about
/// 15–25 ms. A later ADD of a pod with the same name replaces a veth left behind. Missing pieces are fine.
pub async fn unroute_pod(ip: Ipv4Addr) -> Result<(), DataplaneError> {
    let host = connect()?;
    let mut errors = remove_rules(&host, ip).await?;
    // The kernel matches scope and protocol too: they must be those ADD used.
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .table_id(MAIN_TABLE)
        .scope(RouteScope::Link)
        .protocol(RouteProtocol::Boot)
        .build();
    match host.route().del(route).execute().await {
        Ok(()) => {}
        // ESRCH: no such route (DEL repeated, or the namespace and its veth already gone).
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => {}
        Err(e) => errors.push(format!("route to {ip}: {e}")),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DataplaneError::System(errors.join("; ")))
    }
}

async fn remove_rules(host: &Handle, ip: Ipv4Addr) -> Result<Vec<String>, DataplaneError> {
    let mut errors = Vec::new();
    for (priority, from) in [(TO_POD_RULE_PRIORITY, false), (FROM_POD_RULE_PRIORITY, true)] {
        for rule in rules_for(host, priority, ip, from).await? {
            if let Err(e) = host.rule().del(rule).execute().await {
                errors.push(format!("rule {priority} for {ip}: {e}"));
            }
        }
    }
    Ok(errors)
}

async fn teardown_with(host: &Handle, host_veth: &str, ip: Option<Ipv4Addr>) -> Result<(), DataplaneError> {
    let mut errors = match ip {
        Some(ip) => remove_rules(host, ip).await?,
        None => Vec::new(),
    };
    if let Some(link) = link_by_name(host, host_veth).await?
        && let Err(e) = host.link().del(link.header.index).execute().await
    {
        errors.push(format!("veth {host_veth}: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DataplaneError::System(errors.join("; ")))
    }
}

fn rule_table(rule: &rtnetlink::packet_route::rule::RuleMessage) -> u32 {
    rule.attributes
        .iter()
        .find_map(|a| match a {
            rtnetlink::packet_route::rule::RuleAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(rule.header.table))
}

/// Compares the node and the pod with what [`setup_pod`] makes; returns the differences in plain words.
pub async fn check_pod(spec: &PodSpec) -> Result<Vec<String>, DataplaneError> {
    let host = connect()?;
    let mut differences = Vec::new();
    let Some(host_link) = link_by_name(&host, &spec.host_veth).await? else {
        return Ok(vec![format!("host veth {} is missing", spec.host_veth)]);
    };
    if !host_link.header.flags.contains(LinkFlags::Up) {
        differences.push(format!("host veth {} is down", spec.host_veth));
    }
    let host_index = host_link.header.index;
    let host_mac = mac_of(&host_link);
    let routes: Vec<_> = host
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing host routes"))?;
    let has_host_route = routes.iter().any(|r| {
        r.header.destination_prefix_length == 32
            && r.attributes.iter().any(|a| matches!(a, RouteAttribute::Destination(d) if format!("{d:?}").contains(&spec.ip.to_string())))
            && r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == host_index))
    });
    if !has_host_route {
        differences.push(format!(
            "host route {}/32 dev {} is missing",
            spec.ip, spec.host_veth
        ));
    }
    if rules_for(&host, TO_POD_RULE_PRIORITY, spec.ip, false)
        .await?
        .is_empty()
    {
        differences.push(format!(
            "rule 'to {} lookup main' at {TO_POD_RULE_PRIORITY} is missing",
            spec.ip
        ));
    }
    if let Some(table) = spec.route_table {
        let from_rules = rules_for(&host, FROM_POD_RULE_PRIORITY, spec.ip, true).await?;
        let tables: Vec<u32> = from_rules.iter().map(rule_table).collect();
        if table == MAIN_TABLE && !tables.is_empty() {
            differences.push(format!(
                "rule 'from {} lookup {tables:?}' at {FROM_POD_RULE_PRIORITY} should not exist for a pod on the primary ENI",
                spec.ip
            ));
        } else if table != MAIN_TABLE && !tables.contains(&table) {
            differences.push(format!(
                "rule 'from {} lookup {table}' at {FROM_POD_RULE_PRIORITY} is missing{}",
                spec.ip,
                if tables.is_empty() {
                    String::new()
                } else {
                    format!(" (found tables {tables:?})")
                }
            ));
        }
    }

    let ifname = spec.ifname.clone();
    let ip = spec.ip;
    let pod_differences = in_netns(&spec.netns, move |pod| {
        Box::pin(async move {
            let mut differences = Vec::new();
            let Some(link) = link_by_name(&pod, &ifname).await? else {
                return Ok(vec![format!("{ifname} is missing in the pod")]);
            };
            let index = link.header.index;
            let addresses: Vec<_> = pod
                .address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect()
                .await
                .map_err(netlink_error("listing pod addresses"))?;
            let has_ip = addresses.iter().any(|a| {
                a.header.prefix_len == 32
                    && a.attributes.iter().any(|attr| matches!(attr, rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(v)) if *v == ip))
            });
            if !has_ip {
                differences.push(format!("{ip}/32 is not on {ifname}"));
            }
            let neighbours: Vec<_> = pod
                .neighbours()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(netlink_error("listing pod neighbours"))?;
            let arp_ok = neighbours.iter().any(|n| {
                n.header.ifindex == index
                    && n.header.state == NeighbourState::Permanent
                    && n.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Destination(d) if format!("{d:?}").contains("169.254.1.1")))
                    && n.attributes.iter().any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(mac) if *mac == host_mac))
            });
            if !arp_ok {
                differences.push(
                    "permanent ARP entry for 169.254.1.1 with the host veth's MAC is missing".to_owned(),
                );
            }
            let routes: Vec<_> = pod
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .map_err(netlink_error("listing pod routes"))?;
            let default = routes.iter().any(|r| {
                r.header.destination_prefix_length == 0
                    && r.attributes.iter().any(|a| matches!(a, RouteAttribute::Gateway(g) if format!("{g:?}").contains("169.254.1.1")))
            });
            if !default {
                differences.push("default route via 169.254.1.1 is missing".to_owned());
            }
            Ok(differences)
        })
    })?;
    differences.extend(pod_differences);
    Ok(differences)
}
