//! What the dataplane's namespace tests share: throwaway network namespaces, `ip` to look at them, and a
//! thread that works inside one, as the plugin process and ipamd do.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses its own subset

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Network namespaces `vt-dp-<pid>-<n>` with `lo` up, deleted on drop even when the test fails.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    pub fn new(count: usize) -> Self {
        let names: Vec<String> = (0..count)
            .map(|_| {
                format!(
                    "vt-dp-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                )
            })
            .collect();
        for name in &names {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(std::process::Stdio::null())
                .status();
            assert!(
                Command::new("ip")
                    .args(["netns", "add", name])
                    .status()
                    .unwrap()
                    .success(),
                "ip netns add {name}"
            );
            ip(name, &["link", "set", "lo", "up"]);
        }
        Self(names)
    }

    pub fn path(&self, i: usize) -> String {
        format!("/var/run/netns/{}", self.0[i])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// `ip -n <netns> <args>`, its stdout; panics when ip fails.
pub fn ip(netns: &str, args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `work` on a thread inside the namespace at `path`, as the plugin process or ipamd would be.
pub fn on_node<T: Send + 'static>(path: String, work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).unwrap();
        nix::sched::setns(
            std::os::fd::AsFd::as_fd(&netns),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .unwrap();
        work()
    })
    .join()
    .unwrap()
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs `probe` (a ping, say) until it succeeds, for up to 30 s, and returns its last output: the first
/// packet may wait on neighbour resolution on a busy machine (a bound, not a timing assertion). Checks that
/// something is unreachable run their probe once instead.
pub fn until_success(mut probe: impl FnMut() -> std::process::Output) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let output = probe();
        if output.status.success() || std::time::Instant::now() >= deadline {
            return output;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
