//! Shared by the lab's tests: a lab with a unique namespace prefix and a temporary state directory, taken
//! down on drop even when the test fails, and a few probes. Needs root and the workspace's binaries
//! (`cargo build --workspace --bins`), as `scripts/test.sh` provides.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses part of this; a panic is a test failure

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vpcni_lab::{Lab, LabSpec, PodRecord};

static LABS: AtomicU32 = AtomicU32::new(0);

/// target/debug, where cargo puts the binaries the lab runs (tests live in target/debug/deps).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap()
    } else {
        deps
    };
    dir.to_path_buf()
}

/// `vt-lab-<pid>-<n>-`: unique per test process and lab, so tests run in parallel.
pub fn unique_prefix() -> String {
    format!(
        "vt-lab-{}-{}-",
        std::process::id(),
        LABS.fetch_add(1, Ordering::SeqCst)
    )
}

/// A spec for a test lab; the state directory lives under `dir`.
pub fn spec(dir: &tempfile::TempDir, nodes: u32, instance_type: &str) -> LabSpec {
    let mut spec = LabSpec::new(bin_dir());
    spec.prefix = unique_prefix();
    spec.state_dir = dir.path().join("lab");
    spec.nodes = nodes;
    spec.instance_type = instance_type.to_owned();
    // Short pool cycles keep the tests quick; the policy is the same.
    spec.ipamd_env = vec![("VPCNI_POOL_INTERVAL_MS".into(), "300".into())];
    spec
}

/// A lab that is taken down when dropped.
pub struct TestLab {
    lab: Option<Lab>,
    pub dir: tempfile::TempDir,
}

impl TestLab {
    pub fn up(nodes: u32, instance_type: &str, configure: impl FnOnce(&mut LabSpec)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(&dir, nodes, instance_type);
        configure(&mut spec);
        let lab = Lab::up(spec).unwrap_or_else(|e| panic!("lab up: {e}"));
        Self { lab: Some(lab), dir }
    }

    /// Takes the lab down now (and not again on drop).
    pub fn down(mut self) -> vpcni_lab::DownReport {
        self.lab.take().unwrap().down().unwrap()
    }

    pub fn pods(&mut self, node: &str, count: u32) -> Vec<PodRecord> {
        self.add_pods(node, count, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("adding {count} pods on {node}: {e}"))
    }

    /// Whether `from` gets an answer to one ping of `ip`.
    pub fn ping(&self, from: &str, ip: &str) -> bool {
        self.output(from, &["ping", "-c", "1", "-W", "1", ip])
            .unwrap()
            .status
            .success()
    }

    /// What the internet says `from`'s address is, or why it could not be asked.
    pub fn whoami(&self, from: &str) -> Result<String, String> {
        self.http_get(from, &vpcni_lab::internet::service_url(), Duration::from_secs(2))
            .unwrap()
            .map(|body| body.trim().to_owned())
            .map_err(|e| e.to_string())
    }

    /// `ip <args>` inside a lab namespace; panics with its stderr on failure.
    pub fn ip(&self, target: &str, args: &[&str]) -> String {
        let mut argv = vec!["ip"];
        argv.extend_from_slice(args);
        let output = self.output(target, &argv).unwrap();
        assert!(
            output.status.success(),
            "ip {} in {target}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `iptables <args>` inside a lab namespace.
    pub fn iptables(&self, target: &str, args: &[&str]) -> String {
        let mut argv = vec!["iptables", "-w"];
        argv.extend_from_slice(args);
        let output = self.output(target, &argv).unwrap();
        assert!(
            output.status.success(),
            "iptables {} in {target}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Packets counted by the first rule of `chain` in `table` whose text contains `comment`.
    pub fn counted(&self, target: &str, table: &str, chain: &str, comment: &str) -> u64 {
        let listing = self.iptables(target, &["-t", table, "-L", chain, "-v", "-x", "-n"]);
        listing
            .lines()
            .find(|l| l.contains(comment))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no rule {comment:?} in {chain}:\n{listing}"))
    }
}

impl Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.lab.as_ref().unwrap()
    }
}

impl DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        self.lab.as_mut().unwrap()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(lab) = self.lab.take()
            && let Err(error) = lab.down()
        {
            eprintln!("taking the test lab down: {error}");
        }
    }
}

/// Polls `check` until it gives `Some`, for at most `limit` (a bound so a broken lab fails rather than
/// hangs; not a timing assertion).
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
