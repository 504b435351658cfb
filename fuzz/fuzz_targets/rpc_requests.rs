//! The gRPC requests ipamd accepts on its socket (`rpc.CNIBackend`, `rpc.VpcniBackend`): bytes decoded as
//! the message tonic would decode, then the validation ipamd applies before anything reaches its address
//! book (`vpcni_rpc::validate`, which `crates/ipamd/src/server.rs` calls).
//!
//! Input: one byte choosing the method (AddNetwork, DelNetwork, Status, GarbageCollect), then the message.
//!
//! Checks: a decoded message encodes and decodes to itself; an accepted request carries only keys of the
//! documented shape (network name and container id of letters, digits, `_`, `.`, `-`, at most 253 and 256
//! bytes; an interface name of 1 to 15 bytes without `/` or white space) and a served client version; a
//! refused one is FAILED_PRECONDITION for the version or INVALID_ARGUMENT naming the part of the key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Status};
use vpcni_rpc::{AddNetworkRequest, DelNetworkRequest, GarbageCollectRequest, StatusRequest, validate};

fn token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn if_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.bytes().any(|b| b == b'/' || b.is_ascii_whitespace())
}

fn version_ok(version: &str) -> bool {
    version == vpcni_rpc::CLIENT_VERSION
        || version
            .strip_prefix("v1.23.")
            .is_some_and(|rest| rest.as_bytes().first().is_some_and(u8::is_ascii_digit))
}

/// The message re-encoded decodes to itself (what ipamd logs and answers is what was sent).
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let again = M::decode(message.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert_eq!(&again, message);
}

/// A refusal: the right code, and a message naming what was wrong.
fn check_refusal(status: &Status, version: &str, network_name: &str, keys: &[(&str, &str, &str)]) {
    if !version_ok(version) {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("client version"), "{status:?}");
        return;
    }
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let part = if !token(network_name, 253) {
        "network name"
    } else {
        let (_, container, if_name) = keys
            .iter()
            .find(|(n, c, i)| !(token(n, 253) && token(c, 256) && if_name_ok(i)))
            .expect("a refused request has a bad key");
        if !token(container, 256) {
            "container id"
        } else {
            assert!(!if_name_ok(if_name));
            "interface name"
        }
    };
    assert!(status.message().contains(part), "{part}: {status:?}");
}

fn check(result: Result<(), Status>, version: &str, network_name: &str, keys: &[(&str, &str, &str)]) {
    match result {
        Ok(()) => {
            assert!(version_ok(version), "{version:?}");
            // The address book only ever sees keys of the documented shape, and GC's network name is one.
            assert!(token(network_name, 253), "network name {network_name:?}");
            for (network, container, if_name) in keys {
                assert!(token(network, 253), "{network:?}");
                assert!(token(container, 256), "{container:?}");
                assert!(if_name_ok(if_name), "{if_name:?}");
            }
        }
        Err(status) => check_refusal(&status, version, network_name, keys),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, bytes)) = data.split_first() else {
        return;
    };
    match method % 4 {
        0 => {
            let Ok(request) = AddNetworkRequest::decode(bytes) else {
                return;
            };
            round_trip(&request);
            let key = (
                request.network_name.as_str(),
                request.container_id.as_str(),
                request.if_name.as_str(),
            );
            check(
                validate::add_network(&request),
                &request.client_version,
                key.0,
                &[key],
            );
        }
        1 => {
            let Ok(request) = DelNetworkRequest::decode(bytes) else {
                return;
            };
            round_trip(&request);
            let key = (
                request.network_name.as_str(),
                request.container_id.as_str(),
                request.if_name.as_str(),
            );
            check(
                validate::del_network(&request),
                &request.client_version,
                key.0,
                &[key],
            );
        }
        2 => {
            let Ok(request) = StatusRequest::decode(bytes) else {
                return;
            };
            round_trip(&request);
            match validate::status(&request) {
                Ok(()) => assert!(version_ok(&request.client_version)),
                Err(status) => {
                    assert!(!version_ok(&request.client_version));
                    assert_eq!(status.code(), Code::FailedPrecondition);
                }
            }
        }
        _ => {
            let Ok(request) = GarbageCollectRequest::decode(bytes) else {
                return;
            };
            round_trip(&request);
            let keys: Vec<(&str, &str, &str)> = request
                .valid_attachments
                .iter()
                .map(|a| {
                    (
                        request.network_name.as_str(),
                        a.container_id.as_str(),
                        a.if_name.as_str(),
                    )
                })
                .collect();
            check(
                validate::garbage_collect(&request),
                &request.client_version,
                &request.network_name,
                &keys,
            );
        }
    }
});
