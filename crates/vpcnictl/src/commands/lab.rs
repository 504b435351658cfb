//! `vpcnictl lab`: VPC in a box. A VPC router, nodes running the real vpcni-ipamd against the EC2 simulator,
//! pods wired by the real vpcni plugin, and an internet gateway, all in network namespaces on this machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use vpcni_lab::spec::{DEFAULT_PREFIX, DEFAULT_STATE_DIR};
use vpcni_lab::{Lab, LabError, LabSpec, LabStatus, PodsError};

use crate::output::{OutputFormat, emit, say, say_raw, usage_error};

/// The lab's subcommands; `--state` and `--prefix` pick the lab (defaults: /run/vpcni-lab, vpcni-).
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Where the lab keeps state, sockets and logs.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state: PathBuf,
    /// Namespace-name prefix (vpcni- → vpcni-router, vpcni-node-1, vpcni-pod-1).
    #[arg(long, global = true, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Bring a lab up: a VPC router, N nodes each running vpcni-ipamd, an internet gateway.
    #[command(
        after_help = "Examples:\n  vpcnictl lab up\n  vpcnictl lab up --nodes 2 --instance-type t3.medium\n  vpcnictl lab up --prefix-delegation --env WARM_PREFIX_TARGET=2\n  vpcnictl lab up --subnet 10.0.0.0/24 --subnet 10.0.1.0/24\n  vpcnictl lab up --ipv6 --nodes 2"
    )]
    Up(UpArgs),
    /// Add or delete pods (namespaces wired by the vpcni plugin through CNI).
    #[command(subcommand)]
    Pods(PodsCommand),
    /// Pods with their addresses, nodes and ENIs; per node its ENIs, addresses and free ones.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Run a command inside a pod, a node, `router` or `internet`.
    #[command(
        after_help = "Examples:\n  vpcnictl lab exec pod-1 -- ping -c 2 10.0.0.57\n  vpcnictl lab exec pod-1 -- curl -s http://203.0.113.10/\n  vpcnictl lab exec node-1 -- ip rule\n  vpcnictl lab exec node-1 -- curl -s http://127.0.0.1:61679/v1/enis"
    )]
    Exec {
        /// pod-N, node-N, router or internet.
        target: String,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// The guided tour: pods across nodes ping each other, reach the internet as their node, hit max pods.
    Demo(DemoArgs),
    /// A storm on a lab of its own: pods added and deleted through the real plugin on every node, ipamd
    /// killed and restarted, EC2 failing calls; then an audit of EC2, ipamd, the nodes and the pods. Exits 1
    /// on any violation.
    #[command(
        after_help = "Examples:\n  vpcnictl lab soak\n  vpcnictl lab soak --nodes 4 --ops 50000 --kill-every 500 --ec2-fault-rate 0.2 --output json\n  vpcnictl lab soak --prefix-delegation --throttle tight --attach-delay-ms 200"
    )]
    Soak(SoakArgs),
    /// Remove the lab: every namespace, link, rule, process and file it made. Safe to run twice.
    Down,
    /// GET an http:// URL and print the body (a curl stand-in for machines without curl).
    #[command(hide = true)]
    Fetch {
        /// The URL.
        url: String,
    },
    /// (internal) The VPC fabric: EC2 simulator and router sync, run in the router namespace.
    #[command(hide = true)]
    Fabric,
    /// (internal) The what-is-my-IP service, run in the internet namespace.
    #[command(hide = true)]
    Internet {
        /// Address to listen on (repeat: IPv4 and IPv6).
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
}

