//! The VPC router namespace: subnet gateways and the metadata address on its `lo`, the internet gateway,
//! and one link per attached ENI, programmed the way the VPC delivers (to the ENI an address is assigned
//! to) and checks (a packet's source must be assigned to the ENI it came from).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::LabError;
use crate::cmd::{ip, ip_batch, ip6tables_restore, iptables_restore, sysctl};
use crate::spec::{
    ENI_MTU, IGW_IP, IGW_IP_V6, INTERNET_IP, INTERNET_IP_V6, INTERNET_NET, INTERNET_NET_V6, LabSpec,
    METADATA_IP, ROUTER_LINK_LOCAL,
};
use crate::state::LabState;

/// The router's end of the internet link.
pub const IGW_LINK: &str = "igw";

/// Builds the router and internet namespaces' fixed parts (both namespaces exist already).
pub fn setup(state: &LabState, router: &str, internet: &str) -> Result<(), LabError> {
    let mut lines = vec![format!("address add {METADATA_IP}/32 dev lo")];
    for subnet in state.spec.subnets.iter().chain(&state.spec.pod_subnets) {
        lines.push(format!("address add {}/32 dev lo", LabSpec::gateway(*subnet)));
    }
    lines.push(format!(
        "link add {IGW_LINK} mtu 1500 type veth peer name eth0 mtu 1500 netns {internet}"
    ));
    lines.push(format!(
        "address add {IGW_IP}/{} dev {IGW_LINK}",
        INTERNET_NET.prefix_len()
    ));
    lines.push(format!("link set {IGW_LINK} up"));
    ip_batch(Some(router), &lines)?;
    sysctl(
        router,
        &[
            ("net.ipv4.ip_forward", "1"),
            // Each ENI link sets its own rp_filter; the effective value is the larger of `all` and the link's.
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.all.send_redirects", "0"),
        ],
    )?;
    let mut internet_lines = vec![
        format!("address add {INTERNET_IP}/{} dev eth0", INTERNET_NET.prefix_len()),
        "link set eth0 up".to_owned(),
        format!("route add default via {IGW_IP} dev eth0"),
    ];
    if state.spec.ipv6 {
        setup_ipv6(router, internet)?;
        internet_lines.push(format!(
            "address add {INTERNET_IP_V6}/{} dev eth0 nodad",
            INTERNET_NET_V6.prefix_len()
        ));
        internet_lines.push(format!("route add default via {IGW_IP_V6} dev eth0"));
    }
    ip_batch(Some(internet), &internet_lines)
}

/// IPv6 labs: the router forwards IPv6, reaches the internet on the igw link, and checks the source of
/// every IPv6 packet that arrives from an ENI. IPv6 has no `rp_filter`; the `rpfilter` match does the same
/// thing (the route back to the source must leave by the link the packet came in on), so a packet from a
/// node whose source is not one of its ENI's addresses or prefixes is dropped, as EC2's source/destination
/// check does. The internet namespace needs no NAT: the VPC's /56 is public, as behind an internet
/// gateway.
fn setup_ipv6(router: &str, internet: &str) -> Result<(), LabError> {
    for netns in [router, internet] {
        sysctl(
            netns,
            &[
                ("net.ipv6.conf.all.disable_ipv6", "0"),
                ("net.ipv6.conf.default.accept_ra", "0"),
                ("net.ipv6.conf.all.accept_ra", "0"),
            ],
        )?;
    }
    sysctl(router, &[("net.ipv6.conf.all.forwarding", "1")])?;
    ip_batch(
        Some(router),
        &[format!(
            "address add {IGW_IP_V6}/{} dev {IGW_LINK} nodad",
            INTERNET_NET_V6.prefix_len()
        )],
    )?;
    ip6tables_restore(router, &source_check_rules())
}

/// The IPv6 source check, as ip6tables rules (links to ENIs are named `n<node>…`).
pub fn source_check_rules() -> String {
    "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
     -A PREROUTING -i n+ -m rpfilter --invert -m comment --comment \"EC2 source check: source not assigned to this ENI\" -j DROP\n\
     COMMIT\n"
        .to_owned()
}

