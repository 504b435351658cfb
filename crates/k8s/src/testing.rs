//! An in-process Kubernetes API server for tests (feature `test-support`): no API server binary can run on
//! the machines vpcni is tested on, so the client is tested against this one, which answers in the real
//! API's JSON shapes for the few paths vpcni uses:
//!
//! - `GET /api/v1/nodes` and `GET /apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs`: a list (`NodeList`,
//!   `ENIConfigList`) with `metadata.resourceVersion`, items without `kind`/`apiVersion` as the real server
//!   sends them; `fieldSelector=metadata.name=…` honoured;
//! - the same with `watch=true`: newline-delimited `{"type": "ADDED"|"MODIFIED"|"DELETED", "object": …}`
//!   from the requested resource version, then live changes; a version older than the oldest kept gets an
//!   `ERROR` event with a 410 `Status`, as after etcd compaction;
//! - `GET …/{name}`: the object, or a 404 `Status`;
//! - `POST /api/v1/namespaces/{ns}/events`: stored, 201;
//! - per resource, a switch that answers 403 `Status` (RBAC missing), and a switch that closes every open
//!   watch (a dropped connection the client must resume).
//!
//! Objects are k8s-openapi types (or [`EniConfig`]) serialized with serde, so their JSON is the real API's.
//! Not covered: authentication, pagination (`limit`/`continue` are ignored: one page), bookmarks, protobuf.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::{Event, Node};
use serde_json::{Value, json};

use crate::eniconfig::EniConfig;

/// The node resource's path.
const NODES: &str = "nodes";
/// The ENIConfig resource's path.
const ENICONFIGS: &str = "eniconfigs";
/// Events.
const EVENTS: &str = "events";

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    resource: &'static str,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Store {
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<String, Value>>,
    changes: Vec<Change>,
    /// Changes older than this were compacted away.
    oldest: u64,
    forbidden: HashSet<&'static str>,
    requests: Vec<String>,
    events: Vec<Event>,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    /// Bumped on every change (watchers wake) and on [`FakeApiServer::drop_watches`] (watchers end).
    changed: tokio::sync::watch::Sender<(u64, u64)>,
    /// False between [`FakeApiServer::stop`] and [`FakeApiServer::restart`]: requests on connections
    /// still open get 503, and no watch stays open.
    serving: std::sync::atomic::AtomicBool,
    /// Watch streams open now.
    open_watches: tokio::sync::watch::Sender<usize>,
}

/// Counts an open watch stream while it lives.
struct OpenWatch(Arc<Shared>);

impl OpenWatch {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_watches.send_modify(|n| *n += 1);
        Self(shared)
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn unavailable() -> Response {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the API server is shutting down".into(),
    )
}

/// Where the server listens.
enum Binding {
    Address(SocketAddr),
    Listener(tokio::net::TcpListener),
}

/// The server. Dropping it stops it.
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn forbidden(resource: &str) -> Response {
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{resource} is forbidden: User \"system:serviceaccount:kube-system:vpcni\" cannot list resource \"{resource}\" at the cluster scope"
        ),
    )
}

fn kind_of(resource: &str) -> (&'static str, &'static str, &'static str) {
    match resource {
        NODES => (NODES, "Node", "v1"),
        _ => (ENICONFIGS, EniConfig::KIND, EniConfig::API_VERSION),
    }
}

async fn list_or_watch(
    State(shared): State<Arc<Shared>>,
    resource: &'static str,
    query: HashMap<String, String>,
) -> Response {
    let (resource, kind, api_version) = kind_of(resource);
    if !shared.serving() {
        return unavailable();
    }
    {
        let mut store = shared.store();
        let mut shown: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        shown.sort();
        store.requests.push(format!("GET {resource}?{}", shown.join("&")));
        if store.forbidden.contains(resource) {
            return forbidden(resource);
        }
    }
    let name_filter = match query.get("fieldSelector") {
        None => None,
        Some(selector) => match selector.strip_prefix("metadata.name=") {
            Some(name) => Some(name.to_owned()),
            None => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("field selector {selector:?} is not supported here"),
                );
            }
        },
    };
    let matches = move |object: &Value| {
        name_filter
            .as_deref()
            .is_none_or(|n| object["metadata"]["name"].as_str() == Some(n))
    };
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        return watch(shared, resource, from, matches);
    }
    let store = shared.store();
    let items: Vec<Value> = store
        .objects
        .get(resource)
        .map(|objects| {
            objects
                .values()
                .filter(|o| matches(o))
                .map(|o| {
                    let mut item = o.clone();
                    if let Some(map) = item.as_object_mut() {
                        map.remove("kind");
                        map.remove("apiVersion");
                    }
                    item
                })
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({
        "kind": format!("{kind}List"),
        "apiVersion": api_version,
        "metadata": { "resourceVersion": store.rv.to_string() },
        "items": items,
    }))
    .into_response()
}

