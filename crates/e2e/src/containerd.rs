//! Debian's containerd as a process of the test: its own root, state, socket and configuration, its CRI
//! plugin pointed at a CNI configuration directory and plugin directory, running inside a node's network
//! namespace (so the plugin it runs wires pods on that node).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cri::Cri;
use crate::{E2eError, Result, run};

/// The image (sandbox and containers) every test imports.
pub const IMAGE: &str = "localhost/vpcni-bb:latest";

/// Where a running containerd keeps everything.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    child: Option<Child>,
}

/// What containerd's CRI plugin should use.
#[derive(Debug, Clone)]
pub struct ContainerdSpec {
    /// Private directory (created; removed on drop).
    pub dir: PathBuf,
    /// Network namespace containerd runs in (a node's).
    pub netns: String,
    /// CNI plugin directory (must hold `loopback` besides the network's plugins).
    pub cni_bin_dir: PathBuf,
    /// CNI configuration directory (the first conflist in it is used).
    pub cni_conf_dir: PathBuf,
}

impl Containerd {
    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// containerd's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Writes the configuration, starts containerd inside `spec.netns`, waits for its CRI service, and
    /// imports the busybox image as the sandbox image.
    pub fn start(spec: &ContainerdSpec) -> Result<Self> {
        let dir = spec.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| E2eError::io(&dir, e))?;
        let mut containerd = Self { dir, child: None };
        let config = containerd.dir.join("config.toml");
        std::fs::write(&config, containerd.config(spec)).map_err(|e| E2eError::io(&config, e))?;
        let log =
            std::fs::File::create(containerd.log_path()).map_err(|e| E2eError::io(&containerd.dir, e))?;
        let log_err = log.try_clone().map_err(|e| E2eError::io(&containerd.dir, e))?;
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Started from a thread inside the node's namespace, not through `ip netns exec`: that would give
        // containerd a fresh /sys without the cgroup mounts runc needs.
        containerd.child = Some(spawn_in_netns(&spec.netns, command)?);
        containerd.wait_ready()?;
        let image = crate::image::build_busybox_image(&containerd.dir.join("image"), IMAGE)?;
        run(Command::new("ctr")
            .arg("--address")
            .arg(containerd.socket())
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(&image))?;
        Ok(containerd)
    }

    fn config(&self, spec: &ContainerdSpec) -> String {
        let dir = self.dir.display();
        format!(
            r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        Root = "{dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
"#,
            bin = spec.cni_bin_dir.display(),
            conf = spec.cni_conf_dir.display(),
        )
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(E2eError::Setup(format!(
                    "containerd exited ({status}); its log ends with:\n{}",
                    self.log_tail()
                )));
            }
            if self.socket().exists() && Cri::connect(&self.socket()).and_then(|cri| cri.version()).is_ok() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(E2eError::Setup(format!(
                    "containerd's CRI service did not answer within 60 s; its log ends with:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Shims of this containerd (they outlive it if it is killed).
    fn shim_pids(&self) -> Vec<i32> {
        let needle = self.socket().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    let text = String::from_utf8_lossy(&cmdline);
                    text.contains("containerd-shim") && text.contains(&needle)
                })
            })
            .collect()
    }
}

/// Starts `command` from a thread that entered `netns`; the child lives in that namespace.
fn spawn_in_netns(netns: &str, mut command: Command) -> Result<Child> {
    crate::in_netns(netns, "starting containerd", move || {
        command.spawn().map_err(|e| {
            E2eError::Setup(format!(
                "starting containerd: {e}; install it with `apt-get install -y containerd runc`"
            ))
        })
    })
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Sandboxes first, through CRI, so the plugin's DEL runs and containerd unmounts what it mounted.
        if let Ok(cri) = Cri::connect(&self.socket()) {
            cri.remove_all_sandboxes();
        }
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.shim_pids() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        // Whatever is still mounted under the root (rootfs of killed containers) before removing files.
        crate::unmount_all_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
