//! A real vpcni node for integration tests (dev-dependency only; needs root).
//!
//! [`TestNode`] builds, inside network namespaces of its own, what a node on EC2 looks like to ipamd and the
//! plugin, with the real binaries:
//!
//! - a node namespace `vt-tb-<pid>-<n>` with `lo` up and `eth0` carrying the instance's primary address
//!   and the primary ENI's MAC (a veth whose peer sits in a companion namespace `vt-tb-<pid>-<n>-w`,
//!   which also holds the subnet gateway, `.1`);
//! - `vpcnictl sim serve` inside the node namespace on 127.0.0.1:8787 (EC2) and 127.0.0.1:8788 (instance
//!   metadata, answering loopback callers as this node), with a generated topology and a state directory;
//! - `vpcni-ipamd` inside the node namespace (socket, checkpoint, introspection on 127.0.0.1:61679 and
//!   metrics on 127.0.0.1:61678, all private to the namespace), started and awaited until its gRPC health
//!   service says SERVING;
//! - an ENI hot-plug watcher: a thread that follows the simulator's `ec2-state.json` and, when EC2 shows
//!   an ENI attached to this instance (attachment complete), plugs a link named `eth<device index>` with
//!   that ENI's MAC into the node namespace, and removes it when the ENI is detached — ENIs appear to
//!   ipamd as they do on EC2.
//!
//! Helpers: ipamd's RPCs over the socket ([`TestNode::ipamd_add`], [`TestNode::ipamd_del`],
//! [`TestNode::ipamd_status`], or any call through [`TestNode::with_channel`]); the `vpcni` plugin binary
//! run inside the node namespace ([`TestNode::plugin`], [`PluginCall`]); pod namespaces
//! ([`TestNode::pod_netns`]); HTTP GETs of introspection and metrics from inside the namespace
//! ([`TestNode::introspection`], [`TestNode::metrics`]); ipamd's life ([`TestNode::kill_ipamd`] = kill -9,
//! [`TestNode::stop_ipamd`] = SIGTERM, [`TestNode::start_ipamd`], [`TestNode::restart_ipamd`], all keeping
//! the checkpoint); the simulator's account ([`TestNode::sim_state`]); commands in any namespace
//! ([`TestNode::exec`], [`exec_in`]).
//!
//! Every method takes `&self` (the node is `Sync`), so tests can call it from many threads at once.
//!
//! Binaries are taken from the directory above the test executable (`target/debug`), or from
//! `VPCNI_BIN_DIR`. `cargo test -p <crate>` builds only that crate's binaries: build the others first
//! (`cargo build -p vpcni-ipamd -p vpcnictl -p vpcni-cni`; `scripts/test.sh` builds the whole workspace).
//!
//! Dropping a node kills its processes and deletes its namespaces (pods included) and files, also when
//! the test panics. Leftovers of test processes that were killed outright (`vt-tb-<pid>-…` whose pid is
//! gone) are swept when the next node starts.
//!
//! ```no_run
//! use vpcni_testbed::{PluginCall, TestNode};
//!
//! let node = TestNode::builder().instance_type("m5.large").start().unwrap();
//! node.wait_for_addresses(1).unwrap();
//! let pod = node.pod_netns("web-0").unwrap();
//! let output = node.plugin(&PluginCall::add(&pod, "web-0", &node.cni_config("1.0.0"))).unwrap();
//! assert!(output.success(), "{output}");
//! ```

#![deny(missing_docs)]

mod binaries;
mod builder;
mod control;
mod hotplug;
mod http;
mod ipamd;
mod netns;
mod node;
mod plugin;
mod sim_state;

pub use builder::TestNodeBuilder;
pub use control::NETWORK_NAME;
pub use http::{HttpResponse, get as http_get};
pub use netns::{PodNetns, exec_in, in_netns, netns_path};
pub use node::{EC2_LISTEN, IMDS_LISTEN, INTROSPECTION_LISTEN, METRICS_LISTEN, TestNode};
pub use plugin::{PluginCall, PluginOutput, run_conflist};
pub use sim_state::{SimAttachment, SimEni, SimInstance, SimState};

/// What went wrong setting up or driving a test node. Messages carry the logs that explain them.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A setup step failed.
    #[error("{what}: {detail}")]
    Setup {
        /// The step.
        what: String,
        /// Why, with command output where there is some.
        detail: String,
    },
    /// A process of the node exited.
    #[error("{process} exited ({status}); its log ends with:\n{log}")]
    Died {
        /// `vpcni-ipamd` or `vpcnictl sim serve`.
        process: String,
        /// Exit status.
        status: String,
        /// The end of its stderr.
        log: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {seconds} s waiting for {what}{}", if log.is_empty() { String::new() } else { format!("; ipamd's log ends with:\n{log}") })]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
        /// ipamd's log tail.
        log: String,
    },
    /// A gRPC call to ipamd failed.
    #[error("ipamd RPC: {0}")]
    Rpc(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = TestbedError> = std::result::Result<T, E>;

pub(crate) fn setup_error(what: impl Into<String>, detail: impl ToString) -> TestbedError {
    TestbedError::Setup {
        what: what.into(),
        detail: detail.to_string(),
    }
}
