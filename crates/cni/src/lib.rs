//! The vpcni CNI plugin (`type: vpcni`): the container runtime runs it for each pod; it asks ipamd for a VPC
//! address and wires the pod. [`egress`] is the chained `vpcni-egress` plugin (the original's `egress-cni`).
//!
//! [`spec`] is the CNI protocol (1.1.0, also 0.3.x, 0.4.0 and 1.0.0 configurations): everything read from
//! the runtime is validated there before anything touches the node.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// stdout is the CNI protocol: nothing here may print (clippy.toml also disallows `std::io::stdout`).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

pub mod commands;
pub mod egress;
pub mod ipamd;
pub mod logging;
pub mod netns;
pub mod record;
pub mod spec;
