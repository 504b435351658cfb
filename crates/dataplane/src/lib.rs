//! Programs a Linux node for vpcni over netlink (never by running `ip`): the per-pod wiring the CNI plugin
//! does (veth pair, /32, link-local gateway, static ARP, host route, policy rules), with the Amazon VPC
//! CNI's names, priorities and tables, so a node looks like one run by the original.
//!
//! The host side is programmed in the calling thread's network namespace; the pod side from a short-lived
//! thread that enters the pod's namespace and opens its own netlink socket there.
//!
//! ipamd's part of the node lives here too: secondary ENIs ([`eni`]), the node's policy rules ([`rules`]),
//! SNAT and CONNMARK through `iptables-restore` ([`iptables`]) and kernel settings ([`sysctl`]).

#![deny(missing_docs)]
// stdout is the CNI protocol: nothing here may print (clippy.toml also disallows `std::io::stdout`).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]
// nix's setns is safe; nothing here needs unsafe.
#![forbid(unsafe_code)]

pub mod egress;
pub mod eni;
pub mod iptables;
pub mod naming;
mod netlink;
pub mod pod;
pub mod rules;
pub mod sysctl;

pub use pod::{PodSpec, Wired, check_pod, setup_pod, teardown_pod, unroute_pod};

/// Errors programming the node.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// The pod's network namespace could not be entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A link that must exist does not.
    #[error("link {0} not found")]
    LinkNotFound(String),
    /// Anything else from the system.
    #[error("{0}")]
    System(String),
}
