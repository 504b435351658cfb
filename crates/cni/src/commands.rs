//! The CNI verbs: each asks ipamd what it needs and wires or unwires the pod.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use vpcni_rpc::{AddNetworkRequest, Attachment, DelNetworkRequest, FailureReason, GarbageCollectRequest};

use crate::ipamd::{IpamdClient, refusal_error};
use crate::record::{self, PodRecord};
use crate::spec::{CniError, CniResult, Command, ErrorCode, Interface, Invocation, IpConfig, NetConf, Route};
use vpcni_dataplane::naming::host_veth_name as veth_name;
use vpcni_dataplane::{PodSpec, check_pod, setup_pod, unroute_pod};
use vpcni_layout::{MAIN_TABLE, POD_GATEWAY, POD_GATEWAY_V6};

/// Runs one verb; `Some(json)` is printed on stdout.
pub fn run(invocation: &Invocation, config: &NetConf) -> Result<Option<String>, CniError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(
                ErrorCode::Internal,
                "could not start the plugin's runtime",
                e.to_string(),
            )
        })?;
    runtime.block_on(async {
        match invocation.command {
            Command::Add => add(invocation, config).await.map(Some),
            Command::Del => del(invocation, config).await.map(|()| None),
            Command::Check => check(invocation, config).await.map(|()| None),
            Command::Status => status(config).await.map(|()| None),
            Command::Gc => garbage_collect(config).await.map(|()| None),
            Command::Version => Ok(Some(crate::spec::version_reply(&config.cni_version))),
        }
    })
}

fn host_veth_name(invocation: &Invocation, config: &NetConf) -> String {
    veth_name(
        &config.veth_prefix,
        &invocation.args.pod_namespace,
        &invocation.args.pod_name,
    )
}

async fn add(invocation: &Invocation, config: &NetConf) -> Result<String, CniError> {
    let netns = invocation.netns.clone().unwrap_or_default();
    // Before asking for an address: a pod whose sandbox is gone must not cost one, even briefly.
    crate::netns::check(&netns)?;
    let client = IpamdClient::connect(&config.ipamd_socket).await?;
    let reply = client
        .add(AddNetworkRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
            k8s_pod_name: invocation.args.pod_name.clone(),
            k8s_pod_namespace: invocation.args.pod_namespace.clone(),
            k8s_pod_infra_container_id: invocation.args.infra_container_id.clone(),
            netns: netns.clone(),
            if_name: invocation.ifname.clone(),
            network_name: config.name.clone(),
            container_id: invocation.container_id.clone(),
            requires_multi_nic_attachment: false,
            k8s_pod_uid: invocation.args.pod_uid.clone().unwrap_or_default(),
        })
        .await?;
    if !reply.success {
        return Err(refusal_error(&reply));
    }
    let allocation = match parse_allocation(&reply) {
        Ok(allocation) => allocation,
        Err(error) => {
            release_after_failed_add(&client, invocation, config).await;
            return Err(error);
        }
    };
    let ip = allocation.ip;
    let pod = PodSpec {
        netns: netns.clone(),
        ifname: invocation.ifname.clone(),
        host_veth: host_veth_name(invocation, config),
        ip,
        mtu: config.mtu,
        route_table: Some(allocation.route_table),
    };
    tracing::info!(container = %invocation.container_id, %ip, veth = %pod.host_veth, table = allocation.route_table, "wiring pod");
    let wired = match setup_pod(&pod).await {
        Ok(wired) => wired,
        Err(error) => {
            // setup_pod undid its own work; give the address back so a retry, or another pod, can have it.
            release_after_failed_add(&client, invocation, config).await;
            let code = if matches!(error, vpcni_dataplane::DataplaneError::Netns { .. }) {
                ErrorCode::UnknownContainer
            } else {
                ErrorCode::Internal
            };
            return Err(CniError::new(
                code,
                format!("failed to wire the pod with {ip}"),
                error.to_string(),
            ));
        }
    };

    let record = PodRecord {
        ip,
        device_number: allocation.device_number,
        route_table: allocation.route_table,
    };
    if let Err(error) = record::write(config, &invocation.container_id, &invocation.ifname, &record) {
        // The pod is wired and ipamd knows it: DEL works without the record (ipamd's answer or prevResult
        // name the address). Only CHECK loses the route table it would compare the `from` rule with.
        tracing::warn!(container = %invocation.container_id, "pod record not written, CHECK will not verify the ENI's rule: {error}");
    }

    // A valid result for every version: the two ends of the veth with their real MACs, the pod's end in its
    // namespace (`sandbox` = CNI_NETNS), the address on the pod's end (`/32` via 169.254.1.1 or `/128` via
    // fe80::1). Nothing else: runtimes parse it.
    let (address, gateway, default) = match ip {
        IpAddr::V4(ip) => (
            IpNet::V4(Ipv4Net::from(ip)),
            IpAddr::V4(POD_GATEWAY),
            IpNet::V4(Ipv4Net::default()),
        ),
        IpAddr::V6(ip) => (
            IpNet::V6(Ipv6Net::from(ip)),
            IpAddr::V6(POD_GATEWAY_V6),
            IpNet::V6(Ipv6Net::default()),
        ),
    };
    let result = CniResult {
        interfaces: vec![
            Interface {
                name: pod.host_veth.clone(),
                mac: wired.host_mac,
                sandbox: None,
                mtu: Some(config.mtu),
            },
            Interface {
                name: pod.ifname.clone(),
                mac: wired.container_mac,
                sandbox: Some(netns),
                mtu: Some(config.mtu),
            },
        ],
        ips: vec![IpConfig {
            address,
            gateway: Some(gateway),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: default,
            gw: Some(gateway),
        }],
    };
    Ok(result
        .appended_to(
            config.prev_result_raw.as_ref(),
            &config.cni_version,
            config.version,
        )
        .to_string())
}

