//! `vpcnictl`: the operator's tool for vpcni.
//!
//! Each subcommand lives in `commands/`, parses its own flags (clap derive; doc comments are the help)
//! and returns an exit code. Exit codes: 0 success, 1 the operation failed, 2 bad usage or unknown input.

#![forbid(unsafe_code)]
// `print!` panics when the reader has gone (`vpcnictl limits show m5.xlarge | head -1`): output goes through
// `output::emit`, which ends quietly instead.
#![deny(clippy::print_stdout)]

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// vpcni operator's tool: size nodes, forecast the warm pool, run the VPC-in-a-box lab.
#[derive(Debug, Parser)]
#[command(name = "vpcnictl", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The number to give kubelet `--max-pods` for an instance type.
    MaxPods(commands::max_pods::MaxPodsArgs),
    /// Forecast the addresses a node holds for a pod count and warm-pool settings.
    Pool(commands::pool::PoolArgs),
    /// Plan a cluster's VPC addresses: run its nodes' pools, the EC2 simulator and a workload on a virtual clock.
    Plan(commands::plan::PlanArgs),
    /// Run the embedded EC2 simulator behind EC2's own API and instance metadata.
    #[command(subcommand)]
    Sim(commands::sim::SimCommand),
    /// VPC in a box: nodes running vpcni-ipamd, pods wired by the vpcni plugin, in network namespaces.
    Lab(commands::lab::LabArgs),
    /// Show or refresh the built-in table of instance-type network limits.
    #[command(subcommand)]
    Limits(commands::limits::LimitsCommand),
    /// On a Kubernetes node, run by the vpcni DaemonSet: install the plugins and the conflist, start ipamd.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::MaxPods(args) => commands::max_pods::run(&args),
        Command::Limits(command) => commands::limits::run(&command),
        Command::Pool(args) => commands::pool::run(&args),
        Command::Plan(args) => commands::plan::run(&args),
        Command::Sim(command) => commands::sim::run(command),
        Command::Lab(args) => commands::lab::run(args),
        Command::Node(command) => commands::node::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("vpcnictl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
