//! ipamd's configuration, read from the environment.
//!
//! Variable names and defaults are the Amazon VPC CNI's (v1.23), so the same DaemonSet values work: every
//! value the original accepts keeps its meaning (`MAX_ENI=0` is no limit, `AWS_VPC_K8S_CNI_LOGLEVEL=FATAL`
//! is a level). Where the original quietly falls back to a default (a negative `WARM_IP_TARGET`, an IPv6
//! entry in an IPv4 CIDR list, a reserved tag key), vpcni does the same and returns a warning naming the
//! variable. A typo that would silently change routing or the pool's size is refused instead. Every
//! variable is parsed before the first error is reported, and each bad one gets one line:
//! `AWS_VPC_ENI_MTU="9002" is not valid: expected a whole number from 576 to 9001`.
//! `docs/configuration.md` lists every variable, its default and accepted values, and where vpcni differs.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

/// One invalid variable: `NAME="value" is not valid: expected …` (the engine's definition, which the
/// planner shares).
pub use vpcni_engine::settings::InvalidSetting as InvalidVariable;
/// A value accepted the way the original accepts it — by falling back — that the operator should hear about.
pub use vpcni_engine::settings::SettingWarning as ConfigWarning;

/// Where EC2 and instance metadata come from (VPCNI_EC2_BACKEND, required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ec2Backend {
    /// The AWS SDK: real EC2, or `vpcnictl sim serve` through AWS_EC2_ENDPOINT and
    /// AWS_EC2_METADATA_SERVICE_ENDPOINT.
    Aws,
}

/// Every invalid variable found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<InvalidVariable>);

/// How SNAT picks source ports (AWS_VPC_K8S_CNI_RANDOMIZESNAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RandomizeSnat {
    /// `--random-fully`.
    Prng,
    /// `--random`.
    Hashrandom,
    /// Neither.
    None,
}

/// Where the daemon listens for introspection or metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ListenAddress {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket (`unix:/path`).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The warm-pool knobs (see the engine for their meaning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSettings {
    /// WARM_ENI_TARGET (default 1).
    pub warm_eni_target: u32,
    /// WARM_IP_TARGET (0 = unset).
    pub warm_ip_target: u32,
    /// MINIMUM_IP_TARGET (0 = unset).
    pub minimum_ip_target: u32,
    /// WARM_PREFIX_TARGET (default 1 with prefix delegation, as the manifest sets it).
    pub warm_prefix_target: u32,
    /// ENABLE_PREFIX_DELEGATION.
    pub prefix_delegation: bool,
    /// MAX_ENI (`None` = the instance limit).
    pub max_eni: Option<u32>,
    /// IP_COOLDOWN_PERIOD (default 30 s).
    pub ip_cooldown: Duration,
    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: no pod addresses on the primary ENI.
    pub custom_networking: bool,
    /// ENABLE_POD_ENI: keep an ENI slot for the trunk ENI.
    pub pod_eni: bool,
    /// AWS_MANAGE_ENIS_NON_SCHEDULABLE.
    pub manage_enis_non_schedulable: bool,
    /// DISABLE_NETWORK_RESOURCE_PROVISIONING.
    pub disable_provisioning: bool,
    /// ENABLE_IMDS_ONLY_MODE.
    pub imds_only: bool,
    /// DISABLE_LEAKED_ENI_CLEANUP.
    pub disable_leaked_eni_cleanup: bool,
    /// ENABLE_SUBNET_DISCOVERY (default true).
    pub subnet_discovery: bool,
    /// MANAGE_UNTAGGED_ENI (default true).
    pub manage_untagged_eni: bool,
    /// ENABLE_IPv6=true: IPv6 mode (one /80 on the primary ENI, no warm pool).
    pub ipv6: bool,
}

/// Node data-plane settings (`/v1/networkutils-env-settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSettings {
    /// AWS_VPC_K8S_CNI_EXTERNALSNAT.
    pub external_snat: bool,
    /// AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS.
    pub exclude_snat_cidrs: Vec<Ipv4Net>,
    /// AWS_VPC_K8S_CNI_RANDOMIZESNAT.
    pub randomize_snat: RandomizeSnat,
    /// AWS_VPC_K8S_CNI_CONNMARK (default 0x80).
    pub connmark: u32,
    /// AWS_VPC_CNI_NODE_PORT_SUPPORT (default true).
    pub node_port_support: bool,
    /// AWS_EXTERNAL_SERVICE_CIDRS.
    pub external_service_cidrs: Vec<Ipv4Net>,
    /// AWS_VPC_ENI_MTU (default 9001).
    pub eni_mtu: u32,
    /// POD_MTU (default = ENI MTU).
    pub pod_mtu: u32,
    /// AWS_VPC_K8S_CNI_VETHPREFIX (default `eni`).
    pub veth_prefix: String,
    /// Which egress range the node refuses new connections to (filter `FORWARD`, as the original's ipamd):
    /// IPv4 (169.254.172.0/22) in IPv6 mode (ENABLE_IPv6), IPv6 (fd00::ac:00/118) in IPv4 mode with
    /// ENABLE_V6_EGRESS; `None` otherwise.
    pub egress_reject: Option<EgressReject>,
}