/// What ipamd gave.
struct Allocation {
    /// An IPv4 pod's address, or an IPv6 pod's (ipamd in IPv6 mode).
    ip: IpAddr,
    device_number: u32,
    route_table: u32,
}

fn parse_allocation(reply: &vpcni_rpc::AddNetworkReply) -> Result<Allocation, CniError> {
    let internal = |msg: &str, details: String| CniError::new(ErrorCode::Internal, msg, details);
    let allocation = reply.ip_allocation_metadata.first().ok_or_else(|| {
        internal(
            "ipamd reported success without an address",
            "empty IPAllocationMetadata".into(),
        )
    })?;
    let ip = pod_address(&allocation.i_pv4_addr, &allocation.i_pv6_addr)?;
    let device_number = u32::try_from(allocation.device_number).map_err(|_| {
        internal(
            "ipamd returned an invalid device number",
            allocation.device_number.to_string(),
        )
    })?;
    let route_table = match allocation.route_table_id {
        // The primary ENI's pods use the main table.
        0 => MAIN_TABLE,
        table => u32::try_from(table)
            .map_err(|_| internal("ipamd returned an invalid route table", table.to_string()))?,
    };
    Ok(Allocation {
        ip,
        device_number,
        route_table,
    })
}

/// The one address of ipamd's answer: `IPv4Addr` (ipamd in IPv4 mode) or `IPv6Addr` (IPv6 mode), never
/// both and never neither. An IPv6 address must be one a pod can hold: not link-local, multicast, loopback,
/// unspecified or IPv4-mapped.
fn pod_address(ipv4: &str, ipv6: &str) -> Result<IpAddr, CniError> {
    let internal = |msg: String, details: String| CniError::new(ErrorCode::Internal, msg, details);
    match (ipv4.is_empty(), ipv6.is_empty()) {
        (false, true) => ipv4
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| internal("ipamd returned an invalid address".into(), ipv4.to_owned())),
        (true, false) => {
            let ip: Ipv6Addr = ipv6
                .parse()
                .map_err(|_| internal("ipamd returned an invalid IPv6 address".into(), ipv6.to_owned()))?;
            let unusable = ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || ip.is_unicast_link_local()
                || ip.to_ipv4_mapped().is_some();
            if unusable {
                return Err(internal(
                    format!("ipamd returned {ip}, which is not an address a pod can hold"),
                    "expected a global or unique-local IPv6 address from the node's prefix".into(),
                ));
            }
            Ok(IpAddr::V6(ip))
        }
        (true, true) => Err(internal(
            "ipamd reported success without an address".into(),
            "IPAllocationMetadata has neither IPv4Addr nor IPv6Addr".into(),
        )),
        (false, false) => Err(internal(
            format!("ipamd returned both {ipv4} and {ipv6}; vpcni wires one address family per pod"),
            "IPAllocationMetadata has both IPv4Addr and IPv6Addr".into(),
        )),
    }
}

/// Gives back the address of an ADD that failed after ipamd answered. The ADD's own error is what the
/// runtime must see, so a failed release is logged, not returned: the address stays allocated to this
/// container until the DEL the runtime sends after a failed ADD (CNI spec), or GC, releases it.
async fn release_after_failed_add(client: &IpamdClient, invocation: &Invocation, config: &NetConf) {
    if let Err(error) = client.del(del_request(invocation, config, "SetupNSFailed")).await {
        tracing::warn!(
            container = %invocation.container_id,
            "giving the address back after the failed ADD failed; it stays held until the runtime's DEL \
             or GC releases it: {error}"
        );
    }
}

