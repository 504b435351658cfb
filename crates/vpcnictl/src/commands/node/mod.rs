//! `vpcnictl node`: what the DaemonSet runs on each node, as the original's init container and entrypoint.
//!
//! - `node init` (init container): the plugins into the host's CNI bin directory, the node's sysctls, and
//!   the original's checkpoint imported.
//! - `node run` (the main container's command): starts `vpcni-ipamd`, waits until it can serve an ADD, and
//!   only then writes the conflist, so the runtime reports the node's network ready only when pods can get
//!   addresses; then it stays ipamd's parent, passing SIGTERM on and exiting with ipamd's status.
//! - `node probe` (readiness and liveness): exit 0 when ipamd can serve an ADD, or answers at all.

pub mod install;
pub mod settings;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use self::install::Migration;
use self::settings::{CONFLIST_FILE, NodeSettings};

/// The plugins `node init` installs: ours, and the reference ones the conflist and the runtime use.
pub const PLUGINS: [&str; 4] = ["vpcni", "vpcni-egress", "loopback", "portmap"];

/// Node install steps, run by the vpcni DaemonSet (see docs/install.md).
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Init container: install the plugins into HOST_CNI_BIN_PATH, set the node's sysctls, import the
    /// Amazon VPC CNI's checkpoint.
    Init(InitArgs),
    /// Main container: start vpcni-ipamd, write the conflist into HOST_CNI_CONFDIR_PATH once ipamd can serve
    /// an ADD, then supervise it.
    Run(RunArgs),
    /// Probe ipamd: exit 0 if it can serve an ADD (`ready`) or if it answers (`alive`).
    Probe(ProbeArgs),
}

/// `node init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory holding the plugins to install (the image's).
    #[arg(long, value_name = "DIR", default_value = "/app/cni")]
    plugins: PathBuf,
    /// The kernel's sysctl tree of the node (the init container shares the node's network namespace).
    #[arg(long, value_name = "DIR", default_value = "/proc/sys", hide = true)]
    proc_sys: PathBuf,
    /// The node's IPv4 routing table, to find its primary interface.
    #[arg(long, value_name = "FILE", default_value = "/proc/net/route", hide = true)]
    route_table: PathBuf,
}

/// `node run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The daemon to start.
    #[arg(long, value_name = "PATH", default_value = "/app/vpcni-ipamd")]
    ipamd: PathBuf,
    /// A conflist to write instead of the generated one, when the file exists (the chart's `cniConfig`).
    #[arg(long, value_name = "FILE", default_value = "/app/10-vpcni.conflist")]
    conflist_override: PathBuf,
    /// The node's IPv4 routing table, to find its primary interface (the egress plugin's nodeIP).
    #[arg(long, value_name = "FILE", default_value = "/proc/net/route", hide = true)]
    route_table: PathBuf,
}

/// `node probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// What to check.
    #[arg(value_enum)]
    check: ProbeCheck,
}

/// What `node probe` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeCheck {
    /// ipamd has finished starting and would give a pod an address (readiness).
    Ready,
    /// ipamd's gRPC server answers its health check (liveness: the daemon is not wedged).
    Alive,
}

