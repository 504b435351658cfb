//! The Kubernetes API source: this node's object and the ENIConfig objects, each kept current by a watch
//! (list, then watch from the list's resource version, resumed from the last version seen when the stream
//! drops, re-listed when the server says the version is gone), and Warning events on the node.
//!
//! In a pod the client uses the service account (in-cluster configuration); VPCNI_KUBERNETES_API_URL points
//! it at another URL instead (plain `http://` for the tests' in-process server). A failure never blocks the
//! daemon: it is written into the [`ViewHandle`] as the API's state, logged once per change, and the watch
//! is tried again after `retry`. What was last read stays in the view, so a node keeps its ENIConfig while
//! the API is away.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use crate::eniconfig::{EniConfig, EniConfigSpec, NodeMeta};
use crate::view::{ApiState, ViewHandle};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// VPCNI_KUBERNETES_API_URL is no URL.
    #[error("VPCNI_KUBERNETES_API_URL={url:?} is not valid: expected an http:// or https:// URL ({error})")]
    BadUrl {
        /// The value.
        url: String,
        /// The parser's complaint.
        error: String,
    },
    /// Not in a pod with a service account.
    #[error("no in-cluster configuration (KUBERNETES_SERVICE_HOST and the service account token): {0}")]
    NotInCluster(String),
    /// The HTTP client could not be built (TLS set-up).
    #[error("building the Kubernetes client: {0}")]
    Build(String),
}

/// A client for `url`, or the in-cluster configuration when `url` is `None`.
pub fn client(url: Option<&str>) -> Result<kube::Client, ClientError> {
    // Err only when a provider is installed already (an earlier call, or the process chose one): then
    // that one is used, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match url {
        Some(url) => {
            let bad = |error: String| ClientError::BadUrl {
                url: url.to_owned(),
                error,
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad("no http:// or https:// scheme".into()));
            }
            let uri: http::Uri = url
                .parse()
                .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
            kube::Config::new(uri)
        }
        None => kube::Config::incluster().map_err(|e| ClientError::NotInCluster(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| ClientError::Build(e.to_string()))
}

/// Whether KUBERNETES_SERVICE_HOST is set (the API is expected to be there).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// The API's state after an error.
pub fn state_of(error: &watcher::Error) -> ApiState {
    let status = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        },
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    };
    match status {
        Some(401 | 403) => ApiState::Forbidden(error.to_string()),
        _ => ApiState::Unreachable(error.to_string()),
    }
}

