//! `vpcnictl sim serve`: the EC2 simulator as an EC2 endpoint (Query API) and an instance metadata service,
//! for the lab, the daemon's tests, or any EC2 client with an endpoint override.

use crate::output::say;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use vpcni_ec2::sim::SimConfig;
use vpcni_ec2_endpoint::{EndpointConfig, Topology};

/// The embedded EC2 simulator.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the simulator: EC2's Query API and IMDSv2, on loopback by default.
    ///
    /// Any EC2 SDK works against it with an endpoint override, e.g.
    /// `aws --endpoint-url http://127.0.0.1:8787 ec2 describe-network-interfaces`, or `AWS_EC2_ENDPOINT`
    /// and `AWS_EC2_METADATA_SERVICE_ENDPOINT` for vpcni-ipamd. Enforces EC2's limits per instance type,
    /// subnet exhaustion, /28 alignment, throttling. Runs until interrupted.
    #[command(
        after_help = "Example topology (TOML):\n  [vpc]\n  cidr = \"10.0.0.0/16\"\n  [[subnets]]\n  name = \"a\"\n  cidr = \"10.0.0.0/24\"\n  [[instances]]\n  name = \"node-1\"\n  type = \"m5.xlarge\"\n  subnet = \"a\"\n  primary_ip = \"10.0.0.10\""
    )]
    Serve {
        /// VPC, subnets and instances to create at start; without it the account starts empty.
        #[arg(long, value_name = "FILE")]
        topology: Option<PathBuf>,
        /// Address of the EC2 API.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
        ec2_listen: SocketAddr,
        /// Address of instance metadata.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8788")]
        imds_listen: SocketAddr,
        /// Keep the account in this directory across restarts.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Seed for identifiers and injected faults (without a topology).
        #[arg(long, value_name = "N", default_value_t = 1)]
        seed: u64,
    },
}

/// Runs the subcommand.
pub fn run(command: SimCommand) -> anyhow::Result<ExitCode> {
    let SimCommand::Serve {
        topology,
        ec2_listen,
        imds_listen,
        state,
        seed,
    } = command;
    let topology = match &topology {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(Topology::parse(&text).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };
    let config = EndpointConfig {
        ec2_listen,
        imds_listen,
        topology,
        sim: SimConfig {
            seed,
            ..SimConfig::default()
        },
        state_dir: state,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let handle = vpcni_ec2_endpoint::serve(config).await?;
        say!("ec2 listening on {}", handle.ec2_url());
        say!("imds listening on {}", handle.imds_url());
        for (name, id, ip) in &handle.created.instances {
            let default = if handle.created.default_instance.as_deref() == Some(id.as_str()) {
                " (default)"
            } else {
                ""
            };
            say!("instance {name} {id} {ip}{default}");
        }
        for (name, id) in &handle.created.subnets {
            say!("subnet {name} {id}");
        }
        say!("ready");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        handle.shutdown();
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
