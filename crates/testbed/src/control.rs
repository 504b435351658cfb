//! Driving a [`TestNode`]: ipamd's life, its RPCs, the plugin.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tonic::transport::Channel;
use vpcni_rpc::cni_backend_client::CniBackendClient;
use vpcni_rpc::vpcni_backend_client::VpcniBackendClient;
use vpcni_rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, StatusReply, StatusRequest,
};

use crate::binaries::{bin_dir, binary};
use crate::ipamd::signal_and_wait;
use crate::plugin::{PluginCall, PluginOutput, execute, run_conflist};
use crate::{Result, TestNode, TestbedError, setup_error};

pub use vpcni_layout::NETWORK_NAME;

impl TestNode {
    /// Starts ipamd (keeping any checkpoint) and waits until its health service says SERVING. Fails with
    /// ipamd's log if it exits first.
    pub fn start_ipamd(&self) -> Result<()> {
        {
            let mut guard = self
                .ipamd
                .lock()
                .map_err(|_| setup_error("ipamd", "lock poisoned"))?;
            if let Some(child) = guard.as_mut()
                && child.try_wait().ok().flatten().is_none()
            {
                return Err(setup_error("start_ipamd", "ipamd is already running"));
            }
            *guard = Some(self.spawn_ipamd()?);
        }
        self.wait_serving()
    }

    /// SIGTERM: ipamd shuts down gracefully. Returns its exit status.
    pub fn stop_ipamd(&self) -> Option<ExitStatus> {
        self.signal_ipamd(Signal::SIGTERM)
    }

    /// kill -9: ipamd dies mid-flight, as in a node crash.
    pub fn kill_ipamd(&self) -> Option<ExitStatus> {
        self.signal_ipamd(Signal::SIGKILL)
    }

    /// SIGTERM then start again.
    pub fn restart_ipamd(&self) -> Result<()> {
        self.stop_ipamd();
        self.start_ipamd()
    }

    fn signal_ipamd(&self, signal: Signal) -> Option<ExitStatus> {
        let mut child = self.ipamd.lock().ok()?.take()?;
        signal_and_wait(&mut child, signal)
    }

    /// ipamd's pid while it runs.
    pub fn ipamd_pid(&self) -> Option<u32> {
        let mut guard = self.ipamd.lock().ok()?;
        let child = guard.as_mut()?;
        child.try_wait().ok().flatten().is_none().then(|| child.id())
    }

    /// ipamd's log so far.
    pub fn ipamd_log(&self) -> String {
        std::fs::read_to_string(self.ipamd_log_path()).unwrap_or_default()
    }

