//! The per-pod wiring the CNI plugin does, as the original does it (docs/node-layout.md, "Pods"):
//! a veth pair created with its peer already inside the pod's namespace, the pod's /32 on the pod side,
//! `169.254.1.1 dev eth0 scope link` and `default via 169.254.1.1`, a permanent ARP entry for that gateway
//! pointing at the host veth's MAC, a host route to the pod, `to <pod> lookup main` at priority 512 and, for
//! pods on a secondary ENI, `from <pod> lookup <ENI table>` at 1536.
//!
//! IPv6 pods get the same with the IPv6 names: the pod's /128 on eth0 (no DAD, see [`wire_pod_v6`]),
//! `default via fe80::1 dev eth0`, a permanent neighbour entry for fe80::1 pointing at the host veth's MAC,
//! `<pod>/128 dev <host veth>` and the rules in the IPv6 rule list; the host veth gets the original's IPv6
//! settings ([`HOST_VETH_IPV6_SETTINGS`]) before it comes up. ADD returns once the pod's address and the host
//! veth's link-local address are usable.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::LinkFlags;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::packet_route::rule::RuleAction;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::DataplaneError;
use crate::netlink::{
    connect, create_veth_pair, format_mac, in_netns, link_by_name, mac_of, netlink_error, rules_for,
};
use crate::sysctl::{self, ipv6_conf_key};

use vpcni_layout::priority::{FROM_POD as FROM_POD_RULE_PRIORITY, TO_POD as TO_POD_RULE_PRIORITY};
use vpcni_layout::{
    MAIN_TABLE, POD_GATEWAY as GATEWAY, POD_GATEWAY_V6 as GATEWAY_V6, POD_PREFIX_V4, POD_PREFIX_V6,
};

/// What to wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod's network namespace (a path such as `/var/run/netns/cni-…`).
    pub netns: String,
    /// Interface name in the pod (`eth0`).
    pub ifname: String,
    /// Host-side veth name.
    pub host_veth: String,
    /// The pod's address: an IPv4 pod's /32 or an IPv6 pod's /128.
    pub ip: IpAddr,
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
    let (host_index, host_mac) =
        create_veth_pair(host, &netns, &spec.host_veth, &spec.ifname, spec.mtu).await?;
    if spec.ip.is_ipv6() {
        // Before the link comes up, as the original does: nothing the kernel does on link-up (router
        // solicitations, DAD of the link-local address) runs with the defaults.
        host_veth_ipv6_settings(&spec.host_veth)?;
    }
    host.link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(netlink_error("bringing the host veth up"))?;

    let ifname = spec.ifname.clone();
    let gateway_mac = host_mac.clone();
    let container_mac = match spec.ip {
        IpAddr::V4(ip) => in_netns(&spec.netns, move |pod| {
            Box::pin(async move { wire_pod_v4(&pod, &ifname, ip, &gateway_mac).await })
        })?,
        IpAddr::V6(ip) => in_netns(&spec.netns, move |pod| {
            Box::pin(async move { wire_pod_v6(&pod, &ifname, ip, &gateway_mac).await })
        })?,
    };

    // Replace: a route left by a pod that had this address before (DEL leaves the veth to its namespace)
    // must not block this one.
    host.route()
        .add(host_route(spec.ip, Some(host_index)))
        .replace()
        .execute()
        .await
        .map_err(netlink_error("adding the host route"))?;
    add_rule(host, spec.ip, false, MAIN_TABLE, TO_POD_RULE_PRIORITY)
        .await
        .map_err(netlink_error("adding the to-pod rule"))?;
    if let Some(table) = spec.route_table.filter(|t| *t != MAIN_TABLE) {
        add_rule(host, spec.ip, true, table, FROM_POD_RULE_PRIORITY)
            .await
            .map_err(netlink_error("adding the from-pod rule"))?;
    }
    if spec.ip.is_ipv6() {
        wait_for_host_link_local(host, host_index, &spec.host_veth).await?;
    }
    Ok(Wired {
        host_mac: format_mac(&host_mac),
        container_mac,
    })
}

