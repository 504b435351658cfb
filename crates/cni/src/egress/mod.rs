//! `vpcni-egress`: the chained egress plugin (the original's `egress-cni`). After `vpcni` wired an IPv6
//! pod, it gives the pod an IPv4 address from 169.254.172.0/22 on a second interface (`v4if0`), a default
//! route to the node, and SNAT to the node's primary IPv4 address; with `ENABLE_V6_EGRESS` in an IPv4
//! cluster, the reverse (fd00::ac:00/118 on `v6if0`, SNAT to the node's IPv6 address). Which one follows
//! from `nodeIP`'s family, as in the original.
//!
//! The configuration is the original's entry: `enabled`, `mtu`, `randomizeSNAT`, `nodeIP`,
//! `pluginLogFile`, `pluginLogLevel`, and an `ipam` section in host-local's form, whose store this plugin
//! keeps itself ([`store`]).

pub mod store;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Map, Value};
use vpcni_dataplane::egress::{EgressSpec, setup_egress, teardown_egress};
use vpcni_dataplane::iptables::SnatPorts;
use vpcni_dataplane::iptables::egress::{
    EgressFamily, EgressSnat, add_snat, chain_comment, chain_name, ensure_reject, remove_snat,
};
use vpcni_layout::egress as layout;

use crate::spec::{CniError, CniResult, Command, ErrorCode, Interface, Invocation, IpConfig, NetConf};
use store::{Range, Store, StoreError};

/// The egress plugin's own settings (the common ones are in [`NetConf`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressConf {
    /// `enabled: "true"`; otherwise ADD passes `prevResult` through and DEL does nothing.
    pub enabled: bool,
    /// `randomizeSNAT`: `prng` (default), `hashrandom` or `none`.
    pub ports: SnatPorts,
    /// `nodeIP`: the address the pods' egress traffic is SNATed to; its family picks the egress family.
    pub node_ip: Option<IpAddr>,
    /// `ipam.ranges[0][0].subnet`.
    pub subnet: Option<IpNet>,
    /// `ipam.dataDir` (default: the original's directory of the egress family).
    pub data_dir: Option<PathBuf>,
}

fn invalid(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg, details)
}

impl EgressConf {
    /// Reads the egress fields of a configuration (already parsed as JSON and as a [`NetConf`]).
    pub fn parse(object: &Map<String, Value>) -> Result<Self, CniError> {
        let text = |field: &str| -> Result<Option<String>, CniError> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(Value::Bool(b)) if field == "enabled" => Ok(Some(b.to_string())),
                Some(other) => Err(invalid(format!("{field} must be a string, not {other}"), "")),
            }
        };
        // The original enables the plugin for "true" only; anything but "true" or "false" is a typo here.
        let enabled = match text("enabled")?.as_deref() {
            Some("true") => true,
            None | Some("false") => false,
            Some(other) => {
                return Err(invalid(
                    format!("enabled {other:?} is not valid"),
                    "expected \"true\" or \"false\"",
                ));
            }
        };
        let ports = match text("randomizeSNAT")?.as_deref() {
            None | Some("" | "prng") => SnatPorts::RandomFully,
            Some("hashrandom") => SnatPorts::Random,
            Some("none") => SnatPorts::Sequential,
            Some(other) => {
                return Err(invalid(
                    format!("randomizeSNAT {other:?} is not valid"),
                    "expected none, hashrandom or prng",
                ));
            }
        };
        let node_ip = match text("nodeIP")?.filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
                invalid(
                    format!("nodeIP {text:?} is not an IP address"),
                    "expected the node's primary IPv4 address (IPv6 pods) or its IPv6 address (IPv4 pods)",
                )
            })?),
        };
        let (subnet, data_dir) = match object.get("ipam") {
            None | Some(Value::Null) => (None, None),
            Some(Value::Object(ipam)) => parse_ipam(ipam)?,
            Some(_) => return Err(invalid("ipam must be an object", "")),
        };
        Ok(Self {
            enabled,
            ports,
            node_ip,
            subnet,
            data_dir,
        })
    }
}

