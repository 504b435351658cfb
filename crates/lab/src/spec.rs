//! What a lab is made of: [`LabSpec`] (what the user asks for) and the fixed address plan around it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::LabError;

/// Instance metadata and the EC2 API live on this address on the router's `lo`; it exists only inside the
/// lab's namespaces, as 169.254.169.254 exists only inside an EC2 instance's view of the VPC.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Port of the EC2 Query API on [`METADATA_IP`].
pub const EC2_PORT: u16 = 8787;
/// The router's address on the internet link.
pub const IGW_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The internet namespace's address, where the what-is-my-IP service listens on port 80.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The internet link's network (TEST-NET-3).
pub const INTERNET_NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24);
/// Port of the what-is-my-IP service.
pub const INTERNET_PORT: u16 = 80;
/// IPv6 labs: the internet link's network, a global range outside every VPC (the documentation prefix).
pub const INTERNET_NET_V6: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0), 64);
/// IPv6 labs: the router's address on the internet link.
pub const IGW_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// IPv6 labs: the internet namespace's address, where the what-is-my-IP service also listens.
pub const INTERNET_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);
/// IPv6 labs: the VPC router's link-local address on every ENI link, the nodes' IPv6 default gateway (EC2
/// announces its router's link-local address by router advertisement; the lab configures it statically).
pub const ROUTER_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xec2, 1);
/// IPv6 labs: the range the egress plugin gives pods their node-local IPv4 address from (the original's).
pub const EGRESS_V4_RANGE: Ipv4Net = Ipv4Net::new_assert(
    vpcni_layout::egress::V4_RANGE,
    vpcni_layout::egress::V4_RANGE_PREFIX,
);
/// Node `i` (1-based) has public address 198.51.100.(10 + i) (TEST-NET-2).
pub const PUBLIC_BASE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// Where ipamd's introspection listens inside each node namespace (its default).
pub const INTROSPECTION: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 61679);
/// MTU of every ENI link, as EC2's jumbo frames.
pub const ENI_MTU: u32 = 9001;
/// The most nodes one lab holds (public addresses run from .11 to .60).
pub const MAX_NODES: u32 = 50;
/// The chained egress plugin of IPv6 labs (the original's `egress-cni`).
pub const EGRESS_PLUGIN: &str = vpcni_layout::egress::PLUGIN_TYPE;
/// Default namespace-name prefix.
pub const DEFAULT_PREFIX: &str = "vpcni-";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/vpcni-lab";
/// The simulator's region; zones are `us-west-2a`, `us-west-2b`, ….
pub const REGION: &str = "us-west-2";
/// The node label the lab's ENIConfigs are chosen by (ENI_CONFIG_LABEL_DEF), as EKS users commonly set it.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Environment ipamd gets from the lab itself; `--env` may not override these.
pub const LAB_OWNED_ENV: [&str; 12] = [
    "VPCNI_EC2_BACKEND",
    "AWS_EC2_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "VPCNI_IPAMD_SOCKET",
    "AWS_VPC_K8S_CNI_BACKING_STORE",
    "INTROSPECTION_BIND_ADDRESS",
    "ENABLE_PREFIX_DELEGATION",
    "ENABLE_IPv4",
    "ENABLE_IPv6",
];

/// The directory cargo put the workspace's binaries in, found from the running executable: a test in
/// `target/debug/deps/` or a binary in `target/debug/` both give `target/debug`.
pub fn workspace_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// What a lab is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// Namespace names start with this (`vpcni-` → `vpcni-router`, `vpcni-node-1`, `vpcni-pod-1`).
    pub prefix: String,
    /// Where the lab keeps its state, sockets, checkpoints and logs.
    pub state_dir: PathBuf,
    /// Number of nodes.
    pub nodes: u32,
    /// EC2 instance type of every node.
    pub instance_type: String,
    /// The VPC's CIDR.
    pub vpc_cidr: Ipv4Net,
    /// Subnets; nodes are spread over them in turn.
    pub subnets: Vec<Ipv4Net>,
    /// ENABLE_PREFIX_DELEGATION for every ipamd.
    pub prefix_delegation: bool,
    /// Extra environment for every ipamd (WARM_IP_TARGET, MAX_ENI, …).
    pub ipamd_env: Vec<(String, String)>,
    /// How long the simulator takes to attach an ENI, as EC2 does.
    pub attach_delay_ms: u64,
    /// Directory holding `vpcnictl`, `vpcni-ipamd` and `vpcni`.
    pub bin_dir: PathBuf,
    /// Custom networking: pods in [`LabSpec::pod_subnets`], nodes in [`LabSpec::subnets`].
    #[serde(default)]
    pub custom_networking: bool,
    /// One pod subnet per node subnet (same zone), for custom networking.
    #[serde(default)]
    pub pod_subnets: Vec<Ipv4Net>,
    /// CIDRs added to the VPC (for pod subnets outside the VPC's CIDR, such as 100.64.0.0/16).
    #[serde(default)]
    pub secondary_cidrs: Vec<Ipv4Net>,
    /// Dual stack: the VPC gets an IPv6 /56 and each subnet a /64, nodes an IPv6 address, and ipamd runs in
    /// IPv6 mode (one /80 per node) with the `vpcni-egress` plugin chained for IPv4 egress.
    #[serde(default)]
    pub ipv6: bool,
}

