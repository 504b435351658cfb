//! `vpcnictl max-pods`: the number to give kubelet `--max-pods`.

use std::process::ExitCode;

use clap::Args;
use vpcni_limits::max_pods::{MaxPods, MaxPodsOptions, max_pods, max_pods_ipv6};

use crate::output::{OutputFormat, print_json, say, usage_error};

/// Computes max pods the way EKS does, per instance type, and says how.
///
/// Secondary-IP mode: ENIs × (IPv4 per ENI − 1) + 2. Prefix delegation: ENIs × (IPv4 per ENI − 1) × 16 + 2
/// on Nitro and bare-metal types. Then the managed-node-group cap: 110 for 30 vCPUs or fewer, 250 above.
/// IPv6 (--ipv6): addresses come from a /80 and do not limit density; the number is prefix delegation's,
/// as EKS gives IPv6 nodes, under the same cap; Nitro and bare-metal types only.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  vpcnictl max-pods --instance-type m5.xlarge\n  vpcnictl max-pods --instance-type m5.large --prefix-delegation --output json\n  vpcnictl max-pods --instance-type m5.large --ipv6\n  vpcnictl max-pods --all --show-max-allowed > eni-max-pods.txt"
)]
pub struct MaxPodsArgs {
    /// EC2 instance type, e.g. m5.xlarge.
    #[arg(
        long,
        value_name = "TYPE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    instance_type: Option<String>,
    /// Every known type, one `TYPE N` line each, sorted (the eni-max-pods.txt format).
    #[arg(long)]
    all: bool,
    /// Pods get /28 prefixes (ENABLE_PREFIX_DELEGATION=true); falls back to secondary IPs where EC2 has none.
    #[arg(long)]
    prefix_delegation: bool,
    /// Custom networking (ENIConfig): the primary ENI carries no pod addresses.
    #[arg(long)]
    custom_networking: bool,
    /// IPv6 nodes (ENABLE_IPv6=true): pods get /128s from the primary ENI's /80; Nitro and bare metal only.
    #[arg(long, conflicts_with = "custom_networking")]
    ipv6: bool,
    /// Attach at most N ENIs (MAX_ENI).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_eni: Option<u32>,
    /// Security groups for pods (ENABLE_POD_ENI): keep one ENI slot for the trunk ENI where supported.
    #[arg(long)]
    security_groups_for_pods: bool,
    /// Print the IP-limited value, without the 110 / 250 cap.
    #[arg(long)]
    show_max_allowed: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

impl MaxPodsArgs {
    fn options(&self) -> MaxPodsOptions {
        MaxPodsOptions {
            prefix_delegation: self.prefix_delegation,
            custom_networking: self.custom_networking,
            max_eni: self.max_eni,
            security_groups_for_pods: self.security_groups_for_pods,
            show_max_allowed: self.show_max_allowed,
        }
    }
}

/// Runs the subcommand.
pub fn run(args: &MaxPodsArgs) -> anyhow::Result<ExitCode> {
    let table = vpcni_limits::builtin();
    let options = args.options();
    let compute = |limits| {
        if args.ipv6 {
            max_pods_ipv6(limits, &options)
        } else {
            Ok(max_pods(limits, &options))
        }
    };
    if args.all {
        // With --ipv6, types that cannot hold a /80 are left out, and counted on stderr.
        let mut left_out = 0;
        let results: Vec<MaxPods> = table
            .iter()
            .filter_map(|limits| compute(limits).map_err(|_| left_out += 1).ok())
            .collect();
        if left_out > 0 {
            eprintln!(
                "note: {left_out} types left out: IPv6 needs a Nitro or bare-metal type (EC2 delegates /80 prefixes to no other)"
            );
        }
        match args.output {
            OutputFormat::Text => {
                for result in &results {
                    say!("{} {}", result.instance_type, result.max_pods);
                }
            }
            OutputFormat::Json => print_json(&results)?,
        }
        return Ok(ExitCode::SUCCESS);
    }

    // clap guarantees one of --all / --instance-type.
    let name = args.instance_type.as_deref().unwrap_or_default();
    let limits = match table.get(name) {
        Ok(limits) => limits,
        Err(unknown) => return Ok(usage_error(unknown)),
    };
    let result = match compute(limits) {
        Ok(result) => result,
        Err(no_ipv6) => return Ok(usage_error(no_ipv6)),
    };
    match args.output {
        OutputFormat::Text => {
            say!("{}", result.max_pods);
            say!("{}: {}", result.instance_type, result.derivation());
            for note in &result.notes {
                say!("note: {note}");
            }
        }
        OutputFormat::Json => print_json(&result)?,
    }
    Ok(ExitCode::SUCCESS)
}