/// How to build a lab.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, value_name = "N", default_value_t = 3)]
    nodes: u32,
    /// EC2 instance type of the nodes [default: m5.xlarge; the demo's: t3.medium, as in the articles].
    #[arg(long, value_name = "TYPE")]
    instance_type: Option<String>,
    /// A subnet for nodes (repeat for more; nodes are spread over them).
    #[arg(long = "subnet", value_name = "CIDR", default_value = "10.0.0.0/24")]
    subnets: Vec<Ipv4Net>,
    /// The VPC's CIDR.
    #[arg(long, value_name = "CIDR", default_value = "10.0.0.0/16")]
    vpc_cidr: Ipv4Net,
    /// ENABLE_PREFIX_DELEGATION: /28 prefixes instead of single addresses.
    #[arg(long)]
    prefix_delegation: bool,
    /// Dual-stack VPC (an IPv6 /56, a /64 per subnet) with ipamd in IPv6 mode: each node gets a /80 its
    /// pods take IPv6 addresses from, and pods reach IPv4 through the chained vpcni-egress plugin
    /// (ENABLE_IPv6=true, ENABLE_IPv4=false, ENABLE_PREFIX_DELEGATION=true; Nitro types only).
    #[arg(long)]
    ipv6: bool,
    /// ipamd setting for every node, e.g. WARM_IP_TARGET=5 (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// How long EC2 takes to attach an ENI, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    attach_delay_ms: u64,
    /// Custom networking (AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG): pods in the pod subnets, one ENIConfig per
    /// zone chosen by the node label topology.kubernetes.io/zone; nodes stay in their subnets.
    #[arg(long)]
    custom_networking: bool,
    /// A pod subnet, in the zone of the node subnet of the same rank (repeat: one per --subnet).
    #[arg(long = "pod-subnet", value_name = "CIDR", requires = "custom_networking")]
    pod_subnets: Vec<Ipv4Net>,
    /// A CIDR added to the VPC for the pod subnets, e.g. 100.64.0.0/16 (repeatable).
    #[arg(long = "secondary-cidr", value_name = "CIDR", requires = "custom_networking")]
    secondary_cidrs: Vec<Ipv4Net>,
    /// Directory with vpcni-ipamd and vpcni (default: next to this vpcnictl).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// The soak's storm and its lab.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Pod operations (ADD and DEL) over all nodes. The lab's nodes are m5.large unless --instance-type.
    #[arg(long, value_name = "K", default_value_t = 2_000)]
    ops: u64,
    /// Stop the storm after this many seconds, even before --ops.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Seed for every random choice (workers, kills, EC2 faults).
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Kill one ipamd (SIGKILL or SIGTERM) every this many operations; 0 for none.
    #[arg(long, value_name = "OPS", default_value_t = 100)]
    kill_every: u64,
    /// Share of EC2 calls that fail with an error EC2 returns (0 to 1).
    #[arg(long, value_name = "RATE", default_value_t = 0.2)]
    ec2_fault_rate: f64,
    /// EC2 request throttling: real (EC2's buckets), tight (a tenth of them), off.
    #[arg(long, value_enum, default_value = "real")]
    throttle: ThrottleArg,
    /// Live pods each node keeps at most.
    #[arg(long, value_name = "N", default_value_t = 12)]
    pods_per_node: u32,
    /// Seconds the audit may wait for the lab to settle.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    settle_within: u64,
    /// Leave the lab up afterwards (for a look at what the audit found).
    #[arg(long)]
    keep: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    #[command(flatten)]
    up: UpArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ThrottleArg {
    Real,
    Tight,
    Off,
}

/// The demo builds a lab of t3.medium nodes unless one is up: 17 max pods each, as in the articles.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    up: UpArgs,
}

#[derive(Debug, Subcommand)]
enum PodsCommand {
    /// Create pods on a node; exits non-zero with ipamd's reason if one gets no address.
    Add {
        /// Node number or name (1, node-1).
        #[arg(long, value_name = "NODE")]
        node: String,
        /// How many pods.
        #[arg(long, value_name = "K", default_value_t = 1)]
        count: u32,
        /// Keep retrying "try again later" answers (pool growing, ENI attaching) this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        retry_for: u64,
    },
    /// Delete pods by name, or the newest K pods of a node.
    Del {
        /// Pod names.
        pods: Vec<String>,
        /// Node number or name, with --count.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// How many of the node's newest pods.
        #[arg(long, value_name = "K")]
        count: Option<u32>,
    },
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE (e.g. WARM_IP_TARGET=5)"))
}

