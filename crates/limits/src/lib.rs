//! Facts about EC2 instance types that decide how many pods a node can address: ENIs per network card,
//! IPv4 addresses per ENI, hypervisor, bare metal, and trunk (branch ENI) capacity.
//!
//! The table is compiled into every binary (`data/ec2-instance-network-limits.csv`), so nothing reads a
//! file at run time; [`import`] regenerates it from `aws ec2 describe-instance-types` output when AWS
//! launches new types. The max-pods arithmetic lives in [`max_pods`] because the engine, the planner
//! and `vpcnictl` must all agree on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod import;
pub mod max_pods;
mod table;

pub use table::{
    Hypervisor, InstanceLimits, LimitsError, LimitsTable, NetworkCard, UnknownInstanceType, builtin,
};