    /// Runs `work` with a gRPC channel to ipamd's socket (any service: CNIBackend, VpcniBackend, health).
    pub fn with_channel<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        crate::ipamd::with_channel(&self.socket_path(), work)
    }

    /// The AddNetwork request the plugin sends for `pod` (container id = pod name, eth0).
    pub fn add_request(&self, pod: &str) -> AddNetworkRequest {
        AddNetworkRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
            k8s_pod_name: pod.to_owned(),
            k8s_pod_namespace: "default".to_owned(),
            k8s_pod_infra_container_id: pod.to_owned(),
            netns: format!("/var/run/netns/{pod}"),
            if_name: "eth0".to_owned(),
            network_name: NETWORK_NAME.to_owned(),
            container_id: pod.to_owned(),
            requires_multi_nic_attachment: false,
            k8s_pod_uid: String::new(),
        }
    }

    /// The DelNetwork request the plugin sends for `pod`.
    pub fn del_request(&self, pod: &str) -> DelNetworkRequest {
        DelNetworkRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
            k8s_pod_name: pod.to_owned(),
            k8s_pod_namespace: "default".to_owned(),
            k8s_pod_infra_container_id: pod.to_owned(),
            reason: "PodDeleted".to_owned(),
            if_name: "eth0".to_owned(),
            network_name: NETWORK_NAME.to_owned(),
            container_id: pod.to_owned(),
            k8s_pod_uid: String::new(),
        }
    }

    /// AddNetwork for `pod`, straight to ipamd.
    pub fn ipamd_add(&self, pod: &str) -> Result<AddNetworkReply> {
        self.ipamd_add_request(self.add_request(pod))
    }

    /// AddNetwork with a request of the caller's making.
    pub fn ipamd_add_request(&self, request: AddNetworkRequest) -> Result<AddNetworkReply> {
        self.with_channel(|channel| async move { CniBackendClient::new(channel).add_network(request).await })?
            .map(tonic::Response::into_inner)
            .map_err(|status| TestbedError::Rpc(status.to_string()))
    }

    /// DelNetwork for `pod`, straight to ipamd.
    pub fn ipamd_del(&self, pod: &str) -> Result<DelNetworkReply> {
        let request = self.del_request(pod);
        self.with_channel(|channel| async move { CniBackendClient::new(channel).del_network(request).await })?
            .map(tonic::Response::into_inner)
            .map_err(|status| TestbedError::Rpc(status.to_string()))
    }

    /// ipamd's Status (what CNI STATUS reports).
    pub fn ipamd_status(&self) -> Result<StatusReply> {
        let request = StatusRequest {
            client_version: vpcni_rpc::CLIENT_VERSION.to_owned(),
        };
        self.with_channel(|channel| async move { VpcniBackendClient::new(channel).status(request).await })?
            .map(tonic::Response::into_inner)
            .map_err(|status| TestbedError::Rpc(status.to_string()))
    }

    /// Waits until ipamd is ready with at least `count` addresses free for pods.
    pub fn wait_for_addresses(&self, count: i32) -> Result<()> {
        self.wait_until(
            &format!("ipamd to have {count} free addresses"),
            Duration::from_secs(60),
            || {
                self.ipamd_status()
                    .is_ok_and(|s| s.ready && s.available_addresses >= count)
            },
        )
    }

    /// Polls `condition` every 50 ms until it holds; fails with ipamd's log after `deadline`. A deadline
    /// for things that must happen eventually, not a timing assertion.
    pub fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        while !condition() {
            if started.elapsed() > deadline {
                return Err(TestbedError::Timeout {
                    what: what.to_owned(),
                    seconds: deadline.as_secs(),
                    log: self.ipamd_log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The plugin's configuration for this node (`type: vpcni`, this node's socket and log file).
    pub fn cni_config_value(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "name": NETWORK_NAME,
            "type": "vpcni",
            "vethPrefix": "eni",
            "mtu": 9001,
            "ipamdSocket": self.socket_path().display().to_string(),
            "pluginLogFile": self.plugin_log_path().display().to_string(),
            "pluginLogLevel": "debug",
        })
    }

    /// [`TestNode::cni_config_value`] as text.
    pub fn cni_config(&self, cni_version: &str) -> String {
        self.cni_config_value(cni_version).to_string()
    }

    /// The `vpcni` binary.
    pub fn plugin_binary(&self) -> Result<PathBuf> {
        binary("vpcni")
    }

    /// Where plugins are looked up: the workspace's binaries, then Debian's reference plugins.
    pub fn plugin_dirs(&self) -> Result<Vec<PathBuf>> {
        Ok(vec![bin_dir()?, PathBuf::from("/usr/lib/cni")])
    }

    /// Runs the plugin (or `call.binary`) inside the node namespace as a runtime would.
    pub fn plugin(&self, call: &PluginCall) -> Result<PluginOutput> {
        let binary = match &call.binary {
            Some(path) => path.clone(),
            None => self.plugin_binary()?,
        };
        let cni_path = self
            .plugin_dirs()?
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        execute(self.name(), &binary, call, &cni_path)
    }

    /// Runs a conflist inside the node namespace (see [`run_conflist`]).
    pub fn conflist(
        &self,
        conflist: &Value,
        call: &PluginCall,
        prev_result: Option<&Value>,
    ) -> Result<PluginOutput> {
        run_conflist(self.name(), &self.plugin_dirs()?, conflist, call, prev_result)
    }
}