/// Installs the internet gateway's rules (once the nodes' primary addresses and the VPC's IPv6 block are
/// known).
pub fn install_gateway(state: &LabState, router: &str, vpc_ipv6: Option<Ipv6Net>) -> Result<(), LabError> {
    iptables_restore(router, &gateway_rules(state))?;
    match (state.spec.ipv6, vpc_ipv6) {
        (true, Some(block)) => ip6tables_restore(router, &gateway_rules_v6(block)),
        (true, None) => Err(LabError::Spec(
            "the fabric reported no IPv6 block for the VPC, so the internet gateway cannot tell the VPC's \
             addresses from others; see fabric.log in the lab's state directory"
                .into(),
        )),
        (false, _) => Ok(()),
    }
}

/// The internet gateway for IPv6: the VPC's /56 is public, so its addresses leave as they are (no NAT);
/// any other source is dropped; as for IPv4, nothing may come in unasked (the nodes' security groups
/// admit no inbound traffic from the internet).
pub fn gateway_rules_v6(vpc_block: Ipv6Net) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -i {IGW_LINK} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A FORWARD -i {IGW_LINK} -m comment --comment \"IGW: no unsolicited inbound\" -j DROP\n\
         -A FORWARD -o {IGW_LINK} -s {vpc_block} -m comment --comment \"IGW: the VPC's IPv6 block is public\" -j ACCEPT\n\
         -A FORWARD -o {IGW_LINK} -m comment --comment \"IGW: source outside the VPC's IPv6 block\" -j DROP\n\
         COMMIT\n"
    )
}

/// The internet gateway, as iptables rules: each node's primary address leaves as its public address;
/// any other private source is dropped, as at a real IGW; nothing may come in unasked.
pub fn gateway_rules(state: &LabState) -> String {
    let mut nat = String::new();
    let mut forward = String::new();
    for node in &state.nodes {
        nat.push_str(&format!(
            "-A POSTROUTING -o {IGW_LINK} -s {}/32 -m comment --comment \"IGW: {} public address\" -j SNAT --to-source {}\n",
            node.primary_ip, node.name, node.public_ip
        ));
        forward.push_str(&format!(
            "-A FORWARD -o {IGW_LINK} -s {}/32 -m comment --comment \"IGW: {} may leave\" -j ACCEPT\n",
            node.primary_ip, node.name
        ));
    }
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         {nat}COMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -i {IGW_LINK} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n\
         -A FORWARD -i {IGW_LINK} -m comment --comment \"IGW: no unsolicited inbound\" -j DROP\n\
         {forward}\
         -A FORWARD -o {IGW_LINK} -m comment --comment \"IGW: private source without a public address\" -j DROP\n\
         COMMIT\n"
    )
}

/// An ENI to plug into a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLink {
    /// The node's namespace.
    pub node_netns: String,
    /// The router's end.
    pub router_link: String,
    /// The node's end (`eth<device>`).
    pub node_link: String,
    /// The ENI's MAC.
    pub mac: String,
    /// The ENI's primary address.
    pub primary_ip: Ipv4Addr,
    /// IPv6 labs: the node end's link-local address (EUI-64 of the MAC), the next hop of the ENI's IPv6
    /// addresses and prefixes.
    pub link_local: Option<Ipv6Addr>,
}

/// The link-local address a link with `mac` gives itself (EUI-64: the MAC with `ff:fe` in the middle and
/// the universal/local bit flipped), as the node's end of an ENI link has.
pub fn eui64_link_local(mac: &str) -> Option<Ipv6Addr> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b, c, d, e, f] = bytes[..] else {
        return None;
    };
    let id = [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f];
    let group = |i: usize| u16::from_be_bytes([id[i], id[i + 1]]);
    Some(Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        group(0),
        group(2),
        group(4),
        group(6),
    ))
}

