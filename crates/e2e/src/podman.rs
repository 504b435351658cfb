//! Debian's podman (4.3) with its CNI backend as a second real runtime: its own `containers.conf` and
//! `storage.conf` in a private directory (graph root, run root, locks, events all inside it), run inside a
//! node's network namespace, its CNI configuration directory the node's. podman reads CNI results strictly
//! (it parses every `mac`), which containerd does not.
//!
//! Settings that work on these machines (notes in the project's runtime reference): `runtime = "runc"`
//! (crun refuses the hybrid cgroup layout), `nofile` and `nproc` ulimits no higher than the hard limits (the
//! sandbox has no CAP_SYS_RESOURCE), cgroupfs, events in a file, file locks (not the machine-wide shared
//! memory segment, which every podman on the machine would share), vfs storage (no mounts to leave behind).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{E2eError, Result};

/// The image every container runs (busybox-static; its default command is a pause process).
pub const IMAGE: &str = "localhost/vpcni-bb:latest";

/// A podman with private storage and configuration.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    netns: String,
    /// Network namespaces podman made for containers (`/run/netns/netns-…`), removed on drop if podman
    /// left any.
    sandboxes: std::sync::Mutex<Vec<String>>,
}

/// Where podman finds its network.
#[derive(Debug, Clone)]
pub struct PodmanSpec {
    /// Private directory (created; removed on drop).
    pub dir: PathBuf,
    /// Network namespace podman runs in (a node's): the plugin it runs wires pods on that node.
    pub netns: String,
    /// CNI plugin directory (`vpcni`, `loopback`).
    pub cni_bin_dir: PathBuf,
    /// CNI configuration directory (the node's conflist).
    pub cni_conf_dir: PathBuf,
}

impl Podman {
    /// Writes the configuration and loads the busybox image.
    pub fn start(spec: &PodmanSpec) -> Result<Self> {
        let scratch = spec.dir.join("scratch");
        std::fs::create_dir_all(&scratch).map_err(|e| E2eError::io(&scratch, e))?;
        let podman = Self {
            dir: spec.dir.clone(),
            netns: spec.netns.clone(),
            sandboxes: std::sync::Mutex::new(Vec::new()),
        };
        let containers_conf = podman.dir.join("containers.conf");
        std::fs::write(&containers_conf, podman.containers_conf(spec)?)
            .map_err(|e| E2eError::io(&containers_conf, e))?;
        let storage_conf = podman.dir.join("storage.conf");
        std::fs::write(&storage_conf, podman.storage_conf()).map_err(|e| E2eError::io(&storage_conf, e))?;
        let image = crate::image::build_busybox_image(&podman.dir.join("image"), IMAGE)?;
        let image = image.display().to_string();
        podman.ok(&["load", "--quiet", "--input", &image])?;
        Ok(podman)
    }

    fn containers_conf(&self, spec: &PodmanSpec) -> Result<String> {
        let hard = hard_nofile_limit()?;
        let dir = self.dir.display();
        Ok(format!(
            r#"[containers]
default_ulimits = ["nofile={hard}:{hard}", "nproc=32768:32768"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}"]
network_config_dir = "{conf}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
tmp_dir = "{dir}/tmp"
static_dir = "{dir}/static"
volume_path = "{dir}/volumes"
lock_type = "file"
"#,
            bin = spec.cni_bin_dir.display(),
            conf = spec.cni_conf_dir.display(),
        ))
    }

    fn storage_conf(&self) -> String {
        let dir = self.dir.display();
        format!(
            r#"[storage]
driver = "vfs"
graphroot = "{dir}/graph"
runroot = "{dir}/run"
"#
        )
    }

