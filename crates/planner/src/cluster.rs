//! The cluster file (TOML): the VPC, its subnets, the node groups, ipamd's settings and the workload.
//! Every problem is reported with the line it is on and what to write instead; the format is documented
//! in `docs/planner.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::Spanned;
use vpcni_engine::Millis;
use vpcni_engine::settings::{POOL_VARIABLES, PoolSettings, SettingWarning};

/// A problem in the cluster file (or in a `--set`), with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ClusterError {
    /// 1-based line in the file; `None` for `--set` values and problems with no place.
    pub line: Option<usize>,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ClusterErrors(pub Vec<ClusterError>);

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    /// Name the node groups use.
    pub name: String,
    /// CIDR.
    pub cidr: Ipv4Net,
    /// Availability zone.
    pub zone: String,
    /// Addresses taken by something else (load balancers, databases, other clusters).
    pub in_use: Vec<Ipv4Addr>,
    /// Subnet CIDR reservations of type `prefix`: only /28 prefixes come from them.
    pub prefix_reservations: Vec<Ipv4Net>,
    /// Tagged `kubernetes.io/role/cni=1`: subnet discovery may put pod ENIs here.
    pub pod_subnet: bool,
}

/// How many nodes a group has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCount {
    /// A fixed number.
    Fixed(u32),
    /// Scales out on pending pods, as cluster-autoscaler or Karpenter would.
    Autoscaled {
        /// Nodes at the start.
        min: u32,
        /// Never more.
        max: u32,
    },
}

/// A node group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroupSpec {
    /// Name.
    pub name: String,
    /// EC2 instance type.
    pub instance_type: String,
    /// Node count.
    pub count: NodeCount,
    /// Subnets its nodes launch in, round robin (indexes into [`Cluster::subnets`]).
    pub subnets: Vec<usize>,
    /// Time between two launches of the group (instances come up one after another).
    pub launch_interval_ms: Millis,
    /// From launch to ipamd's first cycle and the node taking pods.
    pub boot_ms: Millis,
    /// kubelet's max pods (default: the instance type's, as `vpcnictl max-pods` gives it).
    pub max_pods: Option<u32>,
}

/// A burst of extra pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// When it starts.
    pub at_ms: Millis,
    /// Extra pods.
    pub pods: u32,
    /// How long they stay.
    pub duration_ms: Millis,
}

/// What runs on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Pods on every node (bound to the node, replaced there when churned).
    pub pods_per_node: Option<u32>,
    /// Pods in the cluster, spread by the scheduler over the nodes with room.
    pub pods: Option<u32>,
    /// Share of the running pods replaced per hour (rolling restarts, jobs): 0.5 = half of them.
    pub churn_per_hour: f64,
    /// 24 multipliers of `pods`, one per hour of the day (0 = midnight).
    pub daily_curve: Option<Vec<f64>>,
    /// Extra pods for a while.
    pub bursts: Vec<Burst>,
    /// When the pods are created (after the nodes launched).
    pub start_ms: Millis,
    /// Simulated time.
    pub duration_ms: Millis,
}

/// Simulation knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulationSpec {
    /// Seed for everything random (churn, sweeps' delays, the simulator's ids).
    pub seed: u64,
    /// EC2's request throttling (token buckets per action).
    pub throttling: bool,
}