/// Keeps the view's node and ENIConfigs current until `stop` changes. `node_name` empty: no node watch
/// (the node stays unknown and selection falls back to `default`, as the original's does).
pub async fn follow(
    client: kube::Client,
    view: ViewHandle,
    retry: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let node_name = view.snapshot().node_name;
    let health = Health::default();
    let view = &view;
    let health = &health;
    let nodes = async {
        if node_name.is_empty() {
            return;
        }
        let api: Api<Node> = Api::all(client.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
        follow_kind(
            api,
            config,
            (view, health),
            retry,
            stop.clone(),
            "node",
            |view, nodes: BTreeMap<String, Node>| {
                view.api_node = Some(nodes.get(&node_name).map(NodeMeta::of));
            },
        )
        .await;
    };
    let configs = async {
        let api: Api<EniConfig> = Api::all(client.clone());
        follow_kind(
            api,
            watcher::Config::default(),
            (view, health),
            retry,
            stop.clone(),
            "ENIConfig",
            |view, configs: BTreeMap<String, EniConfig>| {
                let specs: BTreeMap<String, EniConfigSpec> = configs
                    .into_iter()
                    .map(|(name, config)| (name, config.spec))
                    .collect();
                view.api_configs = Some(specs);
            },
        )
        .await;
    };
    tokio::join!(nodes, configs);
}

/// The state of each watch; the view shows the worst.
#[derive(Debug, Default)]
struct Health(std::sync::Mutex<BTreeMap<&'static str, ApiState>>);

impl Health {
    /// Records one watch's state; returns the combined state (forbidden, else unreachable, else
    /// connecting, else connected).
    fn set(&self, what: &'static str, state: ApiState) -> ApiState {
        let mut states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Reachability is the server's: an answer on one watch clears "unreachable" on the others too (a
        // watch that reconnected quietly yields no event to say so). Forbidden stays per resource.
        if state == ApiState::Connected {
            for other in states.values_mut() {
                if matches!(other, ApiState::Unreachable(_)) {
                    *other = ApiState::Connected;
                }
            }
        }
        states.insert(what, state);
        let rank = |s: &ApiState| match s {
            ApiState::Forbidden(_) => 4,
            ApiState::Unreachable(_) => 3,
            ApiState::Connecting => 2,
            ApiState::Connected => 1,
            ApiState::NotConfigured => 0,
        };
        states
            .values()
            .max_by_key(|s| rank(s))
            .cloned()
            .unwrap_or(ApiState::Connecting)
    }
}

/// Follows one kind with a watcher, calling `publish` with the whole current set after every change.
async fn follow_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    (view, health): (&ViewHandle, &Health),
    retry: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    publish: impl Fn(&mut crate::view::View, BTreeMap<String, K>),
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut current: BTreeMap<String, K> = BTreeMap::new();
    let mut listing: BTreeMap<String, K> = BTreeMap::new();
    let stream = watcher(api, config);
    futures::pin_mut!(stream);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = stop.changed() => return,
        };
        let name = |k: &K| k.meta().name.clone().unwrap_or_default();
        match item {
            None => return,
            Some(Ok(event)) => {
                // `Init` comes before the list request is even made: it says nothing about the server.
                let answered = !matches!(event, watcher::Event::Init);
                let changed = match event {
                    watcher::Event::Init => {
                        listing.clear();
                        false
                    }
                    watcher::Event::InitApply(k) => {
                        listing.insert(name(&k), k);
                        false
                    }
                    watcher::Event::InitDone => {
                        current = std::mem::take(&mut listing);
                        true
                    }
                    watcher::Event::Apply(k) => {
                        current.insert(name(&k), k);
                        true
                    }
                    watcher::Event::Delete(k) => {
                        current.remove(&name(&k));
                        true
                    }
                };
                if answered {
                    mark(view, health.set(what, ApiState::Connected), what);
                }
                if changed {
                    let snapshot = current.clone();
                    view.update(|v| publish(v, snapshot));
                }
            }
            // History compacted away (410 Gone): the watcher lists again on its next poll; the API is fine.
            Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => {
                tracing::debug!("watching {what}: {status:?}; listing again");
            }
            Some(Err(error)) => {
                mark(view, health.set(what, state_of(&error)), what);
                // The watcher retries on the next poll; pace it.
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Sets the API's state, logging a change once.
fn mark(view: &ViewHandle, state: ApiState, what: &str) {
    let before = view.snapshot().api;
    if before == state {
        return;
    }
    match &state {
        ApiState::Connected => tracing::info!("Kubernetes API reachable again (watching {what})"),
        ApiState::Unreachable(error) => tracing::warn!(
            "Kubernetes API unreachable while watching {what}: {error}; pods are still served from the pool, \
             ENIConfig as last read"
        ),
        ApiState::Forbidden(error) => tracing::error!(
            "Kubernetes API refuses to let vpcni watch {what} (check the ClusterRole): {error}"
        ),
        ApiState::NotConfigured | ApiState::Connecting => {}
    }
    view.update(|v| v.api = state);
}

/// Posts Warning events about this node (`v1` Event in namespace `default`, involved object the Node, as
/// kubelet files node events).
#[derive(Clone)]
pub struct EventSink {
    client: kube::Client,
    node_name: String,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// The component events are reported by.
pub const EVENT_COMPONENT: &str = "vpcni-ipamd";

impl EventSink {
    /// Events about `node_name` through `client`.
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        Self {
            client,
            node_name: node_name.to_owned(),
        }
    }

    /// Posts one Warning event with `reason` (CamelCase) and `message`; the error says why it could not be.
    /// The node's uid goes into the event when the node can be read (a missing node, 404, leaves it out).
    pub async fn warn(&self, reason: &str, message: &str) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let uid = nodes
            .get_opt(&self.node_name)
            .await?
            .and_then(|node| node.metadata.uid);
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", self.node_name)),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node_name.clone()),
                uid,
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some(EVENT_COMPONENT.into()),
                host: Some(self.node_name.clone()),
            }),
            reporting_component: Some(EVENT_COMPONENT.into()),
            reporting_instance: Some(self.node_name.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some("AssignAddresses".into()),
            count: Some(1),
            ..Event::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        events.create(&PostParams::default(), &event).await.map(|_| ())
    }
}