impl UpArgs {
    pub fn spec(&self, state: &Path, prefix: &str, default_type: &str) -> anyhow::Result<LabSpec> {
        let bin_dir = match &self.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .context("locating vpcnictl")?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let mut spec = LabSpec::new(bin_dir);
        spec.state_dir = state.to_owned();
        spec.prefix = prefix.to_owned();
        spec.nodes = self.nodes;
        spec.instance_type = self
            .instance_type
            .clone()
            .unwrap_or_else(|| default_type.to_owned());
        spec.subnets.clone_from(&self.subnets);
        spec.vpc_cidr = self.vpc_cidr;
        // IPv6 mode needs prefix delegation (one /80 per node); --ipv6 implies it.
        spec.prefix_delegation = self.prefix_delegation || self.ipv6;
        spec.ipv6 = self.ipv6;
        spec.attach_delay_ms = self.attach_delay_ms;
        spec.custom_networking = self.custom_networking;
        spec.pod_subnets.clone_from(&self.pod_subnets);
        spec.secondary_cidrs.clone_from(&self.secondary_cidrs);
        for (key, value) in &self.env {
            spec.ipamd_env.retain(|(k, _)| k != key);
            spec.ipamd_env.push((key.clone(), value.clone()));
        }
        Ok(spec)
    }
}