/// A validated cluster file.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// VPC CIDRs, primary first.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// Subnets.
    pub subnets: Vec<SubnetSpec>,
    /// Node groups.
    pub node_groups: Vec<NodeGroupSpec>,
    /// ipamd's environment, as written (values as strings).
    pub settings: BTreeMap<String, String>,
    /// The settings read as the daemon reads them.
    pub pool_settings: PoolSettings,
    /// Values accepted by falling back, and names that do not shape the pool.
    pub warnings: Vec<String>,
    /// The workload.
    pub workload: Workload,
    /// Simulation knobs.
    pub simulation: SimulationSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    vpc: RawVpc,
    #[serde(default)]
    subnets: Vec<RawSubnet>,
    #[serde(default)]
    node_groups: Vec<RawNodeGroup>,
    #[serde(default)]
    settings: BTreeMap<String, Spanned<RawValue>>,
    #[serde(default)]
    workload: Option<Spanned<RawWorkload>>,
    #[serde(default)]
    simulation: Option<RawSimulation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVpc {
    cidrs: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    name: Spanned<String>,
    cidr: Spanned<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    in_use: Vec<Spanned<String>>,
    #[serde(default)]
    prefix_reservations: Vec<Spanned<String>>,
    #[serde(default)]
    pod_subnet: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeGroup {
    name: Spanned<String>,
    instance_type: Spanned<String>,
    #[serde(default)]
    nodes: Option<Spanned<u32>>,
    #[serde(default)]
    min_nodes: Option<Spanned<u32>>,
    #[serde(default)]
    max_nodes: Option<Spanned<u32>>,
    subnets: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    launch_interval: Option<Spanned<String>>,
    #[serde(default)]
    boot: Option<Spanned<String>>,
    #[serde(default)]
    max_pods: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawValue {
    Text(String),
    Number(i64),
    Flag(bool),
}

impl RawValue {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(n) => n.to_string(),
            Self::Flag(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    #[serde(default)]
    pods_per_node: Option<u32>,
    #[serde(default)]
    pods: Option<u32>,
    #[serde(default)]
    churn_per_hour: Option<Spanned<f64>>,
    #[serde(default)]
    daily_curve: Option<Spanned<Vec<f64>>>,
    #[serde(default)]
    bursts: Vec<RawBurst>,
    #[serde(default)]
    start: Option<Spanned<String>>,
    #[serde(default)]
    duration: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    at: Spanned<String>,
    pods: u32,
    duration: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulation {
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    throttling: Option<bool>,
}

/// Parses a duration such as `30s`, `10m`, `24h`, `1h30m`, `2d` or `500ms`.
pub fn parse_duration(text: &str) -> Option<Millis> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: Millis = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: Millis = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Turns byte offsets into 1-based lines.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, span: Range<usize>) -> usize {
        self.0[..span.start.min(self.0.len())].matches('\n').count() + 1
    }
}

struct Problems<'a> {
    lines: Lines<'a>,
    errors: Vec<ClusterError>,
}

impl Problems<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = Some(self.lines.of(span));
        self.errors.push(ClusterError {
            line,
            message: message.into(),
        });
    }
}

fn duration_or(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<String>>,
    field: &str,
    default: Millis,
) -> Millis {
    let Some(value) = value else { return default };
    parse_duration(value.get_ref()).unwrap_or_else(|| {
        problems.at(
            value.span(),
            format!(
                "{field} = {:?} is not a duration: write a number and a unit, e.g. \"30s\", \"10m\", \"24h\" or \"1h30m\"",
                value.get_ref()
            ),
        );
        default
    })
}

impl Cluster {
    /// Parses and checks a cluster file.
    pub fn parse(text: &str) -> Result<Self, ClusterErrors> {
        let raw: RawCluster = toml::from_str(text).map_err(|error| {
            let line = error.span().map(|span| Lines(text).of(span));
            ClusterErrors(vec![ClusterError {
                line,
                message: format!(
                    "{} (the cluster file's format is in docs/planner.md)",
                    error.message().trim_end()
                ),
            }])
        })?;
        let mut problems = Problems {
            lines: Lines(text),
            errors: Vec::new(),
        };
        let cluster = Self::check(raw, &mut problems);
        if problems.errors.is_empty() {
            Ok(cluster)
        } else {
            Err(ClusterErrors(problems.errors))
        }
    }

