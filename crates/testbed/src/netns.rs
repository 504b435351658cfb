//! Named network namespaces: create, enter, run commands in, delete, and sweep what dead tests left.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use crate::{Result, setup_error};

/// Every namespace and directory this crate makes starts with this, followed by the creating pid.
pub(crate) const PREFIX: &str = "vt-tb-";

/// `/var/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

fn describe(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    )
}

/// Runs a command and fails with its output unless it succeeds.
pub(crate) fn run_checked(command: &mut Command) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| setup_error(format!("running {command:?}"), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(setup_error(format!("{command:?} failed"), describe(&output)))
    }
}

/// `ip -n <netns> <args>`.
pub(crate) fn ip(netns: &str, args: &[&str]) -> Result<Output> {
    run_checked(Command::new("ip").args(["-n", netns]).args(args))
}

/// Runs `args` inside the namespace (through `ip netns exec`, which also gives it a matching /sys) and
/// returns its output whatever its exit status.
pub fn exec_in(netns: &str, args: &[&str]) -> Result<Output> {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| setup_error(format!("running {args:?} in {netns}"), e))
}

/// Creates a namespace with `lo` up, replacing a leftover of the same name.
pub(crate) fn create_netns(name: &str) -> Result<()> {
    sweep_stale_once();
    if netns_path(name).exists() {
        delete_netns(name);
    }
    run_checked(Command::new("ip").args(["netns", "add", name]))?;
    ip(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Kills whatever still runs in the namespace, then deletes it. Never fails: cleanup is best effort.
pub(crate) fn delete_netns(name: &str) {
    if let Ok(output) = Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
    {
        for pid in String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Namespaces whose names start with `prefix`.
pub(crate) fn list_netns(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `work` on a thread that has entered the namespace; the caller's thread never moves. Processes that
/// `work` starts run in that namespace (without `ip netns exec`'s cost: what a benchmark wants).
pub fn in_netns<T: Send + 'static>(netns: &str, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = netns_path(netns);
    let file =
        std::fs::File::open(&path).map_err(|e| setup_error(format!("opening {}", path.display()), e))?;
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| setup_error("entering the namespace", e))?;
        Ok(work())
    })
    .join()
    .map_err(|_| setup_error("namespace worker", "panicked"))?
}

/// The pid in a `vt-tb-<pid>-…` name.
fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn is_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces and directories of test processes that are gone (killed by a timeout, say): their
/// Drop never ran. Once per process.
fn sweep_stale_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        for name in list_netns(PREFIX) {
            if owner_pid(&name).is_some_and(|pid| !is_alive(pid)) {
                delete_netns(&name);
            }
        }
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if owner_pid(&name).is_some_and(|pid| !is_alive(pid)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

/// A pod's network namespace; deleted on drop (and with its node).
#[derive(Debug)]
pub struct PodNetns {
    name: String,
    path: String,
}

impl PodNetns {
    pub(crate) fn create(name: String) -> Result<Self> {
        create_netns(&name)?;
        let path = netns_path(&name).display().to_string();
        Ok(Self { name, path })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`: what the runtime passes as `CNI_NETNS`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs a command in the pod.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        exec_in(&self.name, args)
    }

    /// Deletes the namespace now (a pod whose sandbox is already gone when DEL comes).
    pub fn remove(self) {}
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}
