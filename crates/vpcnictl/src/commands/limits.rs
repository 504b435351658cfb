//! `vpcnictl limits`: show one instance type's network limits, or regenerate the table from EC2's answer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use vpcni_limits::import::merge_describe_instance_types;
use vpcni_limits::{InstanceLimits, LimitsTable};

use crate::output::{OutputFormat, print_json, say_raw, usage_error};

/// Work with the instance limits table compiled into vpcni.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Print the network limits of one instance type.
    Show {
        /// EC2 instance type, e.g. m5.xlarge.
        #[arg(value_name = "TYPE")]
        instance_type: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Regenerate the table from saved `aws ec2 describe-instance-types --output json` output.
    ///
    /// The built-in table is merged with the file: types in the file are added or updated, others are kept,
    /// and branch-ENI counts (which EC2 does not publish) are kept for known types. Write the result over
    /// crates/limits/data/ec2-instance-network-limits.csv and rebuild to ship it.
    #[command(
        after_help = "Example:\n  aws ec2 describe-instance-types --output json > types.json\n  vpcnictl limits import types.json --out crates/limits/data/ec2-instance-network-limits.csv"
    )]
    Import {
        /// DescribeInstanceTypes JSON (one document, or a JSON array of them).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where to write the CSV; standard output when absent.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Start from this CSV instead of the built-in table.
        #[arg(long, value_name = "CSV")]
        base: Option<PathBuf>,
    },
}

/// Runs the subcommand.
pub fn run(command: &LimitsCommand) -> anyhow::Result<ExitCode> {
    match command {
        LimitsCommand::Show {
            instance_type,
            output,
        } => {
            let limits = match vpcni_limits::builtin().get(instance_type) {
                Ok(limits) => limits,
                Err(unknown) => return Ok(usage_error(unknown)),
            };
            match output {
                OutputFormat::Text => say_raw!("{}", describe(limits)),
                OutputFormat::Json => print_json(limits)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        LimitsCommand::Import { file, out, base } => {
            let mut table = match base {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    LimitsTable::from_csv(&text).with_context(|| format!("parsing {}", path.display()))?
                }
                None => vpcni_limits::builtin().clone(),
            };
            let json =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let summary = match merge_describe_instance_types(&mut table, &json) {
                Ok(summary) => summary,
                Err(error) => return Ok(usage_error(format_args!("{}: {error}", file.display()))),
            };
            let csv = table.to_csv();
            match out {
                Some(path) => {
                    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
                }
                None => say_raw!("{csv}"),
            }
            eprintln!(
                "limits import: {} added, {} changed, {} unchanged, {} types in all{}",
                summary.added.len(),
                summary.changed.len(),
                summary.unchanged,
                table.len(),
                if summary.added.is_empty() {
                    String::new()
                } else {
                    format!(" (new: {})", summary.added.join(", "))
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe(limits: &InstanceLimits) -> String {
    let unknown = || "unknown".to_owned();
    let cards = limits
        .network_cards
        .iter()
        .map(|card| format!("{}:{}", card.index, card.max_enis))
        .collect::<Vec<_>>()
        .join(" ");
    let trunk = match limits.branch_interfaces {
        Some(0) => "not trunking-compatible (no security groups for pods)".to_owned(),
        Some(n) => format!("{n} branch ENIs"),
        None => unknown(),
    };
    format!(
        "instance type:           {}\n\
         ENIs (default card):     {}\n\
         IPv4 per ENI:            {} (primary included: {} for pods, or {} /28 prefixes)\n\
         IPv6 per ENI:            {}\n\
         default vCPUs:           {}\n\
         hypervisor:              {}{}\n\
         prefix delegation:       {}\n\
         EFA:                     {}\n\
         network cards (idx:ENIs): {} ({} ENIs in all, default card {})\n\
         security groups for pods: {}\n",
        limits.instance_type,
        limits.max_enis,
        limits.ipv4_per_eni,
        limits.ipv4_per_eni.saturating_sub(1),
        limits.ipv4_per_eni.saturating_sub(1),
        limits.ipv6_per_eni.map_or_else(unknown, |n| n.to_string()),
        limits.default_vcpus.map_or_else(unknown, |n| n.to_string()),
        limits.hypervisor,
        if limits.bare_metal { " (bare metal)" } else { "" },
        if limits.supports_prefix_delegation() {
            "supported"
        } else {
            "not supported"
        },
        limits.efa_supported.map_or_else(unknown, |b| if b {
            "supported".to_owned()
        } else {
            "not supported".to_owned()
        }),
        cards,
        limits.total_enis(),
        limits.default_network_card_index,
        trunk,
    )
}