fn parse_ipam(ipam: &Map<String, Value>) -> Result<(Option<IpNet>, Option<PathBuf>), CniError> {
    match ipam.get("type").and_then(Value::as_str) {
        None | Some("host-local") => {}
        Some(other) => {
            return Err(invalid(
                format!("ipam.type {other:?} is not supported"),
                "vpcni-egress keeps host-local's store itself: expected host-local",
            ));
        }
    }
    let subnet = match ipam.get("ranges") {
        None | Some(Value::Null) => None,
        Some(ranges) => {
            let sets = ranges.as_array().filter(|s| s.len() == 1);
            let set = sets.and_then(|s| s[0].as_array()).filter(|r| r.len() == 1);
            let text = set
                .and_then(|r| r[0].get("subnet"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "ipam.ranges must hold exactly one range with a subnet",
                        "expected [[{\"subnet\": \"169.254.172.0/22\"}]]",
                    )
                })?;
            Some(text.parse::<IpNet>().map_err(|_| {
                invalid(
                    format!("ipam.ranges subnet {text:?} is not a CIDR"),
                    "expected e.g. 169.254.172.0/22",
                )
            })?)
        }
    };
    let data_dir = match ipam.get("dataDir") {
        None | Some(Value::Null) => None,
        Some(Value::String(dir)) if dir.starts_with('/') && !dir.split('/').any(|p| p == "..") => {
            Some(PathBuf::from(dir))
        }
        Some(other) => {
            return Err(invalid(
                format!("ipam.dataDir {other} is not an absolute path"),
                "",
            ));
        }
    };
    Ok((subnet, data_dir))
}

/// Everything an enabled plugin needs, checked: the family, the node's address, the range and the store.
#[derive(Debug, Clone)]
struct Plan {
    family: EgressFamily,
    node_ip: IpAddr,
    range: Range,
    data_dir: PathBuf,
    ports: SnatPorts,
    /// `v4if0` or `v6if0`.
    ifname: &'static str,
    /// `E4-` or `E6-`.
    infix: &'static str,
    chain: String,
    comment: String,
}

fn plan(invocation: &Invocation, config: &NetConf, egress: &EgressConf) -> Result<Plan, CniError> {
    plan_for(&invocation.container_id, config, egress)
}

fn plan_for(container_id: &str, config: &NetConf, egress: &EgressConf) -> Result<Plan, CniError> {
    let node_ip = egress.node_ip.ok_or_else(|| {
        invalid(
            "nodeIP is missing from the egress plugin's configuration",
            "expected the node's primary IPv4 address (IPv6 pods) or its IPv6 address (IPv4 pods)",
        )
    })?;
    let family = EgressFamily::of(node_ip);
    let usable = match node_ip {
        IpAddr::V4(ip) => {
            !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast())
        }
        // As the original: IPv6 egress needs a global unicast address to SNAT to.
        IpAddr::V6(ip) => {
            !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_unicast_link_local())
        }
    };
    if !usable {
        return Err(invalid(
            format!("nodeIP {node_ip} is not an address the node's traffic can leave with"),
            "expected the node's primary IPv4 address or a global IPv6 address",
        ));
    }
    let (default_subnet, default_dir, ifname, infix) = match family {
        EgressFamily::V4 => (
            IpNet::new(IpAddr::V4(layout::V4_RANGE), layout::V4_RANGE_PREFIX),
            layout::V4_DATA_DIR,
            layout::V4_INTERFACE,
            layout::V4_CHAIN_INFIX,
        ),
        EgressFamily::V6 => (
            IpNet::new(IpAddr::V6(layout::V6_RANGE), layout::V6_RANGE_PREFIX),
            layout::V6_DATA_DIR,
            layout::V6_INTERFACE,
            layout::V6_CHAIN_INFIX,
        ),
    };
    let subnet = match egress.subnet {
        Some(subnet) => subnet,
        None => {
            default_subnet.map_err(|e| CniError::new(ErrorCode::Internal, "egress range", e.to_string()))?
        }
    };
    if subnet.addr().is_ipv4() != node_ip.is_ipv4() {
        return Err(invalid(
            format!("ipam.ranges subnet {subnet} is not of nodeIP {node_ip}'s family"),
            "IPv4 egress (nodeIP IPv4) takes an IPv4 range such as 169.254.172.0/22; IPv6 egress an IPv6 \
             range such as fd00::ac:00/118",
        ));
    }
    let range = Range::new(subnet).map_err(|e| invalid(format!("ipam.ranges: {e}"), ""))?;
    Ok(Plan {
        family,
        node_ip,
        range,
        data_dir: egress
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(default_dir)),
        ports: egress.ports,
        ifname,
        infix,
        chain: chain_name(infix, &config.name, container_id),
        comment: chain_comment(&config.name, container_id),
    })
}

fn store_error(error: StoreError) -> CniError {
    match error {
        StoreError::Exhausted(_) => CniError::new(ErrorCode::TryAgainLater, error.to_string(), ""),
        _ => CniError::new(
            ErrorCode::IoFailure,
            "the egress address store failed",
            error.to_string(),
        ),
    }
}

