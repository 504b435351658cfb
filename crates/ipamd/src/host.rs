//! What the daemon does to the host, behind a role trait: [`LinuxHost`] programs the network namespace the
//! daemon runs in (netlink and iptables through `vpcni-dataplane`); [`NoHost`] does nothing, for tests of
//! the pool logic that run without a namespace.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use vpcni_dataplane::eni::EniSpec;
use vpcni_dataplane::iptables::egress::EgressFamily;
use vpcni_dataplane::iptables::{SnatPorts, SnatSettings};
use vpcni_dataplane::rules::NodeRules;
use vpcni_dataplane::{DataplaneError, eni, iptables, rules, sysctl};

use crate::config::{Config, EgressReject, RandomizeSnat};
use crate::discovery::NodeIdentity;

/// The node-wide settings the host needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetwork {
    /// The primary ENI's MAC: the primary interface is found by it.
    pub primary_mac: String,
    /// SNAT, CONNMARK and mangle rules (the primary interface name is filled in by the host).
    pub snat: SnatSettings,
    /// Rules at 1024 and 1535.
    pub rules: NodeRules,
    /// AWS_VPC_ENI_MTU, for the primary interface too.
    pub mtu: u32,
    /// IPv6 mode: the IPv6 sysctls instead of the IPv4 rules, SNAT and CONNMARK (the original programs
    /// nothing in iptables for IPv6 pods: their addresses are the VPC's, with no NAT).
    pub ipv6: bool,
    /// The egress range new connections are refused to, if any (the original's "Block Node Local Pod
    /// access" rule).
    pub egress_reject: Option<EgressFamily>,
}

impl NodeNetwork {
    /// From the configuration and the node's identity (with its VPC CIDRs as metadata lists them now).
    pub fn new(config: &Config, identity: &NodeIdentity, vpc_cidrs: &[Ipv4Net]) -> Self {
        let network = &config.network;
        let use_snat = !network.external_snat;
        Self {
            primary_mac: identity.primary_mac.clone(),
            snat: SnatSettings {
                primary_ip: identity.primary_ip,
                primary_interface: String::new(),
                vpc_cidrs: vpc_cidrs.to_vec(),
                excluded_cidrs: network.exclude_snat_cidrs.clone(),
                external_snat: network.external_snat,
                ports: match network.randomize_snat {
                    RandomizeSnat::Prng => SnatPorts::RandomFully,
                    RandomizeSnat::Hashrandom => SnatPorts::Random,
                    RandomizeSnat::None => SnatPorts::Sequential,
                },
                connmark: network.connmark,
                node_port_support: network.node_port_support,
                veth_prefix: network.veth_prefix.clone(),
            },
            rules: NodeRules {
                fwmark: (network.node_port_support || use_snat).then_some(network.connmark),
                external_service_cidrs: network.external_service_cidrs.clone(),
            },
            mtu: network.eni_mtu,
            ipv6: config.pool.ipv6,
            egress_reject: network.egress_reject.map(|family| match family {
                EgressReject::V4 => EgressFamily::V4,
                EgressReject::V6 => EgressFamily::V6,
            }),
        }
    }
}

/// The IPv6 sysctls the original's init container sets in IPv6 mode, in order: IPv6 on, forwarding on
/// (pods' traffic is routed through the host), and router advertisements still accepted on the primary
/// interface (`accept_ra=2`: forwarding would otherwise turn them off, and the node's default IPv6 route
/// comes from them).
pub fn ipv6_sysctls(primary_interface: &str) -> Result<Vec<(String, &'static str)>, DataplaneError> {
    Ok(vec![
        ("net.ipv6.conf.all.disable_ipv6".to_owned(), "0"),
        ("net.ipv6.conf.all.forwarding".to_owned(), "1"),
        (sysctl::ipv6_conf_key(primary_interface, "accept_ra")?, "2"),
    ])
}

/// Writes a setting unless it already has the value: in the DaemonSet the privileged init container sets
/// them, and ipamd's own container has a read-only `/proc/sys` (as [`sysctl::set_rp_filter`] does).
fn ensure_sysctl(key: &str, value: &str) -> Result<(), DataplaneError> {
    if sysctl::read(key).is_ok_and(|current| current == value) {
        return Ok(());
    }
    sysctl::write(key, value)
}

/// A secondary ENI to set up: the dataplane's spec.
pub type HostEni = EniSpec;

