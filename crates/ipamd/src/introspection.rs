//! The introspection HTTP server (default 127.0.0.1:61679) and the metrics endpoint (default :61678).
//!
//! Paths and JSON shapes are the original's, so scripts that curl `/v1/enis` keep working; `/v1/pods`
//! (removed from the original in 2020, still in its troubleshooting guide) and `/v1/pool` are vpcni's.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;

use crate::metrics::Metrics;

/// `IPAMKey` in `/v1/enis`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpamKey {
    /// CNI network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// Blanked, as the original does since v1.23 (container ids are not for every reader).
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Blanked likewise.
    #[serde(rename = "ifName")]
    pub if_name: String,
}

/// `IPAMMetadata` in `/v1/enis`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpamMetadata {
    /// Pod namespace.
    #[serde(rename = "k8sPodNamespace", skip_serializing_if = "String::is_empty")]
    pub pod_namespace: String,
    /// Pod name.
    #[serde(rename = "k8sPodName", skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
    /// Interfaces of the pod.
    #[serde(rename = "interfacesCount", skip_serializing_if = "is_zero")]
    pub interfaces_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One address in `/v1/enis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressInfo {
    /// The address.
    pub address: String,
    /// Who holds it (empty when free).
    #[serde(rename = "IPAMKey")]
    pub ipam_key: IpamKey,
    /// The holder's pod.
    #[serde(rename = "IPAMMetadata")]
    pub ipam_metadata: IpamMetadata,
    /// RFC 3339; Go's zero time when never assigned.
    pub assigned_time: String,
    /// RFC 3339; Go's zero time when never released.
    pub unassigned_time: String,
}

/// One CIDR (a /32 secondary address or a /28 prefix) in `/v1/enis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrInfo {
    /// The CIDR.
    pub cidr: String,
    /// Addresses known in it (assigned or used before).
    #[serde(rename = "IPAddresses")]
    pub ip_addresses: BTreeMap<String, AddressInfo>,
    /// Whether it is a delegated prefix.
    pub is_prefix: bool,
    /// "4", or "6" for the /80 of IPv6 mode.
    pub address_family: String,
}

/// One ENI in `/v1/enis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniInfo {
    /// ENI id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Primary ENI.
    #[serde(rename = "IsPrimary")]
    pub is_primary: bool,
    /// Trunk ENI.
    #[serde(rename = "IsTrunk")]
    pub is_trunk: bool,
    /// EFA ENI.
    #[serde(rename = "IsEFA")]
    pub is_efa: bool,
    /// Device number.
    #[serde(rename = "DeviceNumber")]
    pub device_number: u32,
    /// Its CIDRs.
    #[serde(rename = "AvailableIPv4Cidrs")]
    pub available_ipv4_cidrs: BTreeMap<String, CidrInfo>,
    /// IPv6 mode: the ENI's /80 (on the primary ENI), with the addresses pods hold; empty otherwise.
    #[serde(rename = "IPv6Cidrs")]
    pub ipv6_cidrs: BTreeMap<String, CidrInfo>,
    /// Subnet tagged `kubernetes.io/role/cni=0`.
    #[serde(rename = "IsExcludedForPodIPs")]
    pub is_excluded_for_pod_ips: bool,
    /// Route table.
    #[serde(rename = "RouteTableID")]
    pub route_table_id: u32,
    /// Subnet.
    #[serde(rename = "SubnetID")]
    pub subnet_id: String,
}

/// One network card's datastore in `/v1/enis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardInfo {
    /// Addresses on the card (in IPv6 mode the /80's size, 2^48, as the original counts it).
    #[serde(rename = "TotalIPs")]
    pub total_ips: u64,
    /// Addresses held by pods.
    #[serde(rename = "AssignedIPs")]
    pub assigned_ips: u32,
    /// ENIs by id.
    #[serde(rename = "ENIs")]
    pub enis: BTreeMap<String, EniInfo>,
}

/// What the introspection server reads from the daemon.
pub trait IntrospectionSource: Send + Sync + 'static {
    /// `/v1/enis`: keyed by network card index.
    fn enis(&self) -> BTreeMap<String, CardInfo>;
    /// `/v1/pods`: one entry per pod.
    fn pods(&self) -> Value;
    /// `/v1/pool`: stats, recent decisions and why.
    fn pool(&self) -> Value;
    /// `/v1/eni-configs`: the ENIConfig name chosen for this node.
    fn eni_config(&self) -> Value;
    /// `/v1/networkutils-env-settings`.
    fn networkutils_env(&self) -> Value;
    /// `/v1/ipamd-env-settings`.
    fn ipamd_env(&self) -> Value;
}

const PATHS: [&str; 6] = [
    "/v1/enis",
    "/v1/eni-configs",
    "/v1/networkutils-env-settings",
    "/v1/ipamd-env-settings",
    "/v1/pods",
    "/v1/pool",
];

/// The introspection routes.
pub fn introspection_router(source: Arc<dyn IntrospectionSource>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { Json(serde_json::json!({ "AvailableCommands": PATHS })) }),
        )
        .route(
            "/v1/enis",
            get(|State(s): State<Arc<dyn IntrospectionSource>>| async move { Json(s.enis()) }),
        )
        .route(
            "/v1/pods",
            get(|State(s): State<Arc<dyn IntrospectionSource>>| async move { Json(s.pods()) }),
        )
        .route(
            "/v1/pool",
            get(|State(s): State<Arc<dyn IntrospectionSource>>| async move { Json(s.pool()) }),
        )
        .route(
            "/v1/eni-configs",
            get(|State(s): State<Arc<dyn IntrospectionSource>>| async move { Json(s.eni_config()) }),
        )
        .route(
            "/v1/networkutils-env-settings",
            get(|State(s): State<Arc<dyn IntrospectionSource>>| async move { Json(s.networkutils_env()) }),
        )
        .route(
            "/v1/ipamd-env-settings",
            get(|State(s): State<Arc<dyn IntrospectionSource>>| async move { Json(s.ipamd_env()) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "AvailableCommands": PATHS })),
            )
        })
        .with_state(source)
}

/// The metrics route.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                    .body(metrics.render().into())
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }),
        )
        .with_state(metrics)
}
