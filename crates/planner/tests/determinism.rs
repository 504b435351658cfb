//! A plan is a function of its file and seed, and skipping a resting node's cycles changes nothing.

use vpcni_planner::{Cluster, RunOptions, run};

const CHURN: &str = r#"
[vpc]
cidrs = ["10.0.0.0/16", "10.1.0.0/16"]
[[subnets]]
name = "a"
cidr = "10.0.0.0/22"
zone = "us-west-2a"
[[subnets]]
name = "b"
cidr = "10.1.0.0/22"
zone = "us-west-2b"
[[node_groups]]
name = "web"
instance_type = "m5.large"
min_nodes = 2
max_nodes = 12
subnets = ["a", "b"]
[settings]
WARM_IP_TARGET = "3"
MINIMUM_IP_TARGET = "5"
[workload]
pods = 120
churn_per_hour = 2.0
daily_curve = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
bursts = [{ at = "2h", pods = 60, duration = "20m" }]
duration = "4h"
[simulation]
seed = 7
"#;

#[test]
fn the_same_file_and_seed_give_the_same_report() {
    let cluster = Cluster::parse(CHURN).unwrap();
    let first = run(&cluster, RunOptions::default());
    let second = run(&cluster, RunOptions::default());
    assert_eq!(first, second);
    assert!(
        first.pods.requested > 120,
        "churn replaced pods: {}",
        first.text()
    );
    assert!(
        first.node_groups[0].nodes_peak > 2,
        "the group scaled out: {}",
        first.text()
    );
}

#[test]
fn resting_nodes_skipped_give_the_same_answers_as_every_cycle() {
    for settings in [
        "",
        "WARM_IP_TARGET = \"3\"\nMINIMUM_IP_TARGET = \"5\"",
        "ENABLE_PREFIX_DELEGATION = \"true\"",
    ] {
        let text = CHURN.replace("WARM_IP_TARGET = \"3\"\nMINIMUM_IP_TARGET = \"5\"", settings);
        let cluster = Cluster::parse(&text).unwrap();
        let skipping = run(&cluster, RunOptions::default());
        let every = run(&cluster, RunOptions { every_cycle: true });
        assert_eq!(skipping.subnets, every.subnets, "{settings}");
        assert_eq!(skipping.pods, every.pods, "{settings}");
        let first_difference = skipping.series.iter().zip(&every.series).find(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{settings}");
        assert_eq!(skipping.series.len(), every.series.len());
        assert_eq!(skipping.ec2, every.ec2, "{settings}");
    }
}
