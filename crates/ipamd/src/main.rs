//! `vpcni-ipamd`: the node daemon's life, in order: configuration from the environment (a bad value stops it
//! with one line per variable), identity and ENIs from instance metadata and EC2, the pool and its checkpoint,
//! then the gRPC socket, introspection, metrics and the pool loop, until SIGTERM.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use vpcni_ec2_sdk::{SdkEc2, SdkEc2Options, SdkImds};
use vpcni_ipamd::config::{Config, ListenAddress};
use vpcni_ipamd::introspection::{introspection_router, metrics_router};
use vpcni_ipamd::{pool_loop, server, startup};

/// The exit code for bad configuration (EX_USAGE), as linkerd and sysexits use it.
const EXIT_CONFIG: u8 = 64;

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
    if std::env::var("VPCNI_EC2_BACKEND").as_deref() != Ok("aws") {
        eprintln!(
            "vpcni-ipamd: VPCNI_EC2_BACKEND={:?} is not valid: expected aws (EC2 and instance metadata through the AWS SDK; \
             point AWS_EC2_ENDPOINT and AWS_EC2_METADATA_SERVICE_ENDPOINT at `vpcnictl sim serve` to run without AWS)",
            std::env::var("VPCNI_EC2_BACKEND").unwrap_or_default()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "vpcni={0},vpcni_ipamd={0},vpcni_ec2_sdk={0}",
        config.log_level
    ));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
            eprintln!("vpcni-ipamd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let imds = SdkImds::new(None).context("instance metadata client")?;
    let ec2 = Arc::new(
        SdkEc2::new(SdkEc2Options {
            endpoint: config.ec2_endpoint.clone(),
            ..SdkEc2Options::default()
        })
        .await,
    );
    let interval = config.pool_interval;
    let socket = config.socket_path.clone();
    let introspection = config.introspection.clone();
    let metrics_address = config.metrics.clone();
    let node = startup::start(
        config,
        ec2.as_ref(),
        &imds,
        std::path::Path::new(startup::ORIGINAL_CHECKPOINT),
    )
    .await
    .context("start-up")?;
    tracing::info!(instance = %node.identity.instance_id, instance_type = %node.identity.instance_type, "node discovered");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let listener = server::bind_socket(&socket).with_context(|| format!("binding {}", socket.display()))?;
    {
        let node = node.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            if let Err(error) = server::serve(listener, node, shutdown).await {
                tracing::error!("gRPC server: {error}");
            }
        }));
    }
    for (address, router) in [
        (introspection, introspection_router(node.clone())),
        (metrics_address, metrics_router(node.metrics.clone())),
    ] {
        let Some(ListenAddress::Tcp(address)) = address else {
            continue;
        };
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        tracing::info!(%address, "listening");
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        }));
    }
    tasks.push(tokio::spawn(pool_loop::run(node.clone(), ec2, interval, stop_rx)));
    node.set_ready();
    tracing::info!(socket = %socket.display(), "ready");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    // Stop taking requests, let in-flight calls and the current pool cycle finish; ENIs stay attached.
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), task).await;
    }
    let pool = node.pool();
    node.persist(&pool);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
