//! What a plan found: per subnet, pods, EC2 calls, per node group; as JSON (`--output json`) and text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use vpcni_engine::Millis;

/// Why a subnet ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// `SUBNET_EXHAUSTED` (no free address) or `NO_FREE_PREFIX` (addresses left, no whole /28).
    pub code: String,
    /// What happened, with the numbers.
    pub message: String,
}

/// A /28 of a subnet at the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockState {
    /// Every address free.
    Free,
    /// Some addresses in use (or reserved by AWS).
    Partial,
    /// Every address in use by single addresses.
    Used,
    /// Delegated whole to an ENI as a prefix.
    Prefix,
    /// Free, inside a subnet CIDR reservation of type prefix.
    Reserved,
}

/// Every /28 of a subnet, in address order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetMap {
    /// The subnet.
    pub cidr: String,
    /// One entry per /28.
    pub blocks: Vec<BlockState>,
}

/// One subnet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubnetReport {
    /// Name in the cluster file.
    pub name: String,
    /// CIDR.
    pub cidr: String,
    /// Availability zone.
    pub zone: String,
    /// Addresses EC2 lets you use (the CIDR's, less the five AWS reserves).
    pub usable: u64,
    /// Most addresses in use at once.
    pub used_peak: u64,
    /// In use at the end.
    pub used_end: u64,
    /// Most addresses taken from the subnet but used by no pod (node and ENI primaries, warm pools).
    pub idle_peak: u64,
    /// Aligned /28s entirely free at the end (what prefix delegation can still get).
    pub whole_prefixes_free_end: u64,
    /// Whether it ran out during the run.
    pub exhausted: bool,
    /// When, in seconds from the start.
    pub exhausted_at_s: Option<f64>,
    /// Why.
    pub cause: Option<Cause>,
    /// Its /28s at the end (HTML report only).
    #[serde(skip)]
    pub map: SubnetMap,
}

/// Pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PodReport {
    /// Pods created during the run (replacements included).
    pub requested: u64,
    /// Running at the end.
    pub running_end: u64,
    /// Not running at the end (no node, or no address yet).
    pub pending_end: u64,
    /// 99th percentile of the time from creation to an address (pods still waiting count with their
    /// wait so far).
    pub wait_p99_s: f64,
    /// Pending pods at the end by reason: the daemon's refusal code, or UNSCHEDULABLE (no node has room).
    pub pending_reasons: BTreeMap<String, u64>,
}

/// Calls and throttled calls of one action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    /// Calls.
    pub calls: u64,
    /// Refused with RequestLimitExceeded.
    pub throttled: u64,
}

/// EC2 calls the daemons made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ec2Report {
    /// Calls.
    pub calls: u64,
    /// Refused with RequestLimitExceeded.
    pub throttled: u64,
    /// By action.
    pub by_action: BTreeMap<String, ActionCount>,
}

impl Ec2Report {
    /// Counts one call.
    pub fn add(&mut self, action: &str, throttled: bool) {
        self.calls += 1;
        self.throttled += u64::from(throttled);
        let entry = self.by_action.entry(action.to_owned()).or_default();
        entry.calls += 1;
        entry.throttled += u64::from(throttled);
    }
}

/// One node group's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    /// Name.
    pub name: String,
    /// Instance type.
    pub instance_type: String,
    /// Nodes at the end.
    pub nodes_end: u32,
    /// Most nodes at once.
    pub nodes_peak: u32,
    /// Launches that found no address for the instance.
    pub launch_failures: u32,
    /// Most addresses its nodes held at once (instance and ENI primaries, secondary addresses, prefixes).
    pub used_peak: u64,
    /// Held at the end.
    pub used_end: u64,
    /// Most of those held but used by no pod.
    pub idle_peak: u64,
    /// Held but used by no pod, at the end.
    pub idle_end: u64,
    /// Its pods.
    pub pods: PodReport,
    /// Its daemons' EC2 calls.
    pub ec2: Ec2Report,
}

