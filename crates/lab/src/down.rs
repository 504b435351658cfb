//! Taking a lab down: its processes (those recorded in its state, then any still inside its namespaces),
//! its namespaces (which takes every link, route, neighbour and iptables rule inside them along), and the
//! files it made in its state directory, and nothing else.

use std::path::Path;
use std::time::Duration;

use crate::LabError;
use crate::cmd::{
    LabProcess, cmdline, environ_contains, ip, netns_exists, netns_list, netns_pids, pid_alive,
};
use crate::spec::Names;
use crate::state::{LabState, StatePaths};

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Processes stopped.
    pub processes: usize,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Whether a state directory was removed.
    pub state_removed: bool,
}

/// Takes down the lab with state in `state_dir`, also when its state file is gone (namespaces are then
/// found by name under `prefix`). The state records the prefix the lab was made with, and that one wins:
/// `lab up --prefix x` then `lab down` without it must still remove the lab's namespaces. Safe to run twice.
pub fn down_at(state_dir: &Path, prefix: &str) -> Result<DownReport, LabError> {
    let paths = StatePaths::new(state_dir);
    let mut report = DownReport::default();
    let state = LabState::load(&paths).ok().flatten();
    let names = Names::new(state.as_ref().map_or(prefix, |state| state.spec.prefix.as_str()));
    if let Some(state) = &state {
        let dir = paths.dir.display().to_string();
        let pids = state
            .nodes
            .iter()
            .filter_map(|n| n.ipamd_pid)
            .chain(state.fabric_pid)
            .chain(state.internet_pid);
        for pid in pids {
            // Only a process that is still ours: pid numbers get reused.
            let line = cmdline(pid);
            let ours = (line.contains("vpcni-ipamd") && environ_contains(pid, &dir))
                || (line.contains("vpcnictl") && line.contains(&dir));
            if ours && pid_alive(pid) {
                LabProcess::adopt(pid).stop(Duration::from_secs(3));
                report.processes += 1;
            }
        }
    }
    let mut namespaces: Vec<String> = netns_list().into_iter().filter(|n| names.owns(n)).collect();
    // Pods before nodes before the router: each goes while what it is plugged into still exists.
    namespaces.sort_by_key(|n| (!n.contains("pod-"), !n.contains("node-"), n.clone()));
    for netns in namespaces {
        for pid in netns_pids(&netns) {
            LabProcess::adopt(pid).stop(Duration::from_secs(2));
            report.processes += 1;
        }
        if netns_exists(&netns) {
            ip(None, &["netns", "del", &netns])?;
        }
        report.namespaces.push(netns);
    }
    if paths.dir.exists() {
        for entry in paths.owned_entries() {
            let removed = if entry.is_dir() {
                std::fs::remove_dir_all(&entry)
            } else {
                std::fs::remove_file(&entry)
            };
            match removed {
                Ok(()) => report.state_removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LabError::io(&entry)(e)),
            }
        }
        // Only if nothing but the lab's files was in it.
        if std::fs::remove_dir(&paths.dir).is_ok() {
            report.state_removed = true;
        }
    }
    Ok(report)
}
