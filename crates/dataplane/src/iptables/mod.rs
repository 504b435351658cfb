//! The node's SNAT and CONNMARK rules (as the original's `pkg/networkutils/network.go`), programmed through
//! `iptables-restore --noflush`: the input is built as data from what `iptables-save` shows, and applied in
//! one call per table, so every change is atomic; running it again with the same settings changes nothing,
//! and rules the settings no longer want (an exclusion removed, external SNAT switched on, an older release's
//! chains) are removed. Works with either iptables backend (nf_tables or legacy), whichever `iptables` is.
//!
//! Runs in the calling thread's network namespace (child processes inherit it).

mod desired;
pub mod egress;
mod plan;

use std::io::Write;
use std::process::{Command, Stdio};

pub use desired::{CONNMARK_CHAIN, SNAT_CHAIN, SnatPorts, SnatSettings, TableRules, desired, is_aws_chain};
pub use plan::{SavedTable, parse_saved, plan_table};

use crate::DataplaneError;

/// Seconds iptables-restore waits for the xtables lock (legacy backend; kube-proxy holds it at times).
const LOCK_WAIT_SECONDS: &str = "5";

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, DataplaneError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DataplaneError::System(format!("running {program}: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| DataplaneError::System(format!("writing to {program}: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| DataplaneError::System(format!("waiting for {program}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(DataplaneError::System(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Whether this iptables knows `--random-fully` (1.6.2 and later), from `iptables --version`.
pub fn supports_random_fully(version_output: &str) -> bool {
    let Some(version) = version_output
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v'))
    else {
        return false;
    };
    let numbers: Vec<u32> = version.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    let at = |i: usize| numbers.get(i).copied().unwrap_or(0);
    (at(0), at(1), at(2)) >= (1, 6, 2)
}

/// The current state of one table.
pub fn save(table: &str) -> Result<SavedTable, DataplaneError> {
    let text = run("iptables-save", &["-t", table], None)?;
    Ok(parse_saved(&text, table))
}

/// Brings the node's nat and mangle tables to what `settings` want; returns the number of rules and
/// chains changed (0 when everything was already in place).
pub fn apply(settings: &SnatSettings) -> Result<usize, DataplaneError> {
    let mut settings = settings.clone();
    if settings.ports == SnatPorts::RandomFully
        && !supports_random_fully(&run("iptables", &["--version"], None)?)
    {
        tracing::warn!("this iptables does not know --random-fully; using --random");
        settings.ports = SnatPorts::Random;
    }
    let mut changes = 0;
    for wanted in desired(&settings) {
        let saved = save(wanted.table)?;
        if let Some((input, count)) = plan_table(&saved, &wanted) {
            tracing::debug!(table = wanted.table, "iptables-restore --noflush:\n{input}");
            run(
                "iptables-restore",
                &["-w", LOCK_WAIT_SECONDS, "--noflush"],
                Some(&input),
            )?;
            changes += count;
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_fully_needs_1_6_2() {
        assert!(supports_random_fully("iptables v1.8.9 (nf_tables)"));
        assert!(supports_random_fully("iptables v1.6.2"));
        assert!(!supports_random_fully("iptables v1.6.1"));
        assert!(!supports_random_fully("iptables v1.4.21"));
        assert!(!supports_random_fully("garbage"));
    }
}
