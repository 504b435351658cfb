//! Prometheus metrics with the original's names and labels (`awscni_*`), so existing dashboards, alerts and
//! the cni-metrics-helper keep working, plus vpcni's own (`vpcni_*`).
//!
//! The `prometheus` crate is used because it writes counter names as given; OpenMetrics encoders append
//! `_total`, which would break every dashboard built for the original. Every `awscni_*` metric has the
//! original's type, so its cni-metrics-helper reads them as it reads the original's: the one Summary,
//! `awscni_aws_api_latency_ms`, is a summary here too, with the original's labels and, as the original's
//! (client_golang's default since v0.10), no quantiles: `_sum` and `_count` only. The crate has no summary
//! type, so [`LatencySummary`] collects it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Summary};
use prometheus::{
    Counter, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use vpcni_ec2::{Ec2Error, Ec2ErrorKind};

/// Observation count and sum by label values.
type SummarySeries = BTreeMap<Vec<String>, (u64, f64)>;

/// A Prometheus summary without quantiles, by label values: the count and sum of observations. Clones
/// share their series, as the crate's own metrics do.
#[derive(Debug, Clone)]
pub struct LatencySummary {
    desc: Desc,
    series: Arc<Mutex<SummarySeries>>,
}

impl LatencySummary {
    /// A summary named `name` with these label names.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        Ok(Self {
            desc: Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                std::collections::HashMap::new(),
            )?,
            series: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// Records one observation under `label_values` (in the order of the label names).
    pub fn observe(&self, label_values: &[&str], value: f64) {
        let key = label_values.iter().map(|v| (*v).to_owned()).collect();
        // A panic elsewhere while the lock was held leaves whole numbers behind: keep counting.
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series.entry(key).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += value;
    }
}

