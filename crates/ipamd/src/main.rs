//! `vpcni-ipamd`: the node daemon's life, in order: configuration from the environment (a bad value stops it
//! with one line per variable), identity and ENIs from instance metadata and EC2, the host programmed, the
//! pool and its checkpoint, then the gRPC socket, introspection, metrics, the pool manager and the
//! leaked-ENI sweep, until SIGTERM: then no new requests, the EC2 work under way finished, the checkpoint
//! written, and no ENI detached.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use vpcni_ec2::{Ec2, Imds};
use vpcni_ec2_sdk::{SdkEc2, SdkEc2Options, SdkImds};
use vpcni_ipamd::config::{Config, ListenAddress};
use vpcni_ipamd::host::LinuxHost;
use vpcni_ipamd::introspection::{introspection_router, metrics_router};
use vpcni_ipamd::metered::MeteredEc2;
use vpcni_ipamd::metrics::Metrics;
use vpcni_ipamd::pool_loop::PoolManager;
use vpcni_ipamd::{custom_networking, leaked, pool_loop, server, startup};

/// The exit code for bad configuration (EX_USAGE), as linkerd and sysexits use it.
const EXIT_CONFIG: u8 = 64;
/// How long shutdown waits for the work under way (an ENI attach included) before giving up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(errors) => {
            for line in errors.to_string().lines() {
                eprintln!("vpcni-ipamd: {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(error) = init_logging(&config) {
        eprintln!(
            "vpcni-ipamd: AWS_VPC_K8S_CNI_LOG_FILE={}: {error:#}",
            config.log_file
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vpcni-ipamd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("vpcni-ipamd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "vpcni={0},vpcni_ipamd={0},vpcni_ec2_sdk={0},vpcni_dataplane={0}",
        config.tracing_level()
    ));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init fails only when a global subscriber is already installed, which nothing in this binary
    // does before here; if it ever did, the daemon would log nowhere, so it is an error all the same.
    let installed = match config.log_file.as_str() {
        "stdout" => builder.with_writer(std::io::stdout).try_init(),
        "stderr" => builder.with_writer(std::io::stderr).try_init(),
        path => {
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {path}"))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init()
        }
    };
    installed.map_err(|error| anyhow::anyhow!("installing the logger: {error}"))
}

/// Resolves when `stop` says so. The sender lives in `run` until every task has been awaited, so a closed
/// channel (the only error `changed` can give) also means the daemon is on its way out: stop then too.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    if stop.changed().await.is_err() {
        tracing::debug!("stop channel closed: stopping");
    }
}

/// Serves `router` until `stop`; if serving ends with an error, says which endpoint is gone and what
/// that costs (the daemon keeps serving pods: neither server is on their path).
async fn serve_http(
    what: &'static str,
    address: ListenAddress,
    router: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    tracing::info!(%address, "{what} listening");
    let shown = address.to_string();
    let report = move |result: std::io::Result<()>| {
        if let Err(error) = result {
            tracing::error!(
                "{what} server on {shown} stopped: {error}; it stays down until the daemon restarts \
                 (pods are not affected)"
            );
        }
    };
    Ok(match address {
        ListenAddress::Tcp(socket_address) => {
            let listener = tokio::net::TcpListener::bind(socket_address)
                .await
                .with_context(|| format!("binding {socket_address} for {what}"))?;
            tokio::spawn(async move {
                report(
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stopped(stop))
                        .await,
                );
            })
        }
        ListenAddress::Unix(path) => {
            let listener = server::bind_socket(&path)
                .with_context(|| format!("binding {} for {what}", path.display()))?;
            tokio::spawn(async move {
                report(
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stopped(stop))
                        .await,
                );
            })
        }
    })
}

