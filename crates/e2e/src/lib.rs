//! End-to-end tests with a real container runtime (support code; the tests are in `tests/`).
//!
//! [`containerd::Containerd`] runs Debian's containerd as a process of the test, with its own root, state,
//! socket and configuration, inside a node's network namespace, its CRI plugin pointed at the node's CNI
//! configuration and at a plugin directory holding `vpcni` (and `loopback`, which the CRI plugin always
//! runs). [`cri::Cri`] drives it over its gRPC socket the way kubelet does (the `k8s-cri` crate), and
//! [`image`] builds the only image it needs from busybox-static, with no registry.
//!
//! Needs root, containerd, runc, busybox-static and containernetworking-plugins (scripts/test.sh installs
//! them); `protoc` (protobuf-compiler) to build the CRI bindings.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod containerd;
pub mod cri;
pub mod image;
pub mod kubelet;
pub mod podman;

use std::path::Path;
use std::process::Command;

/// Why an end-to-end step failed.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// Setting something up failed.
    #[error("{0}")]
    Setup(String),
    /// A CRI call failed.
    #[error("CRI {0}")]
    Cri(String),
}

impl E2eError {
    fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Setup(format!("{}: {error}", path.display()))
    }
}

/// Runs `work` on a thread that entered the network namespace `/var/run/netns/<netns>`, so what it starts
/// lives there (not `ip netns exec`, which would give runtimes a /sys without the cgroup mounts runc needs).
/// `what` names the work in errors.
pub(crate) fn in_netns<T: Send + 'static>(
    netns: &str,
    what: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    use std::os::fd::AsFd;
    let path = Path::new("/var/run/netns").join(netns);
    let file = std::fs::File::open(&path).map_err(|e| E2eError::io(&path, e))?;
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| E2eError::Setup(format!("entering {}: {e}", path.display())))?;
        work()
    })
    .join()
    .map_err(|_| E2eError::Setup(format!("the thread for {what} panicked")))?
}

/// Unmounts, deepest first, everything mounted under `root` (rootfs and namespaces a killed runtime left),
/// so the directory can be removed. Best effort, for clean-up in `Drop`: a mount that will not go makes the
/// following `remove_dir_all` fail, and that failure is what the caller reports.
pub(crate) fn unmount_all_under(root: &Path) {
    let root = root.display().to_string();
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        // See above: the removal that follows reports what stayed mounted.
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = E2eError> = std::result::Result<T, E>;

/// Runs a command; fails with its output unless it succeeds.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| E2eError::Setup(format!("running {command:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(E2eError::Setup(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        )))
    }
}
