//! The VPC router namespace: subnet gateways and the metadata address on its `lo`, the internet gateway,
//! and one link per attached ENI, programmed the way the VPC delivers (to the ENI an address is assigned
//! to) and checks (a packet's source must be assigned to the ENI it came from).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::LabError;
use crate::cmd::{ip, ip_batch, iptables_restore, sysctl};
use crate::spec::{ENI_MTU, IGW_IP, INTERNET_IP, INTERNET_NET, LabSpec, METADATA_IP};
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
    ip_batch(
        Some(internet),
        &[
            format!("address add {INTERNET_IP}/{} dev eth0", INTERNET_NET.prefix_len()),
            "link set eth0 up".to_owned(),
            format!("route add default via {IGW_IP} dev eth0"),
        ],
    )
}

/// Installs the internet gateway's rules (once the nodes' primary addresses are known).
pub fn install_gateway(state: &LabState, router: &str) -> Result<(), LabError> {
    iptables_restore(router, &gateway_rules(state))
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
    ip_batch(
        Some(router),
        &[
            format!("link set {link} up"),
            format!("route replace {}/32 dev {link}", eni.primary_ip),
            format!(
                "neigh replace {} lladdr {} dev {link} nud permanent",
                eni.primary_ip, eni.mac
            ),
        ],
    )
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
/// is permanent), and removes routes of those it no longer holds.
pub fn reroute(router: &str, eni: &EniLink, add: &[Ipv4Net], remove: &[Ipv4Net]) -> Result<(), LabError> {
    let mut lines: Vec<String> = remove
        .iter()
        .map(|net| format!("route del {net} dev {}", eni.router_link))
        .collect();
    lines.extend(add.iter().map(|net| {
        format!(
            "route replace {net} via {} dev {} onlink",
            eni.primary_ip, eni.router_link
        )
    }));
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
/// through the subnet's gateway.
pub fn configure_primary(
    node_netns: &str,
    node_link: &str,
    ip: Ipv4Addr,
    subnet: Ipv4Net,
) -> Result<(), LabError> {
    ip_batch(
        Some(node_netns),
        &[
            format!("address replace {ip}/{} dev {node_link}", subnet.prefix_len()),
            format!("link set {node_link} up"),
            format!(
                "route replace default via {} dev {node_link}",
                LabSpec::gateway(subnet)
            ),
        ],
    )
}
