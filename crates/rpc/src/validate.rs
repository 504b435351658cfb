//! What ipamd checks in every request before anything reaches its address book: the client version and the
//! allocation key (network name, container id, interface name). Kept here, beside the messages, so it can
//! be tested and fuzzed without the daemon (`fuzz/fuzz_targets/rpc_requests.rs`).
//!
//! A refused request gets `FAILED_PRECONDITION` (a plugin of another release) or `INVALID_ARGUMENT` (a
//! malformed key), with a message naming what was wrong.

use tonic::Status;

use crate::{
    AddNetworkRequest, CLIENT_VERSION, DelNetworkRequest, GarbageCollectRequest, ORIGINAL_RELEASE_LINE,
    StatusRequest, accepts_client_version,
};

/// Longest network name served (a DNS subdomain, as the plugin checks it).
pub const MAX_NETWORK_NAME: usize = 253;
/// Longest container id served.
pub const MAX_CONTAINER_ID: usize = 256;
/// Linux interface names are at most 15 bytes.
pub const MAX_IF_NAME: usize = 15;

/// Refuses a plugin whose `ClientVersion` ipamd does not serve (see [`accepts_client_version`]).
pub fn client_version(version: &str) -> Result<(), Status> {
    if accepts_client_version(version) {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "plugin client version {version:?} is not served: ipamd serves {CLIENT_VERSION:?} and the original's \
             {ORIGINAL_RELEASE_LINE}x plugins; install the plugin from the same vpcni release"
        )))
    }
}

/// Checks an allocation key: network name and container id of letters, digits, `_`, `.` and `-` (at most
/// [`MAX_NETWORK_NAME`] and [`MAX_CONTAINER_ID`] bytes), an interface name of 1 to [`MAX_IF_NAME`] bytes
/// without `/` or white space.
pub fn attachment_key(network_name: &str, container_id: &str, if_name: &str) -> Result<(), Status> {
    check_network_name(network_name)?;
    if !token(container_id, MAX_CONTAINER_ID) {
        return Err(Status::invalid_argument(format!(
            "invalid container id {container_id:?}"
        )));
    }
    if if_name.is_empty()
        || if_name.len() > MAX_IF_NAME
        || if_name.bytes().any(|b| b == b'/' || b.is_ascii_whitespace())
    {
        return Err(Status::invalid_argument(format!(
            "invalid interface name {if_name:?}"
        )));
    }
    Ok(())
}

/// Letters, digits, `_`, `.` and `-`, 1 to `max` bytes.
fn token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_network_name(network_name: &str) -> Result<(), Status> {
    if token(network_name, MAX_NETWORK_NAME) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid network name {network_name:?}"
        )))
    }
}

/// `AddNetwork`: the client version, then the allocation key.
pub fn add_network(request: &AddNetworkRequest) -> Result<(), Status> {
    client_version(&request.client_version)?;
    attachment_key(&request.network_name, &request.container_id, &request.if_name)
}

/// `DelNetwork`: the client version, then the allocation key.
pub fn del_network(request: &DelNetworkRequest) -> Result<(), Status> {
    client_version(&request.client_version)?;
    attachment_key(&request.network_name, &request.container_id, &request.if_name)
}

/// `Status`: the client version.
pub fn status(request: &StatusRequest) -> Result<(), Status> {
    client_version(&request.client_version)
}

/// `GarbageCollect`: the client version, the network name (checked even when no attachment is valid any
/// more: it selects which allocations are released), then each valid attachment's key under it (an
/// attachment's own `NetworkName` is not used).
pub fn garbage_collect(request: &GarbageCollectRequest) -> Result<(), Status> {
    client_version(&request.client_version)?;
    check_network_name(&request.network_name)?;
    for attachment in &request.valid_attachments {
        attachment_key(
            &request.network_name,
            &attachment.container_id,
            &attachment.if_name,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn a_kubelet_key_is_served() {
        assert!(attachment_key("aws-cni", &"a".repeat(64), "eth0").is_ok());
        assert!(attachment_key(&"n".repeat(253), &"c".repeat(256), &"i".repeat(15)).is_ok());
    }

    #[test]
    fn malformed_keys_are_invalid_arguments_naming_the_part() {
        for (network, container, ifname, part) in [
            ("", "c", "eth0", "network name"),
            ("a/b", "c", "eth0", "network name"),
            (&"n".repeat(254)[..], "c", "eth0", "network name"),
            ("n", "", "eth0", "container id"),
            ("n", "c d", "eth0", "container id"),
            ("n", &"c".repeat(257)[..], "eth0", "container id"),
            ("n", "c", "", "interface name"),
            ("n", "c", "eth/0", "interface name"),
            ("n", "c", "eth 0", "interface name"),
            ("n", "c", &"i".repeat(16)[..], "interface name"),
        ] {
            let status = attachment_key(network, container, ifname).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().contains(part), "{}", status.message());
        }
    }

    /// Found by the rpc_requests fuzzer: with no valid attachments, GC's network name reached the address
    /// book unchecked (the name was only checked as part of each attachment's key).
    #[test]
    fn garbage_collect_checks_its_network_name_without_attachments_too() {
        let request = GarbageCollectRequest {
            client_version: CLIENT_VERSION.to_owned(),
            network_name: "vpcn:".to_owned(),
            valid_attachments: Vec::new(),
        };
        let status = garbage_collect(&request).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("network name"), "{}", status.message());
        let fine = GarbageCollectRequest {
            network_name: "vpcni".to_owned(),
            ..request
        };
        assert!(garbage_collect(&fine).is_ok());
    }

    #[test]
    fn another_release_is_a_failed_precondition() {
        assert!(client_version(CLIENT_VERSION).is_ok());
        let status = client_version("v1.22.0").unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("\"v1.22.0\""), "{}", status.message());
    }
}