/// Brings the pod's interface (and `lo`) up; returns the interface's index and MAC.
pub(crate) async fn pod_link_up(pod: &Handle, ifname: &str) -> Result<(u32, Vec<u8>), DataplaneError> {
    let link = link_by_name(pod, ifname)
        .await?
        .ok_or_else(|| DataplaneError::LinkNotFound(ifname.to_owned()))?;
    let index = link.header.index;
    pod.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink_error(format!("bringing {ifname} up")))?;
    if let Some(lo) = link_by_name(pod, "lo").await? {
        // Runtimes bring the pod's loopback up themselves as well; the pod's network does not depend on it,
        // so a failure here is logged rather than failing ADD.
        if let Err(error) = pod
            .link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
        {
            tracing::warn!("bringing the pod's loopback up: {error}");
        }
    }
    Ok((index, mac_of(&link)))
}

/// The pod side of an IPv4 pod: its /32, `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1` and
/// a permanent ARP entry for the gateway. Runs inside the pod's namespace; returns the pod end's MAC.
async fn wire_pod_v4(
    pod: &Handle,
    ifname: &str,
    ip: Ipv4Addr,
    gateway_mac: &[u8],
) -> Result<String, DataplaneError> {
    let (index, mac) = pod_link_up(pod, ifname).await?;
    pod.address()
        .add(index, IpAddr::V4(ip), POD_PREFIX_V4)
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
    add_default_route(pod, index, IpAddr::V4(GATEWAY)).await?;
    add_gateway_neighbour(pod, index, IpAddr::V4(GATEWAY), gateway_mac).await?;
    Ok(format_mac(&mac))
}

/// The pod side of an IPv6 pod: its /128 (without DAD, see below), `default via fe80::1 dev eth0` and a
/// permanent neighbour entry for fe80::1 pointing at the host veth's MAC. fe80::/64 on eth0 is the kernel's
/// own route. Returns once no address on eth0 is tentative: the pod can send and receive when ADD returns.
///
/// Duplicate address detection is off for eth0 (`accept_dad=0`, set before the link comes up) and for the
/// /128 (`IFA_F_NODAD`). DAD asks the link whether another node holds the address; this link is a veth pair
/// whose only other node is the host veth. The host never holds pod addresses (it routes them), and the
/// /128 is one EC2 assigned to this node's ENI and ipamd gave to this pod alone, so the question has one
/// answer, and asking it costs each ADD one to two seconds (the kernel's random delay plus one
/// retransmission interval). The eth0 link-local address is derived from a MAC the kernel chose for this
/// veth; the host end's MAC is another random one (ours).
async fn wire_pod_v6(
    pod: &Handle,
    ifname: &str,
    ip: Ipv6Addr,
    gateway_mac: &[u8],
) -> Result<String, DataplaneError> {
    let key = ipv6_conf_key(ifname, "accept_dad")?;
    sysctl::write(&key, "0").map_err(|error| {
        DataplaneError::System(format!(
            "IPv6 is not usable on {ifname} in the pod's namespace (is it disabled there?): {error}"
        ))
    })?;
    let (index, mac) = pod_link_up(pod, ifname).await?;
    let mut add = pod.address().add(index, IpAddr::V6(ip), POD_PREFIX_V6);
    let message = add.message_mut();
    message.header.flags |= AddressHeaderFlags::Nodad;
    message
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    add.execute()
        .await
        .map_err(netlink_error(format!("adding {ip}/128")))?;
    add_default_route(pod, index, IpAddr::V6(GATEWAY_V6)).await?;
    add_gateway_neighbour(pod, index, IpAddr::V6(GATEWAY_V6), gateway_mac).await?;
    // The kernel makes eth0's link-local address (and its fe80::/64 route) when the link's carrier comes up,
    // from its link watcher: wait for it too, unless the namespace makes none (addr_gen_mode 1, "none").
    let link_local = sysctl::read(&ipv6_conf_key(ifname, "addr_gen_mode")?).map_or(true, |mode| mode != "1");
    wait_for_pod_address(pod, index, ifname, ip, link_local).await?;
    Ok(format_mac(&mac))
}

/// The pod's `default via <gateway> dev <index>`, protocol boot, in the gateway's family.
async fn add_default_route(pod: &Handle, index: u32, gateway: IpAddr) -> Result<(), DataplaneError> {
    let (route, what) = match gateway {
        IpAddr::V4(gateway) => (
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .output_interface(index)
                .protocol(RouteProtocol::Boot)
                .build(),
            "adding the default route",
        ),
        IpAddr::V6(gateway) => (
            RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gateway)
                .output_interface(index)
                .protocol(RouteProtocol::Boot)
                .build(),
            "adding the IPv6 default route",
        ),
    };
    pod.route()
        .add(route)
        .execute()
        .await
        .map_err(netlink_error(what))
}

