//! The egress interface of a single-family pod (the original's `egress-cni`): a second veth pair whose pod
//! end (`v4if0` or `v6if0`) holds a node-local address from the egress range, with a default route of that
//! family to the node; the node routes the address back to the pair's host end. SNAT to the node's own
//! address is [`crate::iptables::egress`].
//!
//! IPv4 egress (IPv6 pods), as the original lays it out: the pod's address with the range's prefix length
//! but no on-link route for the range, `<gateway> dev v4if0 scope link src <addr>`, `<range> via <gateway>
//! src <addr>` and `default via <gateway> dev v4if0`; the host end holds the gateway (`169.254.172.1/32
//! scope link`, host-local's gateway: the range's first address) and `<addr>/32 dev <host end> scope link`.
//! The pod resolves the gateway with ARP, answered by the host end.
//!
//! IPv6 egress (IPv4 pods, `ENABLE_V6_EGRESS`): IPv6 is switched off on the pod's `eth0`, `v6if0` holds the
//! address with the range's prefix length and `default via <host end's link-local> dev v6if0`; the node
//! routes `<addr>/128` to the host end.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::DataplaneError;
use crate::netlink::{connect, create_veth_pair, format_mac, in_netns, link_by_name, netlink_error};
use crate::pod::{host_veth_ipv6_settings, ipv6_addresses, pod_link_up, settle};
use crate::sysctl::{self, ipv6_conf_key};

/// What to wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSpec {
    /// The pod's network namespace.
    pub netns: String,
    /// The pod's main interface (`CNI_IFNAME`, `eth0`): IPv6 egress switches IPv6 off on it.
    pub pod_ifname: String,
    /// The egress interface in the pod (`v4if0` or `v6if0`).
    pub ifname: String,
    /// The pair's host end.
    pub host_veth: String,
    /// The pod's egress address.
    pub address: IpAddr,
    /// The egress range's prefix length (22 or 118).
    pub prefix_len: u8,
    /// The range's gateway (its first address): IPv4 egress puts it on the host end.
    pub gateway: IpAddr,
    /// MTU of both ends.
    pub mtu: u32,
}

/// What was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressWired {
    /// Host end's MAC.
    pub host_mac: String,
    /// Pod end's MAC.
    pub container_mac: String,
}

/// Wires a pod's egress interface; a pair left by an earlier ADD of the same pod is replaced. On failure,
/// whatever was created is removed again.
pub async fn setup_egress(spec: &EgressSpec) -> Result<EgressWired, DataplaneError> {
    let host = connect()?;
    match wire(&host, spec).await {
        Ok(wired) => Ok(wired),
        Err(error) => {
            if let Err(undo) = teardown_egress(Some(&spec.netns), &spec.ifname, &spec.host_veth).await {
                tracing::warn!("undoing a failed egress ADD: {undo}");
            }
            Err(error)
        }
    }
}

async fn wire(host: &Handle, spec: &EgressSpec) -> Result<EgressWired, DataplaneError> {
    let netns = File::open(&spec.netns).map_err(|source| DataplaneError::Netns {
        path: spec.netns.clone(),
        source,
    })?;
    // A repeated ADD: start from nothing, on both sides.
    remove_pod_end(&spec.netns, &spec.ifname)?;
    if spec.address.is_ipv6() {
        let pod_ifname = spec.pod_ifname.clone();
        // As the original: the pod's IPv6 leaves through v6if0 only.
        in_netns(&spec.netns, move |_| {
            Box::pin(async move { sysctl::write(&ipv6_conf_key(&pod_ifname, "disable_ipv6")?, "1") })
        })?;
    }
    let (host_index, host_mac) =
        create_veth_pair(host, &netns, &spec.host_veth, &spec.ifname, spec.mtu).await?;
    if spec.address.is_ipv6() {
        host_veth_ipv6_settings(&spec.host_veth)?;
    }
    host.link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(netlink_error("bringing the egress host veth up"))?;

    let ifname = spec.ifname.clone();
    let prefix_len = spec.prefix_len;
    let container_mac = match (spec.address, spec.gateway) {
        (IpAddr::V4(address), IpAddr::V4(gateway)) => {
            // The node forwards the pod's IPv4 (the original's plugin switches it on too).
            sysctl::write("net.ipv4.ip_forward", "1")?;
            host.address()
                .add(host_index, IpAddr::V4(gateway), 32)
                .replace()
                .execute()
                .await
                .map_err(netlink_error(format!("adding {gateway}/32 to the host veth")))?;
            in_netns(&spec.netns, move |pod| {
                Box::pin(async move { wire_pod_v4(&pod, &ifname, address, prefix_len, gateway).await })
            })?
        }
        (IpAddr::V6(address), _) => {
            // The host end makes its link-local address when the pair's carrier comes up: the pod end first.
            let pod_end = ifname.clone();
            in_netns(&spec.netns, move |pod| {
                Box::pin(async move {
                    sysctl::write(&ipv6_conf_key(&pod_end, "accept_dad")?, "0")?;
                    pod_link_up(&pod, &pod_end).await.map(|_| ())
                })
            })?;
            let link_local = host_link_local(host, host_index, &spec.host_veth).await?;
            in_netns(&spec.netns, move |pod| {
                Box::pin(async move { wire_pod_v6(&pod, &ifname, address, prefix_len, link_local).await })
            })?
        }
        (IpAddr::V4(address), IpAddr::V6(gateway)) => {
            return Err(DataplaneError::System(format!(
                "egress address {address} and gateway {gateway} are not of one family"
            )));
        }
    };
    replace_route(
        host,
        node_route(spec.address, host_index),
        format!("adding the node's route to {}", spec.address),
    )
    .await?;
    Ok(EgressWired {
        host_mac: format_mac(&host_mac),
        container_mac,
    })
}

