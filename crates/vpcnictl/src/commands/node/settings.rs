//! What the node install reads from its environment: the original's variable names and defaults (its init
//! container and `aws-vpc-cni` entrypoint), so the DaemonSet's `env:` moves over unchanged. A bad value
//! is refused with a line naming the variable, never replaced by a default.

use std::net::IpAddr;
use std::path::PathBuf;

use vpcni_layout::egress as egress_layout;
pub use vpcni_layout::{CONFLIST_FILE, NETWORK_NAME};

/// Which egress path the node's pods get (the original's `egress-cni`, vpcni's `vpcni-egress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// IPv6 cluster with ENABLE_V4_EGRESS (the default): IPv4 egress through the node's primary IPv4.
    V4,
    /// IPv4 cluster with ENABLE_V6_EGRESS: IPv6 egress through the node's IPv6 address.
    V6,
}

impl Egress {
    /// The egress range, as the conflist names it.
    pub fn subnet(self) -> String {
        match self {
            Self::V4 => format!("{}/{}", egress_layout::V4_RANGE, egress_layout::V4_RANGE_PREFIX),
            Self::V6 => format!("{}/{}", egress_layout::V6_RANGE, egress_layout::V6_RANGE_PREFIX),
        }
    }

    /// The default route the egress interface gets.
    pub fn default_route(self) -> &'static str {
        match self {
            Self::V4 => "0.0.0.0/0",
            Self::V6 => "::/0",
        }
    }

    /// host-local's data directory, the original's.
    pub fn data_dir(self) -> &'static str {
        match self {
            Self::V4 => egress_layout::V4_DATA_DIR,
            Self::V6 => egress_layout::V6_DATA_DIR,
        }
    }

    /// Whether `ip` is of this egress's family.
    pub fn matches(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == (self == Self::V4)
    }
}

/// Everything the install steps need, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// HOST_CNI_BIN_PATH: where the plugins go (the host's /opt/cni/bin, mounted).
    pub host_cni_bin: PathBuf,
    /// HOST_CNI_CONFDIR_PATH: where the conflist goes (the host's /etc/cni/net.d, mounted).
    pub host_cni_confdir: PathBuf,
    /// AWS_VPC_K8S_PLUGIN_LOG_FILE: the plugin's log, a path on the host.
    pub plugin_log_file: String,
    /// AWS_VPC_K8S_PLUGIN_LOG_LEVEL.
    pub plugin_log_level: String,
    /// POD_MTU (default AWS_VPC_ENI_MTU, default 9001).
    pub pod_mtu: u32,
    /// AWS_VPC_K8S_CNI_VETHPREFIX.
    pub veth_prefix: String,
    /// POD_SECURITY_GROUP_ENFORCING_MODE.
    pub pod_sg_enforcing_mode: String,
    /// DISABLE_TCP_EARLY_DEMUX.
    pub disable_tcp_early_demux: bool,
    /// VPCNI_IPAMD_SOCKET: ipamd's socket as this container sees it.
    pub ipamd_socket: PathBuf,
    /// VPCNI_HOST_IPAMD_SOCKET: the same socket as the plugin on the host sees it (written into the
    /// conflist); by default the same path, because the chart mounts the host's directory where it lives.
    pub host_ipamd_socket: PathBuf,
    /// The egress plugin's path, if any: ENABLE_IPv6 with ENABLE_V4_EGRESS (default true), or an IPv4
    /// cluster with ENABLE_V6_EGRESS (default false). Which family the cluster is, and whether the
    /// combination of ENABLE_IPv4, ENABLE_IPv6 and prefix delegation is valid, is ipamd's to decide (its
    /// settings refuse a bad one at start-up, before `node run` writes any conflist).
    pub egress: Option<Egress>,
    /// AWS_VPC_K8S_CNI_RANDOMIZESNAT: the egress plugin's `randomizeSNAT`.
    pub randomize_snat: String,
    /// AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE or AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE (the family's).
    pub egress_log_file: String,
    /// VPCNI_NODE_IP: the address the egress plugin SNATs to; by default `node run` reads it from the
    /// node's primary interface (the original's entrypoint asks instance metadata).
    pub node_ip: Option<IpAddr>,
    /// AWS_VPC_K8S_CNI_BACKING_STORE: ipamd's checkpoint, where an imported checkpoint goes.
    pub backing_store: PathBuf,
    /// VPCNI_IMPORT_CHECKPOINT: the original's checkpoint, imported when ours does not exist yet.
    pub original_checkpoint: PathBuf,
}