/// One point of the time series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Virtual time.
    pub at_ms: Millis,
    /// Addresses in use per subnet (cluster file order).
    pub used: Vec<u64>,
    /// Of those, used by no pod.
    pub idle: Vec<u64>,
    /// Pods running.
    pub pods_running: u64,
    /// Pods pending.
    pub pods_pending: u64,
    /// EC2 calls since the previous sample.
    pub ec2_calls: u64,
    /// Of those, throttled.
    pub ec2_throttled: u64,
}

/// A plan's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Per subnet.
    pub subnets: Vec<SubnetReport>,
    /// All pods.
    pub pods: PodReport,
    /// All the daemons' EC2 calls.
    pub ec2: Ec2Report,
    /// Per node group.
    pub node_groups: Vec<GroupReport>,
    /// ipamd's settings used.
    pub settings: BTreeMap<String, String>,
    /// Settings accepted by falling back, or ignored.
    pub warnings: Vec<String>,
    /// Simulated time after the workload started, seconds.
    pub duration_s: f64,
    /// The seed.
    pub seed: u64,
    /// The time series (HTML report only).
    #[serde(skip)]
    pub series: Vec<Sample>,
    /// Time between samples, seconds.
    #[serde(skip)]
    pub sample_every_s: f64,
    /// The simulated VPC.
    #[serde(skip)]
    pub vpc_id: String,
}

fn clock(seconds: f64) -> String {
    let total = seconds.round() as u64;
    format!("{}h{:02}m{:02}s", total / 3600, (total / 60) % 60, total % 60)
}

impl Report {
    /// The text summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "subnets:");
        for subnet in &self.subnets {
            let _ = writeln!(
                out,
                "  {} {} ({}): {} usable; used peak {}, at the end {}; idle peak {} (taken, no pod); {} whole /28s free at the end",
                subnet.name,
                subnet.cidr,
                subnet.zone,
                subnet.usable,
                subnet.used_peak,
                subnet.used_end,
                subnet.idle_peak,
                subnet.whole_prefixes_free_end
            );
            if let (Some(at), Some(cause)) = (subnet.exhausted_at_s, &subnet.cause) {
                let _ = writeln!(
                    out,
                    "    EXHAUSTED at {} — {}: {}",
                    clock(at),
                    cause.code,
                    cause.message
                );
            }
        }
        let _ = writeln!(
            out,
            "pods: {} requested, {} running and {} pending at the end, p99 wait for an address {:.1} s",
            self.pods.requested, self.pods.running_end, self.pods.pending_end, self.pods.wait_p99_s
        );
        for (reason, count) in &self.pods.pending_reasons {
            let _ = writeln!(out, "  pending: {count} × {reason}");
        }
        let _ = writeln!(
            out,
            "EC2: {} calls by the daemons, {} throttled",
            self.ec2.calls, self.ec2.throttled
        );
        for group in &self.node_groups {
            let _ = writeln!(
                out,
                "node group {} ({}): {} nodes at the end (peak {}); addresses held peak {}, end {}, idle end {}; pods running {}, pending {}; EC2 calls {} ({} throttled){}",
                group.name,
                group.instance_type,
                group.nodes_end,
                group.nodes_peak,
                group.used_peak,
                group.used_end,
                group.idle_end,
                group.pods.running_end,
                group.pods.pending_end,
                group.ec2.calls,
                group.ec2.throttled,
                if group.launch_failures > 0 {
                    format!("; {} launches failed", group.launch_failures)
                } else {
                    String::new()
                }
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "note: {warning}");
        }
        out
    }
}

/// One variant of a comparison and its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// `baseline`, or the `--compare` text.
    pub name: String,
    /// The settings it changes.
    pub overrides: Vec<(String, String)>,
    /// Its result.
    pub report: Report,
}

/// Variants side by side, and which to pick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Baseline first.
    pub variants: Vec<Variant>,
    /// Which variant, and why.
    pub recommendation: String,
}

