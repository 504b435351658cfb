//! Netlink plumbing: a connection in the current namespace or inside another one, and small lookups.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::rule::{RuleAttribute, RuleMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::DataplaneError;

pub fn netlink_error(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> DataplaneError {
    let what = what.into();
    move |source| DataplaneError::Netlink { what, source }
}

/// A netlink handle in the calling thread's namespace, its connection driven on the current runtime.
pub fn connect() -> Result<Handle, DataplaneError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| DataplaneError::System(format!("netlink socket: {e}")))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Runs `work` in the network namespace at `path`, on a fresh thread with its own runtime: the netlink
/// socket it opens stays bound to that namespace, and the caller's thread never changes namespace.
pub fn in_netns<T: Send + 'static>(
    path: &str,
    work: impl FnOnce(Handle) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DataplaneError>>>>
    + Send
    + 'static,
) -> Result<T, DataplaneError> {
    let netns = File::open(path).map_err(|source| DataplaneError::Netns {
        path: path.to_owned(),
        source,
    })?;
    let path = path.to_owned();
    std::thread::spawn(move || {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            DataplaneError::Netns {
                path: path.clone(),
                source: std::io::Error::from(e),
            }
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DataplaneError::System(format!("runtime: {e}")))?;
        runtime.block_on(async move {
            let handle = connect()?;
            work(handle).await
        })
    })
    .join()
    .map_err(|_| DataplaneError::System("namespace worker panicked".into()))?
}

/// A link by name, if present.
pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, DataplaneError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(netlink_error(format!("looking up link {name}"))(e)),
    }
}

/// A link's MAC address.
pub fn mac_of(link: &LinkMessage) -> Vec<u8> {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// `aa:bb:…` for a MAC.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// IPv4 rules at a priority.
pub async fn rules_at(handle: &Handle, priority: u32) -> Result<Vec<RuleMessage>, DataplaneError> {
    rules_of_family_at(handle, rtnetlink::IpVersion::V4, priority).await
}

/// Rules of one family at a priority.
pub async fn rules_of_family_at(
    handle: &Handle,
    family: rtnetlink::IpVersion,
    priority: u32,
) -> Result<Vec<RuleMessage>, DataplaneError> {
    let rules: Vec<RuleMessage> = handle
        .rule()
        .get(family)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_error("listing rules"))?;
    Ok(rules
        .into_iter()
        .filter(|r| {
            r.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Priority(p) if *p == priority))
        })
        .collect())
}

/// Rules at `priority` that match `to` or `from` the address (in the address's family).
pub async fn rules_for(
    handle: &Handle,
    priority: u32,
    ip: IpAddr,
    from: bool,
) -> Result<Vec<RuleMessage>, DataplaneError> {
    let family = match ip {
        IpAddr::V4(_) => rtnetlink::IpVersion::V4,
        IpAddr::V6(_) => rtnetlink::IpVersion::V6,
    };
    Ok(rules_of_family_at(handle, family, priority)
        .await?
        .into_iter()
        .filter(|rule| {
            rule.attributes.iter().any(|a| match a {
                RuleAttribute::Source(addr) if from => *addr == ip,
                RuleAttribute::Destination(addr) if !from => *addr == ip,
                _ => false,
            })
        })
        .collect())
}

/// Deletes one rule; `what` says which kind, for the error.
pub async fn delete_rule(handle: &Handle, rule: RuleMessage, what: &str) -> Result<(), DataplaneError> {
    handle
        .rule()
        .del(rule)
        .execute()
        .await
        .map_err(netlink_error(what))
}

/// A random locally administered unicast MAC, so host veths never collide with real NICs.
pub fn random_mac() -> Vec<u8> {
    let mut bytes = [0u8; 6];
    if let Ok(mut urandom) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = urandom.read_exact(&mut bytes);
    }
    bytes[0] = (bytes[0] | 0x02) & 0xfe;
    bytes.to_vec()
}

/// Creates a veth pair: `host_veth` in the current namespace (a random MAC of ours), its peer `ifname` in the
/// namespace `netns`, both with `mtu`; a host veth of that name left by an earlier pod is deleted first (it
/// would block ours). Returns the host end's index and MAC. Neither end is brought up.
pub async fn create_veth_pair(
    host: &Handle,
    netns: &File,
    host_veth: &str,
    ifname: &str,
    mtu: u32,
) -> Result<(u32, Vec<u8>), DataplaneError> {
    if let Some(stale) = link_by_name(host, host_veth).await? {
        host.link()
            .del(stale.header.index)
            .execute()
            .await
            .map_err(netlink_error(format!("removing a stale veth {host_veth}")))?;
    }
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(ifname.to_owned())
        .mtu(mtu)
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let veth = LinkVeth::new(host_veth, ifname)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(mtu)
        .address(random_mac())
        .build();
    host.link()
        .add(veth)
        .execute()
        .await
        .map_err(netlink_error(format!("creating veth {host_veth}")))?;
    let host_link = link_by_name(host, host_veth)
        .await?
        .ok_or_else(|| DataplaneError::LinkNotFound(host_veth.to_owned()))?;
    Ok((host_link.header.index, mac_of(&host_link)))
}
