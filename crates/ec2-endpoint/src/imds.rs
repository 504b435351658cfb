//! IMDSv2 for the simulated instances: `PUT /latest/api/token`, then GETs under `/latest/meta-data/` with
//! the token. The caller's source address picks the instance (its primary address); loopback callers get
//! the default instance, so a daemon under test on this machine sees "its" node.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use vpcni_ec2::Imds;
use vpcni_ec2::sim::Simulator;

const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// Shared state of the metadata service.
#[derive(Debug, Clone)]
pub struct ImdsState {
    sim: Simulator,
    default_instance: Arc<Mutex<Option<String>>>,
    tokens: Arc<Mutex<HashSet<String>>>,
}

impl ImdsState {
    /// Serves `sim`; loopback callers are `default_instance`.
    pub fn new(sim: Simulator, default_instance: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            sim,
            default_instance,
            tokens: Arc::default(),
        }
    }

    fn instance_for(&self, caller: IpAddr) -> Option<String> {
        if caller.is_loopback() {
            if let Some(id) = self.default_instance.lock().ok().and_then(|d| d.clone()) {
                return Some(id);
            }
            return self
                .sim
                .instances()
                .into_iter()
                .find(|i| i.state == "running")
                .map(|i| i.instance_id);
        }
        self.sim
            .instances()
            .into_iter()
            .find(|i| i.state == "running" && IpAddr::V4(i.private_ip) == caller)
            .map(|i| i.instance_id)
    }
}

/// The metadata routes.
pub fn router(state: ImdsState) -> Router {
    Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/{*path}", get(metadata))
        .with_state(state)
}

async fn token(State(state): State<ImdsState>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get(TOKEN_TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match ttl {
        Some(ttl @ 1..=21_600) => {
            let token = format!(
                "vpcni-imds-{:016x}",
                state.sim.now_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ state.tokens.lock().map(|t| t.len() as u64).unwrap_or(0)
            );
            if let Ok(mut tokens) = state.tokens.lock() {
                tokens.insert(token.clone());
            }
            // Real IMDS echoes the TTL; SDK clients refuse a token without it.
            ([(TOKEN_TTL_HEADER, ttl.to_string())], token).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "missing or invalid X-aws-ec2-metadata-token-ttl-seconds (1 to 21600)",
        )
            .into_response(),
    }
}

fn plain(text: String) -> Response {
    text.into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

async fn metadata(
    State(state): State<ImdsState>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    let token_ok = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            state
                .tokens
                .lock()
                .map(|tokens| tokens.contains(t))
                .unwrap_or(false)
        });
    if !token_ok {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let Some(instance_id) = state.instance_for(caller.ip()) else {
        return not_found();
    };
    let imds = state.sim.imds_for(&instance_id);
    let answer = match path.trim_end_matches('/') {
        "instance-id" => imds.instance_id().await.map(plain),
        "instance-type" => imds.instance_type().await.map(plain),
        "local-ipv4" => imds.local_ipv4().await.map(|ip| plain(ip.to_string())),
        "mac" => imds.primary_mac().await.map(plain),
        "placement/region" => imds.region().await.map(plain),
        "placement/availability-zone" => imds.availability_zone().await.map(plain),
        "network/interfaces/macs" => imds.macs().await.map(|macs| {
            plain(
                macs.iter()
                    .map(|m| format!("{m}/"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        }),
        other => match other
            .strip_prefix("network/interfaces/macs/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((mac, field)) => match imds.interface(mac).await {
                Ok(interface) => {
                    let lines = |items: Vec<String>| {
                        if items.is_empty() {
                            None
                        } else {
                            Some(items.join("\n"))
                        }
                    };
                    let value = match field {
                        "device-number" => Some(interface.device_number.to_string()),
                        "network-card" => Some(interface.network_card.to_string()),
                        "interface-id" => Some(interface.interface_id),
                        "subnet-id" => Some(interface.subnet_id),
                        "subnet-ipv4-cidr-block" => Some(interface.subnet_ipv4_cidr_block.to_string()),
                        "local-ipv4s" => {
                            lines(interface.local_ipv4s.iter().map(ToString::to_string).collect())
                        }
                        "ipv4-prefix" => {
                            lines(interface.ipv4_prefixes.iter().map(ToString::to_string).collect())
                        }
                        "vpc-ipv4-cidr-blocks" => lines(
                            interface
                                .vpc_ipv4_cidr_blocks
                                .iter()
                                .map(ToString::to_string)
                                .collect(),
                        ),
                        "vpc-ipv4-cidr-block" => {
                            interface.vpc_ipv4_cidr_blocks.first().map(ToString::to_string)
                        }
                        "security-group-ids" => lines(interface.security_group_ids),
                        "ipv6s" => lines(interface.ipv6s.iter().map(ToString::to_string).collect()),
                        "ipv6-prefix" => {
                            lines(interface.ipv6_prefixes.iter().map(ToString::to_string).collect())
                        }
                        "subnet-ipv6-cidr-blocks" => lines(
                            interface
                                .subnet_ipv6_cidr_blocks
                                .iter()
                                .map(ToString::to_string)
                                .collect(),
                        ),
                        "vpc-ipv6-cidr-blocks" => lines(
                            interface
                                .vpc_ipv6_cidr_blocks
                                .iter()
                                .map(ToString::to_string)
                                .collect(),
                        ),
                        "mac" => Some(interface.mac),
                        _ => None,
                    };
                    return value.map_or_else(not_found, plain);
                }
                Err(_) => return not_found(),
            },
            None => return not_found(),
        },
    };
    answer.unwrap_or_else(|_| not_found())
}