/// The node's route to the pod's egress address: `<addr>/32 dev <host end> scope link` or
/// `<addr>/128 dev <host end>`.
fn node_route(address: IpAddr, host_index: u32) -> RouteMessage {
    match address {
        IpAddr::V4(address) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(address, 32)
            .output_interface(host_index)
            .scope(RouteScope::Link)
            .build(),
        IpAddr::V6(address) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(address, 128)
            .output_interface(host_index)
            .build(),
    }
}

/// Adds a route, replacing one a repeated ADD left.
async fn replace_route(handle: &Handle, route: RouteMessage, what: String) -> Result<(), DataplaneError> {
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(netlink_error(what))
}

/// Deletes the link `name` if it is there.
async fn remove_link(handle: &Handle, name: &str, what: String) -> Result<(), DataplaneError> {
    if let Some(link) = link_by_name(handle, name).await? {
        handle
            .link()
            .del(link.header.index)
            .execute()
            .await
            .map_err(netlink_error(what))?;
    }
    Ok(())
}

/// Adds an address without the kernel's on-link route for its prefix (`noprefixroute`) and without DAD.
async fn add_address(
    pod: &Handle,
    index: u32,
    address: IpAddr,
    prefix_len: u8,
) -> Result<(), DataplaneError> {
    let mut add = pod.address().add(index, address, prefix_len);
    let message = add.message_mut();
    let mut flags = AddressFlags::Noprefixroute;
    if address.is_ipv6() {
        message.header.flags |= AddressHeaderFlags::Nodad;
        flags |= AddressFlags::Nodad;
    }
    message.attributes.push(AddressAttribute::Flags(flags));
    add.execute()
        .await
        .map_err(netlink_error(format!("adding {address}/{prefix_len}")))
}

async fn wire_pod_v4(
    pod: &Handle,
    ifname: &str,
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> Result<String, DataplaneError> {
    let (index, mac) = pod_link_up(pod, ifname).await?;
    add_address(pod, index, IpAddr::V4(address), prefix_len).await?;
    let range = ipnet::Ipv4Net::new(address, prefix_len)
        .map_err(|e| DataplaneError::System(format!("{address}/{prefix_len}: {e}")))?
        .trunc();
    let routes = [
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(gateway, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .pref_source(address)
            .build(),
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(range.network(), prefix_len)
            .gateway(gateway)
            .output_interface(index)
            .pref_source(address)
            .build(),
        RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build(),
    ];
    for route in routes {
        replace_route(pod, route, format!("adding an egress route on {ifname}")).await?;
    }
    Ok(format_mac(&mac))
}

async fn wire_pod_v6(
    pod: &Handle,
    ifname: &str,
    address: Ipv6Addr,
    prefix_len: u8,
    host_link_local: Ipv6Addr,
) -> Result<String, DataplaneError> {
    let (index, mac) = pod_link_up(pod, ifname).await?;
    add_address(pod, index, IpAddr::V6(address), prefix_len).await?;
    let route = RouteMessageBuilder::<Ipv6Addr>::new()
        .gateway(host_link_local)
        .output_interface(index)
        .build();
    replace_route(pod, route, format!("adding the IPv6 default route on {ifname}")).await?;
    Ok(format_mac(&mac))
}

/// The host end's link-local address once it is usable (DAD is off on it, so at once).
async fn host_link_local(host: &Handle, index: u32, host_veth: &str) -> Result<Ipv6Addr, DataplaneError> {
    async fn usable(host: &Handle, index: u32) -> Result<Result<Ipv6Addr, String>, DataplaneError> {
        let addresses = ipv6_addresses(host, index).await?;
        Ok(addresses
            .iter()
            .find(|(ip, _, flags)| ip.is_unicast_link_local() && !flags.contains(AddressFlags::Tentative))
            .map(|(ip, _, _)| *ip)
            .ok_or_else(|| format!("{addresses:?}")))
    }
    settle(
        || async move { Ok(usable(host, index).await?.map(|_| ())) },
        |last| format!("the egress veth {host_veth} has no usable link-local address (addresses: {last})"),
    )
    .await?;
    usable(host, index)
        .await?
        .map_err(|last| DataplaneError::System(format!("{host_veth} lost its link-local address ({last})")))
}

/// Removes the egress interface from the pod (when its namespace is still there) and the host end (which
/// takes the node's route to the pod). Missing pieces are fine: DEL may come twice, or after the namespace
/// is gone.
pub async fn teardown_egress(
    netns: Option<&str>,
    ifname: &str,
    host_veth: &str,
) -> Result<(), DataplaneError> {
    if let Some(netns) = netns.filter(|n| !n.is_empty() && std::path::Path::new(n).exists()) {
        remove_pod_end(netns, ifname)?;
    }
    let host = connect()?;
    remove_link(&host, host_veth, format!("removing the egress veth {host_veth}")).await
}

/// Deletes `ifname` in the pod's namespace if it is there (the pair goes with it).
fn remove_pod_end(netns: &str, ifname: &str) -> Result<(), DataplaneError> {
    let ifname = ifname.to_owned();
    in_netns(netns, move |pod| {
        Box::pin(async move { remove_link(&pod, &ifname, format!("removing {ifname} in the pod")).await })
    })
}