fn internal(msg: impl Into<String>, error: impl std::fmt::Display) -> CniError {
    CniError::new(ErrorCode::Internal, msg, error.to_string())
}

/// The pair's host end: `veth` and 11 hex digits of sha1 of the container id and interface, as stable as
/// the pod (the original's name is random; a stable one lets DEL find it without the pod's namespace).
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    vpcni_dataplane::naming::host_veth_name("veth", "egress", &format!("{container_id}.{ifname}"))
}

/// Runs one verb; `Some(json)` is printed on stdout.
pub fn run(
    invocation: &Invocation,
    config: &NetConf,
    egress: &EgressConf,
) -> Result<Option<String>, CniError> {
    match invocation.command {
        Command::Add => add(invocation, config, egress).map(Some),
        Command::Del => del(invocation, config, egress).map(|()| None),
        Command::Check => check(invocation, config, egress).map(|()| None),
        Command::Gc => garbage_collect(config, egress).map(|()| None),
        Command::Status => Ok(None),
        Command::Version => Ok(Some(crate::spec::version_reply(&config.cni_version))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| internal("could not start the plugin's runtime", e))
}

fn add(invocation: &Invocation, config: &NetConf, egress: &EgressConf) -> Result<String, CniError> {
    let Some(prev) = config.prev_result_raw.as_ref() else {
        return Err(invalid(
            "prevResult is missing: vpcni-egress must be chained after the main plugin",
            "",
        ));
    };
    if !egress.enabled {
        return Ok(prev.to_string());
    }
    let plan = plan(invocation, config, egress)?;
    let netns = invocation.netns.clone().unwrap_or_default();
    crate::netns::check(&netns)?;
    let store = Store::open(&plan.data_dir, &config.name).map_err(store_error)?;
    let (address, new) = store
        .allocate(&plan.range, &invocation.container_id, &invocation.ifname)
        .map_err(store_error)?;
    let host_veth = host_veth_name(&invocation.container_id, &invocation.ifname);
    tracing::info!(container = %invocation.container_id, %address, new, veth = %host_veth, "wiring egress");
    match wire(invocation, config, &plan, &netns, address, &host_veth) {
        Ok(result) => Ok(result),
        Err(error) => {
            // As the original: a failed ADD gives the address back (the runtime's DEL would too).
            if let Err(undo) = store.release(&invocation.container_id, &invocation.ifname) {
                tracing::warn!("releasing {address} after the failed ADD: {undo}");
            }
            if let Err(undo) = remove_snat(plan.family, &plan.chain, &plan.comment) {
                tracing::warn!("removing {} after the failed ADD: {undo}", plan.chain);
            }
            let undo = runtime().and_then(|r| {
                r.block_on(teardown_egress(Some(&netns), plan.ifname, &host_veth))
                    .map_err(|e| internal("removing the egress interface", e))
            });
            if let Err(undo) = undo {
                tracing::warn!("removing {host_veth} after the failed ADD: {undo}");
            }
            Err(error)
        }
    }
}

fn wire(
    invocation: &Invocation,
    config: &NetConf,
    plan: &Plan,
    netns: &str,
    address: IpAddr,
    host_veth: &str,
) -> Result<String, CniError> {
    let spec = EgressSpec {
        netns: netns.to_owned(),
        pod_ifname: invocation.ifname.clone(),
        ifname: plan.ifname.to_owned(),
        host_veth: host_veth.to_owned(),
        address,
        prefix_len: plan.range.subnet.prefix_len(),
        gateway: plan.range.gateway,
        mtu: config.mtu,
    };
    let wired = runtime()?.block_on(setup_egress(&spec)).map_err(|error| {
        let code = if matches!(error, vpcni_dataplane::DataplaneError::Netns { .. }) {
            ErrorCode::UnknownContainer
        } else {
            ErrorCode::Internal
        };
        CniError::new(
            code,
            format!("failed to wire the egress interface with {address}"),
            error.to_string(),
        )
    })?;
    // The reject rule is ipamd's (as the original's); ensuring it here too keeps an egress address
    // unreachable from outside the node whatever ran before (it is one -C when present).
    ensure_reject(plan.family).map_err(|e| internal("failed to add the egress reject rule", e))?;
    add_snat(&EgressSnat {
        chain: plan.chain.clone(),
        comment: plan.comment.clone(),
        source: address,
        node_ip: plan.node_ip,
        ports: plan.ports,
    })
    .map_err(|e| internal(format!("failed to SNAT {address} to {}", plan.node_ip), e))?;

    let ours = CniResult {
        interfaces: vec![
            Interface {
                name: host_veth.to_owned(),
                mac: wired.host_mac,
                sandbox: None,
                mtu: Some(config.mtu),
            },
            Interface {
                name: plan.ifname.to_owned(),
                mac: wired.container_mac,
                sandbox: Some(netns.to_owned()),
                mtu: Some(config.mtu),
            },
        ],
        ips: vec![IpConfig {
            address: IpNet::new(address, plan.range.subnet.prefix_len())
                .map_err(|e| internal("egress address", e))?,
            gateway: Some(plan.range.gateway),
            interface: Some(1),
        }],
        routes: Vec::new(),
    };
    Ok(ours
        .appended_to(
            config.prev_result_raw.as_ref(),
            &config.cni_version,
            config.version,
        )
        .to_string())
}

fn del(invocation: &Invocation, config: &NetConf, egress: &EgressConf) -> Result<(), CniError> {
    if !egress.enabled {
        return Ok(());
    }
    let plan = plan(invocation, config, egress)?;
    let store = Store::open(&plan.data_dir, &config.name).map_err(store_error)?;
    let released = store
        .release(&invocation.container_id, &invocation.ifname)
        .map_err(store_error)?;
    // Every step is tried, whatever the others do: a DEL the runtime repeats finds less to do.
    let host_veth = host_veth_name(&invocation.container_id, &invocation.ifname);
    let mut errors = Vec::new();
    if let Err(error) = runtime()?.block_on(teardown_egress(
        invocation.netns.as_deref(),
        plan.ifname,
        &host_veth,
    )) {
        errors.push(format!("the egress interface: {error}"));
    }
    let chain_removed = match remove_snat(plan.family, &plan.chain, &plan.comment) {
        Ok(removed) => removed,
        Err(error) => {
            errors.push(format!("the SNAT chain {}: {error}", plan.chain));
            false
        }
    };
    tracing::info!(container = %invocation.container_id, ?released, chain_removed, "egress released");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(internal("DEL could not remove everything", errors.join("; ")))
    }
}

