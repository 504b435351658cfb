//! vpcni's view of the Kubernetes side of custom networking: which ENIConfig this node uses, and where that
//! answer comes from.
//!
//! The original (amazon-vpc-cni-k8s) reads its node's labels and annotations and the cluster's ENIConfig
//! objects from the Kubernetes API. vpcni does the same ([`api`]), and can also read ENIConfig objects — and
//! the node's own labels — from a directory of YAML files ([`dir`]), for clusters without the CRD and for the
//! lab. Both feed one [`View`]; one selection rule ([`selection`]) picks the node's ENIConfig from it.
//!
//! The daemon never waits on the API: whatever the view holds answers at once, including "the API is
//! unreachable" with the error, which `/v1/eni-configs` and the metrics show. The pool engine knows none of
//! this; ipamd asks [`View::resolve`] when it is about to create an ENI.
//!
//! With the `test-support` feature, [`testing`] holds an in-process API server speaking the real API's JSON
//! (k8s-openapi types, watch streams with resource versions, 404, 403, dropped watches), since no API server
//! binary can run where vpcni's tests run.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod dir;
pub mod eniconfig;
pub mod selection;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod view;

pub use eniconfig::{EniConfig, EniConfigSpec, NodeMeta};
pub use selection::{Choice, ChosenBy, SelectionRule};
pub use view::{ApiState, Resolution, Source, View, ViewHandle};
