//! `vpcnictl pool`: what a node will hold for a number of pods and warm-pool settings, computed by the same
//! engine ipamd runs, against an EC2 that always says yes.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use vpcni_engine::forecast::{ForecastNode, TraceEntry};
use vpcni_engine::{EniStats, NoAddress, NodeLimits, PoolConfig};
use vpcni_limits::max_pods::{MaxPodsOptions, max_pods};

use crate::output::{OutputFormat, print_json, say, usage_error};

/// Forecasts a node's warm pool: ENIs, addresses held, and how many sit idle.
///
/// Starts from a fresh node (the primary ENI with only its own address), adds pods one at a time and lets the
/// pool policy settle after each, with every cooldown elapsed and a subnet that never runs out. Settings have
/// the original's names and defaults.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  vpcnictl pool --instance-type m5.xlarge --pods 20\n  vpcnictl pool --instance-type m5.xlarge --pods 20 --warm-ip-target 5 --minimum-ip-target 10\n  vpcnictl pool --instance-type m5.large --pods 30 --prefix-delegation --output json"
)]
pub struct PoolArgs {
    /// EC2 instance type, e.g. m5.xlarge.
    #[arg(long, value_name = "TYPE")]
    instance_type: String,
    /// Pods on the node (not counting host-network pods).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pods: u32,
    /// WARM_ENI_TARGET: keep this many ENIs' worth of free addresses.
    #[arg(long, value_name = "N", default_value_t = 1)]
    warm_eni_target: u32,
    /// WARM_IP_TARGET: keep this many free addresses (overrides the ENI and prefix targets).
    #[arg(long, value_name = "N", default_value_t = 0)]
    warm_ip_target: u32,
    /// MINIMUM_IP_TARGET: hold at least this many addresses.
    #[arg(long, value_name = "N", default_value_t = 0)]
    minimum_ip_target: u32,
    /// ENABLE_PREFIX_DELEGATION: /28 prefixes instead of single addresses.
    #[arg(long)]
    prefix_delegation: bool,
    /// WARM_PREFIX_TARGET: keep this many free prefixes (prefix delegation).
    #[arg(long, value_name = "N", default_value_t = 1)]
    warm_prefix_target: u32,
    /// MAX_ENI: attach at most N ENIs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_eni: Option<u32>,
    /// Custom networking: the primary ENI carries no pod addresses.
    #[arg(long)]
    custom_networking: bool,
    /// The node's max pods (default: what `vpcnictl max-pods` gives for these settings).
    #[arg(long, value_name = "N")]
    max_pods: Option<u32>,
    /// List every decision the policy took.
    #[arg(long)]
    trace: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Debug, Serialize)]
struct Forecast {
    instance_type: String,
    mode: &'static str,
    pods: u32,
    pods_placed: usize,
    refused: Option<NoAddress>,
    max_pods: u32,
    enis: usize,
    total_ips: usize,
    assigned_ips: usize,
    available_ips: usize,
    idle_ips: usize,
    prefixes: usize,
    per_eni: Vec<EniStats>,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<Vec<TraceEntry>>,
}