    /// Runs `podman <args>` inside the node's namespace with this podman's configuration.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let mut command = Command::new("podman");
        command
            .args(args)
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null());
        let shown = format!("podman {}", args.join(" "));
        crate::in_netns(&self.netns, &shown.clone(), move || {
            command.output().map_err(|e| {
                E2eError::Setup(format!(
                    "{shown}: {e}; install podman with `apt-get install -y podman`"
                ))
            })
        })
    }

    /// Runs `podman <args>`; its standard output, or an error with what it printed.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.output(args)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(E2eError::Setup(format!(
                "podman {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim(),
            )))
        }
    }

    fn environment(&self) -> Vec<(OsString, OsString)> {
        vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("CONTAINERS_CONF".into(), self.dir.join("containers.conf").into()),
            (
                "CONTAINERS_STORAGE_CONF".into(),
                self.dir.join("storage.conf").into(),
            ),
            // Nothing from the user's or the machine's registries configuration matters without pulls.
            ("HOME".into(), self.dir.clone().into()),
            ("TMPDIR".into(), self.dir.join("scratch").into()),
        ]
    }

    /// `podman inspect` of a container, as JSON.
    pub fn inspect(&self, container: &str) -> Result<serde_json::Value> {
        let text = self.ok(&["container", "inspect", container])?;
        let mut list: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| E2eError::Setup(format!("podman inspect {container}: {e}: {text}")))?;
        let first = list.get_mut(0).map(serde_json::Value::take);
        let inspected =
            first.ok_or_else(|| E2eError::Setup(format!("podman inspect {container}: {text}")))?;
        if let Some(sandbox) = inspected["NetworkSettings"]["SandboxKey"].as_str()
            && !sandbox.is_empty()
            && let Ok(mut sandboxes) = self.sandboxes.lock()
            && !sandboxes.iter().any(|s| s == sandbox)
        {
            sandboxes.push(sandbox.to_owned());
        }
        Ok(inspected)
    }

    /// The address podman recorded for `container` on `network` (from the plugin's result), and the
    /// network namespace it was given.
    pub fn address(&self, container: &str, network: &str) -> Result<(String, String)> {
        let inspected = self.inspect(container)?;
        let settings = &inspected["NetworkSettings"];
        let ip = settings["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let sandbox = settings["SandboxKey"].as_str().unwrap_or_default().to_owned();
        Ok((ip, sandbox))
    }

    /// Processes of this podman that outlive a command: conmon (its command line names our directories)
    /// and the containers' processes (their root file system is in our storage).
    fn own_processes(&self) -> Vec<i32> {
        let needle = self.dir.display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let named = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle));
                let rooted = std::fs::read_link(format!("/proc/{pid}/root"))
                    .is_ok_and(|root| root.starts_with(&self.dir));
                named || rooted
            })
            .collect()
    }

    /// Removes every container (their DEL runs) and, if anything is still there, kills it; then the
    /// namespaces podman made and every file. Runs on drop, so a failed test cleans up too.
    fn clean_up(&mut self) {
        // A failed removal is what the rest of this function is for: kill and delete by hand.
        let _ = self.output(&["rm", "--all", "--force", "--time", "0"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.own_processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in self.own_processes() {
            // Gone already is fine; there is nothing else to do about one that cannot be killed.
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let sandboxes = self.sandboxes.lock().map(|s| s.clone()).unwrap_or_default();
        for sandbox in sandboxes {
            if Path::new(&sandbox).exists() {
                // podman left it mounted: unmount and remove, as `ip netns del` would. Failures leave a
                // namespace file the next test does not use (names are random).
                let _ = nix::mount::umount2(sandbox.as_str(), nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(&sandbox);
            }
        }
        crate::unmount_all_under(&self.dir);
        if let Err(error) = std::fs::remove_dir_all(&self.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "podman test directory {} not removed: {error}",
                self.dir.display()
            );
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// The hard limit on open files (`ulimit -Hn`), from /proc/self/limits: podman's default `nofile` is higher,
/// and without CAP_SYS_RESOURCE runc cannot raise a limit past the hard one.
fn hard_nofile_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")
        .map_err(|e| E2eError::io(Path::new("/proc/self/limits"), e))?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|hard| hard.parse().ok())
        .ok_or_else(|| E2eError::Setup(format!("no open-files limit in /proc/self/limits: {limits}")))
}
