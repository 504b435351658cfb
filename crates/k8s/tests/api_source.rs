//! The Kubernetes API source against the in-process API server (`vpcni_k8s::testing`): selection by label,
//! annotation and default; watch updates; a dropped watch resumed from its resource version; 410 Gone
//! re-listed; 403 and 404 answers; the API down at start and mid-run; events. No sleeps: each step waits
//! for the view to reach a state, with a generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vpcni_k8s::api::{EventSink, client, follow};
use vpcni_k8s::testing::{FakeApiServer, node};
use vpcni_k8s::{ApiState, EniConfig, EniConfigSpec, Resolution, SelectionRule, View, ViewHandle};

const DEADLINE: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_millis(50);
const ZONE: &str = "topology.kubernetes.io/zone";

fn config(name: &str, subnet: &str) -> EniConfig {
    EniConfig::new(
        name,
        EniConfigSpec {
            subnet: subnet.into(),
            security_groups: vec!["sg-pods".into()],
        },
    )
}

struct Running {
    view: ViewHandle,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn finish(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

fn start(url: &str, rule: SelectionRule, node_name: &str) -> Running {
    let view = ViewHandle::new(View::new(rule, node_name, None, ApiState::Connecting));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follow(client(Some(url)).unwrap(), view.clone(), RETRY, stopped));
    Running { view, stop, task }
}

async fn until(view: &ViewHandle, what: &str, condition: impl Fn(&View) -> bool) {
    let mut receiver = view.subscribe();
    let waited = tokio::time::timeout(DEADLINE, receiver.wait_for(|v| condition(v))).await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}; view: {:#?}",
        view.snapshot()
    );
}

fn subnet_of(view: &View) -> Option<String> {
    match view.resolve() {
        Resolution::Use { spec, .. } => Some(spec.subnet),
        Resolution::Unavailable { .. } => None,
    }
}

fn reason_of(view: &View) -> Option<String> {
    match view.resolve() {
        Resolution::Unavailable { reason, .. } => Some(reason),
        Resolution::Use { .. } => None,
    }
}

#[tokio::test]
async fn label_annotation_and_default_selection() {
    let server = FakeApiServer::start().await.unwrap();
    server.put_node(&node("by-label", &[(ZONE, "us-west-2a")], &[]));
    server.put_node(&node(
        "by-annotation",
        &[(ZONE, "us-west-2a")],
        &[("k8s.amazonaws.com/eniConfig", "special")],
    ));
    server.put_node(&node("unlabelled", &[], &[]));
    server.put_eni_config(&config("us-west-2a", "subnet-a"));
    server.put_eni_config(&config("special", "subnet-special"));
    server.put_eni_config(&config("default", "subnet-default"));
    let zone_rule = SelectionRule::from_values(Some(ZONE), None);
    for (node_name, rule, subnet) in [
        ("by-label", zone_rule.clone(), "subnet-a"),
        ("by-annotation", zone_rule.clone(), "subnet-special"),
        ("unlabelled", zone_rule.clone(), "subnet-default"),
        ("by-label", SelectionRule::default(), "subnet-default"),
        // A node the API does not know selects `default`, as the original does.
        ("not-in-the-api", zone_rule, "subnet-default"),
    ] {
        let running = start(&server.url(), rule, node_name);
        until(&running.view, &format!("{node_name} to use {subnet}"), |v| {
            subnet_of(v).as_deref() == Some(subnet)
        })
        .await;
        running.finish().await;
    }
}

#[tokio::test]
async fn watch_updates_relabelled_node_changed_and_deleted_config() {
    let server = FakeApiServer::start().await.unwrap();
    server.put_node(&node("n1", &[(ZONE, "us-west-2a")], &[]));
    server.put_eni_config(&config("us-west-2a", "subnet-a"));
    server.put_eni_config(&config("us-west-2b", "subnet-b"));
    let running = start(&server.url(), SelectionRule::from_values(Some(ZONE), None), "n1");
    let view = &running.view;
    until(view, "subnet-a", |v| subnet_of(v).as_deref() == Some("subnet-a")).await;

    server.put_node(&node("n1", &[(ZONE, "us-west-2b")], &[]));
    until(view, "the relabelled node to use subnet-b", |v| {
        subnet_of(v).as_deref() == Some("subnet-b")
    })
    .await;

    server.put_eni_config(&config("us-west-2b", "subnet-b2"));
    until(view, "the changed ENIConfig's subnet", |v| {
        subnet_of(v).as_deref() == Some("subnet-b2")
    })
    .await;

    server.delete_eni_config("us-west-2b");
    until(view, "a reason naming the deleted ENIConfig", |v| {
        reason_of(v).is_some_and(|r| {
            r.contains("\"us-west-2b\"")
                && r.contains("label topology.kubernetes.io/zone (ENI_CONFIG_LABEL_DEF)")
                && r.contains("does not exist in the Kubernetes API")
        })
    })
    .await;
    running.finish().await;
}