fn watch(
    shared: Arc<Shared>,
    resource: &'static str,
    from: u64,
    matches: impl Fn(&Value) -> bool + Send + 'static,
) -> Response {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut changed = shared.changed.subscribe();
    let start_generation = changed.borrow().1;
    tokio::spawn(async move {
        let _open = OpenWatch::new(shared.clone());
        if !shared.serving() {
            return;
        }
        let mut sent = from;
        let oldest = shared.store().oldest;
        if from < oldest {
            let gone = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({oldest})"),
                "reason": "Expired", "code": 410,
            }});
            // Whether or not the client is still there to read it, this watch ends here.
            let _ = sender.send(Ok(Bytes::from(format!("{gone}\n")))).await;
            return;
        }
        loop {
            let pending: Vec<Change> = shared
                .store()
                .changes
                .iter()
                .filter(|c| c.rv > sent && c.resource == resource)
                .cloned()
                .collect();
            for change in pending {
                sent = change.rv;
                if !matches(&change.object) {
                    continue;
                }
                let line = json!({"type": change.kind, "object": change.object});
                if sender.send(Ok(Bytes::from(format!("{line}\n")))).await.is_err() {
                    return;
                }
            }
            if changed.changed().await.is_err() || changed.borrow().1 != start_generation || !shared.serving()
            {
                return;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn get_one(shared: Arc<Shared>, resource: &'static str, name: String) -> Response {
    let (resource, kind, _) = kind_of(resource);
    if !shared.serving() {
        return unavailable();
    }
    let store = shared.store();
    if store.forbidden.contains(resource) {
        return forbidden(resource);
    }
    match store.objects.get(resource).and_then(|o| o.get(&name)) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} \"{name}\" not found ({kind})"),
        ),
    }
}

async fn create_event(
    State(shared): State<Arc<Shared>>,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Response {
    if !shared.serving() {
        return unavailable();
    }
    let mut store = shared.store();
    store.requests.push(format!("POST events in {namespace}"));
    if store.forbidden.contains(EVENTS) {
        return forbidden(EVENTS);
    }
    let mut event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("not an Event: {error}"),
            );
        }
    };
    store.rv += 1;
    let n = store.events.len();
    let prefix = event.metadata.generate_name.clone().unwrap_or_default();
    event.metadata.name = Some(format!("{prefix}{n:05}"));
    event.metadata.resource_version = Some(store.rv.to_string());
    event.metadata.namespace = Some(namespace);
    store.events.push(event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}