/// Plugs an ENI: a veth pair whose node end carries the ENI's MAC; the router end answers ARP for the
/// rest of the VPC (proxy_arp), checks sources (rp_filter=1) and knows the ENI's MAC permanently.
pub fn plug(router: &str, eni: &EniLink) -> Result<(), LabError> {
    // A link of the same name left by an ENI that was replaced goes first (its peer goes with it).
    let _ = ip(Some(router), &["link", "del", &eni.router_link]);
    ip_batch(
        Some(router),
        &[format!(
            "link add {} mtu {ENI_MTU} type veth peer name {} address {} mtu {ENI_MTU} netns {}",
            eni.router_link, eni.node_link, eni.mac, eni.node_netns
        )],
    )?;
    let link = &eni.router_link;
    sysctl(
        router,
        &[
            (&format!("net.ipv4.conf.{link}.proxy_arp"), "1"),
            (&format!("net.ipv4.conf.{link}.rp_filter"), "1"),
            (&format!("net.ipv4.conf.{link}.send_redirects"), "0"),
            // Answer proxied ARP at once rather than after up to 0.8 s.
            (&format!("net.ipv4.neigh.{link}.proxy_delay"), "0"),
        ],
    )?;
    let mut lines = vec![
        format!("link set {link} up"),
        format!("route replace {}/32 dev {link}", eni.primary_ip),
        format!(
            "neigh replace {} lladdr {} dev {link} nud permanent",
            eni.primary_ip, eni.mac
        ),
    ];
    if let Some(link_local) = eni.link_local {
        lines.push(format!("address add {ROUTER_LINK_LOCAL}/64 dev {link} nodad"));
        lines.push(format!(
            "neigh replace {link_local} lladdr {} dev {link} nud permanent",
            eni.mac
        ));
    }
    ip_batch(Some(router), &lines)
}

/// Removes an ENI's link; its routes and neighbour go with it.
pub fn unplug(router: &str, router_link: &str) -> Result<(), LabError> {
    match ip(Some(router), &["link", "del", router_link]) {
        Ok(_) => Ok(()),
        Err(LabError::Command { detail, .. }) if detail.contains("Cannot find device") => Ok(()),
        Err(error) => Err(error),
    }
}

/// Routes secondary addresses and prefixes to an ENI (through its primary address, whose neighbour entry
/// is permanent; IPv6 ones through the node end's link-local address, whose entry is permanent too), and
/// removes routes of those it no longer holds.
pub fn reroute(router: &str, eni: &EniLink, add: &[IpNet], remove: &[IpNet]) -> Result<(), LabError> {
    let mut lines: Vec<String> = remove
        .iter()
        .map(|net| format!("route del {net} dev {}", eni.router_link))
        .collect();
    for net in add {
        match net {
            IpNet::V4(net) => lines.push(format!(
                "route replace {net} via {} dev {} onlink",
                eni.primary_ip, eni.router_link
            )),
            IpNet::V6(net) => {
                let Some(link_local) = eni.link_local else {
                    return Err(LabError::Spec(format!(
                        "cannot route {net} to {}: the ENI link has no IPv6 next hop",
                        eni.router_link
                    )));
                };
                lines.push(format!(
                    "route replace {net} via {link_local} dev {}",
                    eni.router_link
                ));
            }
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    // A route already gone (another ENI took the address) must not stop the rest.
    ip_batch(Some(router), &lines).or_else(|_| {
        for line in &lines {
            let args: Vec<&str> = line.split_whitespace().collect();
            if let Err(error) = ip(Some(router), &args)
                && !line.starts_with("route del")
            {
                return Err(error);
            }
        }
        Ok(())
    })
}

/// What DHCP does on EC2 for the primary ENI: its address with the subnet's mask, and the default route
/// through the subnet's gateway; in IPv6 labs also what DHCPv6 and the router's advertisements do: the
/// ENI's IPv6 address (a /128) and the default route through the router's link-local address.
pub fn configure_primary(
    node_netns: &str,
    node_link: &str,
    ip: Ipv4Addr,
    subnet: Ipv4Net,
    ipv6: Option<Ipv6Addr>,
) -> Result<(), LabError> {
    let mut lines = vec![
        format!("address replace {ip}/{} dev {node_link}", subnet.prefix_len()),
        format!("link set {node_link} up"),
        format!(
            "route replace default via {} dev {node_link}",
            LabSpec::gateway(subnet)
        ),
    ];
    if let Some(ipv6) = ipv6 {
        lines.push(format!("address replace {ipv6}/128 dev {node_link} nodad"));
        lines.push(format!(
            "route replace default via {ROUTER_LINK_LOCAL} dev {node_link}"
        ));
    }
    ip_batch(Some(node_netns), &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_the_macs_eui64() {
        assert_eq!(
            eui64_link_local("02:a1:b2:c3:d4:e5"),
            Some("fe80::a1:b2ff:fec3:d4e5".parse().unwrap())
        );
        assert_eq!(
            eui64_link_local("0e:00:00:00:00:01"),
            Some("fe80::c00:ff:fe00:1".parse().unwrap())
        );
        assert_eq!(eui64_link_local("not a mac"), None);
        assert_eq!(eui64_link_local("02:00:00:00:00"), None);
    }
}