impl Comparison {
    /// Picks a variant: fewest pods left pending, then no subnet exhausted, then fewest addresses used
    /// at the peak, then fewest throttled and total EC2 calls; and says why in numbers.
    pub fn new(variants: Vec<Variant>) -> Self {
        let key = |v: &Variant| {
            let r = &v.report;
            (
                r.pods.pending_end,
                r.subnets.iter().filter(|s| s.exhausted).count(),
                r.subnets.iter().map(|s| s.used_peak).sum::<u64>(),
                r.ec2.throttled,
                r.ec2.calls,
            )
        };
        let best = variants
            .iter()
            .enumerate()
            .min_by_key(|(i, v)| (key(v), *i))
            .map_or(0, |(i, _)| i);
        let recommendation = match (variants.first(), variants.get(best)) {
            (Some(base), Some(pick)) => explain(base, pick, best == 0),
            _ => String::new(),
        };
        Self {
            variants,
            recommendation,
        }
    }

    /// The side-by-side table, then the recommendation.
    pub fn text(&self) -> String {
        let mut rows: Vec<(String, Vec<String>)> = vec![
            ("pods pending at the end".into(), Vec::new()),
            ("p99 wait for an address (s)".into(), Vec::new()),
            ("addresses used, peak".into(), Vec::new()),
            ("idle (no pod), peak".into(), Vec::new()),
            ("whole /28s free at the end".into(), Vec::new()),
            ("subnets exhausted".into(), Vec::new()),
            ("EC2 calls".into(), Vec::new()),
            ("EC2 calls throttled".into(), Vec::new()),
        ];
        for variant in &self.variants {
            let r = &variant.report;
            let sum = |f: fn(&SubnetReport) -> u64| r.subnets.iter().map(f).sum::<u64>();
            let values = [
                r.pods.pending_end.to_string(),
                format!("{:.1}", r.pods.wait_p99_s),
                sum(|s| s.used_peak).to_string(),
                sum(|s| s.idle_peak).to_string(),
                sum(|s| s.whole_prefixes_free_end).to_string(),
                r.subnets.iter().filter(|s| s.exhausted).count().to_string(),
                r.ec2.calls.to_string(),
                r.ec2.throttled.to_string(),
            ];
            for (row, value) in rows.iter_mut().zip(values) {
                row.1.push(value);
            }
        }
        let label_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let widths: Vec<usize> = self
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                rows.iter()
                    .map(|r| r.1[i].len())
                    .max()
                    .unwrap_or(0)
                    .max(v.name.len())
            })
            .collect();
        let mut out = String::new();
        let _ = write!(out, "{:label_width$}", "");
        for (variant, width) in self.variants.iter().zip(&widths) {
            let _ = write!(out, "  {:>width$}", variant.name);
        }
        out.push('\n');
        for (label, values) in &rows {
            let _ = write!(out, "{label:label_width$}");
            for (value, width) in values.iter().zip(&widths) {
                let _ = write!(out, "  {value:>width$}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "recommendation: {}", self.recommendation);
        out
    }
}

fn explain(base: &Variant, pick: &Variant, is_base: bool) -> String {
    let used = |r: &Report| r.subnets.iter().map(|s| s.used_peak).sum::<u64>();
    let idle = |r: &Report| r.subnets.iter().map(|s| s.idle_peak).sum::<u64>();
    let (b, p) = (&base.report, &pick.report);
    if is_base {
        return format!(
            "keep the baseline: no variant leaves fewer pods pending ({}) or uses fewer addresses at the peak ({}) without more throttled EC2 calls",
            b.pods.pending_end,
            used(b)
        );
    }
    let mut reasons = Vec::new();
    if p.pods.pending_end < b.pods.pending_end {
        reasons.push(format!(
            "{} pods pending at the end instead of {}",
            p.pods.pending_end, b.pods.pending_end
        ));
    }
    let exhausted = |r: &Report| r.subnets.iter().filter(|s| s.exhausted).count();
    if exhausted(p) < exhausted(b) {
        reasons.push(format!(
            "{} subnets exhausted instead of {}",
            exhausted(p),
            exhausted(b)
        ));
    }
    if used(p) != used(b) {
        reasons.push(format!(
            "{} addresses used at the peak instead of {} ({} idle instead of {})",
            used(p),
            used(b),
            idle(p),
            idle(b)
        ));
    }
    reasons.push(format!(
        "{} EC2 calls ({} throttled) instead of {} ({})",
        p.ec2.calls, p.ec2.throttled, b.ec2.calls, b.ec2.throttled
    ));
    format!("{}: {}", pick.name, reasons.join("; "))
}
