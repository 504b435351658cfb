//! The gRPC server the CNI plugin calls, on a unix socket only root can open.
//!
//! `rpc.CNIBackend` (AddNetwork / DelNetwork) keeps the original's semantics: ADD is idempotent per
//! (network name, container id, interface name); DEL of an unknown key succeeds. vpcni's `VpcniBackend`
//! serves the CNI STATUS and GC verbs, and the standard health service answers probes.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use vpcni_rpc::cni_backend_server::{CniBackend, CniBackendServer};
use vpcni_rpc::validate;
use vpcni_rpc::vpcni_backend_server::{VpcniBackend, VpcniBackendServer};
use vpcni_rpc::{
    AddNetworkReply, AddNetworkRequest, Attachment, DelNetworkReply, DelNetworkRequest, FailureReason,
    GarbageCollectReply, GarbageCollectRequest, IpAllocationMetadata, StatusReply, StatusRequest,
};

/// The key of one allocation, as the CNI spec defines an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// CNI network name.
    pub network_name: String,
    /// Container (sandbox) id.
    pub container_id: String,
    /// Interface name in the pod.
    pub if_name: String,
}

/// An ADD as ipamd sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRequest {
    /// Allocation key.
    pub key: PodKey,
    /// Kubernetes namespace.
    pub pod_namespace: String,
    /// Kubernetes pod name.
    pub pod_name: String,
}

/// An address given to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The pod's IPv4 address (`0.0.0.0`, and not sent, when [`Assigned::ipv6`] is set).
    pub ipv4: Ipv4Addr,
    /// IPv6 mode: the pod's IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// Device number of the ENI that holds it.
    pub device_number: u32,
    /// Route table of that ENI (254 = main, for the primary ENI).
    pub route_table_id: u32,
    /// The ENI.
    pub eni_id: String,
}

impl Assigned {
    /// The pod's address, whichever the family.
    pub fn address(&self) -> std::net::IpAddr {
        self.ipv6.map_or(self.ipv4.into(), Into::into)
    }
}

/// Why no address was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code.
    pub reason: FailureReason,
    /// One sentence for the pod's events.
    pub message: String,
}

/// What CNI STATUS reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    /// Start-up done.
    pub ready: bool,
    /// Addresses a new pod could get now.
    pub available: u32,
    /// Pods the node can still take.
    pub remaining_pods: u32,
    /// Why nothing is available, when nothing is.
    pub refusal: Option<Refusal>,
}

/// What the server needs from the daemon: the address book and the node's SNAT facts.
pub trait AddressBook: Send + Sync + 'static {
    /// Gives the pod an address (the same one again for a repeated key).
    fn add(&self, request: &PodRequest) -> Result<Assigned, Refusal>;
    /// Releases the key's address into cooldown; `None` if the key held none.
    fn del(&self, key: &PodKey) -> Option<Assigned>;
    /// Pool status.
    fn status(&self) -> PoolStatus;
    /// Releases every allocation of `network_name` whose key is not in `valid`; returns the released keys.
    fn garbage_collect(&self, network_name: &str, valid: &[PodKey]) -> Vec<PodKey>;
    /// VPC CIDRs plus SNAT exclusions (the plugin keeps these off SNAT), and whether SNAT is external.
    fn snat_info(&self) -> (Vec<Ipv4Net>, bool);
    /// IPv6 mode: the VPC's IPv6 CIDRs (AddNetworkReply's VPCv6CIDRs).
    fn vpc_ipv6_cidrs(&self) -> Vec<Ipv6Net> {
        Vec::new()
    }
}

#[derive(Debug)]
struct Service<B: ?Sized> {
    book: Arc<B>,
}

/// The key of a request [`vpcni_rpc::validate`] accepted.
fn pod_key(network_name: &str, container_id: &str, if_name: &str) -> PodKey {
    PodKey {
        network_name: network_name.to_owned(),
        container_id: container_id.to_owned(),
        if_name: if_name.to_owned(),
    }
}

/// The reply's address entry: one family only, as the original sends it (the plugin wires the family
/// whose field is set).
fn metadata(assigned: &Assigned) -> IpAllocationMetadata {
    let (i_pv4_addr, i_pv6_addr) = match assigned.ipv6 {
        Some(ipv6) => (String::new(), ipv6.to_string()),
        None => (assigned.ipv4.to_string(), String::new()),
    };
    IpAllocationMetadata {
        i_pv4_addr,
        i_pv6_addr,
        device_number: assigned.device_number as i32,
        route_table_id: assigned.route_table_id as i32,
    }
}

