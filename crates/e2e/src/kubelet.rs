//! Plays kubelet for one pod of a rendered Kubernetes manifest: the pod template (as JSON, from YAML that Helm
//! rendered) becomes the CRI calls kubelet makes for it — a sandbox on the host network or not, privileged
//! when a container is, host-path volumes created and bind-mounted, the environment (with the downward API's
//! `spec.nodeName` and `metadata.name`), the security context (privileged, capabilities, read-only root,
//! no new privileges, kubelet's default masked and read-only paths), init containers run to completion one
//! after the other, then the containers started; exec probes run through `ExecSync`.
//!
//! What it leaves out (no API server here): image pulls (images are imported), `configMap`/`secret`
//! volumes, resources and cgroups, restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, KeyValue, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StatusRequest, StopContainerRequest, StopPodSandboxRequest,
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::{E2eError, Result};

pub use k8s_cri::v1::ContainerState;

/// Paths kubelet masks in every unprivileged container (`securitycontext.DefaultMaskedPaths`).
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths kubelet makes read-only in every unprivileged container (`securitycontext.DefaultReadonlyPaths`):
/// among them /proc/sys, which is why only a privileged container can set a sysctl.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A CRI client doing what kubelet does for a pod.
#[derive(Debug)]
pub struct Kubelet {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    node_name: String,
    log_dir: PathBuf,
}

/// A pod kubelet started.
#[derive(Debug, Clone)]
pub struct RunningPod {
    /// Pod name.
    pub name: String,
    /// Sandbox id.
    pub sandbox: String,
    /// Container name → id, for the (non-init) containers.
    pub containers: HashMap<String, String>,
    /// The pod template's spec.
    pub spec: Value,
}

