//! Binds the EC2 Query API and IMDSv2 listeners in front of one simulator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vpcni_ec2::sim::{AccountState, Clock, SimConfig, Simulator, WallClock};
use vpcni_ec2::{Ec2Error, Ec2ErrorKind};

use crate::actions;
use crate::imds::{self, ImdsState};
use crate::query::{MAX_BODY_BYTES, Params};
use crate::topology::{Created, Topology, TopologyError};
use crate::xml::{Xml, error_document};

/// How to start the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// EC2 Query API address (port 0 picks one).
    pub ec2_listen: SocketAddr,
    /// IMDS address (port 0 picks one).
    pub imds_listen: SocketAddr,
    /// VPC, subnets and instances to create; `None` starts an empty account.
    pub topology: Option<Topology>,
    /// Settings when there is no topology (a topology carries its own).
    pub sim: SimConfig,
    /// Where to keep the account across restarts.
    pub state_dir: Option<PathBuf>,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Address.
        address: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// The topology was refused.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// Saved state could not be read.
    #[error("state {path}: {detail}")]
    State {
        /// File.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// A running endpoint; dropping it stops both listeners.
#[derive(Debug)]
pub struct EndpointHandle {
    /// Bound EC2 address.
    pub ec2_addr: SocketAddr,
    /// Bound IMDS address.
    pub imds_addr: SocketAddr,
    /// The simulator behind it.
    pub sim: Simulator,
    /// What the topology created (empty when state was restored or there was none).
    pub created: Created,
    shutdown: Vec<oneshot::Sender<()>>,
}

impl EndpointHandle {
    /// `http://<ec2 address>`.
    pub fn ec2_url(&self) -> String {
        format!("http://{}", self.ec2_addr)
    }

    /// `http://<imds address>`.
    pub fn imds_url(&self) -> String {
        format!("http://{}", self.imds_addr)
    }

    /// Stops the listeners.
    pub fn shutdown(mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug, Clone)]
struct Ec2State {
    sim: Simulator,
    state_file: Option<PathBuf>,
    /// Held from snapshot to rename: saves of concurrent requests then land in the order their snapshots
    /// were taken, so the file ends with the newest (without it, an older snapshot written last hid a
    /// change, and both wrote the same temporary file).
    save_lock: Arc<Mutex<()>>,
    default_instance: Arc<Mutex<Option<String>>>,
    requests: Arc<AtomicU64>,
}

const STATE_FILE: &str = "ec2-state.json";

fn load_state(dir: &Path) -> Result<Option<AccountState>, EndpointError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EndpointError::State {
                path,
                detail: format!("not a saved simulator state: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EndpointError::State {
            path,
            detail: e.to_string(),
        }),
    }
}

fn save_state(path: &Path, sim: &Simulator) {
    let Ok(json) = serde_json::to_vec(&sim.snapshot()) else {
        return;
    };
    let temp = path.with_extension("json.tmp");
    if std::fs::write(&temp, json)
        .and_then(|()| std::fs::rename(&temp, path))
        .is_err()
    {
        tracing::warn!(path = %path.display(), "could not save simulator state");
    }
}

/// Starts the endpoint on the wall clock.
pub async fn serve(config: EndpointConfig) -> Result<EndpointHandle, EndpointError> {
    serve_with_clock(config, Arc::new(WallClock)).await
}