#[tonic::async_trait]
impl<B: AddressBook + ?Sized> CniBackend for Service<B> {
    async fn add_network(
        &self,
        request: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let request = request.into_inner();
        validate::add_network(&request)?;
        let key = pod_key(&request.network_name, &request.container_id, &request.if_name);
        let pod = PodRequest {
            key,
            pod_namespace: request.k8s_pod_namespace,
            pod_name: request.k8s_pod_name,
        };
        let (cidrs, external_snat) = self.book.snat_info();
        // The address book blocks on the checkpoint's fsync: off the async workers, so concurrent calls
        // share fsyncs (see the journal) instead of queueing behind one worker.
        let book = self.book.clone();
        let request_pod = pod.clone();
        let result = tokio::task::spawn_blocking(move || book.add(&request_pod))
            .await
            .map_err(|e| Status::internal(format!("address book worker: {e}")))?;
        let reply = match result {
            Ok(assigned) => {
                tracing::info!(
                    pod = %format!("{}/{}", pod.pod_namespace, pod.pod_name),
                    container = %pod.key.container_id, ip = %assigned.address(), eni = %assigned.eni_id,
                    "assigned"
                );
                if assigned.ipv6.is_some() {
                    // IPv6 mode, as the original answers it: the VPC's IPv6 CIDRs, no IPv4 ones, no SNAT.
                    AddNetworkReply {
                        success: true,
                        ip_allocation_metadata: vec![metadata(&assigned)],
                        vp_cv6_cid_rs: self
                            .book
                            .vpc_ipv6_cidrs()
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        eniid: assigned.eni_id,
                        ..Default::default()
                    }
                } else {
                    AddNetworkReply {
                        success: true,
                        ip_allocation_metadata: vec![metadata(&assigned)],
                        use_external_snat: external_snat,
                        vp_cv4_cid_rs: cidrs.iter().map(ToString::to_string).collect(),
                        eniid: assigned.eni_id,
                        ..Default::default()
                    }
                }
            }
            Err(refusal) => {
                tracing::warn!(
                    pod = %format!("{}/{}", pod.pod_namespace, pod.pod_name),
                    reason = refusal.reason.as_str_name(), "no address: {}", refusal.message
                );
                AddNetworkReply {
                    success: false,
                    reason: refusal.reason as i32,
                    message: refusal.message,
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn del_network(
        &self,
        request: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let request = request.into_inner();
        validate::del_network(&request)?;
        let key = pod_key(&request.network_name, &request.container_id, &request.if_name);
        let book = self.book.clone();
        let request_key = key.clone();
        let released = tokio::task::spawn_blocking(move || book.del(&request_key))
            .await
            .map_err(|e| Status::internal(format!("address book worker: {e}")))?;
        if let Some(assigned) = &released {
            tracing::info!(container = %key.container_id, ip = %assigned.address(), reason = %request.reason, "released");
        }
        Ok(Response::new(DelNetworkReply {
            success: true,
            ip_allocation_metadata: released.iter().map(metadata).collect(),
            found: released.is_some(),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl<B: AddressBook + ?Sized> VpcniBackend for Service<B> {
    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        validate::status(&request.into_inner())?;
        let status = self.book.status();
        let (reason, message) = status
            .refusal
            .map_or((FailureReason::Unspecified, String::new()), |r| {
                (r.reason, r.message)
            });
        Ok(Response::new(StatusReply {
            ready: status.ready,
            available_addresses: status.available as i32,
            remaining_pods: status.remaining_pods as i32,
            reason: reason as i32,
            message,
        }))
    }

    async fn garbage_collect(
        &self,
        request: Request<GarbageCollectRequest>,
    ) -> Result<Response<GarbageCollectReply>, Status> {
        let request = request.into_inner();
        validate::garbage_collect(&request)?;
        let valid: Vec<PodKey> = request
            .valid_attachments
            .iter()
            .map(|a| pod_key(&request.network_name, &a.container_id, &a.if_name))
            .collect();
        let released = self.book.garbage_collect(&request.network_name, &valid);
        for key in &released {
            tracing::info!(container = %key.container_id, "released by GC");
        }
        Ok(Response::new(GarbageCollectReply {
            released: released
                .into_iter()
                .map(|key| Attachment {
                    network_name: key.network_name,
                    container_id: key.container_id,
                    if_name: key.if_name,
                })
                .collect(),
        }))
    }
}

/// Binds the socket: parent directory created 0700 if missing, a stale socket removed, the new one 0600.
pub fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves until `shutdown` completes; in-flight calls finish first.
pub async fn serve<B: AddressBook + ?Sized>(
    listener: UnixListener,
    book: Arc<B>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            vpcni_rpc::HEALTH_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let service = Service { book };
    let shared = Arc::new(service);
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(CniBackendServer::from_arc(shared.clone()))
        .add_service(VpcniBackendServer::from_arc(shared))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