/// The egress range a node protects (see [`NetworkSettings::egress_reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EgressReject {
    /// 169.254.172.0/22, IPv6 pods' IPv4 egress addresses.
    V4,
    /// fd00::ac:00/118, IPv4 pods' IPv6 egress addresses.
    V6,
}

/// The Kubernetes side of custom networking: which node this is and where its ENIConfig comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubernetesSettings {
    /// MY_NODE_NAME (the DaemonSet sets it from `spec.nodeName`); empty selects the ENIConfig `default`.
    pub node_name: String,
    /// ENI_CONFIG_LABEL_DEF (default `k8s.amazonaws.com/eniConfig`).
    pub eni_config_label_def: String,
    /// ENI_CONFIG_ANNOTATION_DEF (default `k8s.amazonaws.com/eniConfig`).
    pub eni_config_annotation_def: String,
    /// VPCNI_ENI_CONFIG_DIR: ENIConfig objects (and optionally this node's Node object) from YAML files
    /// instead of the API.
    pub eni_config_dir: Option<PathBuf>,
    /// VPCNI_KUBERNETES_API_URL: the API server's URL instead of the in-cluster service (tests, labs).
    pub api_url: Option<String>,
}

/// Everything ipamd reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Pool policy.
    pub pool: PoolSettings,
    /// Node data plane.
    pub network: NetworkSettings,
    /// CLUSTER_NAME.
    pub cluster_name: String,
    /// ADDITIONAL_ENI_TAGS (JSON object of strings; keys containing `k8s.amazonaws.com` are refused).
    pub additional_eni_tags: Vec<(String, String)>,
    /// POD_SECURITY_GROUP_ENFORCING_MODE.
    pub pod_sg_enforcing_mode: String,
    /// AWS_VPC_K8S_CNI_BACKING_STORE (default `/var/run/vpcni/ipam.json`).
    pub backing_store: PathBuf,
    /// VPCNI_IPAMD_SOCKET (default `/var/run/vpcni/ipamd.sock`).
    pub socket_path: PathBuf,
    /// Introspection address; `None` when DISABLE_INTROSPECTION.
    pub introspection: Option<ListenAddress>,
    /// Metrics address; `None` when DISABLE_METRICS.
    pub metrics: Option<ListenAddress>,
    /// AWS_VPC_K8S_CNI_LOGLEVEL, lower case: trace, debug, info, warn, error or fatal.
    pub log_level: String,
    /// AWS_VPC_K8S_CNI_LOG_FILE (`stdout`, `stderr` or a path).
    pub log_file: String,
    /// AWS_EC2_ENDPOINT.
    pub ec2_endpoint: Option<String>,
    /// VPCNI_POOL_INTERVAL_MS: time between pool cycles (the original's 5 s; tests shorten it).
    pub pool_interval: Duration,
    /// VPCNI_RECONCILE_INTERVAL_MS: reconcile with EC2 and instance metadata when no pool action happened
    /// for this long (the original's 60 s).
    pub reconcile_interval: Duration,
    /// VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS: time between leaked-ENI sweeps (the original's hour); each
    /// sweep first waits a random time up to 5 minutes (never more than the interval).
    pub leaked_eni_cleanup_interval: Duration,
    /// VPCNI_ENI_LINK_TIMEOUT_MS: how long an attached ENI's link may take to appear on the host before the
    /// ENI is given back (the original waits up to a minute for instance metadata).
    pub eni_link_timeout: Duration,
    /// VPCNI_IMPORT_CHECKPOINT: the original's checkpoint, imported when ours does not exist yet
    /// (default `/var/run/aws-node/ipam.json`).
    pub import_checkpoint: PathBuf,
    /// VPCNI_EC2_BACKEND.
    pub ec2_backend: Ec2Backend,
    /// Node name and ENIConfig sources.
    pub kubernetes: KubernetesSettings,
    /// Values accepted by falling back, as the original does; the daemon logs each once logging is up.
    #[serde(skip)]
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = EnvReader::new(lookup);
        // The pool's variables, read as the planner reads them (one definition, in the engine).
        let shared = vpcni_engine::settings::PoolSettings::read(&mut env);
        let pool = PoolSettings {
            warm_eni_target: shared.warm_eni_target,
            warm_ip_target: shared.warm_ip_target,
            minimum_ip_target: shared.minimum_ip_target,
            warm_prefix_target: shared.warm_prefix_target,
            prefix_delegation: shared.prefix_delegation,
            max_eni: shared.max_eni,
            ip_cooldown: Duration::from_secs(u64::from(shared.ip_cooldown_s)),
            custom_networking: shared.custom_networking,
            pod_eni: shared.pod_eni,
            manage_enis_non_schedulable: env.bool("AWS_MANAGE_ENIS_NON_SCHEDULABLE", false),
            disable_provisioning: shared.disable_provisioning,
            imds_only: shared.imds_only,
            disable_leaked_eni_cleanup: shared.disable_leaked_eni_cleanup,
            subnet_discovery: shared.subnet_discovery,
            manage_untagged_eni: env.bool("MANAGE_UNTAGGED_ENI", true),
            ipv6: shared.ipv6,
        };

        // IPv6 needs at least 1280 bytes on every link (RFC 8200), as the original's entrypoint checks.
        let mtu_min = if pool.ipv6 { 1280 } else { 576 };
        let eni_mtu = env.number("AWS_VPC_ENI_MTU", 9001, mtu_min, 9001);
        let pod_mtu = env.number("POD_MTU", eni_mtu, mtu_min, 9001);
        let connmark = match env.raw("AWS_VPC_K8S_CNI_CONNMARK") {
            None => 0x80,
            Some(value) => match parse_with_base_prefix(&value) {
                Some(mark) if mark != 0 => mark,
                _ => {
                    env.invalid(
                        "AWS_VPC_K8S_CNI_CONNMARK",
                        &value,
                        "a non-zero 32-bit mark such as 0x80 or 128",
                    );
                    0x80
                }
            },
        };
        // Exact spellings, as the original's switch: "NONE" is not `none` there but a fallback to prng.
        let randomize_snat = match env
            .choice(
                "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
                "prng",
                &["prng", "hashrandom", "none"],
            )
            .as_str()
        {
            "hashrandom" => RandomizeSnat::Hashrandom,
            "none" => RandomizeSnat::None,
            _ => RandomizeSnat::Prng,
        };
        let veth_prefix = env
            .raw("AWS_VPC_K8S_CNI_VETHPREFIX")
            .unwrap_or_else(|| "eni".to_owned());
        let prefix_ok = !veth_prefix.is_empty()
            && veth_prefix.len() <= 4
            && veth_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            && !matches!(veth_prefix.as_str(), "eth" | "lo" | "vlan");
        if !prefix_ok {
            env.invalid(
                "AWS_VPC_K8S_CNI_VETHPREFIX",
                &veth_prefix,
                "1 to 4 letters, digits, '_' or '-', and not eth, lo or vlan",
            );
        }
        let network = NetworkSettings {
            external_snat: env.bool("AWS_VPC_K8S_CNI_EXTERNALSNAT", false),
            exclude_snat_cidrs: env.cidrs("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"),
            randomize_snat,
            connmark,
            node_port_support: env.bool("AWS_VPC_CNI_NODE_PORT_SUPPORT", true),
            external_service_cidrs: env.cidrs("AWS_EXTERNAL_SERVICE_CIDRS"),
            eni_mtu,
            pod_mtu,
            veth_prefix,
            egress_reject: if env.bool("ENABLE_IPv6", false) {
                Some(EgressReject::V4)
            } else if env.bool("ENABLE_V6_EGRESS", false) {
                Some(EgressReject::V6)
            } else {
                None
            },
        };

        let additional_eni_tags = env.eni_tags("ADDITIONAL_ENI_TAGS");
        let cluster_name = env.raw("CLUSTER_NAME").unwrap_or_default();
        if cluster_name.len() > 100 || cluster_name.bytes().any(|b| b.is_ascii_control()) {
            env.invalid(
                "CLUSTER_NAME",
                &cluster_name,
                "a cluster name of at most 100 printable characters",
            );
        }
        let pod_sg_enforcing_mode = env.choice(
            "POD_SECURITY_GROUP_ENFORCING_MODE",
            "strict",
            &["strict", "standard"],
        );

        let introspection_address = env.listen("INTROSPECTION_BIND_ADDRESS", "127.0.0.1:61679");
        let introspection = (!env.bool("DISABLE_INTROSPECTION", false)).then_some(introspection_address);
        let metrics_address = env.listen("METRICS_BIND_ADDRESS", ":61678");
        let metrics = (!env.bool("DISABLE_METRICS", false)).then_some(metrics_address);

        let log_level = env.log_level("AWS_VPC_K8S_CNI_LOGLEVEL");
        let log_file = env
            .raw("AWS_VPC_K8S_CNI_LOG_FILE")
            .unwrap_or_else(|| "stderr".to_owned());
        if !matches!(log_file.as_str(), "stdout" | "stderr") && !log_file.starts_with('/') {
            env.invalid(
                "AWS_VPC_K8S_CNI_LOG_FILE",
                &log_file,
                "stdout, stderr or an absolute path",
            );
        }
        let ec2_endpoint = env.raw("AWS_EC2_ENDPOINT");
        if let Some(endpoint) = ec2_endpoint.as_deref()
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            env.invalid("AWS_EC2_ENDPOINT", endpoint, "an http:// or https:// URL");
        }

        let kubernetes = kubernetes_settings(&mut env);
        let config = Self {
            kubernetes,
            pool,
            network,
            cluster_name,
            additional_eni_tags,
            pod_sg_enforcing_mode,
            backing_store: env.absolute_path("AWS_VPC_K8S_CNI_BACKING_STORE", "/var/run/vpcni/ipam.json"),
            socket_path: env.absolute_path("VPCNI_IPAMD_SOCKET", "/var/run/vpcni/ipamd.sock"),
            introspection,
            metrics,
            log_level,
            log_file,
            ec2_endpoint,
            pool_interval: Duration::from_millis(u64::from(env.number(
                "VPCNI_POOL_INTERVAL_MS",
                5_000,
                100,
                60_000,
            ))),
            reconcile_interval: Duration::from_millis(u64::from(env.number(
                "VPCNI_RECONCILE_INTERVAL_MS",
                60_000,
                100,
                3_600_000,
            ))),
            leaked_eni_cleanup_interval: Duration::from_millis(u64::from(env.number(
                "VPCNI_LEAKED_ENI_CLEANUP_INTERVAL_MS",
                3_600_000,
                100,
                86_400_000,
            ))),
            eni_link_timeout: Duration::from_millis(u64::from(env.number(
                "VPCNI_ENI_LINK_TIMEOUT_MS",
                60_000,
                100,
                600_000,
            ))),
            import_checkpoint: env.absolute_path("VPCNI_IMPORT_CHECKPOINT", "/var/run/aws-node/ipam.json"),
            ec2_backend: env.ec2_backend("VPCNI_EC2_BACKEND"),
            warnings: Vec::new(),
        };
        match env.finish() {
            Ok(warnings) => Ok(Self { warnings, ..config }),
            Err(errors) => Err(ConfigError(errors)),
        }
    }
}