/// Runs the subcommand.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let result = match args.command {
        LabCommand::Up(up) => {
            let spec = up.spec(&args.state, &args.prefix, "m5.xlarge")?;
            bring_up(spec).map(|_| ExitCode::SUCCESS)
        }
        LabCommand::Pods(PodsCommand::Add {
            node,
            count,
            retry_for,
        }) => add_pods(&args.state, &node, count, Duration::from_secs(retry_for)),
        LabCommand::Pods(PodsCommand::Del { pods, node, count }) => del_pods(&args.state, pods, node, count),
        LabCommand::Status { output } => Lab::open(&args.state).and_then(|lab| {
            let status = lab.status()?;
            match output {
                OutputFormat::Json => {
                    emit(&(serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"))
                }
                OutputFormat::Text => emit(&status_text(&status)),
            }
            for problem in lab.problems() {
                eprintln!("warning: {problem}");
            }
            Ok(ExitCode::SUCCESS)
        }),
        LabCommand::Exec { target, command } => Lab::open(&args.state).and_then(|lab| {
            let status = lab.exec(&target, &command)?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }),
        LabCommand::Soak(soak) => return run_soak(&soak),
        LabCommand::Demo(demo) => {
            let spec = demo.up.spec(&args.state, &args.prefix, "t3.medium")?;
            super::lab_demo::run(spec)
        }
        LabCommand::Down => vpcni_lab::down_at(&args.state, &args.prefix).map(|report| {
            if report.namespaces.is_empty() && report.processes == 0 && !report.state_removed {
                say!(
                    "no lab to remove (state {}, prefix {})",
                    args.state.display(),
                    args.prefix
                );
            } else {
                say!(
                    "lab down: {} namespaces and {} processes removed, state {} {}",
                    report.namespaces.len(),
                    report.processes,
                    args.state.display(),
                    if report.state_removed {
                        "removed"
                    } else {
                        "already gone"
                    }
                );
            }
            ExitCode::SUCCESS
        }),
        LabCommand::Fetch { url } => {
            return match vpcni_lab::internet::http_get(&url, Duration::from_secs(5)) {
                Ok(body) => {
                    say_raw!("{body}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("vpcnictl: {error}");
                    Ok(ExitCode::FAILURE)
                }
            };
        }
        LabCommand::Fabric => {
            init_logging();
            vpcni_lab::fabric::run(&args.state).map(|()| ExitCode::SUCCESS)
        }
        LabCommand::Internet { listen } => {
            init_logging();
            vpcni_lab::internet::serve(&listen).map(|()| ExitCode::SUCCESS)
        }
    };
    result.or_else(|error| match error {
        LabError::Spec(message) => Ok(usage_error(message)),
        unknown @ LabError::UnknownTarget { .. } => Ok(usage_error(unknown)),
        other => Err(anyhow::Error::new(other)),
    })
}

/// The lab's progress logs go to stderr: stdout carries the command's output.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "vpcni_lab=info,vpcni_ec2_endpoint=info",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// `lab up`, printing progress and what to try next.
pub fn bring_up(spec: LabSpec) -> Result<Lab, LabError> {
    let started = Instant::now();
    say!(
        "bringing up {} × {} in VPC {} (state in {}) …",
        spec.nodes,
        spec.instance_type,
        spec.vpc_cidr,
        spec.state_dir.display()
    );
    let lab = Lab::up(spec)?;
    let status = lab.status()?;
    say!("lab up in {:.1} s\n", started.elapsed().as_secs_f64());
    say_raw!("{}", status.nodes_table());
    say!(
        "\nEach node runs vpcni-ipamd against the EC2 simulator (EC2 API and instance metadata at 169.254.169.254\n\
         inside the lab); pods are wired by the vpcni plugin. Logs: {}/nodes/<node>/ipamd.log",
        lab.paths().dir.display()
    );
    say!("\ntry next:");
    if vpcni_lab::find_tool("vpcnictl").is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        say!(
            "  (vpcnictl is {}: put its directory on PATH, or run scripts/lab.sh <subcommand>)",
            exe.display()
        );
    }
    let second = if lab.state().nodes.len() > 1 { "2" } else { "1" };
    if lab.state().spec.ipv6 {
        for (command, why) in [
            (
                format!("vpcnictl lab pods add --node 1 && vpcnictl lab pods add --node {second}"),
                "pods get IPv6 addresses from their node's /80".to_owned(),
            ),
            (
                "vpcnictl lab status".to_owned(),
                "pods' IPv6 and egress IPv4 addresses, nodes' /80s".to_owned(),
            ),
            (
                "vpcnictl lab exec pod-1 -- ping -c 2 <IPv6 of pod-2>".to_owned(),
                "pod to pod across nodes over IPv6".to_owned(),
            ),
            (
                format!(
                    "vpcnictl lab exec pod-1 -- curl -s {}",
                    vpcni_lab::internet::service_url_v6()
                ),
                "over IPv6 the internet sees the pod's own address".to_owned(),
            ),
            (
                format!(
                    "vpcnictl lab exec pod-1 -- curl -s {}",
                    vpcni_lab::internet::service_url()
                ),
                "over IPv4 (egress) it sees node-1's public address".to_owned(),
            ),
            ("vpcnictl lab down".to_owned(), "remove everything".to_owned()),
        ] {
            say!("  {command:<72} # {why}");
        }
        return Ok(lab);
    }
    for (command, why) in [
        (
            "vpcnictl lab pods add --node 1 --count 2".to_owned(),
            "pods get VPC addresses from node-1's ENIs",
        ),
        (
            format!("vpcnictl lab pods add --node {second}"),
            "and one on another node",
        ),
        (
            "vpcnictl lab status".to_owned(),
            "pods, nodes and ENIs, like kubectl get pod -o wide",
        ),
        (
            "vpcnictl lab exec pod-1 -- ping -c 2 <IP of pod-3>".to_owned(),
            "pod to pod across nodes, no overlay",
        ),
        (
            format!(
                "vpcnictl lab exec pod-1 -- curl -s {}",
                vpcni_lab::internet::service_url()
            ),
            "the internet sees node-1's public address",
        ),
        (
            "vpcnictl lab exec node-1 -- curl -s http://127.0.0.1:61679/v1/enis".to_owned(),
            "ipamd's introspection",
        ),
        ("vpcnictl lab demo".to_owned(), "the guided tour"),
        ("vpcnictl lab down".to_owned(), "remove everything"),
    ] {
        say!("  {command:<72} # {why}");
    }
    Ok(lab)
}