/// Keeps the API-budget metric in step with the SDK backend's counters.
async fn export_budget(
    sdk: Arc<SdkEc2>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut reported = Duration::ZERO;
    loop {
        let waited = sdk.budget().stats().waited();
        metrics
            .ec2_budget_wait_seconds
            .inc_by(waited.saturating_sub(reported).as_secs_f64());
        reported = waited;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Start-up, tried again while instance metadata or EC2 fail to answer (throttling, server errors, a
/// moment of unavailability), for about a minute: a throttled account must not crash-loop every node's
/// daemon. Anything else (an unreadable checkpoint, an unknown type, the host) fails at once.
async fn start_with_retries(
    config: Config,
    ec2: &dyn Ec2,
    imds: &dyn Imds,
    metrics: Arc<Metrics>,
) -> Result<Arc<vpcni_ipamd::node::Node>, startup::StartupError> {
    const ATTEMPTS: u32 = 7;
    let mut pause = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match startup::start(config.clone(), ec2, imds, Arc::new(LinuxHost), metrics.clone()).await {
            Err(startup::StartupError::Discovery(error)) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, "start-up: {error}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(16));
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::new());
    let imds: Arc<dyn Imds> = Arc::new(SdkImds::new(None).context("instance metadata client")?);
    let sdk = Arc::new(
        SdkEc2::new(SdkEc2Options {
            endpoint: config.ec2_endpoint.clone(),
            ..SdkEc2Options::default()
        })
        .await,
    );
    let ec2: Arc<dyn Ec2> = Arc::new(MeteredEc2::new(sdk.clone(), metrics.clone()));
    let socket = config.socket_path.clone();
    let introspection = config.introspection.clone();
    let metrics_address = config.metrics.clone();
    let node = match start_with_retries(config, ec2.as_ref(), imds.as_ref(), metrics.clone()).await {
        Ok(node) => node,
        Err(error) => {
            metrics
                .ipamd_startup_duration_seconds
                .with_label_values(&["false", "false", "startup"])
                .observe(started.elapsed().as_secs_f64());
            return Err(error).context("start-up");
        }
    };
    tracing::info!(instance = %node.identity.instance_id, instance_type = %node.identity.instance_type, "node discovered and set up");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let listener = server::bind_socket(&socket).with_context(|| format!("binding {}", socket.display()))?;
    {
        let node = node.clone();
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = server::serve(listener, node, stopped(stop)).await {
                tracing::error!(
                    "gRPC server stopped: {error}; the plugin cannot reach ipamd until it restarts"
                );
            }
        }));
    }
    if let Some(address) = introspection {
        tasks.push(
            serve_http(
                "introspection",
                address,
                introspection_router(node.clone()),
                stop_rx.clone(),
            )
            .await?,
        );
    }
    if let Some(address) = metrics_address {
        tasks.push(
            serve_http(
                "metrics",
                address,
                metrics_router(node.metrics.clone()),
                stop_rx.clone(),
            )
            .await?,
        );
    }
    // Before the pool manager, so its first cycle finds the ENIConfig sources started.
    tasks.extend(custom_networking::start(&node, stop_rx.clone()));
    let manager = PoolManager {
        node: node.clone(),
        ec2: ec2.clone(),
        imds,
    };
    tasks.push(tokio::spawn(pool_loop::run(manager, stop_rx.clone())));
    tasks.push(tokio::spawn(leaked::run(node.clone(), ec2, stop_rx.clone())));
    tasks.push(tokio::spawn(export_budget(sdk, metrics.clone(), stop_rx)));
    node.set_ready(true);
    let took = started.elapsed().as_secs_f64();
    metrics
        .ipamd_startup_duration_seconds
        .with_label_values(&["true", "false", ""])
        .observe(took);
    metrics
        .ipamd_node_initialization_duration_seconds
        .with_label_values(&["true"])
        .observe(took);
    tracing::info!(socket = %socket.display(), seconds = took, "ready");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    // No new addresses from here; in-flight calls and the pool cycle under way finish; ENIs stay attached.
    node.set_ready(false);
    // Every task holds a receiver until it has been awaited below, so the send reaches them all.
    if stop_tx.send(true).is_err() {
        tracing::debug!("no task was left to stop");
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!("shutdown: a task ended abnormally: {error}"),
            Err(_) => {
                tracing::warn!(
                    "shutdown: work still under way after {} s was abandoned",
                    SHUTDOWN_GRACE.as_secs()
                );
                break;
            }
        }
    }
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        // A stale socket is replaced at the next start; only a plugin trying it meanwhile is misled.
        Err(error) => tracing::warn!(socket = %socket.display(), "removing the socket: {error}"),
    }
    // The last word on the pool: if it cannot be written, the exit code says so, and the next start
    // restores the last checkpoint that was written (EC2 and the host settle the rest).
    let written = {
        let pool = node.pool();
        let seq = node.stage(&pool);
        drop(pool);
        node.commit(seq)
    };
    written.with_context(|| {
        format!(
            "shutdown: the checkpoint {} was not written",
            node.config.backing_store.display()
        )
    })?;
    tracing::info!("stopped; checkpoint written");
    Ok(())
}