impl Config {
    /// The level for the log filter: tracing has no level above error, so the original's `fatal` logs
    /// errors only.
    pub fn tracing_level(&self) -> &str {
        if self.log_level == "fatal" {
            "error"
        } else {
            &self.log_level
        }
    }
}

/// A Kubernetes label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of at most
/// 63 characters, alphanumerics at both ends, `-`, `_` and `.` inside.
fn is_qualified_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    prefix_ok && name_ok
}

fn kubernetes_settings<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> KubernetesSettings {
    const DEFAULT_KEY: &str = "k8s.amazonaws.com/eniConfig";
    let key = |env: &mut EnvReader<F>, variable: &'static str| match env.raw(variable) {
        None => DEFAULT_KEY.to_owned(),
        Some(value) if is_qualified_key(&value) => value,
        Some(value) => {
            env.invalid(
                variable,
                &value,
                "a label or annotation key such as topology.kubernetes.io/zone (optional DNS prefix and '/', \
                 then up to 63 letters, digits, '-', '_' or '.'); unset for k8s.amazonaws.com/eniConfig",
            );
            DEFAULT_KEY.to_owned()
        }
    };
    let eni_config_label_def = key(env, "ENI_CONFIG_LABEL_DEF");
    let eni_config_annotation_def = key(env, "ENI_CONFIG_ANNOTATION_DEF");
    let node_name = env.raw("MY_NODE_NAME").unwrap_or_default();
    if node_name.len() > 253 || node_name.bytes().any(|b| b.is_ascii_control() || b == b'/') {
        env.invalid(
            "MY_NODE_NAME",
            &node_name,
            "the node's name (at most 253 characters, no '/'), as the DaemonSet sets it from spec.nodeName",
        );
    }
    let eni_config_dir = env.raw("VPCNI_ENI_CONFIG_DIR").map(|value| {
        if !value.starts_with('/') || value.split('/').any(|p| p == "..") {
            env.invalid(
                "VPCNI_ENI_CONFIG_DIR",
                &value,
                "an absolute path without '..' to a directory of ENIConfig YAML files",
            );
        }
        PathBuf::from(value)
    });
    let api_url = env.raw("VPCNI_KUBERNETES_API_URL");
    if let Some(url) = api_url.as_deref()
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        env.invalid("VPCNI_KUBERNETES_API_URL", url, "an http:// or https:// URL");
    }
    KubernetesSettings {
        node_name,
        eni_config_label_def,
        eni_config_annotation_def,
        eni_config_dir,
        api_url,
    }
}

mod reader;

use reader::{ConfigReader, parse_with_base_prefix};
use vpcni_engine::settings::EnvReader;

#[cfg(test)]
mod tests;
