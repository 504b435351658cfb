//! The capacity planner behind `vpcnictl plan`: a cluster described in a TOML file runs on a virtual
//! clock, each node's pool driven by the daemon's own engine and policy (`vpcni-engine`), its ENIs and
//! addresses coming from the EC2 simulator (`vpcni-ec2`) with EC2's limits, exhaustion, /28
//! fragmentation, prefix reservations and request throttling. It answers before a cluster change what
//! otherwise shows as Pending pods: how many VPC addresses the cluster burns, how many sit idle in warm
//! pools, when a subnet runs out and why, and how many EC2 calls the daemons make against the budget.
//!
//! Deterministic for a seed: the same file gives the same report.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod cluster;
mod fleet;
pub mod from_node;
pub mod html;
pub mod report;
pub mod single;

pub use cluster::{Cluster, ClusterError, ClusterErrors};
pub use fleet::{RunOptions, run};
pub use report::{Comparison, Report, Variant};

/// Runs the cluster as written and once per variant (each a list of `KEY=VALUE` settings), on the same
/// workload and seed.
pub fn compare(
    cluster: &Cluster,
    variants: &[(String, Vec<(String, String)>)],
) -> Result<Comparison, ClusterErrors> {
    let mut results = vec![Variant {
        name: "baseline".into(),
        overrides: Vec::new(),
        report: run(cluster, RunOptions::default()),
    }];
    for (name, overrides) in variants {
        let variant = cluster.with_settings(overrides)?;
        results.push(Variant {
            name: name.clone(),
            overrides: overrides.clone(),
            report: run(&variant, RunOptions::default()),
        });
    }
    Ok(Comparison::new(results))
}

/// Splits `KEY=VALUE[,KEY=VALUE…]`.
pub fn parse_assignments(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{part:?} is not KEY=VALUE, e.g. WARM_IP_TARGET=5"))
        })
        .collect()
}