impl FakeApiServer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    /// Starts on `address` (to bring one back on the port a client already uses).
    pub async fn start_on(address: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(Binding::Address(address)).await
    }

    /// Starts on a listener bound already, e.g. inside another network namespace (where a daemon under
    /// test runs). [`FakeApiServer::restart`] binds its address again in the caller's namespace.
    pub async fn from_listener(listener: std::net::TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Self::start_with(Binding::Listener(tokio::net::TcpListener::from_std(listener)?)).await
    }

    async fn start_with(binding: Binding) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 1,
                oldest: 0,
                ..Store::default()
            }),
            changed: tokio::sync::watch::Sender::new((1, 0)),
            serving: std::sync::atomic::AtomicBool::new(true),
            open_watches: tokio::sync::watch::Sender::new(0),
        });
        let (address, stop, task) = Self::serve(shared.clone(), binding).await?;
        Ok(Self {
            shared,
            address,
            stop: Some(stop),
            task: Some(task),
        })
    }

    async fn serve(
        shared: Arc<Shared>,
        binding: Binding,
    ) -> std::io::Result<(
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )> {
        let listener = match binding {
            Binding::Address(address) => tokio::net::TcpListener::bind(address).await?,
            Binding::Listener(listener) => listener,
        };
        let address = listener.local_addr()?;
        let router = Router::new()
            .route(
                "/api/v1/nodes",
                get(|state, Query(q)| list_or_watch(state, NODES, q)),
            )
            .route(
                "/api/v1/nodes/{name}",
                get(|State(s): State<Arc<Shared>>, Path(name)| get_one(s, NODES, name)),
            )
            .route(
                "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs",
                get(|state, Query(q)| list_or_watch(state, ENICONFIGS, q)),
            )
            .route(
                "/apis/crd.k8s.amazonaws.com/v1alpha1/eniconfigs/{name}",
                get(|State(s): State<Arc<Shared>>, Path(name)| get_one(s, ENICONFIGS, name)),
            )
            .route("/api/v1/namespaces/{namespace}/events", post(create_event))
            .with_state(shared);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                // Sent or dropped, either way it is time to stop.
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!("fake API server: {error}");
            }
        });
        Ok((address, stop, task))
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    fn put(&self, resource: &'static str, name: &str, mut object: Value) {
        let mut store = self.shared.store();
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let objects = store.objects.entry(resource).or_default();
        let kind = if objects.insert(name.to_owned(), object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store.changes.push(Change {
            rv,
            resource,
            kind,
            object,
        });
        drop(store);
        self.shared.changed.send_modify(|(v, _)| *v = rv);
    }

    fn remove(&self, resource: &'static str, name: &str) {
        let mut store = self.shared.store();
        let Some(mut object) = store.objects.get_mut(resource).and_then(|o| o.remove(name)) else {
            return;
        };
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        store.changes.push(Change {
            rv,
            resource,
            kind: "DELETED",
            object,
        });
        drop(store);
        self.shared.changed.send_modify(|(v, _)| *v = rv);
    }

    /// Creates or replaces a node.
    pub fn put_node(&self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.put(NODES, &name, serde_json::to_value(node).unwrap_or_default());
    }

    /// Creates or replaces an ENIConfig.
    pub fn put_eni_config(&self, config: &EniConfig) {
        self.put(
            ENICONFIGS,
            config.name(),
            serde_json::to_value(config).unwrap_or_default(),
        );
    }

    /// Deletes an ENIConfig.
    pub fn delete_eni_config(&self, name: &str) {
        self.remove(ENICONFIGS, name);
    }

    /// Answers 403 for `nodes`, `eniconfigs` or `events` while `on`.
    pub fn set_forbidden(&self, resource: &str, on: bool) {
        let resource = match resource {
            NODES => NODES,
            ENICONFIGS => ENICONFIGS,
            _ => EVENTS,
        };
        let mut store = self.shared.store();
        if on {
            store.forbidden.insert(resource);
        } else {
            store.forbidden.remove(resource);
        }
    }

    /// Ends every open watch stream, as a dropped connection or an API server restart would.
    pub fn drop_watches(&self) {
        self.shared
            .changed
            .send_modify(|(_, generation)| *generation += 1);
    }

    /// Waits until at least `n` watch streams are open (a test drops a watch only once it exists).
    pub async fn until_watching(&self, n: usize) {
        let mut open = self.shared.open_watches.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while waiting.
        let _ = open.wait_for(|count| *count >= n).await;
    }

    /// Forgets every change so far, as etcd compaction does: a watch from any version before now gets
    /// 410 Gone; a list answers a newer version, from which watching works again.
    pub fn compact(&self) {
        let mut store = self.shared.store();
        store.rv += 1;
        store.oldest = store.rv;
        store.changes.clear();
    }

    /// Every list and watch request so far, as `GET resource?query` (query keys sorted).
    pub fn requests(&self) -> Vec<String> {
        self.shared.store().requests.clone()
    }

    /// Events posted so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.store().events.clone()
    }

    /// Stops serving: open watches end, new connections are refused. The objects are kept and served again
    /// by [`FakeApiServer::restart`].
    pub async fn stop(&mut self) {
        self.shared
            .serving
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.drop_watches();
        if let Some(stop) = self.stop.take() {
            // The task may have ended on its own; then it is stopped already.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!("fake API server task: {error}");
        }
    }

    /// Serves again on the same address, with the same objects.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        self.shared
            .serving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (_, stop, task) = Self::serve(self.shared.clone(), Binding::Address(self.address)).await?;
        self.stop = Some(stop);
        self.task = Some(task);
        Ok(())
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.drop_watches();
        if let Some(stop) = self.stop.take() {
            // Already stopped if the receiver is gone.
            let _ = stop.send(());
        }
    }
}

/// A node object named `name` with these labels and annotations.
pub fn node(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Node {
    let map = |pairs: &[(&str, &str)]| {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
    };
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        },
        ..Node::default()
    }
}
