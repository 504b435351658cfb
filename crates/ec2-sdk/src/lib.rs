//! vpcni's EC2 backend on the official AWS SDK for Rust: the [`Ec2`](vpcni_ec2::Ec2) and
//! [`Imds`](vpcni_ec2::Imds) traits over `aws-sdk-ec2` and `aws-config`'s instance-metadata client.
//!
//! Region and credentials come from the SDK's standard chains, so IRSA and EKS Pod Identity work unchanged.
//! `AWS_EC2_ENDPOINT` overrides the EC2 endpoint as in the original; the SDK's own
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides instance metadata. Calls pass a client-side API budget
//! (a token bucket per class of call) before they reach EC2, and the SDK's standard retry mode retries
//! throttling and transient errors with exponential backoff and jitter.
//!
//! This crate is kept apart because the SDK is huge to compile: only binaries depend on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod budget;
mod convert;
mod ec2;
mod imds;

pub use budget::{ApiBudget, BudgetConfig, CallStats};
pub use ec2::{SdkEc2, SdkEc2Options};
pub use imds::SdkImds;
