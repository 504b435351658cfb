//! Prometheus metrics with the original's names and labels (`awscni_*`), so existing dashboards, alerts and
//! the cni-metrics-helper keep working, plus vpcni's own (`vpcni_*`).
//!
//! The `prometheus` crate is used because it writes counter names as given; OpenMetrics encoders append
//! `_total`, which would break every dashboard built for the original. The original's one Summary,
//! `awscni_aws_api_latency_ms`, is a Histogram here: its `_sum` and `_count` series are the same, and
//! histograms aggregate across nodes where summaries cannot.

use prometheus::{
    Counter, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    pub aws_api_latency_ms: HistogramVec,
    pub ipamd_startup_duration_seconds: HistogramVec,
    pub ipamd_node_initialization_duration_seconds: HistogramVec,
    pub no_ip_reason_count: IntCounterVec,
    pub ec2_budget_wait_seconds: Counter,
    pub cooling_ip_addresses: IntGauge,
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
            connmark_reconcile_total: counter_vec(
                "awscni_connmark_reconcile_total",
                "The number of connmark rule reconciliations",
                &["result"],
            ),
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
                "The connmark backend in use",
                &["backend"],
            ),
            build_info,
            aws_api_latency_ms: histogram_vec(
                "awscni_aws_api_latency_ms",
                "AWS API call latency in ms",
                &["api", "error", "status"],
                vec![
                    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                ],
            ),
            ipamd_startup_duration_seconds: histogram_vec(
                "awscni_ipamd_startup_duration_seconds",
                "Time taken for ipamd to start up",
                &["success", "with_api_server", "failure_reason"],
                prometheus::exponential_buckets(0.1, 2.0, 12).expect("valid buckets"),
            ),
            ipamd_node_initialization_duration_seconds: histogram_vec(
                "awscni_ipamd_node_initialization_duration_seconds",
                "Time taken to initialize the node",
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
            registry,
        }
    }

    /// The text exposition format, for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut buffer = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
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
            .with_label_values(&["AssignPrivateIpAddresses", "false", "200"])
            .observe(12.0);
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
        assert!(!text.contains("_total{") && !text.contains("awscni_add_ip_req_count_total"));
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
