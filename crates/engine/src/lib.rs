//! vpcni's IPAM engine: the node's ENIs, their secondary addresses and /28 prefixes, which pod holds which
//! address, and the warm-pool policy that decides when to ask EC2 for more or give some back.
//!
//! Pure logic: no I/O besides the checkpoint file helpers, no async, no clock. Time comes in as
//! [`Millis`]; the policy is a function from the pool's state to one [`Decision`], which the caller
//! carries out against EC2 and reports back. The daemon, the lab and the planner run this same code.
//!
//! The policy follows the Amazon VPC CNI's semantics (WARM_ENI_TARGET, WARM_IP_TARGET, MINIMUM_IP_TARGET,
//! WARM_PREFIX_TARGET, MAX_ENI, cooldown, ENI age and release timers) so users keep their settings; address
//! choice packs pods onto the fullest ENI and prefix, so surplus ENIs and prefixes empty out and can be freed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checkpoint;
pub mod forecast;
mod ipv6;
mod model;
mod policy;
mod pool;
pub mod settings;
pub mod subnets;

pub use ipv6::{IPV6_PREFIX_LEN, Ipv6Assignment, Ipv6Block, Ipv6Error};
pub use model::{Cidr, Eni, EniFlags, Millis, PodInfo, PodKey, Slot};
pub use policy::{Decision, NodeLimits, PoolConfig};
pub use pool::{Assignment, EniStats, GrowFailure, NoAddress, NoAddressReason, Pool, PoolError, Stats};