#[tokio::test]
async fn a_dropped_watch_is_resumed_from_the_last_version_and_410_relists() {
    let server = FakeApiServer::start().await.unwrap();
    server.put_eni_config(&config("default", "subnet-1"));
    let running = start(&server.url(), SelectionRule::default(), "");
    let view = &running.view;
    until(view, "subnet-1", |v| subnet_of(v).as_deref() == Some("subnet-1")).await;
    let lists = |server: &FakeApiServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET eniconfigs") && !r.contains("watch=true"))
            .count()
    };
    assert_eq!(lists(&server), 1);

    server.until_watching(1).await;
    server.drop_watches();
    server.put_eni_config(&config("default", "subnet-2"));
    until(view, "the change made while the watch was down", |v| {
        subnet_of(v).as_deref() == Some("subnet-2")
    })
    .await;
    assert_eq!(
        lists(&server),
        1,
        "resumed without a new list: {:#?}",
        server.requests()
    );
    let watches: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET eniconfigs") && r.contains("watch=true"))
        .collect();
    assert!(watches.len() >= 2, "{watches:#?}");
    assert!(
        watches.iter().all(|w| w.contains("resourceVersion=")),
        "every watch names the version it resumes from: {watches:#?}"
    );

    // History gone (etcd compaction): the next watch gets 410 and the client lists again.
    server.until_watching(1).await;
    server.compact();
    server.drop_watches();
    server.put_eni_config(&config("default", "subnet-3"));
    until(view, "the object re-listed after 410 Gone", |v| {
        subnet_of(v).as_deref() == Some("subnet-3")
    })
    .await;
    assert!(lists(&server) >= 2, "{:#?}", server.requests());
    running.finish().await;
}

#[tokio::test]
async fn forbidden_says_rbac_and_recovers_when_granted() {
    let server = FakeApiServer::start().await.unwrap();
    server.put_eni_config(&config("default", "subnet-1"));
    server.set_forbidden("eniconfigs", true);
    let running = start(&server.url(), SelectionRule::default(), "");
    let view = &running.view;
    until(view, "the API marked forbidden", |v| {
        matches!(v.api, ApiState::Forbidden(_))
    })
    .await;
    let reason = reason_of(&view.snapshot()).unwrap();
    assert!(
        reason.contains("refuses vpcni (RBAC)") && reason.contains("403"),
        "{reason}"
    );
    assert_eq!(view.snapshot().report()["api"]["state"]["state"], "forbidden");

    server.set_forbidden("eniconfigs", false);
    until(view, "the ENIConfig once granted", |v| {
        subnet_of(v).as_deref() == Some("subnet-1")
    })
    .await;
    assert_eq!(view.snapshot().api, ApiState::Connected);
    running.finish().await;
}

#[tokio::test]
async fn api_down_at_start_then_up() {
    // A port nothing listens on yet.
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let running = start(&format!("http://{address}"), SelectionRule::default(), "n1");
    let view = &running.view;
    until(view, "the API marked unreachable", |v| {
        matches!(v.api, ApiState::Unreachable(_))
    })
    .await;
    let snapshot = view.snapshot();
    let reason = reason_of(&snapshot).unwrap();
    assert!(
        reason.contains("node n1's labels and annotations are not known") && reason.contains("unreachable"),
        "{reason}"
    );
    assert_eq!(snapshot.report()["api"]["reachable"], false);

    let server = FakeApiServer::start_on(address).await.unwrap();
    server.put_node(&node("n1", &[], &[]));
    server.put_eni_config(&config("default", "subnet-late"));
    until(view, "the ENIConfig once the API is up", |v| {
        subnet_of(v).as_deref() == Some("subnet-late")
    })
    .await;
    assert_eq!(view.snapshot().api, ApiState::Connected);
    running.finish().await;
}

#[tokio::test]
async fn api_down_mid_run_keeps_the_last_config_and_says_so() {
    let mut server = FakeApiServer::start().await.unwrap();
    server.put_node(&node("n1", &[(ZONE, "us-west-2a")], &[]));
    server.put_eni_config(&config("us-west-2a", "subnet-a"));
    let running = start(&server.url(), SelectionRule::from_values(Some(ZONE), None), "n1");
    let view = &running.view;
    until(view, "subnet-a", |v| subnet_of(v).as_deref() == Some("subnet-a")).await;

    server.stop().await;
    until(view, "the API marked unreachable", |v| {
        matches!(v.api, ApiState::Unreachable(_))
    })
    .await;
    assert_eq!(
        subnet_of(&view.snapshot()).as_deref(),
        Some("subnet-a"),
        "the last config is kept"
    );

    server.put_eni_config(&config("us-west-2a", "subnet-a2"));
    server.restart().await.unwrap();
    until(view, "the change made while down, once back", |v| {
        v.api == ApiState::Connected && subnet_of(v).as_deref() == Some("subnet-a2")
    })
    .await;
    running.finish().await;
}

#[tokio::test]
async fn events_name_the_node_and_say_why_when_refused() {
    let server = FakeApiServer::start().await.unwrap();
    let mut known = node("n1", &[], &[]);
    known.metadata.uid = Some("uid-n1".into());
    server.put_node(&known);
    let sink = EventSink::new(client(Some(&server.url())).unwrap(), "n1");
    sink.warn("MissingENIConfig", "ENIConfig \"x\" does not exist")
        .await
        .unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("MissingENIConfig"));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Node"));
    assert_eq!(event.involved_object.name.as_deref(), Some("n1"));
    assert_eq!(event.involved_object.uid.as_deref(), Some("uid-n1"));
    assert_eq!(event.metadata.namespace.as_deref(), Some("default"));

    // A node the API does not have (404): the event still goes, without a uid.
    let unknown = EventSink::new(client(Some(&server.url())).unwrap(), "ghost");
    unknown.warn("MissingENIConfig", "m").await.unwrap();
    assert_eq!(server.events()[1].involved_object.uid, None);

    server.set_forbidden("events", true);
    let error = sink.warn("MissingENIConfig", "m").await.unwrap_err();
    assert!(
        error.to_string().contains("403") || error.to_string().contains("Forbidden"),
        "{error}"
    );
}

#[test]
fn a_url_without_a_scheme_is_refused_naming_the_variable() {
    let Err(error) = client(Some("127.0.0.1:6443")) else {
        panic!("a URL without a scheme was accepted");
    };
    let error = error.to_string();
    assert!(
        error.starts_with("VPCNI_KUBERNETES_API_URL=\"127.0.0.1:6443\" is not valid"),
        "{error}"
    );
}
