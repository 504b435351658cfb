//! containerd's CRI over its unix socket, called the way kubelet calls it (CRI v1), with blocking methods.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    ImageStatusRequest, ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{E2eError, Result};

/// A blocking runtime and a gRPC channel to a CRI socket, as kubelet holds one (shared by [`Cri`] and
/// [`crate::kubelet::Kubelet`]).
pub(crate) fn connect(socket: &Path) -> Result<(tokio::runtime::Runtime, Channel)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| E2eError::Setup(format!("tokio runtime: {e}")))?;
    let socket: PathBuf = socket.to_path_buf();
    let channel = runtime
        .block_on(
            Endpoint::from_static("http://containerd.invalid")
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(120))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move { UnixStream::connect(socket).await.map(TokioIo::new) }
                })),
        )
        .map_err(|e| E2eError::Cri(format!("connecting: {e}")))?;
    Ok((runtime, channel))
}

/// A CRI client.
#[derive(Debug)]
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

/// What `ExecSync` returned.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code.
    pub exit_code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

fn rpc(what: &str) -> impl FnOnce(tonic::Status) -> E2eError {
    let what = what.to_owned();
    move |status| E2eError::Cri(format!("{what}: {}", status.message()))
}

impl Cri {
    /// Connects to containerd's socket.
    pub fn connect(socket: &Path) -> Result<Self> {
        let (runtime, channel) = connect(socket)?;
        Ok(Self { runtime, channel })
    }

    fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// `Version`: the runtime's name and version.
    pub fn version(&self) -> Result<String> {
        let reply = self
            .runtime
            .block_on(
                self.runtime_client()
                    .version(VersionRequest { version: "v1".into() }),
            )
            .map_err(rpc("Version"))?
            .into_inner();
        Ok(format!("{} {}", reply.runtime_name, reply.runtime_version))
    }

    /// Whether the image is present (`ImageStatus`).
    pub fn has_image(&self, image: &str) -> Result<bool> {
        let reply = self
            .runtime
            .block_on(
                ImageServiceClient::new(self.channel.clone()).image_status(ImageStatusRequest {
                    image: Some(image_spec(image)),
                    verbose: false,
                }),
            )
            .map_err(rpc("ImageStatus"))?
            .into_inner();
        Ok(reply.image.is_some())
    }

    /// The sandbox configuration kubelet would send for a pod.
    pub fn sandbox_config(name: &str, namespace: &str, uid: &str, log_dir: &Path) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.display().to_string(),
            labels: HashMap::from([("io.kubernetes.pod.name".into(), name.into())]),
            ..Default::default()
        }
    }

    /// `RunPodSandbox`: the sandbox id.
    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let reply = self
            .runtime
            .block_on(self.runtime_client().run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }))
            .map_err(rpc("RunPodSandbox"))?
            .into_inner();
        Ok(reply.pod_sandbox_id)
    }

    /// The sandbox's address from `PodSandboxStatus` (what kubelet reports as the pod IP).
    pub fn pod_ip(&self, sandbox: &str) -> Result<String> {
        let reply = self
            .runtime
            .block_on(self.runtime_client().pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.into(),
                verbose: false,
            }))
            .map_err(rpc("PodSandboxStatus"))?
            .into_inner();
        Ok(reply
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default())
    }

    /// `CreateContainer` + `StartContainer` running `command` in the sandbox: the container id.
    pub fn start_container(
        &self,
        sandbox: &str,
        config: &PodSandboxConfig,
        name: &str,
        command: &[&str],
    ) -> Result<String> {
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(image_spec(crate::containerd::IMAGE)),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            ..Default::default()
        };
        let id = self
            .runtime
            .block_on(self.runtime_client().create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(container),
                sandbox_config: Some(config.clone()),
            }))
            .map_err(rpc("CreateContainer"))?
            .into_inner()
            .container_id;
        self.runtime
            .block_on(self.runtime_client().start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .map_err(rpc("StartContainer"))?;
        Ok(id)
    }

    /// `ExecSync`.
    pub fn exec_sync(&self, container: &str, command: &[&str], timeout: Duration) -> Result<ExecOutput> {
        let reply = self
            .runtime
            .block_on(self.runtime_client().exec_sync(ExecSyncRequest {
                container_id: container.into(),
                cmd: command.iter().map(|s| (*s).to_owned()).collect(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(60),
            }))
            .map_err(rpc("ExecSync"))?
            .into_inner();
        Ok(ExecOutput {
            exit_code: reply.exit_code,
            stdout: String::from_utf8_lossy(&reply.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&reply.stderr).into_owned(),
        })
    }

    /// `StopContainer` + `RemoveContainer`.
    pub fn remove_container(&self, container: &str) -> Result<()> {
        self.runtime
            .block_on(self.runtime_client().stop_container(StopContainerRequest {
                container_id: container.into(),
                timeout: 5,
            }))
            .map_err(rpc("StopContainer"))?;
        self.runtime
            .block_on(self.runtime_client().remove_container(RemoveContainerRequest {
                container_id: container.into(),
            }))
            .map_err(rpc("RemoveContainer"))?;
        Ok(())
    }

    /// `StopPodSandbox`: the network is torn down (CNI DEL).
    pub fn stop_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.runtime
            .block_on(self.runtime_client().stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox.into(),
            }))
            .map_err(rpc("StopPodSandbox"))?;
        Ok(())
    }

    /// `RemovePodSandbox` (CNI DEL again, without a netns).
    pub fn remove_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.runtime
            .block_on(self.runtime_client().remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.into(),
            }))
            .map_err(rpc("RemovePodSandbox"))?;
        Ok(())
    }

    /// Sandbox ids (`ListPodSandbox`).
    pub fn sandboxes(&self) -> Result<Vec<String>> {
        let reply = self
            .runtime
            .block_on(
                self.runtime_client()
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
            )
            .map_err(rpc("ListPodSandbox"))?
            .into_inner();
        Ok(reply.items.into_iter().map(|s| s.id).collect())
    }

    /// Stops and removes every sandbox, ignoring errors (cleanup).
    pub fn remove_all_sandboxes(&self) {
        for sandbox in self.sandboxes().unwrap_or_default() {
            let _ = self.stop_pod_sandbox(&sandbox);
            let _ = self.remove_pod_sandbox(&sandbox);
        }
    }
}

fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}