/// A permanent neighbour entry (ARP for IPv4) for the pod's gateway, pointing at the host veth's MAC.
async fn add_gateway_neighbour(
    pod: &Handle,
    index: u32,
    gateway: IpAddr,
    gateway_mac: &[u8],
) -> Result<(), DataplaneError> {
    let what = if gateway.is_ipv4() {
        "adding the gateway's ARP entry"
    } else {
        "adding the gateway's neighbour entry"
    };
    pod.neighbours()
        .add(index, gateway)
        .link_layer_address(gateway_mac)
        .state(NeighbourState::Permanent)
        .execute()
        .await
        .map_err(netlink_error(what))
}

/// How long ADD waits for IPv6 addresses to become usable, as the original (10 s). With DAD off on both
/// ends this is a bound, not an expected wait: the addresses are usable at once.
pub const IPV6_SETTLE_DEADLINE: Duration = Duration::from_secs(10);

/// The host veth's IPv6 settings, written before it comes up: the original's `accept_ra=0` (a pod's router
/// advertisement must not configure the node), `accept_redirects=1` and `forwarding=0` (host behaviour on
/// this link; whether the node forwards is `net.ipv6.conf.all.forwarding`), and vpcni's `accept_dad=0`
/// (see [`wire_pod_v6`]: the host veth's link-local address is usable at once, and the node needs it to
/// resolve the pod's address).
pub const HOST_VETH_IPV6_SETTINGS: [(&str, &str); 4] = [
    ("accept_ra", "0"),
    ("accept_redirects", "1"),
    ("forwarding", "0"),
    ("accept_dad", "0"),
];

pub(crate) fn host_veth_ipv6_settings(host_veth: &str) -> Result<(), DataplaneError> {
    for (setting, value) in HOST_VETH_IPV6_SETTINGS {
        sysctl::write(&ipv6_conf_key(host_veth, setting)?, value).map_err(|error| {
            DataplaneError::System(format!(
                "IPv6 is not usable on the node's veth {host_veth} (is IPv6 disabled on the node?): {error}"
            ))
        })?;
    }
    Ok(())
}

/// An address message's flags: the 32-bit attribute when the kernel sent one, else the header's 8 bits.
fn address_flags(message: &AddressMessage) -> AddressFlags {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(flags) => Some(*flags),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(message.header.flags.bits())))
}

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

/// The IPv6 addresses on a link, with their flags.
pub(crate) async fn ipv6_addresses(
    handle: &Handle,
    index: u32,
) -> Result<Vec<(Ipv6Addr, u8, AddressFlags)>, DataplaneError> {
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing addresses"))?;
    Ok(messages
        .iter()
        .filter_map(|m| match address_of(m)? {
            IpAddr::V6(ip) => Some((ip, m.header.prefix_len, address_flags(m))),
            IpAddr::V4(_) => None,
        })
        .collect())
}