impl LabSpec {
    /// Three m5.xlarge nodes in 10.0.0.0/24, binaries next to the running executable.
    pub fn new(bin_dir: impl Into<PathBuf>) -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            nodes: 3,
            instance_type: "m5.xlarge".to_owned(),
            vpc_cidr: net(10, 0, 0, 0, 16),
            subnets: vec![net(10, 0, 0, 0, 24)],
            prefix_delegation: false,
            ipamd_env: vec![("VPCNI_POOL_INTERVAL_MS".to_owned(), "1000".to_owned())],
            attach_delay_ms: 0,
            bin_dir: bin_dir.into(),
            custom_networking: false,
            pod_subnets: Vec::new(),
            secondary_cidrs: Vec::new(),
            ipv6: false,
        }
    }

    /// A lab of its own for a test: namespaces named `vt-<suite>-<pid>-<n>-…` and state in
    /// `/tmp/vt-<suite>-<pid>-<n>`, so tests run in parallel with each other and with a user's lab;
    /// binaries from [`workspace_bin_dir`].
    pub fn isolated(suite: &str) -> Self {
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("vt-{suite}-{}-{n}", std::process::id());
        let mut spec = Self::new(workspace_bin_dir());
        spec.prefix = format!("{name}-");
        spec.state_dir = std::env::temp_dir().join(&name);
        spec
    }

    /// Checks everything that can be checked before anything is created.
    pub fn validate(&self) -> Result<(), LabError> {
        let bad = |what: String| Err(LabError::Spec(what));
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 40
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !prefix_ok {
            return bad(format!(
                "namespace prefix {:?} is not valid: use 1 to 40 lowercase letters, digits, '-' or '_'",
                self.prefix
            ));
        }
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return bad(format!(
                "--nodes {} is not valid: a lab has 1 to {MAX_NODES} nodes",
                self.nodes
            ));
        }
        if let Err(unknown) = vpcni_limits::builtin().get(&self.instance_type) {
            return bad(unknown.to_string());
        }
        if self.subnets.is_empty() {
            return bad("a lab needs at least one subnet".into());
        }
        if self.vpc_cidr.prefix_len() < 16 || self.vpc_cidr.prefix_len() > 28 {
            return bad(format!(
                "VPC CIDR {} is not valid: EC2 accepts /16 to /28",
                self.vpc_cidr
            ));
        }
        for (i, subnet) in self.subnets.iter().enumerate() {
            if !self.vpc_cidr.contains(subnet) {
                return bad(format!("subnet {subnet} is not inside the VPC {}", self.vpc_cidr));
            }
            if subnet.prefix_len() > 28 {
                return bad(format!(
                    "subnet {subnet} is too small: EC2 subnets are /16 to /28"
                ));
            }
            if subnet.trunc() != *subnet {
                return bad(format!(
                    "subnet {subnet} has host bits set; did you mean {}?",
                    subnet.trunc()
                ));
            }
            if let Some(other) = self.subnets[..i]
                .iter()
                .find(|o| o.contains(subnet) || subnet.contains(*o))
            {
                return bad(format!("subnets {other} and {subnet} overlap"));
            }
        }
        if self.vpc_cidr.contains(&INTERNET_NET) || self.vpc_cidr.contains(&METADATA_IP) {
            return bad(format!(
                "VPC {} overlaps the lab's internet (203.0.113.0/24) or metadata address",
                self.vpc_cidr
            ));
        }
        self.validate_custom_networking()?;
        self.validate_ipv6()?;
        for (key, _) in &self.ipamd_env {
            // Lab-owned names first: the original's ENABLE_IPv4/ENABLE_IPv6 are not all upper case.
            if LAB_OWNED_ENV.contains(&key.as_str()) {
                let hint = if key == "ENABLE_PREFIX_DELEGATION" {
                    "use --prefix-delegation"
                } else if key.starts_with("ENABLE_IPv") {
                    "use --ipv6 for an IPv6 lab"
                } else {
                    "it wires ipamd to the lab's EC2 and metadata"
                };
                return bad(format!("--env {key}: the lab sets this variable itself ({hint})"));
            }
            let name_ok = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok {
                return bad(format!(
                    "--env {key:?}: expected KEY=VALUE with an upper-case variable name such as WARM_IP_TARGET"
                ));
            }
        }
        Ok(())
    }

    /// An IPv6 lab needs what ipamd's IPv6 mode needs: prefix delegation, a Nitro (or bare-metal) type with
    /// IPv6, and no custom networking.
    fn validate_ipv6(&self) -> Result<(), LabError> {
        if !self.ipv6 {
            return Ok(());
        }
        let bad = |what: String| Err(LabError::Spec(what));
        if self.custom_networking {
            return bad("--ipv6 and --custom-networking cannot be combined: ipamd's IPv6 mode has no custom networking (as the original)".into());
        }
        if !self.prefix_delegation {
            return bad("--ipv6 needs prefix delegation (ENABLE_PREFIX_DELEGATION=true): each node gets one /80 prefix; add --prefix-delegation".into());
        }
        if let Ok(limits) = vpcni_limits::builtin().get(&self.instance_type) {
            if !limits.supports_prefix_delegation() {
                return bad(format!(
                    "--ipv6 needs a Nitro (or bare-metal) instance type for its /80 prefixes: {} is not; use e.g. m5.xlarge",
                    self.instance_type
                ));
            }
            if limits.ipv6_per_eni == Some(0) {
                return bad(format!(
                    "--ipv6: {} has no IPv6 addresses per ENI; use e.g. m5.xlarge",
                    self.instance_type
                ));
            }
        }
        if self.subnets.len() > 256 {
            return bad("--ipv6: a VPC's /56 holds 256 subnet /64s at most".into());
        }
        Ok(())
    }

    fn validate_custom_networking(&self) -> Result<(), LabError> {
        let bad = |what: String| Err(LabError::Spec(what));
        if !self.custom_networking {
            if !self.pod_subnets.is_empty() || !self.secondary_cidrs.is_empty() {
                return bad("--pod-subnet and --secondary-cidr need --custom-networking".into());
            }
            return Ok(());
        }
        if self.pod_subnets.len() != self.subnets.len() {
            return bad(format!(
                "--custom-networking needs one --pod-subnet per node subnet (same zone): {} node subnet(s), {} pod subnet(s)",
                self.subnets.len(),
                self.pod_subnets.len()
            ));
        }
        let mut vpc = vec![self.vpc_cidr];
        for cidr in &self.secondary_cidrs {
            if cidr.prefix_len() < 16 || cidr.prefix_len() > 28 || cidr.trunc() != *cidr {
                return bad(format!(
                    "--secondary-cidr {cidr} is not valid: EC2 accepts /16 to /28 without host bits"
                ));
            }
            if let Some(other) = vpc.iter().find(|o| o.contains(cidr) || cidr.contains(*o)) {
                return bad(format!("--secondary-cidr {cidr} overlaps the VPC's {other}"));
            }
            if cidr.contains(&INTERNET_NET) || cidr.contains(&METADATA_IP) {
                return bad(format!(
                    "--secondary-cidr {cidr} overlaps the lab's internet (203.0.113.0/24) or metadata address"
                ));
            }
            vpc.push(*cidr);
        }
        let mut taken = self.subnets.clone();
        for subnet in &self.pod_subnets {
            if !vpc.iter().any(|v| v.contains(subnet)) {
                return bad(format!(
                    "--pod-subnet {subnet} is not inside the VPC ({}); add its range with --secondary-cidr",
                    vpc.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            if subnet.prefix_len() > 28 || subnet.trunc() != *subnet {
                return bad(format!(
                    "--pod-subnet {subnet} is not valid: EC2 subnets are /16 to /28, without host bits"
                ));
            }
            if let Some(other) = taken.iter().find(|o| o.contains(subnet) || subnet.contains(*o)) {
                return bad(format!("--pod-subnet {subnet} overlaps subnet {other}"));
            }
            taken.push(*subnet);
        }
        Ok(())
    }

    /// The zone of node subnet `i` (0-based): with custom networking each node subnet and its pod subnet
    /// get a zone of their own (`us-west-2a`, `us-west-2b`, …); otherwise `None` (the simulator's `a`).
    pub fn zone(&self, i: usize) -> Option<String> {
        self.custom_networking.then(|| {
            let letter = char::from(b'a' + (i % 26) as u8);
            format!("{REGION}{letter}")
        })
    }

    /// The ENIConfig node `index` (1-based) uses: its zone's, with custom networking.
    pub fn eni_config_of(&self, index: u32) -> Option<String> {
        self.zone((index as usize - 1) % self.subnets.len())
    }

    /// The subnet node `index` (1-based) lives in.
    pub fn subnet_of(&self, index: u32) -> Ipv4Net {
        self.subnets[(index as usize - 1) % self.subnets.len()]
    }

    /// Node `index`'s primary address: the subnet's `.10 + k` for the k-th node in it, when the subnet
    /// is big enough; otherwise the simulator picks the lowest free one.
    pub fn planned_primary_ip(&self, index: u32) -> Option<Ipv4Addr> {
        let subnet = self.subnet_of(index);
        let k = (index - 1) / self.subnets.len() as u32 + 1;
        let ip = u32::from(subnet.network()) + 10 + k;
        (ip < u32::from(subnet.broadcast())).then(|| Ipv4Addr::from(ip))
    }

    /// Node `index`'s public address.
    pub fn public_ip(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(PUBLIC_BASE) + index)
    }

    /// The binaries this lab runs: `vpcnictl`, `vpcni-ipamd`, `vpcni`, and in IPv6 labs `vpcni-egress`.
    pub fn binaries(&self) -> Vec<&'static str> {
        let mut binaries = crate::BINARIES.to_vec();
        if self.ipv6 {
            binaries.push(EGRESS_PLUGIN);
        }
        binaries
    }

    /// The subnet's gateway (its `.1`), held by the router.
    pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(subnet.network()) + 1)
    }

    /// The environment every ipamd gets, lab-owned variables included.
    pub fn ipamd_environment(&self, node_dir: &Path) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("VPCNI_EC2_BACKEND".into(), "aws".into()),
            (
                "AWS_EC2_ENDPOINT".into(),
                format!("http://{}", SocketAddr::from((METADATA_IP, EC2_PORT))),
            ),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
                format!("http://{METADATA_IP}"),
            ),
            ("AWS_REGION".into(), "us-west-2".into()),
            ("AWS_ACCESS_KEY_ID".into(), "vpcni-lab".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "vpcni-lab".into()),
            // Never read the operator's own AWS files.
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
            (
                "VPCNI_IPAMD_SOCKET".into(),
                node_dir.join("ipamd.sock").display().to_string(),
            ),
            (
                "AWS_VPC_K8S_CNI_BACKING_STORE".into(),
                node_dir.join("ipam.json").display().to_string(),
            ),
            ("INTROSPECTION_BIND_ADDRESS".into(), INTROSPECTION.to_string()),
            ("CLUSTER_NAME".into(), "vpcni-lab".into()),
            (
                "ENABLE_PREFIX_DELEGATION".into(),
                self.prefix_delegation.to_string(),
            ),
        ];
        if self.ipv6 {
            env.push(("ENABLE_IPv4".into(), "false".into()));
            env.push(("ENABLE_IPv6".into(), "true".into()));
        }
        if let Some(name) = node_dir.file_name().and_then(|n| n.to_str()) {
            env.push(("MY_NODE_NAME".into(), name.to_owned()));
        }
        if self.custom_networking {
            // `<state>/nodes/<node>` → `<state>/eniconfigs` (StatePaths::eni_config_dir).
            let dir = node_dir
                .parent()
                .and_then(Path::parent)
                .map_or_else(|| PathBuf::from("eniconfigs"), |d| d.join("eniconfigs"));
            env.push(("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".into(), "true".into()));
            env.push(("ENI_CONFIG_LABEL_DEF".into(), ZONE_LABEL.into()));
            env.push(("VPCNI_ENI_CONFIG_DIR".into(), dir.display().to_string()));
        }
        for (key, value) in &self.ipamd_env {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        env
    }
}