fn rpc(what: &str) -> impl FnOnce(tonic::Status) -> E2eError {
    let what = what.to_owned();
    move |status| E2eError::Cri(format!("{what}: {}", status.message()))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn setup(message: String) -> E2eError {
    E2eError::Setup(message)
}

impl Kubelet {
    /// Connects to the runtime's socket. `node_name` answers the downward API's `spec.nodeName`;
    /// container logs go under `log_dir`.
    pub fn connect(socket: &Path, node_name: &str, log_dir: &Path) -> Result<Self> {
        let (runtime, channel) = crate::cri::connect(socket)?;
        std::fs::create_dir_all(log_dir).map_err(|e| E2eError::io(log_dir, e))?;
        Ok(Self {
            runtime,
            channel,
            node_name: node_name.to_owned(),
            log_dir: log_dir.to_path_buf(),
        })
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// The runtime's `NetworkReady` condition (what kubelet turns into the node's Ready condition): true
    /// once the CNI configuration is loaded.
    pub fn network_ready(&self) -> Result<bool> {
        let reply = self
            .runtime
            .block_on(self.client().status(StatusRequest { verbose: false }))
            .map_err(rpc("Status"))?
            .into_inner();
        Ok(reply
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.r#type == "NetworkReady" && c.status))
    }

    /// Runs the pod of `template` (a pod template: `metadata` and `spec`) as kubelet would: sandbox, init
    /// containers one by one to completion (each must exit 0), then the containers. `before_containers`
    /// runs between the last init container and the first container (to look at the node then).
    pub fn run_pod(
        &self,
        template: &Value,
        name: &str,
        namespace: &str,
        uid: &str,
        before_containers: impl FnOnce() -> Result<()>,
    ) -> Result<RunningPod> {
        let spec = &template["spec"];
        let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        let init_containers = spec["initContainers"].as_array().cloned().unwrap_or_default();
        let any_privileged = containers
            .iter()
            .chain(&init_containers)
            .any(|c| c["securityContext"]["privileged"].as_bool() == Some(true));
        let mut labels: HashMap<String, String> = template["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        labels.insert("io.kubernetes.pod.name".into(), name.into());
        labels.insert("io.kubernetes.pod.namespace".into(), namespace.into());
        labels.insert("io.kubernetes.pod.uid".into(), uid.into());
        let pod_log_dir = self.log_dir.join(format!("{namespace}_{name}_{uid}"));
        std::fs::create_dir_all(&pod_log_dir).map_err(|e| E2eError::io(&pod_log_dir, e))?;
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: if host_network { String::new() } else { name.into() },
            log_directory: pod_log_dir.display().to_string(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: if host_network {
                            NamespaceMode::Node
                        } else {
                            NamespaceMode::Pod
                        } as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    privileged: any_privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let volumes = self.host_path_volumes(spec)?;
        let sandbox = self
            .runtime
            .block_on(self.client().run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            }))
            .map_err(rpc("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;
        for container in &init_containers {
            let id =
                self.create_and_start(&sandbox, &sandbox_config, container, &volumes, name, host_network)?;
            let exit = self.wait_exited(&id, Duration::from_secs(120))?;
            if exit != 0 {
                let log = std::fs::read_to_string(pod_log_dir.join(container_log_name(container)))
                    .unwrap_or_default();
                return Err(setup(format!(
                    "init container {} exited with {exit}; its log:\n{log}",
                    container["name"]
                )));
            }
        }
        before_containers()?;
        let mut started = HashMap::new();
        for container in &containers {
            let id =
                self.create_and_start(&sandbox, &sandbox_config, container, &volumes, name, host_network)?;
            started.insert(container["name"].as_str().unwrap_or_default().to_owned(), id);
        }
        Ok(RunningPod {
            name: name.into(),
            sandbox,
            containers: started,
            spec: spec.clone(),
        })
    }

    /// `hostPath` volumes by name; `DirectoryOrCreate` and `FileOrCreate` are created as kubelet does.
    fn host_path_volumes(&self, spec: &Value) -> Result<HashMap<String, String>> {
        let mut volumes = HashMap::new();
        for volume in spec["volumes"].as_array().cloned().unwrap_or_default() {
            let name = volume["name"].as_str().unwrap_or_default().to_owned();
            let Some(path) = volume["hostPath"]["path"].as_str() else {
                return Err(setup(format!(
                    "volume {name}: only hostPath volumes are supported here: {volume}"
                )));
            };
            match volume["hostPath"]["type"].as_str().unwrap_or("") {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(path).map_err(|e| E2eError::io(Path::new(path), e))?;
                }
                "FileOrCreate" => {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| E2eError::io(Path::new(path), e))?;
                }
                "" | "Directory" | "File" => {
                    if !Path::new(path).exists() {
                        return Err(setup(format!("hostPath {path} of volume {name} does not exist")));
                    }
                }
                other => return Err(setup(format!("hostPath type {other} is not supported here"))),
            }
            volumes.insert(name, path.to_owned());
        }
        Ok(volumes)
    }

    fn create_and_start(
        &self,
        sandbox: &str,
        sandbox_config: &PodSandboxConfig,
        container: &Value,
        volumes: &HashMap<String, String>,
        pod_name: &str,
        host_network: bool,
    ) -> Result<String> {
        let name = container["name"].as_str().unwrap_or_default();
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().cloned().unwrap_or_default() {
            let volume = mount["name"].as_str().unwrap_or_default();
            let host_path = volumes
                .get(volume)
                .ok_or_else(|| setup(format!("container {name} mounts unknown volume {volume}")))?;
            if mount.get("subPath").is_some() {
                return Err(setup(format!(
                    "container {name}: subPath mounts are not supported here"
                )));
            }
            mounts.push(Mount {
                container_path: mount["mountPath"].as_str().unwrap_or_default().into(),
                host_path: host_path.clone(),
                readonly: mount["readOnly"].as_bool().unwrap_or(false),
                ..Default::default()
            });
        }
        let mut envs = Vec::new();
        for env in container["env"].as_array().cloned().unwrap_or_default() {
            let key = env["name"].as_str().unwrap_or_default().to_owned();
            let value = if let Some(value) = env["value"].as_str() {
                value.to_owned()
            } else {
                match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    Some("spec.nodeName") => self.node_name.clone(),
                    Some("metadata.name") => pod_name.to_owned(),
                    _ => return Err(setup(format!("env {key}: unsupported source {env}"))),
                }
            };
            envs.push(KeyValue { key, value });
        }
        let context = &container["securityContext"];
        let privileged = context["privileged"].as_bool().unwrap_or(false);
        let security = LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: strings(&context["capabilities"]["add"]),
                drop_capabilities: strings(&context["capabilities"]["drop"]),
                ..Default::default()
            }),
            privileged,
            namespace_options: Some(NamespaceOption {
                network: if host_network {
                    NamespaceMode::Node
                } else {
                    NamespaceMode::Pod
                } as i32,
                pid: NamespaceMode::Container as i32,
                ipc: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            readonly_rootfs: context["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
            no_new_privs: context["allowPrivilegeEscalation"].as_bool() == Some(false),
            masked_paths: if privileged {
                Vec::new()
            } else {
                MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect()
            },
            readonly_paths: if privileged {
                Vec::new()
            } else {
                READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect()
            },
            ..Default::default()
        };
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: container["image"].as_str().unwrap_or_default().into(),
                ..Default::default()
            }),
            command: strings(&container["command"]),
            args: strings(&container["args"]),
            envs,
            mounts,
            log_path: container_log_name(container),
            linux: Some(LinuxContainerConfig {
                security_context: Some(security),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .runtime
            .block_on(self.client().create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            }))
            .map_err(rpc(&format!("CreateContainer {name}")))?
            .into_inner()
            .container_id;
        self.runtime
            .block_on(self.client().start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .map_err(rpc(&format!("StartContainer {name}")))?;
        Ok(id)
    }

    /// The container's state and exit code.
    pub fn container_state(&self, id: &str) -> Result<(ContainerState, i32)> {
        let status = self
            .runtime
            .block_on(self.client().container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))
            .map_err(rpc("ContainerStatus"))?
            .into_inner()
            .status
            .ok_or_else(|| E2eError::Cri(format!("ContainerStatus {id}: no status")))?;
        Ok((status.state(), status.exit_code))
    }

    fn wait_exited(&self, id: &str, timeout: Duration) -> Result<i32> {
        let started = Instant::now();
        loop {
            let (state, code) = self.container_state(id)?;
            if state == ContainerState::ContainerExited {
                return Ok(code);
            }
            if started.elapsed() > timeout {
                return Err(setup(format!("container {id} still {state:?} after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the container's exec probe (`readinessProbe` or `livenessProbe`) once: whether it passed.
    pub fn probe(&self, pod: &RunningPod, container: &str, which: &str) -> Result<bool> {
        let spec = pod.spec["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == container))
            .ok_or_else(|| setup(format!("no container {container}")))?;
        let probe = &spec[which];
        let command = strings(&probe["exec"]["command"]);
        if command.is_empty() {
            return Err(setup(format!("{container} has no exec {which}")));
        }
        let timeout = probe["timeoutSeconds"].as_i64().unwrap_or(1);
        let id = &pod.containers[container];
        let reply = self
            .runtime
            .block_on(self.client().exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: command,
                timeout,
            }))
            .map_err(rpc(&format!("ExecSync {which}")))?
            .into_inner();
        Ok(reply.exit_code == 0)
    }

    /// Deletes the pod as kubelet does: each container stopped with the pod's grace period (SIGTERM, then
    /// SIGKILL when it runs out), then the sandbox stopped and removed.
    pub fn delete_pod(&self, pod: &RunningPod) -> Result<()> {
        let grace = pod.spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
        for id in pod.containers.values() {
            self.runtime
                .block_on(self.client().stop_container(StopContainerRequest {
                    container_id: id.clone(),
                    timeout: grace,
                }))
                .map_err(rpc("StopContainer"))?;
        }
        self.runtime
            .block_on(self.client().stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.sandbox.clone(),
            }))
            .map_err(rpc("StopPodSandbox"))?;
        self.runtime
            .block_on(self.client().remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.sandbox.clone(),
            }))
            .map_err(rpc("RemovePodSandbox"))?;
        Ok(())
    }

    /// A container's log, as the runtime wrote it.
    pub fn container_log(&self, pod: &RunningPod, namespace: &str, uid: &str, container: &Value) -> String {
        let path = self
            .log_dir
            .join(format!("{namespace}_{}_{uid}", pod.name))
            .join(container_log_name(container));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

fn container_log_name(container: &Value) -> String {
    format!("{}_0.log", container["name"].as_str().unwrap_or("container"))
}