fn add_pods(state: &Path, node: &str, count: u32, retry_for: Duration) -> Result<ExitCode, LabError> {
    let mut lab = Lab::open(state)?;
    let (created, failure) = match lab.add_pods(node, count, retry_for) {
        Ok(created) => (created, None),
        Err(PodsError {
            created,
            failure,
            not_attempted,
        }) => (created, Some((failure, not_attempted))),
    };
    let names: Vec<&str> = created.iter().map(|p| p.name.as_str()).collect();
    if !created.is_empty() {
        let status = lab.status()?;
        let mut shown = status.clone();
        shown.pods.retain(|p| names.contains(&p.name.as_str()));
        emit(&shown.pods_table());
    }
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some((failure, not_attempted)) => {
            eprintln!("vpcnictl: {failure}");
            if not_attempted > 0 {
                eprintln!("vpcnictl: {not_attempted} more pods not attempted");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn del_pods(
    state: &Path,
    mut pods: Vec<String>,
    node: Option<String>,
    count: Option<u32>,
) -> Result<ExitCode, LabError> {
    let mut lab = Lab::open(state)?;
    if let Some(node) = node {
        let node = lab.node(&node)?.name.clone();
        let on_node: Vec<String> = lab
            .state()
            .pods
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.name.clone())
            .collect();
        let take = count.map_or(on_node.len(), |c| c as usize).min(on_node.len());
        pods.extend(on_node[on_node.len() - take..].iter().rev().cloned());
    } else if count.is_some() {
        return Err(LabError::Spec("--count needs --node".into()));
    }
    if pods.is_empty() {
        return Err(LabError::Spec(
            "name pods to delete, or give --node (and --count)".into(),
        ));
    }
    let deleted = lab.del_pods(&pods)?;
    say!("deleted {}", deleted.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The status as text: pods, nodes, ENIs.
pub fn status_text(status: &LabStatus) -> String {
    let mut cidrs: Vec<String> = status.vpc_cidrs.iter().map(ToString::to_string).collect();
    if let Some(block) = status.vpc_ipv6_cidr {
        cidrs.push(block.to_string());
    }
    let mut internet = vpcni_lab::internet::service_url();
    if status.internet.ipv6.is_some() {
        internet = format!("{internet} and {}", vpcni_lab::internet::service_url_v6());
    }
    format!(
        "{}\n{}\n{}\nVPC {} · internet: {} (what-is-my-IP)\n",
        if status.pods.is_empty() {
            "no pods (add some: vpcnictl lab pods add --node 1 --count 3)\n".to_owned()
        } else {
            status.pods_table()
        },
        status.nodes_table(),
        status.enis_table(),
        cidrs.join(", "),
        internet
    )
}

fn run_soak(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.ec2_fault_rate) {
        return Ok(usage_error(format!(
            "--ec2-fault-rate {} is not a share between 0 and 1",
            args.ec2_fault_rate
        )));
    }
    if args.up.ipv6 {
        return Ok(usage_error(
            "the soak runs IPv4 labs only: its audit counts IPv4 addresses on ENIs; drop --ipv6",
        ));
    }
    // A lab of its own, so a storm never touches the lab someone is using.
    let name = format!("vs{}", std::process::id());
    let state = std::env::temp_dir().join(format!("vpcni-soak-{}", std::process::id()));
    let mut lab_spec = args.up.spec(&state, &format!("{name}-"), "m5.large")?;
    // Pool cycles ten times as often as the original's 5 s (the same policy, more EC2 traffic per minute of
    // storm), and a 5 s address cooldown instead of 30 s (a storm deleting and adding pods every moment
    // would otherwise spend most of its time waiting on cooling addresses). --env overrides either.
    for (key, value) in [("VPCNI_POOL_INTERVAL_MS", "500"), ("IP_COOLDOWN_PERIOD", "5")] {
        if !lab_spec.ipamd_env.iter().any(|(k, _)| k == key) {
            lab_spec.ipamd_env.push((key.into(), value.into()));
        }
    }
    let spec = vpcni_lab::soak::SoakSpec {
        ops: args.ops,
        duration: args.duration.map(Duration::from_secs),
        seed: args.seed,
        kill_every: (args.kill_every > 0).then_some(args.kill_every),
        ec2_fault_rate: args.ec2_fault_rate,
        throttle: match args.throttle {
            ThrottleArg::Real => vpcni_lab::soak::Throttle::Real,
            ThrottleArg::Tight => vpcni_lab::soak::Throttle::Tight,
            ThrottleArg::Off => vpcni_lab::soak::Throttle::Off,
        },
        pods_per_node: args.pods_per_node.max(1),
        settle_within: Duration::from_secs(args.settle_within),
        ..vpcni_lab::soak::SoakSpec::default()
    };
    eprintln!(
        "soak: {} × {}, {} operations, a kill every {} operations, {:.0} % of EC2 calls failing (seed {}); lab state {}",
        lab_spec.nodes,
        lab_spec.instance_type,
        spec.ops,
        args.kill_every,
        spec.ec2_fault_rate * 100.0,
        spec.seed,
        state.display()
    );
    let (state_dir, prefix) = (lab_spec.state_dir.clone(), lab_spec.prefix.clone());
    let outcome = Lab::up(lab_spec).and_then(|lab| vpcni_lab::soak::run_soak(lab, &spec));
    if !args.keep
        && let Err(error) = vpcni_lab::down_at(&state_dir, &prefix)
    {
        eprintln!("vpcnictl: taking the soak's lab down: {error}");
    }
    let report = outcome?;
    match args.output {
        OutputFormat::Json => emit(&(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n")),
        OutputFormat::Text => emit(&soak_text(&report)),
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn soak_text(report: &vpcni_lab::soak::SoakReport) -> String {
    use std::fmt::Write as _;
    // `writeln!` into a String cannot fail: the `let _ =` below lose nothing.
    let mut text = String::new();
    let refused: u64 = report.adds_refused.values().sum();
    let _ = writeln!(
        text,
        "{} operations on {} nodes in {:.0} s: {} ADDs ok, {} refused, {} DELs ok, {} DELs sent again",
        report.ops, report.nodes, report.wall_s, report.adds_ok, refused, report.dels_ok, report.dels_retried
    );
    for (reason, count) in &report.adds_refused {
        let _ = writeln!(text, "  refused {count} × {reason}");
    }
    let _ = writeln!(
        text,
        "{} ipamd restarts ({} after SIGKILL); {} EC2 calls, {} failed on purpose; {} connectivity probes",
        report.ipamd_restarts,
        report.ipamd_sigkills,
        report.ec2_calls,
        report.ec2_faults_injected,
        report.connectivity_checks
    );
    let _ = writeln!(
        text,
        "audit after {:.0} s of settling: {} double-assigned, {} leaked addresses, {} leaked ENIs, {} stale host entries, {} pods without connectivity",
        report.settle_s,
        report.double_assigned,
        report.leaked_addresses,
        report.leaked_enis,
        report.stale_host_state,
        report.pods_without_connectivity
    );
    for ipamd in &report.ipamd {
        let _ = writeln!(
            text,
            "  {}: ipamd {} KiB resident, {} open descriptors, {} pods",
            ipamd.node, ipamd.rss_kib, ipamd.open_fds, ipamd.pods
        );
    }
    if report.violations.is_empty() {
        let _ = writeln!(text, "no violations");
    }
    for violation in &report.violations {
        let _ = writeln!(
            text,
            "VIOLATION {} at {}: {}",
            violation.kind, violation.at, violation.detail
        );
    }
    text
}