fn del_request(invocation: &Invocation, config: &NetConf, reason: &str) -> DelNetworkRequest {
    DelNetworkRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
        k8s_pod_name: invocation.args.pod_name.clone(),
        k8s_pod_namespace: invocation.args.pod_namespace.clone(),
        k8s_pod_infra_container_id: invocation.args.infra_container_id.clone(),
        reason: reason.to_owned(),
        if_name: invocation.ifname.clone(),
        network_name: config.name.clone(),
        container_id: invocation.container_id.clone(),
        k8s_pod_uid: invocation.args.pod_uid.clone().unwrap_or_default(),
    }
}

/// DEL must succeed whenever it can: repeated, without a netns, with ipamd down (the address comes back
/// with GC, or when ipamd reconciles).
///
/// As the original's, DEL removes the pod's rules and the node's route to it and leaves the veth pair to
/// the pod's namespace, which the runtime deletes next: deleting a veth costs an RCU grace period (15–25
/// ms) that the kernel's batched namespace cleanup pays instead. The rules are found by the pod's address
/// alone (any table), so the address is all DEL needs: from `prevResult` (runtimes send it; its `ips` are
/// read the same way whether vpcni, an older vpcni or the original wrote it), else from ADD's record (a
/// 0.3.x runtime sends no `prevResult`), and from ipamd's answer. With the address known up front, the
/// unrouting overlaps ipamd's release.
async fn del(invocation: &Invocation, config: &NetConf) -> Result<(), CniError> {
    let record = match record::read(config, &invocation.container_id, &invocation.ifname) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(container = %invocation.container_id, "pod record unreadable, using prevResult and ipamd: {error}");
            None
        }
    };
    let known = config
        .prev_result
        .as_ref()
        .and_then(|r| r.pod_address(&invocation.ifname))
        .or(record.map(|r| r.ip));
    let (released, mut outcome) = match known {
        Some(ip) => tokio::join!(release(invocation, config), unroute_pod(ip)),
        None => (release(invocation, config).await, Ok(())),
    };
    // ipamd knew the pod by another address than prevResult said: that one is unrouted too.
    if let Some(released) = released
        && Some(released) != known
    {
        outcome = outcome.and(unroute_pod(released).await);
    }
    outcome.map_err(|error| {
        CniError::new(
            ErrorCode::Internal,
            "failed to remove the pod's routes and rules",
            error.to_string(),
        )
    })?;
    // Only once the rules are gone: a DEL that failed is retried, and the retry may need the record. A
    // record that cannot be removed does not fail DEL (the pod would never finish terminating): nothing
    // reads it once the pod is gone, and GC removes it with the next valid-attachments list.
    if let Err(error) = record::remove(config, &invocation.container_id, &invocation.ifname) {
        tracing::warn!(container = %invocation.container_id, "pod record not removed, GC will: {error}");
    }
    Ok(())
}

/// Asks ipamd to release the pod's address; the address it held (either family), if ipamd answered.
async fn release(invocation: &Invocation, config: &NetConf) -> Option<IpAddr> {
    match IpamdClient::connect(&config.ipamd_socket).await {
        Ok(client) => match client.del(del_request(invocation, config, "PodDeleted")).await {
            Ok(reply) => reply.ip_allocation_metadata.first().and_then(|m| {
                m.i_pv4_addr
                    .parse::<Ipv4Addr>()
                    .map(IpAddr::V4)
                    .or_else(|_| m.i_pv6_addr.parse::<Ipv6Addr>().map(IpAddr::V6))
                    .ok()
            }),
            Err(error) => {
                tracing::warn!(container = %invocation.container_id, "ipamd DEL failed, tearing down anyway: {error}");
                None
            }
        },
        Err(error) => {
            tracing::warn!(container = %invocation.container_id, "ipamd unreachable, tearing down from prevResult: {error}");
            None
        }
    }
}

/// The route table CHECK compares the pod's `from` rule with: ADD's record when it is about this address,
/// else what an older `prevResult` says.
fn route_table_for(invocation: &Invocation, config: &NetConf, ip: IpAddr) -> Option<u32> {
    match record::read(config, &invocation.container_id, &invocation.ifname) {
        Ok(Some(record)) if record.ip == ip => return Some(record.route_table),
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(container = %invocation.container_id, "pod record unreadable: {error}");
        }
    }
    config
        .prev_result
        .as_ref()
        .and_then(|r| r.legacy_route_table(&invocation.ifname))
}