/// Runs the subcommand.
pub fn run(args: &PoolArgs) -> anyhow::Result<ExitCode> {
    let limits = match vpcni_limits::builtin().get(&args.instance_type) {
        Ok(limits) => limits,
        Err(unknown) => return Ok(usage_error(unknown)),
    };
    let mut notes = Vec::new();
    let prefix_delegation = args.prefix_delegation && limits.supports_prefix_delegation();
    if args.prefix_delegation && !prefix_delegation {
        notes.push(format!(
            "prefix delegation needs a Nitro or bare-metal type; {} is {}, so the forecast uses secondary IPs",
            limits.instance_type, limits.hypervisor
        ));
    }
    if args.warm_ip_target > 0 || args.minimum_ip_target > 0 {
        notes.push(
            "WARM_IP_TARGET / MINIMUM_IP_TARGET set: they override the ENI and prefix targets".to_owned(),
        );
    }
    let node_max_pods = args.max_pods.unwrap_or_else(|| {
        let options = MaxPodsOptions {
            prefix_delegation,
            custom_networking: args.custom_networking,
            max_eni: args.max_eni,
            ..MaxPodsOptions::default()
        };
        max_pods(limits, &options).max_pods
    });
    let config = PoolConfig {
        warm_eni_target: args.warm_eni_target,
        warm_ip_target: args.warm_ip_target,
        minimum_ip_target: args.minimum_ip_target,
        warm_prefix_target: args.warm_prefix_target,
        prefix_delegation,
        ..PoolConfig::default()
    };
    let mut node_limits = NodeLimits::for_instance(limits, args.max_eni, false);
    node_limits.max_pods = node_max_pods;
    let mut node = ForecastNode::new(config, node_limits, args.custom_networking);
    node.converge(10_000);
    let mut refused = None;
    for _ in 0..args.pods {
        match node.add_pod() {
            Ok(_) => {
                node.converge(10_000);
            }
            Err(no_address) => {
                refused = Some(no_address);
                break;
            }
        }
    }
    let now = node.now();
    let stats = node.pool().stats(now);
    let forecast = Forecast {
        instance_type: limits.instance_type.clone(),
        mode: if prefix_delegation {
            "prefix-delegation"
        } else {
            "secondary-ip"
        },
        pods: args.pods,
        pods_placed: node.pods(),
        refused,
        max_pods: node_max_pods,
        enis: stats.enis,
        total_ips: stats.total,
        assigned_ips: stats.assigned,
        available_ips: stats.available,
        idle_ips: stats.available,
        prefixes: stats.total_prefixes,
        per_eni: node.pool().eni_stats(now),
        notes,
        trace: args
            .trace
            .then(|| node.trace().iter().filter(|t| !is_nothing(t)).cloned().collect()),
    };
    match args.output {
        OutputFormat::Json => print_json(&forecast)?,
        OutputFormat::Text => print_text(&forecast),
    }
    Ok(if forecast.refused.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn is_nothing(entry: &TraceEntry) -> bool {
    matches!(entry.decision, vpcni_engine::Decision::Nothing { .. })
}

fn print_text(forecast: &Forecast) {
    say!(
        "{} with {} pods ({}): {} ENIs, {} addresses held, {} in use, {} idle{}",
        forecast.instance_type,
        forecast.pods_placed,
        forecast.mode,
        forecast.enis,
        forecast.total_ips,
        forecast.assigned_ips,
        forecast.idle_ips,
        if forecast.prefixes > 0 {
            format!(", {} /28 prefixes", forecast.prefixes)
        } else {
            String::new()
        }
    );
    for eni in &forecast.per_eni {
        say!(
            "  {} (device {}): {} addresses, {} in use{}",
            eni.eni_id,
            eni.device_number,
            eni.total,
            eni.assigned,
            if eni.prefixes > 0 {
                format!(", {} prefixes", eni.prefixes)
            } else {
                String::new()
            }
        );
    }
    if forecast.total_ips > 0 {
        say!(
            "meaning: {} of {} addresses ({:.0}%) sit idle on this node, taken from the subnet but used by no pod",
            forecast.idle_ips,
            forecast.total_ips,
            100.0 * forecast.idle_ips as f64 / forecast.total_ips as f64
        );
    }
    if let Some(refused) = &forecast.refused {
        say!(
            "pod {} of {} got no address: {}",
            forecast.pods_placed + 1,
            forecast.pods,
            refused.message
        );
    }
    for note in &forecast.notes {
        say!("note: {note}");
    }
    if let Some(trace) = &forecast.trace {
        say!("decisions:");
        for entry in trace {
            say!(
                "  t={:>6.1}s pods={:<4} {}",
                entry.at_ms as f64 / 1000.0,
                entry.pods,
                serde_json::to_string(&entry.decision).unwrap_or_default()
            );
        }
    }
}
