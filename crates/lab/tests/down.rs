//! `lab down` leaves nothing behind: namespaces, links, iptables rules, processes and files are as they
//! were before `lab up`; it is safe to run twice, and it cleans up a lab whose state file is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::TestLab;

fn lines(program: &str, args: &[&str]) -> BTreeSet<String> {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(output.status.success(), "{program} {args:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // iptables-save's comments and counters change with traffic, not with rules.
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect()
}

fn host_links() -> BTreeSet<String> {
    lines("ip", &["-o", "link", "show"])
        .into_iter()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        })
        .collect()
}

/// Processes that belong to the lab under `state_dir`: named after it on their command line, or holding
/// it in their environment (ipamd's socket and checkpoint paths).
fn lab_processes(state_dir: &Path) -> Vec<String> {
    let needle = state_dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let text = |b: &[u8]| String::from_utf8_lossy(b).replace('\0', " ");
        if text(&cmdline).contains(&needle) || text(&environ).contains(&needle) {
            found.push(format!("{pid}: {}", text(&cmdline)));
        }
    }
    found
}

struct Snapshot {
    links: BTreeSet<String>,
    iptables: BTreeSet<String>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        links: host_links(),
        iptables: lines("iptables-save", &[]),
    }
}

fn lab_namespaces(prefix: &str) -> Vec<String> {
    vpcni_lab::netns_list()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn assert_nothing_left(before: &Snapshot, prefix: &str, state_dir: &Path) {
    assert_eq!(
        lab_namespaces(prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let after = snapshot();
    // Other tests may add and remove host links meanwhile; none may be one the lab makes.
    let new_links: Vec<&String> = after.links.difference(&before.links).collect();
    let lab_like = |name: &str| {
        name == "igw"
            || name.starts_with("eth")
            || (name.starts_with('n')
                && name[1..].contains('e')
                && name[1..2].bytes().all(|b| b.is_ascii_digit()))
            || (name.starts_with("eni") && name.len() == 14)
    };
    assert!(
        new_links.iter().all(|l| !lab_like(l)),
        "host links left behind: {new_links:?}"
    );
    assert_eq!(after.iptables, before.iptables, "the host's iptables changed");
    assert_eq!(
        lab_processes(state_dir),
        Vec::<String>::new(),
        "processes left behind"
    );
    assert!(!state_dir.exists(), "{} is still there", state_dir.display());
}

#[test]
fn down_leaves_nothing_behind_and_is_safe_twice() {
    let before = snapshot();
    let mut lab = TestLab::up(2, "t3.small", |_| {});
    let prefix = lab.state().spec.prefix.clone();
    let state_dir = lab.paths().dir.clone();
    lab.pods("node-1", 2);
    lab.pods("node-2", 1);
    assert!(
        lab_namespaces(&prefix).len() >= 7,
        "{:?}",
        lab_namespaces(&prefix)
    );
    assert!(
        lab_processes(&state_dir).len() >= 4,
        "{:?}",
        lab_processes(&state_dir)
    );

    let report = lab.down();
    assert!(report.namespaces.len() >= 7, "{report:?}");
    assert!(report.processes >= 4, "{report:?}");
    assert_nothing_left(&before, &prefix, &state_dir);

    let again = vpcni_lab::down_at(&state_dir, &prefix).unwrap();
    assert_eq!(again, vpcni_lab::DownReport::default());
}

#[test]
fn down_cleans_a_lab_whose_state_is_gone_by_its_names() {
    let before = snapshot();
    let mut lab = TestLab::up(1, "t3.small", |_| {});
    let prefix = lab.state().spec.prefix.clone();
    let state_dir = lab.paths().dir.clone();
    lab.pods("node-1", 1);
    std::fs::remove_dir_all(&state_dir).unwrap();

    let report = vpcni_lab::down_at(&state_dir, &prefix).unwrap();
    assert!(report.namespaces.len() >= 4, "{report:?}");
    // Without the state file, the processes are found inside the lab's namespaces.
    assert!(report.processes >= 3, "{report:?}");
    assert_nothing_left(&before, &prefix, &state_dir);
    drop(lab); // its own down now finds nothing, and must not fail
}

/// `lab up --prefix x` then `lab down` without `--prefix`: the state names the prefix, and the lab's
/// namespaces go (they were left behind, with "0 namespaces removed", when only the flag counted).
#[test]
fn down_takes_the_prefix_from_the_labs_state() {
    let before = snapshot();
    let mut lab = TestLab::up(1, "t3.small", |_| {});
    let prefix = lab.state().spec.prefix.clone();
    let state_dir = lab.paths().dir.clone();
    lab.pods("node-1", 1);

    // A prefix no lab uses, standing for the default the command line would give.
    let report = vpcni_lab::down_at(&state_dir, "vt-no-such-lab-").unwrap();
    assert!(report.namespaces.len() >= 4, "{report:?}");
    assert!(
        report.namespaces.iter().all(|n| n.starts_with(&prefix)),
        "{report:?}"
    );
    assert_nothing_left(&before, &prefix, &state_dir);
    drop(lab); // its own down now finds nothing, and must not fail
}