async fn check(invocation: &Invocation, config: &NetConf) -> Result<(), CniError> {
    if !config.version.has_check() {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            "CHECK needs cniVersion 0.4.0 or later",
            "",
        ));
    }
    let ip = config
        .prev_result
        .as_ref()
        .and_then(|r| r.pod_address(&invocation.ifname))
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                "CHECK needs a prevResult with the pod's address",
                "",
            )
        })?;
    let pod = PodSpec {
        netns: invocation.netns.clone().unwrap_or_default(),
        ifname: invocation.ifname.clone(),
        host_veth: host_veth_name(invocation, config),
        ip,
        mtu: config.mtu,
        route_table: route_table_for(invocation, config, ip),
    };
    let differences = check_pod(&pod).await.map_err(|error| {
        CniError::new(
            ErrorCode::Internal,
            "could not inspect the pod's network",
            error.to_string(),
        )
    })?;
    if differences.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::Internal,
            format!(
                "pod network differs from what ADD set up ({} differences)",
                differences.len()
            ),
            differences.join("; "),
        ))
    }
}

/// STATUS fails (code 50, "cannot serve ADD") when ipamd is unreachable or still starting, or when it has no
/// free address and cannot get one: the subnet is exhausted, or EC2 refuses. A node that is merely full
/// (max pods) or still growing its pool reports success: the scheduler already stops at max pods, and a
/// failed STATUS marks the whole node's network not ready, which would evict its running pods.
async fn status(config: &NetConf) -> Result<(), CniError> {
    let not_available =
        |msg: String, details: String| CniError::new(ErrorCode::PluginNotAvailable, msg, details);
    let client = IpamdClient::connect(&config.ipamd_socket)
        .await
        .map_err(|e| not_available(e.msg, e.details))?;
    let reply = client
        .status()
        .await
        .map_err(|e| not_available(e.msg, e.details))?;
    if !reply.ready {
        return Err(not_available("ipamd is starting".to_owned(), reply.message));
    }
    let stuck = matches!(
        reply.reason(),
        FailureReason::SubnetExhausted
            | FailureReason::NoFreePrefix
            | FailureReason::Ec2Error
            | FailureReason::EniConfigUnavailable
    );
    if reply.available_addresses == 0 && stuck {
        let reason = reply.reason().as_str_name();
        return Err(not_available(
            if reply.message.is_empty() {
                "no address available for new pods".to_owned()
            } else {
                reply.message
            },
            format!("ipamd reason {reason}"),
        ));
    }
    Ok(())
}

async fn garbage_collect(config: &NetConf) -> Result<(), CniError> {
    let Some(valid) = &config.valid_attachments else {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "GC needs cni.dev/valid-attachments",
            "",
        ));
    };
    // The node's own records first: they need no ipamd, and the runtime's list is the truth for both.
    let (pruned, errors) = record::prune(config, valid);
    for error in &errors {
        tracing::warn!("GC: pod record not removed: {error}");
    }
    tracing::debug!(pruned, "GC: pod records of departed attachments removed");
    let client = IpamdClient::connect(&config.ipamd_socket).await?;
    let reply = client
        .garbage_collect(GarbageCollectRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
            network_name: config.name.clone(),
            valid_attachments: valid
                .iter()
                .map(|a| Attachment {
                    network_name: config.name.clone(),
                    container_id: a.container_id.clone(),
                    if_name: a.ifname.clone(),
                })
                .collect(),
        })
        .await?;
    tracing::info!(released = reply.released.len(), "GC");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ipamd answers one family: IPv4 mode fills `IPv4Addr`, IPv6 mode `IPv6Addr`. Anything else is ipamd's
    /// error (code 100), said in a sentence, before anything is wired.
    #[test]
    fn the_reply_carries_exactly_one_usable_address() {
        assert_eq!(pod_address("10.0.1.5", ""), Ok("10.0.1.5".parse().unwrap()));
        assert_eq!(
            pod_address("", "2600:1f14:abc:de00:1f2e::5"),
            Ok("2600:1f14:abc:de00:1f2e::5".parse().unwrap())
        );
        let refused = |ipv4: &str, ipv6: &str, needle: &str| {
            let error = pod_address(ipv4, ipv6).unwrap_err();
            assert_eq!(error.code, ErrorCode::Internal, "{ipv4:?} {ipv6:?}: {error}");
            assert!(error.msg.contains(needle), "{ipv4:?} {ipv6:?}: {error}");
        };
        refused("", "", "without an address");
        refused("10.0.1.5", "2600:1f14::5", "both 10.0.1.5 and 2600:1f14::5");
        refused("", "2600:1f14::zz", "invalid IPv6 address");
        refused("", "10.0.1.5", "invalid IPv6 address");
        refused("banana", "", "invalid address");
        for unusable in ["::", "::1", "fe80::5", "ff02::1", "::ffff:10.0.1.5"] {
            refused("", unusable, "not an address a pod can hold");
        }
    }
}