fn describe(addresses: &[(Ipv6Addr, u8, AddressFlags)]) -> String {
    addresses
        .iter()
        .map(|(ip, len, flags)| format!("{ip}/{len} {flags:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Polls `done` every 20 ms until it says yes, fails, or [`IPV6_SETTLE_DEADLINE`] passes.
pub(crate) async fn settle<F, Fut>(mut done: F, what: impl Fn(&str) -> String) -> Result<(), DataplaneError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<(), String>, DataplaneError>>,
{
    let deadline = tokio::time::Instant::now() + IPV6_SETTLE_DEADLINE;
    loop {
        let last = match done().await? {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(DataplaneError::System(what(&last)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the pod's /128 (and, when `link_local`, a link-local address) is on eth0 and no address there
/// is tentative; fails at once if DAD failed.
async fn wait_for_pod_address(
    pod: &Handle,
    index: u32,
    ifname: &str,
    ip: Ipv6Addr,
    link_local: bool,
) -> Result<(), DataplaneError> {
    settle(
        || async move {
            let addresses = ipv6_addresses(pod, index).await?;
            if let Some((failed, _, _)) = addresses
                .iter()
                .find(|(_, _, flags)| flags.contains(AddressFlags::Dadfailed))
            {
                return Err(DataplaneError::System(format!(
                    "duplicate address detection failed for {failed} on {ifname} in the pod: another node on \
                     the link holds it"
                )));
            }
            let present = addresses.iter().any(|(a, _, _)| *a == ip)
                && (!link_local || addresses.iter().any(|(a, _, _)| a.is_unicast_link_local()));
            let tentative = addresses
                .iter()
                .any(|(_, _, flags)| flags.contains(AddressFlags::Tentative));
            Ok(if present && !tentative {
                Ok(())
            } else {
                Err(describe(&addresses))
            })
        },
        |last| {
            format!(
                "{ip}/128 on {ifname} in the pod is not usable after {} s (addresses: {last})",
                IPV6_SETTLE_DEADLINE.as_secs()
            )
        },
    )
    .await
}

/// Waits until the host veth has a usable link-local address: the node sends its neighbour solicitations
/// for the pod's address from it, and sends none while it is missing or tentative.
async fn wait_for_host_link_local(host: &Handle, index: u32, host_veth: &str) -> Result<(), DataplaneError> {
    settle(
        || async move {
            let addresses = ipv6_addresses(host, index).await?;
            if addresses
                .iter()
                .any(|(ip, _, flags)| ip.is_unicast_link_local() && flags.contains(AddressFlags::Dadfailed))
            {
                return Err(DataplaneError::System(format!(
                    "duplicate address detection failed for the link-local address of {host_veth}: {}",
                    describe(&addresses)
                )));
            }
            let usable = addresses
                .iter()
                .any(|(ip, _, flags)| ip.is_unicast_link_local() && !flags.contains(AddressFlags::Tentative));
            Ok(if usable { Ok(()) } else { Err(describe(&addresses)) })
        },
        |last| {
            format!(
                "the node's veth {host_veth} has no usable link-local address after {} s, so the node \
                 cannot reach the pod (addresses: [{last}]; is addr_gen_mode none on the node?)",
                IPV6_SETTLE_DEADLINE.as_secs()
            )
        },
    )
    .await
}

/// The node's route to a pod: `<ip>/32 dev <veth> scope link` or `<ip>/128 dev <veth>`, protocol boot, in
/// main. Without `oif`, the message DEL uses to find it (the kernel matches scope and protocol too).
fn host_route(ip: IpAddr, oif: Option<u32>) -> RouteMessage {
    let mut message = match ip {
        IpAddr::V4(ip) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ip, POD_PREFIX_V4)
            .table_id(MAIN_TABLE)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Boot)
            .build(),
        IpAddr::V6(ip) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(ip, POD_PREFIX_V6)
            .table_id(MAIN_TABLE)
            .protocol(RouteProtocol::Boot)
            .build(),
    };
    if let Some(index) = oif {
        message.attributes.push(RouteAttribute::Oif(index));
    }
    message
}

/// `to <ip> lookup <table>` (or `from`) at `priority`, in the address's family.
async fn add_rule(
    host: &Handle,
    ip: IpAddr,
    from: bool,
    table: u32,
    priority: u32,
) -> Result<(), rtnetlink::Error> {
    let rule = host
        .rule()
        .add()
        .table_id(table)
        .priority(priority)
        .action(RuleAction::ToTable);
    match (ip, from) {
        (IpAddr::V4(ip), false) => rule.v4().destination_prefix(ip, POD_PREFIX_V4).execute().await,
        (IpAddr::V4(ip), true) => rule.v4().source_prefix(ip, POD_PREFIX_V4).execute().await,
        (IpAddr::V6(ip), false) => rule.v6().destination_prefix(ip, POD_PREFIX_V6).execute().await,
        (IpAddr::V6(ip), true) => rule.v6().source_prefix(ip, POD_PREFIX_V6).execute().await,
    }
}

/// Removes a pod's wiring: its rules, and the host veth (which takes the pod end, the host route and, when
/// the namespace still exists, everything inside it). Missing pieces are fine: DEL may come twice, or after
/// the namespace is gone.
pub async fn teardown_pod(host_veth: &str, ip: Option<impl Into<IpAddr>>) -> Result<(), DataplaneError> {
    let host = connect()?;
    teardown_with(&host, host_veth, ip.map(Into::into)).await
}

/// What the original's DEL does: removes the pod's rules and the node's route to it, and leaves the veth
/// pair to the pod's namespace, which the runtime deletes next (the kernel then destroys the pair in its
/// batched namespace cleanup). Deleting a veth here would cost the caller an RCU grace period, about
/// 15–25 ms. A later ADD of a pod with the same name replaces a veth left behind. Missing pieces are fine.
/// Either family: an IPv6 pod's rules and `/128` route go the same way.
pub async fn unroute_pod(ip: impl Into<IpAddr>) -> Result<(), DataplaneError> {
    let ip = ip.into();
    let host = connect()?;
    let mut errors = remove_rules(&host, ip).await?;
    // The kernel matches scope and protocol too: they must be those ADD used.
    match host.route().del(host_route(ip, None)).execute().await {
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

async fn remove_rules(host: &Handle, ip: IpAddr) -> Result<Vec<String>, DataplaneError> {
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

async fn teardown_with(host: &Handle, host_veth: &str, ip: Option<IpAddr>) -> Result<(), DataplaneError> {
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

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn route_destination(route: &RouteMessage) -> Option<IpAddr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => route_address(d),
        _ => None,
    })
}

fn route_gateway(route: &RouteMessage) -> Option<IpAddr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_address(g),
        _ => None,
    })
}

fn route_oif(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The routes of the calling namespace in the address family of `ip`.
async fn routes_of_family(handle: &Handle, ip: IpAddr) -> Result<Vec<RouteMessage>, DataplaneError> {
    let request = match ip {
        IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    handle
        .route()
        .get(request)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing routes"))
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
    let prefix = match spec.ip {
        IpAddr::V4(_) => POD_PREFIX_V4,
        IpAddr::V6(_) => POD_PREFIX_V6,
    };
    let routes = routes_of_family(&host, spec.ip).await?;
    let has_host_route = routes.iter().any(|r| {
        r.header.destination_prefix_length == prefix
            && route_destination(r) == Some(spec.ip)
            && route_oif(r) == Some(host_index)
    });
    if !has_host_route {
        differences.push(format!(
            "host route {}/{prefix} dev {} is missing",
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
    if spec.ip.is_ipv6() {
        for (setting, value) in HOST_VETH_IPV6_SETTINGS {
            let key = ipv6_conf_key(&spec.host_veth, setting)?;
            match sysctl::read(&key) {
                Ok(current) if current == value => {}
                Ok(current) => differences.push(format!("{key} is {current}, not {value}")),
                Err(error) => differences.push(error.to_string()),
            }
        }
    }

    let ifname = spec.ifname.clone();
    let ip = spec.ip;
    let pod_differences = in_netns(&spec.netns, move |pod| {
        Box::pin(async move { check_pod_side(&pod, &ifname, ip, &host_mac).await })
    })?;
    differences.extend(pod_differences);
    Ok(differences)
}

/// The pod's half of [`check_pod`]: its address, the gateway's neighbour entry and the default route.
async fn check_pod_side(
    pod: &Handle,
    ifname: &str,
    ip: IpAddr,
    host_mac: &[u8],
) -> Result<Vec<String>, DataplaneError> {
    let mut differences = Vec::new();
    let Some(link) = link_by_name(pod, ifname).await? else {
        return Ok(vec![format!("{ifname} is missing in the pod")]);
    };
    let index = link.header.index;
    let (prefix, gateway, entry) = match ip {
        IpAddr::V4(_) => (POD_PREFIX_V4, IpAddr::V4(GATEWAY), "ARP entry"),
        IpAddr::V6(_) => (POD_PREFIX_V6, IpAddr::V6(GATEWAY_V6), "neighbour entry"),
    };
    let addresses: Vec<AddressMessage> = pod
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing pod addresses"))?;
    match addresses
        .iter()
        .find(|a| a.header.prefix_len == prefix && address_of(a) == Some(ip))
    {
        None => differences.push(format!("{ip}/{prefix} is not on {ifname}")),
        Some(address) => {
            let flags = address_flags(address);
            if flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed) {
                differences.push(format!("{ip}/{prefix} on {ifname} is not usable ({flags:?})"));
            }
        }
    }
    let neighbours: Vec<_> = pod
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing pod neighbours"))?;
    let neighbour_ok = neighbours.iter().any(|n| {
        n.header.ifindex == index
            && n.header.state == NeighbourState::Permanent
            && n.attributes.iter().any(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => IpAddr::V4(*d) == gateway,
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(d)) => IpAddr::V6(*d) == gateway,
                _ => false,
            })
            && n.attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(mac) if mac == host_mac))
    });
    if !neighbour_ok {
        differences.push(format!(
            "permanent {entry} for {gateway} with the host veth's MAC is missing"
        ));
    }
    let routes = routes_of_family(pod, ip).await?;
    let default = routes
        .iter()
        .any(|r| r.header.destination_prefix_length == 0 && route_gateway(r) == Some(gateway));
    if !default {
        differences.push(format!("default route via {gateway} is missing"));
    }
    Ok(differences)
}