/// Starts the endpoint on `clock`. With a [`VirtualClock`](vpcni_ec2::sim::VirtualClock), time behind the
/// endpoint (attach delay, metadata lag, throttle refill, simulated latency) moves only when the caller moves
/// it, so a test over the wire can be exact about time without sleeping.
pub async fn serve_with_clock(
    config: EndpointConfig,
    clock: Arc<dyn Clock>,
) -> Result<EndpointHandle, EndpointError> {
    let sim_config = config
        .topology
        .as_ref()
        .map_or_else(|| config.sim.clone(), |t| t.sim.clone());
    let restored = match &config.state_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| EndpointError::State {
                path: dir.clone(),
                detail: e.to_string(),
            })?;
            load_state(dir)?
        }
        None => None,
    };
    let (sim, created) = match restored {
        Some(account) => (
            Simulator::from_account(account, sim_config, clock),
            Created::default(),
        ),
        None => {
            let sim = Simulator::new(sim_config, clock);
            let created = match &config.topology {
                Some(topology) => topology.apply(&sim)?,
                None => Created::default(),
            };
            (sim, created)
        }
    };
    let state_file = config.state_dir.as_ref().map(|d| d.join(STATE_FILE));
    if let Some(path) = &state_file {
        save_state(path, &sim);
    }
    let default_instance = Arc::new(Mutex::new(created.default_instance.clone()));

    let ec2_state = Ec2State {
        sim: sim.clone(),
        state_file,
        save_lock: Arc::default(),
        default_instance: default_instance.clone(),
        requests: Arc::default(),
    };
    let ec2_app = Router::new()
        .route("/", any(ec2_request))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ec2_state);
    let imds_app = imds::router(ImdsState::new(sim.clone(), default_instance));

    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address)
            .await
            .map_err(|source| EndpointError::Bind { address, source })
    };
    let ec2_listener = bind(config.ec2_listen).await?;
    let imds_listener = bind(config.imds_listen).await?;
    let ec2_addr = ec2_listener.local_addr().map_err(|source| EndpointError::Bind {
        address: config.ec2_listen,
        source,
    })?;
    let imds_addr = imds_listener.local_addr().map_err(|source| EndpointError::Bind {
        address: config.imds_listen,
        source,
    })?;

    let mut shutdown = Vec::new();
    for (listener, app) in [(ec2_listener, ec2_app), (imds_listener, imds_app)] {
        let (tx, rx) = oneshot::channel::<()>();
        shutdown.push(tx);
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
    }
    Ok(EndpointHandle {
        ec2_addr,
        imds_addr,
        sim,
        created,
        shutdown,
    })
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")], body).into_response()
}

async fn ec2_request(State(state): State<Ec2State>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let request_id = format!(
        "00000000-0000-4000-8000-{:012x}",
        state.requests.fetch_add(1, Ordering::Relaxed)
    );
    let mut params = Params::parse(&body);
    if let Some(query) = query {
        params.extend(Params::parse(query.as_bytes()));
    }
    let Some(action) = params.get("Action").map(str::to_owned) else {
        let error = Ec2Error::new("MissingAction", "The request must contain the parameter Action");
        return xml_response(
            StatusCode::BAD_REQUEST,
            error_document(&error.code, &error.message, &request_id),
        );
    };
    // On a virtual clock the simulator spends the latency itself; the wall clock cannot be moved, so the
    // server waits it out instead.
    let latency = state.sim.latency_ms(&action);
    if latency > 0 && !state.sim.clock_is_virtual() {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    match actions::run(&state.sim, &action, &params).await {
        Ok(body) => {
            if action == "RunInstances"
                && let Ok(mut default) = state.default_instance.lock()
                && default.is_none()
            {
                *default = state.sim.instances().first().map(|i| i.instance_id.clone());
            }
            if !action.starts_with("Describe")
                && let Some(path) = &state.state_file
            {
                // A panic elsewhere while holding it leaves nothing half-done that matters here.
                let _saving = state
                    .save_lock
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                save_state(path, &state.sim);
            }
            tracing::debug!(%action, "ok");
            xml_response(StatusCode::OK, Xml::response(&action, &request_id, body))
        }
        Err(error) => {
            tracing::debug!(%action, code = %error.code, "error: {}", error.message);
            // As EC2 answers: throttling and unavailability 503, its own failures 500, the caller's 400.
            let status = match error.code.as_str() {
                _ if error.kind == Ec2ErrorKind::Throttled => StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable" | "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
                "InternalError" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            xml_response(status, error_document(&error.code, &error.message, &request_id))
        }
    }
}
