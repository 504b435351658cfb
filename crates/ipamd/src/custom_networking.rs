//! Custom networking's Kubernetes side in the daemon: starts the ENIConfig sources the configuration asks
//! for (a directory of YAML files, the Kubernetes API, or both: node labels from one, ENIConfigs from the
//! other) and reacts to what they say. Nothing here is on a pod's path: ADD reads the pool, and the pool
//! reads the view only when it is about to create an ENI ([`crate::enis`]).
//!
//! Reactions, once per change: `vpcni_kubernetes_api_reachable` and `vpcni_eni_config_unavailable`; a log
//! line saying which ENIConfig the node uses or why none can be; and, while none can be and the API is
//! reachable, a Warning event `ENIConfigUnavailable` on the node with the same reason.

use std::sync::Arc;
use std::time::Duration;

use vpcni_k8s::api::{self, EventSink};
use vpcni_k8s::{ApiState, Resolution};

use crate::node::Node;

/// How long a failed watch waits before trying again.
pub const API_RETRY: Duration = Duration::from_secs(5);

/// The event reason for a node without a usable ENIConfig.
pub const EVENT_REASON: &str = "ENIConfigUnavailable";

/// Starts the sources and the reactions; returns their tasks (each ends when `stop` changes). Nothing
/// without custom networking.
pub fn start(node: &Arc<Node>, stop: tokio::sync::watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    start_with(node, stop, API_RETRY, api::in_cluster())
}

/// [`start`] with the retry pace and whether the in-cluster configuration is there given (for tests).
pub fn start_with(
    node: &Arc<Node>,
    stop: tokio::sync::watch::Receiver<bool>,
    retry: Duration,
    in_cluster: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = &node.config;
    if !config.pool.custom_networking {
        return Vec::new();
    }
    let view = node.eni_configs.clone();
    let mut tasks = Vec::new();
    if let Some(dir) = config.kubernetes.eni_config_dir.clone() {
        tracing::info!(dir = %dir.display(), "custom networking: ENIConfigs from a directory");
        // Read once now, so the pool's first cycle already knows the node's ENIConfig.
        let first = vpcni_k8s::dir::load(&dir, &config.kubernetes.node_name);
        view.update(|v| v.dir = first);
        tasks.push(tokio::spawn(vpcni_k8s::dir::follow(
            dir,
            config.pool_interval,
            view.clone(),
            stop.clone(),
        )));
    }
    let mut sink = None;
    let url = config.kubernetes.api_url.as_deref();
    if url.is_some() || in_cluster {
        match api::client(url) {
            Ok(client) => {
                view.update(|v| v.api = ApiState::Connecting);
                if !config.kubernetes.node_name.is_empty() {
                    sink = Some(EventSink::new(client.clone(), &config.kubernetes.node_name));
                }
                tasks.push(tokio::spawn(api::follow(
                    client,
                    view.clone(),
                    retry,
                    stop.clone(),
                )));
            }
            Err(error) => {
                tracing::error!("custom networking: no Kubernetes client: {error}");
                view.update(|v| v.api = ApiState::Unreachable(error.to_string()));
            }
        }
    } else if config.kubernetes.eni_config_dir.is_none() {
        tracing::error!(
            "custom networking: no ENIConfig source: not in a cluster (no KUBERNETES_SERVICE_HOST), and neither \
             VPCNI_KUBERNETES_API_URL nor VPCNI_ENI_CONFIG_DIR is set; no pod ENI will be created"
        );
    }
    if config.kubernetes.node_name.is_empty() {
        tracing::warn!(
            "custom networking: MY_NODE_NAME is not set, so the node's labels cannot be read and the ENIConfig \
             named default is used, as the original does"
        );
    }
    tasks.push(tokio::spawn(react(node.clone(), sink, stop)));
    tasks
}

/// Keeps metrics, the log and the node's events in step with the view and with the last ENI creation's
/// verdict on the ENIConfig, until `stop` changes.
pub async fn react(node: Arc<Node>, sink: Option<EventSink>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut changes = node.eni_configs.subscribe();
    let mut problems = node.eni_config_problem.subscribe();
    let mut announced: Option<String> = None;
    let mut evented: Option<String> = None;
    loop {
        let view = changes.borrow_and_update().clone();
        let problem = problems.borrow_and_update().clone();
        node.metrics
            .kubernetes_api_reachable
            .set(i64::from(view.api.is_up()));
        // What is wrong, if anything, and whether it is worth an event (the sources have answered).
        let (line, wrong) = match view.resolve() {
            Resolution::Use { choice, spec, source } => match problem {
                Some(reason) => (reason, Some(true)),
                None => (
                    format!(
                        "custom networking: new ENIs go to subnet {} with security groups {:?} (ENIConfig {:?}, chosen by {}, from {source})",
                        spec.subnet, spec.security_groups, choice.name, choice.by
                    ),
                    None,
                ),
            },
            Resolution::Unavailable { reason, settled, .. } => (reason, Some(settled)),
        };
        node.metrics
            .eni_config_unavailable
            .set(i64::from(wrong.is_some()));
        if announced.as_ref() != Some(&line) {
            match wrong {
                None => tracing::info!("{line}"),
                Some(_) => tracing::error!("custom networking: no pod ENI can be created: {line}"),
            }
            announced = Some(line.clone());
        }
        match wrong {
            None => evented = None,
            Some(true) if view.api.is_up() && evented.as_ref() != Some(&line) => {
                if let Some(sink) = &sink {
                    let message = format!(
                        "custom networking: no pod ENI can be created, so pods on this node get no address: {line}"
                    );
                    match sink.warn(EVENT_REASON, &message).await {
                        Ok(()) => evented = Some(line),
                        Err(error) => tracing::warn!("posting the {EVENT_REASON} event: {error}"),
                    }
                }
            }
            Some(_) => {}
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = problems.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}