const fn net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

/// Names of the lab's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The VPC router.
    pub fn router(&self) -> String {
        format!("{}router", self.prefix)
    }

    /// The internet.
    pub fn internet(&self) -> String {
        format!("{}internet", self.prefix)
    }

    /// Node `index` (1-based).
    pub fn node(&self, index: u32) -> String {
        format!("{}{}", self.prefix, node_name(index))
    }

    /// A pod's namespace.
    pub fn pod(&self, pod: &str) -> String {
        format!("{}{pod}", self.prefix)
    }

    /// Whether `netns` is one this lab could have made (router, internet, node-N, pod-N).
    pub fn owns(&self, netns: &str) -> bool {
        let Some(rest) = netns.strip_prefix(&self.prefix) else {
            return false;
        };
        let numbered = |stem: &str| {
            rest.strip_prefix(stem)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        rest == "router" || rest == "internet" || numbered("node-") || numbered("pod-")
    }
}

/// `node-<index>`.
pub fn node_name(index: u32) -> String {
    format!("node-{index}")
}

/// The link names of an ENI: the router's end and the node's end (`eth<device>` on card 0).
pub fn eni_links(node_index: u32, card: u32, device: u32) -> (String, String) {
    if card == 0 {
        (format!("n{node_index}e{device}"), format!("eth{device}"))
    } else {
        (
            format!("n{node_index}c{card}e{device}"),
            format!("eth{card}-{device}"),
        )
    }
}