/// Runs the subcommand.
pub fn run(command: NodeCommand) -> anyhow::Result<ExitCode> {
    let settings = match NodeSettings::from_process_env() {
        Ok(settings) => settings,
        Err(errors) => {
            for line in &errors.0 {
                eprintln!("vpcnictl node: {line}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    // Logs go to the container's output; the level follows RUST_LOG, info by default.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Only fails if a subscriber is already installed, which then logs for us.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match command {
        NodeCommand::Init(args) => init(&settings, &args).map(|()| ExitCode::SUCCESS),
        NodeCommand::Run(args) => runtime()?.block_on(supervise(&settings, &args)),
        NodeCommand::Probe(args) => runtime()?.block_on(probe(&settings, args.check)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init(settings: &NodeSettings, args: &InitArgs) -> anyhow::Result<()> {
    let installed = install::install_plugins(&args.plugins, &settings.host_cni_bin, &PLUGINS)?;
    tracing::info!(plugins = ?installed, "plugins installed");
    let routes = std::fs::read_to_string(&args.route_table)
        .with_context(|| format!("reading {}", args.route_table.display()))?;
    let primary = install::default_route_interface(&routes).with_context(|| {
        format!(
            "no IPv4 default route in {}: cannot tell the node's primary interface (is the pod on the host network?)",
            args.route_table.display()
        )
    })?;
    let mut sysctls = install::node_sysctls(&primary, settings.disable_tcp_early_demux);
    sysctls.extend(install::egress_sysctls(settings.egress));
    install::apply_sysctls(&args.proc_sys, &sysctls)?;
    tracing::info!(%primary, ?sysctls, "sysctls set");
    match install::import_checkpoint(&settings.original_checkpoint, &settings.backing_store)? {
        Migration::Imported { allocations } => tracing::info!(
            from = %settings.original_checkpoint.display(),
            to = %settings.backing_store.display(),
            allocations,
            "imported the Amazon VPC CNI's checkpoint: its pods keep their addresses"
        ),
        Migration::KeptOurs => {
            tracing::info!(checkpoint = %settings.backing_store.display(), "vpcni's checkpoint kept")
        }
        Migration::NothingToImport => tracing::info!("no checkpoint to import"),
    }
    Ok(())
}

async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let socket = socket.to_path_buf();
    let shown = socket.display().to_string();
    // The URI is required by tonic but unused: the connector always dials the socket.
    Endpoint::from_static("http://ipamd.invalid")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .with_context(|| format!("ipamd does not answer at {shown}"))
}

/// Whether ipamd can serve an ADD now: it answers Status, and says it has finished starting.
async fn ipamd_ready(socket: &Path) -> anyhow::Result<()> {
    let channel = connect(socket).await?;
    let reply = vpcni_rpc::vpcni_backend_client::VpcniBackendClient::new(channel)
        .status(vpcni_rpc::StatusRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
        })
        .await
        .map_err(|status| anyhow!("ipamd's Status call failed: {}", status.message()))?
        .into_inner();
    if reply.ready {
        Ok(())
    } else {
        Err(anyhow!("ipamd is not ready: {}", reply.message))
    }
}

/// Whether ipamd's gRPC server answers its health service.
async fn ipamd_alive(socket: &Path) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = connect(socket).await?;
    let reply = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: vpcni_rpc::HEALTH_SERVICE_NAME.into(),
        })
        .await
        .map_err(|status| anyhow!("ipamd's health check failed: {}", status.message()))?
        .into_inner();
    if reply.status() == ServingStatus::Serving {
        Ok(())
    } else {
        Err(anyhow!("ipamd's health service says {:?}", reply.status()))
    }
}

async fn probe(settings: &NodeSettings, check: ProbeCheck) -> anyhow::Result<ExitCode> {
    let result = match check {
        ProbeCheck::Ready => ipamd_ready(&settings.ipamd_socket).await,
        ProbeCheck::Alive => ipamd_alive(&settings.ipamd_socket).await,
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("vpcnictl node probe {check:?}: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The egress plugin's `nodeIP`: VPCNI_NODE_IP, or the node's address of the egress family on its primary
/// interface. IPv4 egress without an IPv4 address is an error; IPv6 egress without a global IPv6 address
/// leaves the plugin out, with a warning, as the original's entrypoint does.
fn egress_node_ip(settings: &NodeSettings, route_table: &Path) -> anyhow::Result<Option<std::net::IpAddr>> {
    let Some(egress) = settings.egress else {
        return Ok(None);
    };
    if let Some(ip) = settings.node_ip {
        return Ok(Some(ip));
    }
    let routes =
        std::fs::read_to_string(route_table).with_context(|| format!("reading {}", route_table.display()))?;
    let primary = install::default_route_interface(&routes).with_context(|| {
        format!(
            "no IPv4 default route in {}: cannot tell the node's primary interface for the egress plugin's \
             nodeIP (set VPCNI_NODE_IP)",
            route_table.display()
        )
    })?;
    let found = install::egress_node_ip(egress, &primary, &install::node_addresses()?);
    match (found, egress) {
        (Some(ip), _) => Ok(Some(ip)),
        (None, self::settings::Egress::V4) => anyhow::bail!(
            "{primary} has no IPv4 address: IPv4 egress (ENABLE_V4_EGRESS) SNATs to the node's primary IPv4 \
             address (set VPCNI_NODE_IP, or ENABLE_V4_EGRESS=false)"
        ),
        (None, self::settings::Egress::V6) => {
            tracing::warn!(
                %primary,
                "ENABLE_V6_EGRESS is set but the primary interface has no global IPv6 address: the egress \
                 plugin is left out of the conflist"
            );
            Ok(None)
        }
    }
}

/// The conflist to write: the override file when it exists (checked to be JSON), else the generated one.
fn conflist_bytes(
    settings: &NodeSettings,
    override_path: &Path,
    node_ip: Option<std::net::IpAddr>,
) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(override_path) {
        Ok(bytes) => {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .with_context(|| format!("{} (cniConfig) is not JSON", override_path.display()))?;
            Ok(bytes)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok((serde_json::to_string_pretty(&settings.conflist(node_ip))? + "\n").into_bytes())
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", override_path.display())),
    }
}

async fn supervise(settings: &NodeSettings, args: &RunArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let node_ip = egress_node_ip(settings, &args.route_table)?;
    let conflist = conflist_bytes(settings, &args.conflist_override, node_ip)?;
    if !settings.host_cni_confdir.is_dir() {
        anyhow::bail!(
            "{} is not a directory: mount the host's CNI configuration directory there (HOST_CNI_CONFDIR_PATH)",
            settings.host_cni_confdir.display()
        );
    }
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut ipamd = tokio::process::Command::new(&args.ipamd)
        .spawn()
        .with_context(|| format!("starting {}", args.ipamd.display()))?;
    let pid = ipamd
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(nix::unistd::Pid::from_raw)
        .context("ipamd has no process id")?;
    tracing::info!(ipamd = %args.ipamd.display(), %pid, "started; waiting until it can serve an ADD");

    // Until ipamd is ready: poll it, unless it exits or we are told to stop.
    let mut waited = 0_u32;
    loop {
        tokio::select! {
            status = ipamd.wait() => {
                let status = status.context("waiting for ipamd")?;
                anyhow::bail!("ipamd exited before it was ready ({status}); the conflist was not written");
            }
            _ = terminate.recv() => return stop(&mut ipamd, pid).await,
            _ = interrupt.recv() => return stop(&mut ipamd, pid).await,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        match ipamd_ready(&settings.ipamd_socket).await {
            Ok(()) => break,
            Err(error) => {
                waited += 1;
                if waited.is_multiple_of(20) {
                    tracing::info!("still waiting for ipamd: {error:#}");
                }
            }
        }
    }
    let path = settings.host_cni_confdir.join(CONFLIST_FILE);
    install::write_atomically(&path, &conflist, 0o644)?;
    tracing::info!(conflist = %path.display(), "ipamd is ready; conflist written: the node's network is ready");

    tokio::select! {
        status = ipamd.wait() => {
            let status = status.context("waiting for ipamd")?;
            tracing::error!(%status, "ipamd exited");
            Ok(exit_code(status))
        }
        _ = terminate.recv() => stop(&mut ipamd, pid).await,
        _ = interrupt.recv() => stop(&mut ipamd, pid).await,
    }
}

/// Passes SIGTERM to ipamd (which finishes its work and writes its checkpoint) and exits as it does.
/// The conflist stays: pods keep being served by the next ipamd, and a plugin call in between is refused
/// with "try again" rather than the node turning NotReady for a restart.
async fn stop(ipamd: &mut tokio::process::Child, pid: nix::unistd::Pid) -> anyhow::Result<ExitCode> {
    tracing::info!("stopping ipamd");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("signalling ipamd")?;
    let status = ipamd.wait().await.context("waiting for ipamd")?;
    tracing::info!(%status, "ipamd stopped");
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal: a failure.
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_override_conflist_is_used_when_present_and_must_be_json() {
        let dir = tempfile::tempdir().unwrap();
        let settings = NodeSettings::from_lookup(&|_| None).unwrap();
        let path = dir.path().join("10-vpcni.conflist");
        let generated: serde_json::Value =
            serde_json::from_slice(&conflist_bytes(&settings, &path, None).unwrap()).unwrap();
        assert_eq!(generated["plugins"][0]["type"], "vpcni");
        std::fs::write(&path, r#"{"cniVersion":"1.0.0","name":"mine","plugins":[]}"#).unwrap();
        let used: serde_json::Value =
            serde_json::from_slice(&conflist_bytes(&settings, &path, None).unwrap()).unwrap();
        assert_eq!(used["name"], "mine");
        std::fs::write(&path, "name: yaml").unwrap();
        let error = conflist_bytes(&settings, &path, None).unwrap_err();
        assert!(error.to_string().contains("cniConfig"), "{error}");
    }
}
