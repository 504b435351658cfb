//! The EC2 simulator behind EC2's own wire protocol, so any EC2 client (the AWS SDK for Rust, boto3, the AWS
//! CLI) pointed at it with an endpoint override works unchanged, and the daemon's production code path runs
//! in the lab and the tests.
//!
//! - [`query`] parses EC2 Query API requests (form-encoded `Action=…&…`).
//! - [`actions`] runs them against the simulator and renders EC2's XML answers and error XML.
//! - [`imds`] serves IMDSv2 for whichever instance the caller is.
//! - [`topology`] reads the TOML file that declares a VPC, subnets and instances.
//! - [`server`] binds both listeners.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod actions;
pub mod imds;
pub mod query;
pub mod server;
pub mod topology;
mod xml;

pub use server::{EndpointConfig, EndpointHandle, serve, serve_with_clock};
pub use topology::{Topology, TopologyError};
