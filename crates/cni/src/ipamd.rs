//! The plugin's side of the gRPC contract: one call to ipamd over its unix socket per CNI command.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use vpcni_rpc::cni_backend_client::CniBackendClient;
use vpcni_rpc::vpcni_backend_client::VpcniBackendClient;
use vpcni_rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, FailureReason,
    GarbageCollectReply, GarbageCollectRequest, Outlook, StatusReply, StatusRequest,
};

use crate::spec::{CniError, ErrorCode};

/// How long the plugin waits for ipamd to accept the connection. ipamd answers from memory, so a slow
/// connect means it is down or wedged: better to tell the runtime to retry than to hang the pod.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take. ADD can wait on nothing but ipamd's datastore lock.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to ipamd.
#[derive(Debug, Clone)]
pub struct IpamdClient {
    channel: Channel,
}

impl IpamdClient {
    /// Connects to ipamd's unix socket.
    pub async fn connect(socket: impl Into<PathBuf>) -> Result<Self, CniError> {
        let socket: PathBuf = socket.into();
        let shown = socket.display().to_string();
        // The URI is required by tonic but unused: the connector below always dials the socket.
        let endpoint = Endpoint::from_static("http://ipamd.invalid")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { UnixStream::connect(socket).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| {
                CniError::new(
                    ErrorCode::TryAgainLater,
                    format!("ipamd is not reachable at {shown}"),
                    format!("{e}; is vpcni-ipamd running on this node?"),
                )
            })?;
        Ok(Self { channel })
    }

    /// AddNetwork.
    pub async fn add(&self, request: AddNetworkRequest) -> Result<AddNetworkReply, CniError> {
        let mut client = CniBackendClient::new(self.channel.clone());
        client
            .add_network(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }

    /// DelNetwork.
    pub async fn del(&self, request: DelNetworkRequest) -> Result<DelNetworkReply, CniError> {
        let mut client = CniBackendClient::new(self.channel.clone());
        client
            .del_network(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }

    /// Status (CNI STATUS).
    pub async fn status(&self) -> Result<StatusReply, CniError> {
        let mut client = VpcniBackendClient::new(self.channel.clone());
        let request = StatusRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
        };
        client
            .status(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }

    /// GarbageCollect (CNI GC).
    pub async fn garbage_collect(
        &self,
        request: GarbageCollectRequest,
    ) -> Result<GarbageCollectReply, CniError> {
        let mut client = VpcniBackendClient::new(self.channel.clone());
        client
            .garbage_collect(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }
}

fn status_error(status: tonic::Status) -> CniError {
    let code = match status.code() {
        tonic::Code::FailedPrecondition => ErrorCode::IncompatibleVersion,
        tonic::Code::InvalidArgument => ErrorCode::InvalidEnvironment,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted => {
            ErrorCode::TryAgainLater
        }
        _ => ErrorCode::Internal,
    };
    CniError::new(
        code,
        format!("ipamd: {}", status.message()),
        format!("gRPC status {:?}", status.code()),
    )
}

/// Turns ipamd's refusal into the CNI error the runtime shows on the pod: the reason's sentence as `msg`,
/// the stable code in `details`, and "try again later" when waiting can help.
pub fn refusal_error(reply: &AddNetworkReply) -> CniError {
    let reason = reply.reason();
    let code = match reason.outlook() {
        // A state that changes: pods leave, ENIs finish attaching, throttling ends.
        Outlook::Passing | Outlook::UntilPodsLeave => ErrorCode::TryAgainLater,
        Outlook::Error if reason == FailureReason::InvalidRequest => ErrorCode::InvalidEnvironment,
        Outlook::Error => ErrorCode::Internal,
    };
    let msg = if reply.message.is_empty() {
        "ipamd could not assign an IP address to the pod".to_owned()
    } else {
        reply.message.clone()
    };
    CniError::new(code, msg, format!("ipamd reason {}", reason.as_str_name()))
}
