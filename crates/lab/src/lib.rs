//! VPC in a box: the lab.
//!
//! One machine, no AWS account: network namespaces stand in for a VPC and its instances, and the real
//! `vpcni-ipamd` and `vpcni` plugin run on them unchanged, talking to the EC2 simulator over EC2's own API
//! and instance metadata.
//!
//! - A **router** namespace is the VPC fabric. It holds every subnet's gateway and 169.254.169.254, and
//!   one link per attached ENI. It routes each address EC2 assigned to an ENI (primary, secondary, /28
//!   prefix) to that ENI's link, with a permanent neighbour for the ENI's MAC, as the VPC delivers to the
//!   ENI it knows; and with `rp_filter=1` on those links it drops packets whose source is not assigned to
//!   the ENI they came from, as EC2's source/destination check does. It is also the internet gateway:
//!   a node's primary address leaves as the node's public address, other private sources are dropped.
//! - The **fabric** process runs in the router namespace ([`fabric`]): it embeds the EC2 simulator
//!   endpoint (EC2 API and IMDSv2) and, whenever the simulator attaches or detaches an ENI, plugs or
//!   unplugs a link with that ENI's MAC into the node (`eth0`, `eth1`, … by device index) and programs
//!   the router.
//! - **Node** namespaces run one `vpcni-ipamd` each, with a CNI configuration for the `vpcni` plugin.
//! - **Pods** are namespaces wired by the real plugin through the CNI protocol ([`pods`]).
//! - An **internet** namespace runs a what-is-my-IP HTTP service ([`internet`]).
//!
//! [`Lab`] is the entry point: `Lab::up`, `Lab::open`, `add_pods`, `status`, `exec`, `down`. Tests take a
//! lab of their own with [`LabSpec::isolated`] and hold it in a [`LabGuard`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use vpcni_lab::{LabGuard, LabSpec};
//!
//! let mut spec = LabSpec::isolated("mysuite");
//! spec.nodes = 2;
//! let mut lab = LabGuard::up(spec)?;
//! let pod = lab.add_pods("node-1", 1, Duration::from_secs(60))?.remove(0);
//! // A container runtime on node-2: CNI config, plugin directory, and a command inside the node.
//! let conf_dir = lab.cni_conf_dir("node-2")?;
//! let plugins = lab.bin_dir().to_owned();
//! let mut runtime = lab.command("node-2", "containerd")?;
//! # let _ = (pod, conf_dir, plugins, &mut runtime);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cmd;
mod down;
mod exec;
pub mod fabric;
mod guard;
pub mod internet;
mod lab;
mod node;
pub mod pods;
mod router;
pub mod soak;
pub mod spec;
pub mod state;
pub mod status;

pub use cmd::{LabProcess, find_tool, netns_list};
pub use down::{DownReport, down_at};
pub use guard::LabGuard;
pub use lab::{BINARIES, Lab, Target, preflight};
pub use pods::{PodFailure, PodsError};
pub use spec::{LabSpec, workspace_bin_dir};
pub use state::{LabState, NodeRecord, PodRecord};
pub use status::LabStatus;

use std::path::PathBuf;

/// Why the lab could not do what was asked. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The request itself is invalid.
    #[error("{0}")]
    Spec(String),
    /// Namespaces and iptables need root.
    #[error("the lab creates network namespaces and iptables rules, which needs root: run it as root (sudo)")]
    NotRoot,
    /// A system tool is missing.
    #[error("`{tool}` is not installed: install it with `apt-get install -y {package}`")]
    MissingTool {
        /// The tool.
        tool: String,
        /// The Debian package that has it.
        package: String,
    },
    /// The lab's binaries are not built.
    #[error(
        "{} not found in {}: build them with `cargo build --workspace --bins` (from the repository root; \
         the lab runs target/debug/…)",
        .missing.join(", "),
        .dir.display()
    )]
    MissingBinaries {
        /// Where they were looked for.
        dir: PathBuf,
        /// Which are missing.
        missing: Vec<String>,
    },
    /// A lab already runs with this state directory.
    #[error(
        "a lab is already up (state in {}): see it with `{status}`, or remove it with `{down}`",
        .state_dir.display()
    )]
    AlreadyUp {
        /// Its state directory.
        state_dir: PathBuf,
        /// The command that shows it.
        status: String,
        /// The command that removes it.
        down: String,
    },
    /// Namespaces of an earlier lab are left over.
    #[error("namespaces of an earlier lab are still there ({}): remove them with `{down}`", .namespaces.join(", "))]
    Leftovers {
        /// The namespaces.
        namespaces: Vec<String>,
        /// The command that removes them.
        down: String,
    },
    /// No lab at this state directory.
    #[error("no lab is up (no state in {}): start one with `vpcnictl lab up`", .0.display())]
    NotUp(PathBuf),
    /// A system command failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is unreadable.
    #[error("{}: {detail}; remove the lab with `vpcnictl lab down`", .path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A lab process (fabric, ipamd, internet service) did not start.
    #[error("{what} did not start: {detail}\n--- last lines of {} ---\n{log_tail}", .log.display())]
    Process {
        /// Which process.
        what: String,
        /// Why.
        detail: String,
        /// Its log.
        log: PathBuf,
        /// The end of that log.
        log_tail: String,
    },
    /// A pod, node or namespace name the lab does not know.
    #[error("{name:?} is not in the lab; known: {known}")]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// Names it does know.
        known: String,
    },
}

/// `vpcnictl lab [--state DIR] [--prefix P] <subcommand>`, with the flags only where they differ from
/// the defaults, so a message's advice can be pasted as is.
pub fn lab_command(state_dir: &std::path::Path, prefix: &str, subcommand: &str) -> String {
    let mut command = "vpcnictl lab".to_owned();
    if state_dir != std::path::Path::new(spec::DEFAULT_STATE_DIR) {
        command.push_str(&format!(" --state {}", state_dir.display()));
    }
    if prefix != spec::DEFAULT_PREFIX {
        command.push_str(&format!(" --prefix {prefix}"));
    }
    format!("{command} {subcommand}")
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