fn check(invocation: &Invocation, config: &NetConf, egress: &EgressConf) -> Result<(), CniError> {
    if !egress.enabled {
        return Ok(());
    }
    let plan = plan(invocation, config, egress)?;
    let store = Store::open(&plan.data_dir, &config.name).map_err(store_error)?;
    let held = store
        .get_by_id(&invocation.container_id, &invocation.ifname)
        .map_err(store_error)?;
    if !held.iter().any(|ip| plan.range.contains(*ip)) {
        return Err(internal(
            format!("the pod holds no egress address in {}", plan.range.subnet),
            "its ADD did not run, or its address was released",
        ));
    }
    Ok(())
}

/// GC (1.1.0): every address the store holds for an attachment the runtime no longer lists is released,
/// with the attachment's SNAT chain and host veth (the pod's namespace is gone: the runtime said so). The
/// original's plugin has no GC; a pod whose DEL never came keeps its address there until the node reboots.
fn garbage_collect(config: &NetConf, egress: &EgressConf) -> Result<(), CniError> {
    if !egress.enabled {
        return Ok(());
    }
    let Some(valid) = &config.valid_attachments else {
        return Err(invalid("GC needs cni.dev/valid-attachments", ""));
    };
    let family_plan = plan_for("", config, egress)?;
    let store = Store::open(&family_plan.data_dir, &config.name).map_err(store_error)?;
    let runtime = runtime()?;
    let mut errors = Vec::new();
    for (ip, id, ifname, _) in store.entries().map_err(store_error)? {
        let kept = valid
            .iter()
            .any(|a| a.container_id == id && (a.ifname == ifname || ifname.is_empty()));
        if kept || !family_plan.range.contains(ip) {
            continue;
        }
        let chain = chain_name(family_plan.infix, &config.name, &id);
        let comment = chain_comment(&config.name, &id);
        if let Err(error) = remove_snat(family_plan.family, &chain, &comment) {
            errors.push(format!("{chain}: {error}"));
        }
        let veth = host_veth_name(&id, &ifname);
        if let Err(error) = runtime.block_on(teardown_egress(None, family_plan.ifname, &veth)) {
            errors.push(format!("{veth}: {error}"));
        }
        match store.release(&id, &ifname) {
            Ok(released) => tracing::info!(container = %id, ?released, "GC: egress released"),
            Err(error) => errors.push(error.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(internal(
            "GC could not release every egress address",
            errors.join("; "),
        ))
    }
}