impl Collector for LatencySummary {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let metrics = series
            .iter()
            .map(|(values, (count, sum))| {
                let mut summary = Summary::default();
                summary.set_sample_count(*count);
                summary.set_sample_sum(*sum);
                let mut metric = Metric::default();
                metric.set_label(
                    self.desc
                        .variable_labels
                        .iter()
                        .zip(values)
                        .map(|(name, value)| {
                            let mut pair = LabelPair::default();
                            pair.set_name(name.clone());
                            pair.set_value(value.clone());
                            pair
                        })
                        .collect(),
                );
                metric.set_summary(summary);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        vec![family]
    }
}

/// Every metric ipamd exports.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // each field is documented by its metric's help text below
pub struct Metrics {
    registry: Registry,
    pub ipamd_error_count: IntCounterVec,
    pub reconcile_count: IntCounterVec,
    pub add_ip_req_count: IntCounter,
    pub del_ip_req_count: IntCounterVec,
    pub pod_eni_error_count: IntCounterVec,
    pub aws_api_error_count: IntCounterVec,
    pub aws_utils_error_count: IntCounterVec,
    pub ec2api_req_count: IntCounterVec,
    pub ec2api_error_count: IntCounterVec,
    pub force_removed_enis: IntCounter,
    pub force_removed_ips: IntCounter,
    pub no_available_ip_addresses: IntCounter,
    pub connmark_reconcile_total: IntCounterVec,
    pub ipamd_action_inprogress: IntGaugeVec,
    pub eni_max: IntGauge,
    pub ip_max: IntGauge,
    pub eni_allocated: IntGauge,
    pub total_ip_addresses: IntGauge,
    pub assigned_ip_addresses: IntGauge,
    pub total_ipv4_prefixes: IntGauge,
    pub assigned_ip_per_cidr: IntGaugeVec,
    pub assigned_ip_per_eni: IntGaugeVec,
    pub connmark_backend: IntGaugeVec,
    pub build_info: GaugeVec,
    pub aws_api_latency_ms: LatencySummary,
    pub ipamd_startup_duration_seconds: HistogramVec,
    pub ipamd_node_initialization_duration_seconds: HistogramVec,
    pub no_ip_reason_count: IntCounterVec,
    pub ec2_budget_wait_seconds: Counter,
    pub cooling_ip_addresses: IntGauge,
    /// `vpcni_kubernetes_api_reachable`: 1 while the Kubernetes API answers, else 0 (also when the daemon
    /// does not use the API: custom networking off, or ENIConfigs and node from a directory).
    pub kubernetes_api_reachable: IntGauge,
    /// `vpcni_eni_config_unavailable`: 1 while custom networking has no usable ENIConfig for this node.
    pub eni_config_unavailable: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        // Registering a fresh metric in a fresh registry only fails on a duplicate name, which the list below
        // does not contain (the tests render every name once).
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric name");
            metric
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric name");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric name");
            metric
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric name");
            metric
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric name");
            metric
        };

        let build_info = GaugeVec::new(
            Opts::new(
                "awscni_build_info",
                "A metric with a constant '1' value labeled by version and toolchain",
            ),
            &["version", "goversion"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric name");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                concat!("rust-", env!("CARGO_PKG_RUST_VERSION")),
            ])
            .set(1.0);

        let aws_api_latency_ms = LatencySummary::new(
            "awscni_aws_api_latency_ms",
            "AWS API call latency in ms",
            &["api", "error", "status"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(aws_api_latency_ms.clone()))
            .expect("unique metric name");

        let ec2_budget_wait_seconds = Counter::new(
            "vpcni_ec2_budget_wait_seconds",
            "Seconds EC2 calls waited for the client-side API budget",
        )
        .expect("valid metric");
        registry
            .register(Box::new(ec2_budget_wait_seconds.clone()))
            .expect("unique metric name");

        Self {
            ipamd_error_count: counter_vec(
                "awscni_ipamd_error_count",
                "The number of errors encountered in ipamd",
                &["fn"],
            ),
            reconcile_count: counter_vec(
                "awscni_reconcile_count",
                "The number of times ipamd reconciles on ENIs and IP/Prefix addresses",
                &["fn"],
            ),
            add_ip_req_count: counter("awscni_add_ip_req_count", "The number of add IP address requests"),
            del_ip_req_count: counter_vec(
                "awscni_del_ip_req_count",
                "The number of delete IP address requests",
                &["reason"],
            ),
            pod_eni_error_count: counter_vec(
                "awscni_pod_eni_error_count",
                "The number of errors encountered for pod ENIs",
                &["fn"],
            ),
            aws_api_error_count: counter_vec(
                "awscni_aws_api_error_count",
                "The number of times AWS API returns an error",
                &["api", "error"],
            ),
            aws_utils_error_count: counter_vec(
                "awscni_aws_utils_error_count",
                "The number of errors not handled in awsutils library",
                &["fn", "error"],
            ),
            ec2api_req_count: counter_vec(
                "awscni_ec2api_req_count",
                "The number of requests made to EC2 APIs by CNI",
                &["fn"],
            ),
            ec2api_error_count: counter_vec(
                "awscni_ec2api_error_count",
                "The number of failed EC2 APIs requests",
                &["fn"],
            ),
            force_removed_enis: counter(
                "awscni_force_removed_enis",
                "The number of ENIs force removed while they had assigned pods",
            ),
            force_removed_ips: counter(
                "awscni_force_removed_ips",
                "The number of IPs force removed while they had assigned pods",
            ),
            no_available_ip_addresses: counter(
                "awscni_no_available_ip_addresses",
                "The number of pod IP assignments that fail due to no available IP addresses",
            ),
            connmark_reconcile_total: {
                let metric = counter_vec(
                    "awscni_connmark_reconcile_total",
                    "The number of connmark Setup/Cleanup reconciliations by result",
                    &["result"],
                );
                // Both series exist from the start, at 0, as the original registers them.
                metric.with_label_values(&["success"]);
                metric.with_label_values(&["error"]);
                metric
            },
            ipamd_action_inprogress: gauge_vec(
                "awscni_ipamd_action_inprogress",
                "The number of ipamd actions in progress",
                &["fn"],
            ),
            eni_max: gauge(
                "awscni_eni_max",
                "The maximum number of ENIs that can be attached to the instance, accounting for unmanaged ENIs",
            ),
            ip_max: gauge(
                "awscni_ip_max",
                "The maximum number of IP addresses that can be allocated to the instance",
            ),
            eni_allocated: gauge("awscni_eni_allocated", "The number of ENIs allocated"),
            total_ip_addresses: gauge("awscni_total_ip_addresses", "The total number of IP addresses"),
            assigned_ip_addresses: gauge(
                "awscni_assigned_ip_addresses",
                "The number of IP addresses assigned to pods",
            ),
            total_ipv4_prefixes: gauge("awscni_total_ipv4_prefixes", "The total number of IPv4 prefixes"),
            assigned_ip_per_cidr: gauge_vec(
                "awscni_assigned_ip_per_cidr",
                "The total number of IP addresses assigned per cidr",
                &["cidr"],
            ),
            assigned_ip_per_eni: gauge_vec(
                "awscni_assigned_ip_per_eni",
                "The number of allocated ips partitioned by eni",
                &["eni"],
            ),
            connmark_backend: gauge_vec(
                "awscni_connmark_backend",
                "The connmark backend in use; the active backend's series is set to 1",
                &["backend"],
            ),
            build_info,
            aws_api_latency_ms,
            ipamd_startup_duration_seconds: histogram_vec(
                "awscni_ipamd_startup_duration_seconds",
                "The duration of IPAMD startup from process start to ready to serve CNI requests",
                &["success", "with_api_server", "failure_reason"],
                prometheus::exponential_buckets(0.1, 2.0, 12).expect("valid buckets"),
            ),
            ipamd_node_initialization_duration_seconds: histogram_vec(
                "awscni_ipamd_node_initialization_duration_seconds",
                "The duration of node initialization during IPAMD startup",
                &["success"],
                prometheus::exponential_buckets(0.1, 2.0, 12).expect("valid buckets"),
            ),
            no_ip_reason_count: counter_vec(
                "vpcni_no_ip_reason_count",
                "Pod address requests that got no address, by reason",
                &["reason"],
            ),
            ec2_budget_wait_seconds,
            cooling_ip_addresses: gauge(
                "vpcni_cooling_ip_addresses",
                "Addresses in cooldown after a pod deletion",
            ),
            kubernetes_api_reachable: gauge(
                "vpcni_kubernetes_api_reachable",
                "1 while the Kubernetes API answers ipamd's watches, 0 while it does not",
            ),
            eni_config_unavailable: gauge(
                "vpcni_eni_config_unavailable",
                "Custom networking: 1 while this node has no usable ENIConfig (no pod ENI is created)",
            ),
            registry,
        }
    }

    /// `awscni_aws_utils_error_count{fn,error}`, as the original counts it: an error EC2 answered (not a
    /// transport failure) while cleaning up after a failed ENI attach (`AllocENIDeleteErr`), freeing an ENI
    /// (`getENIAttachmentIDFailed`, `FreeENIDeleteErr`) or deleting a leaked one
    /// (`cleanUpLeakedENIDeleteErr`). The `error` label is EC2's error code; the original puts the whole
    /// message there, request id included, one series per failure.
    pub fn aws_utils_error(&self, function: &str, error: &Ec2Error) {
        if error.kind != Ec2ErrorKind::Unavailable {
            self.aws_utils_error_count
                .with_label_values(&[function, error.code.as_str()])
                .inc();
        }
    }

    /// `awscni_pod_eni_error_count{fn}`, as the original counts it: `nodeInit` when the pool's first
    /// growth after start-up fails, or custom networking is left without a single pod address.
    pub fn pod_eni_error(&self, function: &str) {
        self.pod_eni_error_count.with_label_values(&[function]).inc();
    }

    /// The text exposition format, for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut buffer = Vec::new();
        // Writing into a Vec cannot fail; a family the encoder refuses would be a bug here, and the
        // families before it are still worth serving.
        if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::error!("encoding the metrics: {error}");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names_are_exported_exactly() {
        let metrics = Metrics::new();
        metrics.add_ip_req_count.inc();
        metrics.del_ip_req_count.with_label_values(&["PodDeleted"]).inc();
        metrics
            .assigned_ip_per_eni
            .with_label_values(&["eni-0abc"])
            .set(3);
        metrics
            .aws_api_latency_ms
            .observe(&["AssignPrivateIpAddresses", "false", "200"], 12.0);
        metrics
            .no_ip_reason_count
            .with_label_values(&["NODE_MAX_PODS"])
            .inc();
        metrics.eni_max.set(4);
        let text = metrics.render();
        for line in [
            "# TYPE awscni_add_ip_req_count counter",
            "awscni_add_ip_req_count 1",
            "awscni_del_ip_req_count{reason=\"PodDeleted\"} 1",
            "awscni_assigned_ip_per_eni{eni=\"eni-0abc\"} 3",
            "awscni_eni_max 4",
            "awscni_aws_api_latency_ms_count{api=\"AssignPrivateIpAddresses\",error=\"false\",status=\"200\"} 1",
            "vpcni_no_ip_reason_count{reason=\"NODE_MAX_PODS\"} 1",
            "# TYPE awscni_build_info gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // No `_total` added to counter names: the one original name with it is connmark_reconcile_total
        // (the process collector's `process_cpu_seconds_total` is Prometheus' own name, as in Go).
        for line in text
            .lines()
            .filter(|l| l.starts_with("awscni_") || l.starts_with("vpcni_"))
        {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(
                !name.ends_with("_total") || name == "awscni_connmark_reconcile_total",
                "{line}"
            );
        }
        for name in [
            "awscni_total_ip_addresses",
            "awscni_assigned_ip_addresses",
            "awscni_total_ipv4_prefixes",
            "awscni_force_removed_enis",
            "awscni_force_removed_ips",
            "awscni_no_available_ip_addresses",
            "awscni_ip_max",
            "awscni_eni_allocated",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