/// The host operations ipamd performs.
#[async_trait]
pub trait Host: Send + Sync + std::fmt::Debug {
    /// Primary interface MTU, `rp_filter=2` on it, rules at 1024/1535, SNAT/CONNMARK/mangle rules; idempotent.
    async fn program_node(&self, node: &NodeNetwork) -> Result<(), DataplaneError>;
    /// Waits for the link of a just-attached ENI.
    async fn wait_for_eni(&self, mac: &str, timeout: Duration) -> Result<(), DataplaneError>;
    /// Sets a secondary ENI up (idempotent).
    async fn setup_eni(&self, eni: &HostEni) -> Result<(), DataplaneError>;
    /// Removes what [`Host::setup_eni`] added for a freed ENI.
    async fn teardown_eni(&self, primary_ip: Ipv4Addr, table: u32) -> Result<(), DataplaneError>;
    /// Removes ENI rules of ENIs that are gone.
    async fn prune_eni_rules(&self, keep: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>, DataplaneError>;
    /// Whether a pod's host veth exists.
    async fn veth_exists(&self, name: &str) -> Result<bool, DataplaneError>;
    /// Removes a released pod's host rules (priorities 512 and 1536).
    async fn remove_pod_rules(&self, veth: &str, ip: Ipv4Addr) -> Result<(), DataplaneError>;
    /// IPv6 mode: removes a released pod's host rule (512 in the IPv6 rule list) and its veth. Hosts that
    /// program nothing do nothing.
    async fn remove_ipv6_pod_rules(&self, _veth: &str, _ip: Ipv6Addr) -> Result<(), DataplaneError> {
        Ok(())
    }
}

/// As the original's ipamd: nothing from outside the node opens a connection to a pod's egress-only
/// address (the egress plugin ensures the same rule on each ADD; both are idempotent). Returns the number
/// of rules added.
async fn ensure_egress_reject(family: Option<EgressFamily>) -> Result<usize, DataplaneError> {
    let Some(family) = family else {
        return Ok(0);
    };
    tokio::task::spawn_blocking(move || iptables::egress::ensure_reject(family).map(usize::from))
        .await
        .map_err(|e| DataplaneError::System(format!("iptables worker: {e}")))?
}

/// The host the daemon runs on (its network namespace).
#[derive(Debug, Default)]
pub struct LinuxHost;

#[async_trait]
impl Host for LinuxHost {
    async fn program_node(&self, node: &NodeNetwork) -> Result<(), DataplaneError> {
        let (index, name) = eni::link_by_mac(&node.primary_mac).await?.ok_or_else(|| {
            DataplaneError::LinkNotFound(format!("with the primary ENI's MAC {}", node.primary_mac))
        })?;
        eni::set_mtu_and_up(index, node.mtu).await?;
        if node.ipv6 {
            for (key, value) in ipv6_sysctls(&name)? {
                ensure_sysctl(&key, value)?;
            }
            let reject_changes = ensure_egress_reject(node.egress_reject).await?;
            tracing::info!(
                primary = %name,
                reject_changes,
                "node network programmed for IPv6 (sysctls and the egress reject rule; no IPv4 rules, SNAT or CONNMARK)"
            );
            return Ok(());
        }
        sysctl::set_rp_filter(&name, sysctl::RP_FILTER_LOOSE)?;
        let rule_changes = rules::program_node_rules(&node.rules).await?;
        let mut snat = node.snat.clone();
        snat.primary_interface = name.clone();
        let iptables_changes = tokio::task::spawn_blocking(move || iptables::apply(&snat))
            .await
            .map_err(|e| DataplaneError::System(format!("iptables worker: {e}")))??;
        let reject_changes = ensure_egress_reject(node.egress_reject).await?;
        tracing::info!(primary = %name, rule_changes, iptables_changes, reject_changes, "node network programmed");
        Ok(())
    }

    async fn wait_for_eni(&self, mac: &str, timeout: Duration) -> Result<(), DataplaneError> {
        eni::wait_for_link_by_mac(mac, timeout).await.map(|_| ())
    }

    async fn setup_eni(&self, spec: &HostEni) -> Result<(), DataplaneError> {
        let name = eni::setup_eni(spec).await?;
        tracing::info!(interface = %name, ip = %spec.primary_ip, table = spec.table, "ENI set up on the host");
        Ok(())
    }

    async fn teardown_eni(&self, primary_ip: Ipv4Addr, table: u32) -> Result<(), DataplaneError> {
        eni::teardown_eni(primary_ip, table).await
    }

    async fn prune_eni_rules(&self, keep: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        eni::prune_eni_rules(keep).await
    }

    async fn veth_exists(&self, name: &str) -> Result<bool, DataplaneError> {
        eni::link_exists(name).await
    }

    async fn remove_pod_rules(&self, veth: &str, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        vpcni_dataplane::teardown_pod(veth, Some(ip)).await
    }

    async fn remove_ipv6_pod_rules(&self, veth: &str, ip: Ipv6Addr) -> Result<(), DataplaneError> {
        vpcni_dataplane::teardown_pod(veth, Some(ip)).await
    }
}

/// A host that is not touched: every ENI link "exists" and every veth too.
#[derive(Debug, Default)]
pub struct NoHost;

#[async_trait]
impl Host for NoHost {
    async fn program_node(&self, _: &NodeNetwork) -> Result<(), DataplaneError> {
        Ok(())
    }
    async fn wait_for_eni(&self, _: &str, _: Duration) -> Result<(), DataplaneError> {
        Ok(())
    }
    async fn setup_eni(&self, _: &HostEni) -> Result<(), DataplaneError> {
        Ok(())
    }
    async fn teardown_eni(&self, _: Ipv4Addr, _: u32) -> Result<(), DataplaneError> {
        Ok(())
    }
    async fn prune_eni_rules(&self, _: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        Ok(Vec::new())
    }
    async fn veth_exists(&self, _: &str) -> Result<bool, DataplaneError> {
        Ok(true)
    }
    async fn remove_pod_rules(&self, _: &str, _: Ipv4Addr) -> Result<(), DataplaneError> {
        Ok(())
    }
}

/// The host spec of a secondary ENI.
pub fn eni_spec(mac: &str, primary_ip: Ipv4Addr, subnet: Ipv4Net, mtu: u32, table: u32) -> HostEni {
    EniSpec {
        mac: mac.to_owned(),
        primary_ip,
        subnet,
        mtu,
        table,
    }
}
