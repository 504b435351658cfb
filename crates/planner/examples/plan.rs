//! Runs a cluster file through the planner and prints the summary and the wall time: the scale
//! benchmark (BENCHMARKS.md) without building the rest of vpcnictl.
//!
//! `cargo run --release -p vpcni-planner --example plan -- bench/scale.toml`

#![allow(clippy::print_stdout)]

use std::time::Instant;

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: plan CLUSTER_FILE");
        return std::process::ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{path}: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let cluster = match vpcni_planner::Cluster::parse(&text) {
        Ok(cluster) => cluster,
        Err(errors) => {
            eprintln!("{path}:\n{errors}");
            return std::process::ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = vpcni_planner::run(&cluster, vpcni_planner::RunOptions::default());
    let elapsed = started.elapsed();
    print!("{}", report.text());
    println!(
        "planned {} nodes, {} pods created, {:.0} h simulated in {:.1} s",
        report.node_groups.iter().map(|g| g.nodes_peak).sum::<u32>(),
        report.pods.requested,
        report.duration_s / 3600.0,
        elapsed.as_secs_f64()
    );
    std::process::ExitCode::SUCCESS
}