/// Every bad variable, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct SettingsError(pub Vec<String>);

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    fn invalid(&mut self, name: &str, value: &str, expected: &str) {
        self.errors
            .push(format!("{name}={value:?} is not valid: expected {expected}"));
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    fn path(&mut self, name: &str, default: &str) -> PathBuf {
        let value = self.string(name, default);
        let path = PathBuf::from(&value);
        if !path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) {
            self.invalid(name, &value, "an absolute path without '..'");
        }
        path
    }

    /// The original parses booleans with Go's strconv.ParseBool.
    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).as_deref() {
            None => default,
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
            Some(other) => {
                let other = other.to_owned();
                self.invalid(name, &other, "true or false");
                default
            }
        }
    }

    fn number(&mut self, name: &str, default: u32, min: u32, max: u32) -> u32 {
        let Some(value) = self.raw(name) else {
            return default;
        };
        match value.trim().parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.invalid(name, &value, &format!("a whole number from {min} to {max}"));
                default
            }
        }
    }
}

impl NodeSettings {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, SettingsError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = Reader {
            lookup,
            errors: Vec::new(),
        };
        let host_cni_bin = env.path("HOST_CNI_BIN_PATH", "/host/opt/cni/bin");
        let host_cni_confdir = env.path("HOST_CNI_CONFDIR_PATH", "/host/etc/cni/net.d");
        let plugin_log_file = env.string(
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            "/var/log/aws-routed-eni/plugin.log",
        );
        // stdout carries the plugin's result to the runtime: the original refuses it too.
        if plugin_log_file.eq_ignore_ascii_case("stdout") {
            env.invalid(
                "AWS_VPC_K8S_PLUGIN_LOG_FILE",
                &plugin_log_file,
                "a file path or stderr (stdout carries the plugin's result)",
            );
        }
        let plugin_log_level = env.string("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "Debug");
        if !["debug", "info", "warn", "error"].contains(&plugin_log_level.to_ascii_lowercase().as_str()) {
            env.invalid(
                "AWS_VPC_K8S_PLUGIN_LOG_LEVEL",
                &plugin_log_level,
                "debug, info, warn or error",
            );
        }
        let eni_mtu = env.number("AWS_VPC_ENI_MTU", 9001, 576, 9001);
        let pod_mtu = env.number("POD_MTU", eni_mtu, 576, 9001);
        let veth_prefix = env.string("AWS_VPC_K8S_CNI_VETHPREFIX", "eni");
        let prefix_ok = (1..=4).contains(&veth_prefix.len())
            && veth_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !["eth", "lo", "vlan"].contains(&veth_prefix.as_str());
        if !prefix_ok {
            env.invalid(
                "AWS_VPC_K8S_CNI_VETHPREFIX",
                &veth_prefix,
                "1 to 4 letters, digits, '_' or '-', and not eth, lo or vlan",
            );
        }
        let pod_sg_enforcing_mode = env.string("POD_SECURITY_GROUP_ENFORCING_MODE", "strict");
        if !["strict", "standard"].contains(&pod_sg_enforcing_mode.as_str()) {
            env.invalid(
                "POD_SECURITY_GROUP_ENFORCING_MODE",
                &pod_sg_enforcing_mode,
                "strict or standard",
            );
        }
        let disable_tcp_early_demux = env.bool("DISABLE_TCP_EARLY_DEMUX", false);
        let ipv6 = env.bool("ENABLE_IPv6", false);
        let v4_egress = env.bool("ENABLE_V4_EGRESS", true);
        let v6_egress = env.bool("ENABLE_V6_EGRESS", false);
        let egress = match (ipv6, v4_egress, v6_egress) {
            (true, true, _) => Some(Egress::V4),
            (false, _, true) => Some(Egress::V6),
            _ => None,
        };
        let randomize_snat = env.string("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "prng");
        if !["none", "hashrandom", "prng"].contains(&randomize_snat.as_str()) {
            env.invalid(
                "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
                &randomize_snat,
                "none, hashrandom or prng",
            );
        }
        let egress_log_file = match egress {
            Some(Egress::V6) => env.string(
                "AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE",
                "/var/log/aws-routed-eni/egress-v6-plugin.log",
            ),
            _ => env.string(
                "AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE",
                "/var/log/aws-routed-eni/egress-v4-plugin.log",
            ),
        };
        let node_ip = match env.raw("VPCNI_NODE_IP") {
            None => None,
            Some(text) => match (text.parse::<IpAddr>(), egress) {
                (Ok(ip), Some(family)) if !family.matches(ip) => {
                    let expected = match family {
                        Egress::V4 => "the node's primary IPv4 address (IPv4 egress of an IPv6 cluster)",
                        Egress::V6 => "the node's IPv6 address (ENABLE_V6_EGRESS)",
                    };
                    env.invalid("VPCNI_NODE_IP", &text, expected);
                    None
                }
                (Ok(ip), _) => Some(ip),
                (Err(_), _) => {
                    env.invalid("VPCNI_NODE_IP", &text, "an IP address");
                    None
                }
            },
        };
        let ipamd_socket = env.path("VPCNI_IPAMD_SOCKET", vpcni_rpc::DEFAULT_SOCKET_PATH);
        let host_ipamd_socket = match env.raw("VPCNI_HOST_IPAMD_SOCKET") {
            Some(_) => env.path("VPCNI_HOST_IPAMD_SOCKET", ""),
            None => ipamd_socket.clone(),
        };
        let backing_store = env.path("AWS_VPC_K8S_CNI_BACKING_STORE", "/var/run/vpcni/ipam.json");
        let original_checkpoint = env.path("VPCNI_IMPORT_CHECKPOINT", "/var/run/aws-node/ipam.json");
        if env.errors.is_empty() {
            Ok(Self {
                host_cni_bin,
                host_cni_confdir,
                plugin_log_file,
                plugin_log_level,
                pod_mtu,
                veth_prefix,
                pod_sg_enforcing_mode,
                disable_tcp_early_demux,
                ipamd_socket,
                host_ipamd_socket,
                egress,
                randomize_snat,
                egress_log_file,
                node_ip,
                backing_store,
                original_checkpoint,
            })
        } else {
            Err(SettingsError(env.errors))
        }
    }

    /// The conflist the runtime reads, as the original's `10-aws.conflist`: the plugin, the egress plugin
    /// when the node has an egress path (`node_ip` is the address it SNATs to), then `portmap` for
    /// `hostPort`s. Where the original always lists `egress-cni` (with `"enabled": "false"` when off),
    /// vpcni lists `vpcni-egress` only when it is on: a node without egress runs one plugin fewer per pod.
    pub fn conflist(&self, node_ip: Option<IpAddr>) -> serde_json::Value {
        let mut plugins = vec![serde_json::json!({
            "name": NETWORK_NAME,
            "type": "vpcni",
            "vethPrefix": self.veth_prefix,
            "mtu": self.pod_mtu.to_string(),
            "podSGEnforcingMode": self.pod_sg_enforcing_mode,
            "pluginLogFile": self.plugin_log_file,
            "pluginLogLevel": self.plugin_log_level,
            "ipamdSocket": self.host_ipamd_socket.display().to_string(),
            "capabilities": {"io.kubernetes.cri.pod-annotations": true}
        })];
        if let (Some(egress), Some(node_ip)) = (self.egress, node_ip) {
            plugins.push(serde_json::json!({
                "name": egress_layout::PLUGIN_NAME,
                "type": egress_layout::PLUGIN_TYPE,
                "mtu": self.pod_mtu.to_string(),
                "enabled": "true",
                "randomizeSNAT": self.randomize_snat,
                "nodeIP": node_ip.to_string(),
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": egress.subnet()}]],
                    "routes": [{"dst": egress.default_route()}],
                    "dataDir": egress.data_dir(),
                },
                "pluginLogFile": self.egress_log_file,
                "pluginLogLevel": self.plugin_log_level,
            }));
        }
        plugins.push(serde_json::json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true
        }));
        serde_json::json!({
            // The newest version containerd 1.6 understands; the plugins speak every version up to 1.1.0.
            "cniVersion": "1.0.0",
            "name": NETWORK_NAME,
            "disableCheck": true,
            "plugins": plugins,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<NodeSettings, SettingsError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        NodeSettings::from_lookup(&move |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_originals() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.host_cni_bin, PathBuf::from("/host/opt/cni/bin"));
        assert_eq!(s.host_cni_confdir, PathBuf::from("/host/etc/cni/net.d"));
        assert_eq!(s.plugin_log_file, "/var/log/aws-routed-eni/plugin.log");
        assert_eq!(s.plugin_log_level, "Debug");
        assert_eq!(s.pod_mtu, 9001);
        assert_eq!(s.veth_prefix, "eni");
        assert!(!s.disable_tcp_early_demux);
        assert_eq!(s.host_ipamd_socket, PathBuf::from("/var/run/vpcni/ipamd.sock"));
        assert_eq!(
            s.original_checkpoint,
            PathBuf::from("/var/run/aws-node/ipam.json")
        );
    }

    #[test]
    fn conflist_carries_the_plugin_settings_and_chains_portmap() {
        let s = settings(&[
            ("AWS_VPC_K8S_PLUGIN_LOG_FILE", "/var/log/x/plugin.log"),
            ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "info"),
            ("AWS_VPC_ENI_MTU", "1500"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "pod"),
            ("VPCNI_HOST_IPAMD_SOCKET", "/srv/run/ipamd.sock"),
        ])
        .unwrap();
        let list = s.conflist(None);
        assert_eq!(list["name"], "vpcni");
        let plugin = &list["plugins"][0];
        assert_eq!(plugin["type"], "vpcni");
        assert_eq!(plugin["pluginLogFile"], "/var/log/x/plugin.log");
        assert_eq!(plugin["pluginLogLevel"], "info");
        assert_eq!(plugin["mtu"], "1500", "POD_MTU follows AWS_VPC_ENI_MTU");
        assert_eq!(plugin["vethPrefix"], "pod");
        assert_eq!(plugin["ipamdSocket"], "/srv/run/ipamd.sock");
        let portmap = &list["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
        assert_eq!(list["plugins"].as_array().unwrap().len(), 2);
        let s = settings(&[("AWS_VPC_ENI_MTU", "1500"), ("POD_MTU", "1400")]).unwrap();
        assert_eq!(s.conflist(None)["plugins"][0]["mtu"], "1400");
    }

    #[test]
    fn bad_values_are_named_all_at_once() {
        let error = settings(&[
            ("POD_MTU", "100"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "eth"),
            ("AWS_VPC_K8S_PLUGIN_LOG_FILE", "stdout"),
            ("DISABLE_TCP_EARLY_DEMUX", "maybe"),
            ("HOST_CNI_BIN_PATH", "opt/cni/bin"),
            ("ENABLE_IPv6", "true"),
            ("VPCNI_NODE_IP", "2600::1"),
            ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "sometimes"),
        ])
        .unwrap_err();
        let lines: Vec<&str> = error.0.iter().map(String::as_str).collect();
        assert_eq!(
            lines,
            [
                r#"HOST_CNI_BIN_PATH="opt/cni/bin" is not valid: expected an absolute path without '..'"#,
                r#"AWS_VPC_K8S_PLUGIN_LOG_FILE="stdout" is not valid: expected a file path or stderr (stdout carries the plugin's result)"#,
                r#"POD_MTU="100" is not valid: expected a whole number from 576 to 9001"#,
                r#"AWS_VPC_K8S_CNI_VETHPREFIX="eth" is not valid: expected 1 to 4 letters, digits, '_' or '-', and not eth, lo or vlan"#,
                r#"DISABLE_TCP_EARLY_DEMUX="maybe" is not valid: expected true or false"#,
                r#"AWS_VPC_K8S_CNI_RANDOMIZESNAT="sometimes" is not valid: expected none, hashrandom or prng"#,
                r#"VPCNI_NODE_IP="2600::1" is not valid: expected the node's primary IPv4 address (IPv4 egress of an IPv6 cluster)"#,
            ]
        );
    }

    /// The egress plugin is chained between vpcni and portmap with the original's keys: IPv4 egress in
    /// IPv6 clusters unless ENABLE_V4_EGRESS=false, IPv6 egress in IPv4 clusters with ENABLE_V6_EGRESS.
    #[test]
    fn egress_is_chained_as_the_original_chains_it() {
        let node_v4: IpAddr = "10.0.1.7".parse().unwrap();
        let s = settings(&[("ENABLE_IPv6", "true"), ("ENABLE_IPv4", "false")]).unwrap();
        assert_eq!(s.egress, Some(Egress::V4));
        let list = s.conflist(Some(node_v4));
        let types: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["vpcni", "vpcni-egress", "portmap"]);
        assert_eq!(
            list["plugins"][1],
            serde_json::json!({
                "name": "egress-cni",
                "type": "vpcni-egress",
                "mtu": "9001",
                "enabled": "true",
                "randomizeSNAT": "prng",
                "nodeIP": "10.0.1.7",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "169.254.172.0/22"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": "/run/cni/v6pd/egress-v4-ipam",
                },
                "pluginLogFile": "/var/log/aws-routed-eni/egress-v4-plugin.log",
                "pluginLogLevel": "Debug",
            })
        );

        let off = settings(&[("ENABLE_IPv6", "true"), ("ENABLE_V4_EGRESS", "false")]).unwrap();
        assert_eq!(off.egress, None);
        assert_eq!(
            off.conflist(Some(node_v4))["plugins"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            settings(&[]).unwrap().egress,
            None,
            "IPv4 clusters: no egress by default"
        );

        let v6 = settings(&[
            ("ENABLE_V6_EGRESS", "true"),
            ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "none"),
            ("VPCNI_NODE_IP", "2600:1f14::7"),
        ])
        .unwrap();
        assert_eq!(v6.egress, Some(Egress::V6));
        assert_eq!(v6.node_ip, Some("2600:1f14::7".parse().unwrap()));
        let entry = &v6.conflist(v6.node_ip)["plugins"][1];
        assert_eq!(entry["nodeIP"], "2600:1f14::7");
        assert_eq!(entry["randomizeSNAT"], "none");
        assert_eq!(entry["ipam"]["ranges"][0][0]["subnet"], "fd00::ac:0/118");
        assert_eq!(entry["ipam"]["routes"][0]["dst"], "::/0");
        assert_eq!(entry["ipam"]["dataDir"], "/run/cni/v4pd/egress-v6-ipam");
        assert_eq!(
            entry["pluginLogFile"],
            "/var/log/aws-routed-eni/egress-v6-plugin.log"
        );
    }
}
