//! `vpcnictl plan`: a cluster file run through the planner (`vpcni-planner`): the daemon's pool engine on
//! every node, the EC2 simulator, a workload on a virtual clock. See docs/planner.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use vpcni_planner::{Cluster, RunOptions};

use crate::output::{OutputFormat, print_json, say, say_raw, usage_error};

/// Plans a cluster's VPC addresses before it runs out of them.
///
/// Reads a cluster file (VPC, subnets, node groups, ipamd's settings, workload; docs/planner.md), runs
/// every node's pool with the daemon's own engine against the EC2 simulator on a virtual clock, and
/// reports per subnet the addresses used and idle, when it ran out and why, pods pending and how long
/// they waited, and the daemons' EC2 calls and throttling.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  vpcnictl plan cluster.toml\n  vpcnictl plan cluster.toml --set WARM_IP_TARGET=2 --output json\n  vpcnictl plan cluster.toml --compare \"WARM_IP_TARGET=5,MINIMUM_IP_TARGET=10\" --compare \"ENABLE_PREFIX_DELEGATION=true\" --html plan.html\n  vpcnictl plan --from-node http://127.0.0.1:61679 > cluster.toml"
)]
pub struct PlanArgs {
    /// The cluster file (TOML).
    #[arg(value_name = "CLUSTER_FILE", required_unless_present = "from_node")]
    file: Option<PathBuf>,
    /// Override one of ipamd's settings (repeatable), e.g. WARM_IP_TARGET=2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Also run with these settings changed (repeatable), and compare side by side.
    #[arg(long, value_name = "KEY=VALUE[,KEY=VALUE…]")]
    compare: Vec<String>,
    /// Write a self-contained HTML report (subnet maps, time series, EC2 calls, comparison).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Read a running ipamd's introspection and print a cluster file to start from.
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    from_node: Option<String>,
    /// With --from-node: the node's instance type (introspection gives its limits, not its type).
    #[arg(long, value_name = "TYPE", requires = "from_node")]
    instance_type: Option<String>,
    /// With --from-node: nodes in the node group written.
    #[arg(long, value_name = "N", default_value_t = 10)]
    nodes: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs the subcommand.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.from_node {
        let snapshot = match vpcni_planner::from_node::read(url) {
            Ok(snapshot) => snapshot,
            Err(error) => return Ok(usage_error(error)),
        };
        if let Some(name) = &args.instance_type
            && let Err(unknown) = vpcni_limits::builtin().get(name)
        {
            return Ok(usage_error(unknown));
        }
        say_raw!(
            "{}",
            snapshot.cluster_file(url, args.nodes, args.instance_type.as_deref())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &args.file else {
        return Ok(usage_error("a cluster file is needed (or --from-node URL)"));
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cluster = match Cluster::parse(&text) {
        Ok(cluster) => cluster,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("vpcnictl: {}: {error}", path.display());
            }
            return Ok(ExitCode::from(crate::output::USAGE_ERROR));
        }
    };
    let mut overrides = Vec::new();
    for item in &args.set {
        match vpcni_planner::parse_assignments(item) {
            Ok(pairs) => overrides.extend(pairs),
            Err(error) => return Ok(usage_error(format!("--set {error}"))),
        }
    }
    let cluster = match cluster.with_settings(&overrides) {
        Ok(cluster) => cluster,
        Err(errors) => return Ok(usage_error(errors)),
    };
    let mut variants = Vec::new();
    for item in &args.compare {
        match vpcni_planner::parse_assignments(item) {
            Ok(pairs) => variants.push((item.clone(), pairs)),
            Err(error) => return Ok(usage_error(format!("--compare {error}"))),
        }
    }
    if variants.is_empty() {
        let report = vpcni_planner::run(&cluster, RunOptions::default());
        if let Some(html) = &args.html {
            std::fs::write(html, vpcni_planner::html::render(&report, None))
                .with_context(|| format!("writing {}", html.display()))?;
        }
        match args.output {
            OutputFormat::Json => print_json(&report)?,
            OutputFormat::Text => say_raw!("{}", report.text()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let comparison = match vpcni_planner::compare(&cluster, &variants) {
        Ok(comparison) => comparison,
        Err(errors) => return Ok(usage_error(errors)),
    };
    if let Some(html) = &args.html {
        let baseline = &comparison.variants[0].report;
        std::fs::write(html, vpcni_planner::html::render(baseline, Some(&comparison)))
            .with_context(|| format!("writing {}", html.display()))?;
    }
    match args.output {
        OutputFormat::Json => print_json(&comparison)?,
        OutputFormat::Text => {
            say_raw!("{}", comparison.variants[0].report.text());
            say!();
            say_raw!("{}", comparison.text());
        }
    }
    Ok(ExitCode::SUCCESS)
}
