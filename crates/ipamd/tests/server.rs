//! The gRPC server's decisions, in process: the socket's permissions, what it refuses before the address
//! book sees a request (client version, malformed keys), and how the book's answers become replies (the
//! original's field layout, refusal reasons, GC). The book is the real node on the EC2 simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use support::{RecordingHost, World, settle};
use tokio::net::UnixStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};
use vpcni_ipamd::node::Node;
use vpcni_rpc::cni_backend_client::CniBackendClient;
use vpcni_rpc::vpcni_backend_client::VpcniBackendClient;
use vpcni_rpc::{
    AddNetworkRequest, Attachment, DelNetworkRequest, FailureReason, GarbageCollectRequest, StatusRequest,
};

struct Served {
    channel: Channel,
    node: Arc<Node>,
    _world: World,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Served {
    async fn start(env: &[(&str, &str)], socket: &Path) -> Self {
        let world = World::new("t3.small", "10.0.0.0/24");
        let node = world.start(env, RecordingHost::new()).await;
        node.set_ready(true);
        settle(&world, &node).await;
        let listener = vpcni_ipamd::server::bind_socket(socket).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(vpcni_ipamd::server::serve(listener, node.clone(), async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        let path = socket.to_path_buf();
        let channel = Endpoint::from_static("http://ipamd.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .unwrap();
        Self {
            channel,
            node,
            _world: world,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.server.take().unwrap().await.unwrap().unwrap();
    }
}

fn add(container: &str) -> AddNetworkRequest {
    AddNetworkRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.into(),
        k8s_pod_name: container.into(),
        k8s_pod_namespace: "default".into(),
        k8s_pod_infra_container_id: container.into(),
        netns: format!("/var/run/netns/{container}"),
        if_name: "eth0".into(),
        network_name: vpcni_layout::NETWORK_NAME.into(),
        container_id: container.into(),
        ..Default::default()
    }
}

fn del(container: &str) -> DelNetworkRequest {
    DelNetworkRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.into(),
        if_name: "eth0".into(),
        network_name: vpcni_layout::NETWORK_NAME.into(),
        container_id: container.into(),
        reason: "PodDeleted".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_socket_is_the_owners_alone_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/vpcni/ipamd.sock");
    std::fs::create_dir_all(socket.parent().unwrap().parent().unwrap()).unwrap();
    let served = Served::start(&[], &socket).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700, "created for the socket");
    served.stop().await;
    // The socket file is left behind by a killed daemon: the next one binds anyway.
    assert!(socket.exists());
    let again = Served::start(&[], &socket).await;
    again.stop().await;
}

#[tokio::test]
async fn requests_are_checked_before_the_address_book_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&[], &dir.path().join("ipamd.sock")).await;
    let mut cni = CniBackendClient::new(served.channel.clone());
    let cases: Vec<(AddNetworkRequest, Code, &str)> = vec![
        (
            AddNetworkRequest {
                client_version: "v1.22.0".into(),
                ..add("web")
            },
            Code::FailedPrecondition,
            "is not served",
        ),
        (
            AddNetworkRequest {
                container_id: "../../etc".into(),
                ..add("web")
            },
            Code::InvalidArgument,
            "invalid container id",
        ),
        (
            AddNetworkRequest {
                container_id: String::new(),
                ..add("web")
            },
            Code::InvalidArgument,
            "invalid container id",
        ),
        (
            AddNetworkRequest {
                network_name: "a b".into(),
                ..add("web")
            },
            Code::InvalidArgument,
            "invalid network name",
        ),
        (
            AddNetworkRequest {
                if_name: "eth0/../x".into(),
                ..add("web")
            },
            Code::InvalidArgument,
            "invalid interface name",
        ),
        (
            AddNetworkRequest {
                if_name: "a-much-too-long-name".into(),
                ..add("web")
            },
            Code::InvalidArgument,
            "invalid interface name",
        ),
    ];
    for (request, code, text) in cases {
        let status = cni.add_network(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}");
        assert!(status.message().contains(text), "{}", status.message());
    }
    // The original's plugins (v1.23.x) are served.
    let reply = cni
        .add_network(AddNetworkRequest {
            client_version: "v1.23.1".into(),
            ..add("from-aws-plugin")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.success, "{reply:?}");
    assert_eq!(
        served.node.pool().allocations().len(),
        1,
        "nothing refused reached the book"
    );
    served.stop().await;
}

#[tokio::test]
async fn replies_carry_the_books_answers_in_the_originals_fields() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        &[("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "172.16.0.0/12")],
        &dir.path().join("ipamd.sock"),
    )
    .await;
    let mut cni = CniBackendClient::new(served.channel.clone());
    let reply = cni.add_network(add("web")).await.unwrap().into_inner();
    assert!(reply.success);
    let held = served.node.pool().allocations();
    let (_, _, assignment) = &held[0];
    let (ip, eni) = (assignment.ip, &assignment.eni_id);
    assert_eq!(reply.ip_allocation_metadata.len(), 1);
    let metadata = &reply.ip_allocation_metadata[0];
    assert_eq!(metadata.i_pv4_addr, ip.to_string());
    assert_eq!(metadata.i_pv6_addr, "");
    assert_eq!(
        (metadata.device_number, metadata.route_table_id),
        (0, 254),
        "primary ENI: main table"
    );
    assert_eq!(&reply.eniid, eni);
    assert_eq!(reply.vp_cv4_cid_rs, ["10.0.0.0/16", "172.16.0.0/12"]);
    assert!(!reply.use_external_snat);

    // DEL: found, with the address; again: not found, still a success (DEL is idempotent).
    let released = cni.del_network(del("web")).await.unwrap().into_inner();
    assert!(released.success && released.found);
    assert_eq!(released.ip_allocation_metadata[0].i_pv4_addr, ip.to_string());
    let again = cni.del_network(del("web")).await.unwrap().into_inner();
    assert!(again.success && !again.found && again.ip_allocation_metadata.is_empty());

    // A refusal: the reason code and the book's message, not a gRPC error.
    served.node.set_ready(false);
    let refused = cni.add_network(add("late")).await.unwrap().into_inner();
    assert!(!refused.success);
    assert_eq!(refused.reason, FailureReason::NotReady as i32);
    assert!(
        refused.message.contains("starting or shutting down"),
        "{}",
        refused.message
    );
    let mut vpcni = VpcniBackendClient::new(served.channel.clone());
    let status = vpcni
        .status(StatusRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!status.ready);
    served.node.set_ready(true);
    served.stop().await;
}

#[tokio::test]
async fn gc_releases_what_the_runtime_no_longer_has_and_refuses_malformed_lists() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&[], &dir.path().join("ipamd.sock")).await;
    let mut cni = CniBackendClient::new(served.channel.clone());
    for pod in ["kept", "gone"] {
        assert!(cni.add_network(add(pod)).await.unwrap().into_inner().success);
    }
    let mut vpcni = VpcniBackendClient::new(served.channel.clone());
    let attachment = |container: &str| Attachment {
        network_name: vpcni_layout::NETWORK_NAME.into(),
        container_id: container.into(),
        if_name: "eth0".into(),
    };
    let gc = |valid: Vec<Attachment>| GarbageCollectRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.into(),
        network_name: vpcni_layout::NETWORK_NAME.into(),
        valid_attachments: valid,
    };
    let status = vpcni
        .garbage_collect(gc(vec![attachment("kept"), attachment("bad id!")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        served.node.pool().allocations().len(),
        2,
        "a malformed list releases nothing"
    );

    let reply = vpcni
        .garbage_collect(gc(vec![attachment("kept")]))
        .await
        .unwrap()
        .into_inner();
    let released: Vec<&str> = reply.released.iter().map(|a| a.container_id.as_str()).collect();
    assert_eq!(released, ["gone"]);
    let left: Vec<String> = served
        .node
        .pool()
        .allocations()
        .into_iter()
        .map(|(k, _, _)| k.container_id)
        .collect();
    assert_eq!(left, ["kept"]);
    served.stop().await;
}