    fn check(raw: RawCluster, problems: &mut Problems<'_>) -> Self {
        let mut vpc_cidrs: Vec<Ipv4Net> = Vec::new();
        if raw.vpc.cidrs.get_ref().is_empty() {
            problems.at(
                raw.vpc.cidrs.span(),
                "the VPC needs at least one CIDR, e.g. cidrs = [\"10.0.0.0/16\"]",
            );
        }
        for cidr in raw.vpc.cidrs.get_ref() {
            match cidr.get_ref().parse::<Ipv4Net>() {
                Ok(net) if (16..=28).contains(&net.prefix_len()) => {
                    if let Some(other) = vpc_cidrs.iter().find(|o| o.contains(&net) || net.contains(*o)) {
                        problems.at(
                            cidr.span(),
                            format!("VPC CIDR {net} overlaps {other}: each VPC CIDR must be separate"),
                        );
                    }
                    vpc_cidrs.push(net.trunc());
                }
                Ok(net) => problems.at(
                    cidr.span(),
                    format!("VPC CIDR {net}: EC2 takes VPC CIDRs from /16 to /28"),
                ),
                Err(_) => problems.at(
                    cidr.span(),
                    format!("{:?} is not an IPv4 CIDR such as 10.0.0.0/16", cidr.get_ref()),
                ),
            }
        }

        let mut subnets: Vec<SubnetSpec> = Vec::new();
        for raw_subnet in &raw.subnets {
            let name = raw_subnet.name.get_ref().clone();
            if subnets.iter().any(|s| s.name == name) {
                problems.at(
                    raw_subnet.name.span(),
                    format!("a second subnet named {name:?}: give each subnet its own name"),
                );
            }
            let Ok(cidr) = raw_subnet.cidr.get_ref().parse::<Ipv4Net>() else {
                problems.at(
                    raw_subnet.cidr.span(),
                    format!(
                        "subnet {name:?}: {:?} is not an IPv4 CIDR such as 10.0.0.0/24",
                        raw_subnet.cidr.get_ref()
                    ),
                );
                continue;
            };
            let cidr = cidr.trunc();
            if !(16..=28).contains(&cidr.prefix_len()) {
                problems.at(
                    raw_subnet.cidr.span(),
                    format!("subnet {name:?}: {cidr}: EC2 subnets are /16 to /28"),
                );
            }
            if !vpc_cidrs.is_empty() && !vpc_cidrs.iter().any(|v| v.contains(&cidr)) {
                let cidrs: Vec<String> = vpc_cidrs.iter().map(ToString::to_string).collect();
                problems.at(
                    raw_subnet.cidr.span(),
                    format!(
                        "subnet {name:?}: {cidr} is outside the VPC ({}); pick a CIDR inside it or add a VPC CIDR that holds it",
                        cidrs.join(", ")
                    ),
                );
            }
            if let Some(other) = subnets
                .iter()
                .find(|s| s.cidr.contains(&cidr) || cidr.contains(&s.cidr))
            {
                problems.at(
                    raw_subnet.cidr.span(),
                    format!(
                        "subnet {name:?}: {cidr} overlaps subnet {:?} ({}); subnets of a VPC cannot overlap",
                        other.name, other.cidr
                    ),
                );
            }
            let mut in_use = Vec::new();
            for address in &raw_subnet.in_use {
                match address.get_ref().parse::<Ipv4Addr>() {
                    Ok(ip) if cidr.contains(&ip) => {
                        let first = u32::from(cidr.network());
                        let a = u32::from(ip);
                        if a < first + 4 || ip == cidr.broadcast() {
                            problems.at(
                                address.span(),
                                format!(
                                    "subnet {name:?}: {ip} is one of the five addresses AWS reserves in every subnet; leave it out of in_use"
                                ),
                            );
                        } else if in_use.contains(&ip) {
                            problems.at(address.span(), format!("subnet {name:?}: {ip} is listed twice"));
                        } else {
                            in_use.push(ip);
                        }
                    }
                    Ok(ip) => problems.at(
                        address.span(),
                        format!("subnet {name:?}: in_use address {ip} is not in {cidr}"),
                    ),
                    Err(_) => problems.at(
                        address.span(),
                        format!(
                            "subnet {name:?}: {:?} is not an IPv4 address such as 10.0.0.20",
                            address.get_ref()
                        ),
                    ),
                }
            }
            let mut prefix_reservations = Vec::new();
            for reservation in &raw_subnet.prefix_reservations {
                match reservation.get_ref().parse::<Ipv4Net>() {
                    Ok(net) if cidr.contains(&net) && net.prefix_len() <= 28 => {
                        prefix_reservations.push(net.trunc())
                    }
                    _ => problems.at(
                        reservation.span(),
                        format!(
                            "subnet {name:?}: prefix reservation {:?} must be a CIDR of /28 or larger inside {cidr}",
                            reservation.get_ref()
                        ),
                    ),
                }
            }
            subnets.push(SubnetSpec {
                name,
                cidr,
                zone: raw_subnet.zone.clone().unwrap_or_else(|| "us-west-2a".to_owned()),
                in_use,
                prefix_reservations,
                pod_subnet: raw_subnet.pod_subnet,
            });
        }

        let mut node_groups = Vec::new();
        if raw.node_groups.is_empty() {
            problems.errors.push(ClusterError {
                line: None,
                message: "no node group: add at least one [[node_groups]] with a name, an instance_type, nodes and subnets".into(),
            });
        }
        for group in &raw.node_groups {
            let name = group.name.get_ref().clone();
            if let Err(unknown) = vpcni_limits::builtin().get(group.instance_type.get_ref()) {
                problems.at(
                    group.instance_type.span(),
                    format!("node group {name:?}: {unknown} (`vpcnictl limits show` lists the known types)"),
                );
            }
            let count = match (&group.nodes, &group.min_nodes, &group.max_nodes) {
                (Some(nodes), None, None) => NodeCount::Fixed(*nodes.get_ref()),
                (None, Some(min), Some(max)) if min.get_ref() <= max.get_ref() => NodeCount::Autoscaled {
                    min: *min.get_ref(),
                    max: *max.get_ref(),
                },
                (None, Some(min), Some(max)) => {
                    problems.at(
                        max.span(),
                        format!(
                            "node group {name:?}: max_nodes ({}) is below min_nodes ({})",
                            max.get_ref(),
                            min.get_ref()
                        ),
                    );
                    NodeCount::Fixed(0)
                }
                _ => {
                    problems.at(
                        group.name.span(),
                        format!(
                            "node group {name:?}: give either nodes = N, or both min_nodes and max_nodes (to scale out on pending pods)"
                        ),
                    );
                    NodeCount::Fixed(0)
                }
            };
            let mut group_subnets = Vec::new();
            if group.subnets.get_ref().is_empty() {
                problems.at(
                    group.subnets.span(),
                    format!("node group {name:?}: name at least one subnet its nodes launch in"),
                );
            }
            for subnet in group.subnets.get_ref() {
                match subnets.iter().position(|s| &s.name == subnet.get_ref()) {
                    Some(index) => group_subnets.push(index),
                    None => {
                        let known: Vec<&str> = subnets.iter().map(|s| s.name.as_str()).collect();
                        problems.at(
                            subnet.span(),
                            format!(
                                "node group {name:?}: no subnet named {:?}; the [[subnets]] are: {}",
                                subnet.get_ref(),
                                if known.is_empty() {
                                    "(none)".to_owned()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                    }
                }
            }
            node_groups.push(NodeGroupSpec {
                name,
                instance_type: group.instance_type.get_ref().trim().to_owned(),
                count,
                subnets: group_subnets,
                launch_interval_ms: duration_or(
                    problems,
                    group.launch_interval.as_ref(),
                    "launch_interval",
                    10_000,
                ),
                boot_ms: duration_or(problems, group.boot.as_ref(), "boot", 30_000),
                max_pods: group.max_pods,
            });
        }

        let mut settings = BTreeMap::new();
        let mut warnings = Vec::new();
        for (name, value) in &raw.settings {
            if !POOL_VARIABLES.contains(&name.as_str()) {
                let closest = POOL_VARIABLES
                    .iter()
                    .map(|known| (strsim::jaro_winkler(known, name), *known))
                    .filter(|(score, _)| *score > 0.9)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                warnings.push(match closest {
                    Some((_, known)) => format!(
                        "line {}: setting {name} is not one ipamd reads for the pool; did you mean {known}? (ignored)",
                        problems.lines.of(value.span())
                    ),
                    None => format!(
                        "line {}: setting {name} does not shape the pool; ignored by the planner",
                        problems.lines.of(value.span())
                    ),
                });
            }
            settings.insert(name.clone(), value.get_ref().text());
        }
        let pool_settings = match read_settings(&settings) {
            Ok((pool_settings, fallbacks)) => {
                warnings.extend(fallbacks.iter().map(ToString::to_string));
                pool_settings
            }
            Err(errors) => {
                for error in errors {
                    let span = raw
                        .settings
                        .get(error.variable)
                        .or_else(|| raw.settings.get("ENABLE_PREFIX_DELEGATION"))
                        .map(|v| v.span());
                    let message = format!("[settings] {error} (the daemon would refuse to start)");
                    match span {
                        Some(span) => problems.at(span, message),
                        None => problems.errors.push(ClusterError { line: None, message }),
                    }
                }
                PoolSettings::default()
            }
        };

        let workload = match &raw.workload {
            Some(spanned) => check_workload(spanned, problems),
            None => {
                problems.errors.push(ClusterError {
                    line: None,
                    message: "no [workload]: add one with pods_per_node = N or pods = N".into(),
                });
                default_workload()
            }
        };
        let simulation = SimulationSpec {
            seed: raw.simulation.as_ref().and_then(|s| s.seed).unwrap_or(1),
            throttling: raw.simulation.as_ref().and_then(|s| s.throttling).unwrap_or(true),
        };
        Self {
            vpc_cidrs,
            subnets,
            node_groups,
            settings,
            pool_settings,
            warnings,
            workload,
            simulation,
        }
    }

    /// Applies `--set KEY=VALUE` overrides, read as the daemon reads them.
    pub fn with_settings(&self, overrides: &[(String, String)]) -> Result<Self, ClusterErrors> {
        let mut settings = self.settings.clone();
        for (key, value) in overrides {
            settings.insert(key.clone(), value.clone());
        }
        let (pool_settings, fallbacks) = read_settings(&settings).map_err(|errors| {
            ClusterErrors(
                errors
                    .into_iter()
                    .map(|error| ClusterError {
                        line: None,
                        message: format!("--set {error} (the daemon would refuse to start)"),
                    })
                    .collect(),
            )
        })?;
        let mut warnings = self.warnings.clone();
        warnings.extend(fallbacks.iter().map(ToString::to_string));
        Ok(Self {
            settings,
            pool_settings,
            warnings,
            ..self.clone()
        })
    }
}

fn read_settings(
    settings: &BTreeMap<String, String>,
) -> Result<(PoolSettings, Vec<SettingWarning>), Vec<vpcni_engine::settings::InvalidSetting>> {
    PoolSettings::from_lookup(|name| settings.get(name).cloned())
}

fn default_workload() -> Workload {
    Workload {
        pods_per_node: None,
        pods: None,
        churn_per_hour: 0.0,
        daily_curve: None,
        bursts: Vec::new(),
        start_ms: 0,
        duration_ms: 3_600_000,
    }
}

fn check_workload(spanned: &Spanned<RawWorkload>, problems: &mut Problems<'_>) -> Workload {
    let raw = spanned.get_ref();
    if raw.pods_per_node.is_some() == raw.pods.is_some() {
        problems.at(
            spanned.span(),
            "[workload] needs exactly one of pods_per_node = N (on every node) or pods = N (spread by the scheduler)",
        );
    }
    let churn_per_hour = match &raw.churn_per_hour {
        Some(churn) if !(0.0..=60.0).contains(churn.get_ref()) => {
            problems.at(
                churn.span(),
                "churn_per_hour is the share of pods replaced per hour: a number from 0 to 60",
            );
            0.0
        }
        Some(churn) => *churn.get_ref(),
        None => 0.0,
    };
    let daily_curve = match &raw.daily_curve {
        Some(curve)
            if curve.get_ref().len() != 24 || curve.get_ref().iter().any(|m| !(0.0..=100.0).contains(m)) =>
        {
            problems.at(
                curve.span(),
                format!(
                    "daily_curve needs 24 multipliers of `pods` (one per hour, 0 to 100), it has {}",
                    curve.get_ref().len()
                ),
            );
            None
        }
        Some(curve) => Some(curve.get_ref().clone()),
        None => None,
    };
    if daily_curve.is_some() && raw.pods.is_none() {
        problems.at(spanned.span(), "daily_curve scales `pods`: set pods = N with it");
    }
    let bursts = raw
        .bursts
        .iter()
        .map(|burst| Burst {
            at_ms: duration_or(problems, Some(&burst.at), "at", 0),
            pods: burst.pods,
            duration_ms: duration_or(problems, Some(&burst.duration), "duration", 0),
        })
        .collect();
    let duration_ms = duration_or(problems, raw.duration.as_ref(), "duration", 3_600_000);
    if (duration_ms == 0 || duration_ms > 31 * 86_400_000)
        && let Some(duration) = &raw.duration
    {
        problems.at(duration.span(), "duration must be more than 0 and at most 31d");
    }
    Workload {
        pods_per_node: raw.pods_per_node,
        pods: raw.pods,
        churn_per_hour,
        daily_curve,
        bursts,
        start_ms: duration_or(problems, raw.start.as_ref(), "start", 0),
        duration_ms,
    }
}
