//! Shared by the lab's tests: a lab of its own (unique namespace prefix and state directory), taken down on
//! drop even when the test fails, and a few probes. Needs root and the workspace's binaries
//! (`cargo build --workspace --bins`), as `scripts/test.sh` provides.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses part of this; a panic is a test failure

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use vpcni_lab::{Lab, LabGuard, LabSpec, PodRecord};

/// A spec for a test lab: its own namespaces and state directory, short pool cycles.
pub fn spec(nodes: u32, instance_type: &str) -> LabSpec {
    let mut spec = LabSpec::isolated("lab");
    spec.nodes = nodes;
    spec.instance_type = instance_type.to_owned();
    // Short pool cycles keep the tests quick; the policy is the same.
    spec.ipamd_env = vec![("VPCNI_POOL_INTERVAL_MS".into(), "300".into())];
    spec
}

/// How long a probe that must succeed is retried (a bound so a broken lab fails rather than hangs).
const REACH_WITHIN: Duration = Duration::from_secs(30);

/// A lab that is taken down when dropped, with probes.
pub struct TestLab {
    lab: LabGuard,
}

impl TestLab {
    pub fn up(nodes: u32, instance_type: &str, configure: impl FnOnce(&mut LabSpec)) -> Self {
        let mut spec = spec(nodes, instance_type);
        configure(&mut spec);
        let lab = LabGuard::up(spec).unwrap_or_else(|e| panic!("lab up: {e}"));
        Self { lab }
    }

    /// Takes the lab down now.
    pub fn down(self) -> vpcni_lab::DownReport {
        self.lab.down().unwrap()
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

    /// Whether `from` reaches `ip`: one ping, retried for up to 30 s (a bound, not a timing assertion; the
    /// first packet may wait on neighbour resolution on a loaded machine). Negative checks use [`ping`]
    /// once: a slow answer only makes them pass, never fail.
    ///
    /// [`ping`]: TestLab::ping
    pub fn reaches(&self, from: &str, ip: &str) -> bool {
        self.reaches_with(|| self.ping(from, ip))
    }

    /// Retries `probe` for up to 30 s; whether it ever succeeded.
    pub fn reaches_with(&self, mut probe: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + REACH_WITHIN;
        loop {
            if probe() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the internet says `from`'s address is, asked until it answers (for up to 30 s).
    pub fn whoami_eventually(&self, from: &str) -> String {
        eventually(&format!("{from} reaching the internet"), REACH_WITHIN, || {
            self.whoami(from).ok()
        })
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
        &self.lab
    }
}

impl DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
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
