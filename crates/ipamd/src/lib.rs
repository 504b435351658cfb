//! vpcni's node daemon, `vpcni-ipamd`: keeps the node's pool of VPC addresses, serves the CNI plugin over
//! gRPC on a unix socket, checkpoints its state and programs the node.
//!
//! Configuration comes from the environment with the Amazon VPC CNI's variable names and defaults
//! ([`config`]), so a manifest moves over unchanged; unlike the original, a bad value stops the daemon with a
//! line naming the variable instead of falling back silently.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod cooldown;
pub mod custom_networking;
pub mod discovery;
pub mod enis;
pub mod host;
pub mod introspection;
pub mod journal;
pub mod leaked;
pub mod metered;
pub mod metrics;
pub mod node;
pub mod pool_loop;
pub mod reconcile;
pub mod server;
pub mod startup;
mod views;
