//! The original's plugin and ipamd can talk to vpcni's, byte for byte. The original's messages are written
//! out here independently of `proto/rpc.proto`, from the Amazon VPC CNI's `rpc/rpc.proto` at v1.23.1 (field
//! number, name, type), and encoded by hand with protobuf's wire rules; vpcni's generated types decode
//! them. The other way round, vpcni's encoded messages are read field by field as a reader of the
//! original's layout would: every field must have the original's number and wire type, and the only
//! fields such a reader does not know are vpcni's additions, which it skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use vpcni_rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, IpAllocationMetadata,
};

/// A field's type in the original's proto file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Bool,
    Int32,
    /// An embedded `IPAllocationMetadata`.
    Metadata,
}

/// (number, name, type, repeated), as the original declares them.
type Schema = &'static [(u32, &'static str, Kind, bool)];

const ADD_NETWORK_REQUEST: Schema = &[
    (8, "ClientVersion", Kind::String, false),
    (1, "K8S_POD_NAME", Kind::String, false),
    (2, "K8S_POD_NAMESPACE", Kind::String, false),
    (3, "K8S_POD_INFRA_CONTAINER_ID", Kind::String, false),
    (7, "ContainerID", Kind::String, false),
    (5, "IfName", Kind::String, false),
    (6, "NetworkName", Kind::String, false),
    (4, "Netns", Kind::String, false),
    (9, "RequiresMultiNICAttachment", Kind::Bool, false),
];

const IP_ALLOCATION_METADATA: Schema = &[
    (1, "IPv4Addr", Kind::String, false),
    (2, "IPv6Addr", Kind::String, false),
    (3, "DeviceNumber", Kind::Int32, false),
    (4, "RouteTableId", Kind::Int32, false),
];

const ADD_NETWORK_REPLY: Schema = &[
    (1, "Success", Kind::Bool, false),
    (2, "IPAllocationMetadata", Kind::Metadata, true),
    (5, "UseExternalSNAT", Kind::Bool, false),
    (6, "VPCv4CIDRs", Kind::String, true),
    (12, "VPCv6CIDRs", Kind::String, true),
    (7, "PodVlanId", Kind::Int32, false),
    (8, "PodENIMAC", Kind::String, false),
    (9, "PodENISubnetGW", Kind::String, false),
    (10, "ParentIfIndex", Kind::Int32, false),
    (13, "NetworkPolicyMode", Kind::String, false),
];

const DEL_NETWORK_REQUEST: Schema = &[
    (9, "ClientVersion", Kind::String, false),
    (1, "K8S_POD_NAME", Kind::String, false),
    (2, "K8S_POD_NAMESPACE", Kind::String, false),
    (3, "K8S_POD_INFRA_CONTAINER_ID", Kind::String, false),
    (5, "Reason", Kind::String, false),
    (8, "ContainerID", Kind::String, false),
    (6, "IfName", Kind::String, false),
    (7, "NetworkName", Kind::String, false),
    (10, "K8S_POD_UID", Kind::String, false),
];

const DEL_NETWORK_REPLY: Schema = &[
    (1, "Success", Kind::Bool, false),
    (2, "IPAllocationMetadata", Kind::Metadata, true),
    (4, "PodVlanId", Kind::Int32, false),
    (6, "NetworkPolicyMode", Kind::String, false),
];

/// One field's value on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    String(String),
    Bool(bool),
    Int32(i32),
    Metadata(Vec<(u32, Value)>),
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// Encodes fields by protobuf's wire rules: strings and embedded messages length-delimited, bool and
/// int32 as varints (a negative int32 sign-extended to ten bytes).
fn encode(fields: &[(u32, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (number, value) in fields {
        match value {
            Value::String(text) => {
                encode_key(*number, WireType::LengthDelimited, &mut out);
                encode_varint(text.len() as u64, &mut out);
                out.extend_from_slice(text.as_bytes());
            }
            Value::Bool(flag) => {
                encode_key(*number, WireType::Varint, &mut out);
                encode_varint(u64::from(*flag), &mut out);
            }
            Value::Int32(n) => {
                encode_key(*number, WireType::Varint, &mut out);
                encode_varint(i64::from(*n) as u64, &mut out);
            }
            Value::Metadata(inner) => {
                let bytes = encode(inner);
                encode_key(*number, WireType::LengthDelimited, &mut out);
                encode_varint(bytes.len() as u64, &mut out);
                out.extend_from_slice(&bytes);
            }
        }
    }
    out
}

/// Reads `bytes` as the original's reader of `schema` would: known fields by their declared type (a wire
/// type that does not fit the declaration fails the test), unknown ones skipped and returned apart.
fn read_as_original(schema: Schema, mut bytes: &[u8]) -> (Vec<(u32, Value)>, Vec<u32>) {
    let mut known = Vec::new();
    let mut skipped = Vec::new();
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes).unwrap();
        let Some(&(_, name, kind, _)) = schema.iter().find(|f| f.0 == number) else {
            skipped.push(number);
            match wire_type {
                WireType::Varint => {
                    decode_varint(&mut bytes).unwrap();
                }
                WireType::LengthDelimited => {
                    let len = decode_varint(&mut bytes).unwrap() as usize;
                    bytes.advance(len);
                }
                other => panic!("field {number}: unexpected wire type {other:?}"),
            }
            continue;
        };
        let expected = match kind {
            Kind::String | Kind::Metadata => WireType::LengthDelimited,
            Kind::Bool | Kind::Int32 => WireType::Varint,
        };
        assert_eq!(wire_type, expected, "field {number} ({name})");
        let value = match kind {
            Kind::String => {
                let len = decode_varint(&mut bytes).unwrap() as usize;
                let text = String::from_utf8(bytes[..len].to_vec()).unwrap();
                bytes.advance(len);
                Value::String(text)
            }
            Kind::Metadata => {
                let len = decode_varint(&mut bytes).unwrap() as usize;
                let (inner, inner_skipped) = read_as_original(IP_ALLOCATION_METADATA, &bytes[..len]);
                assert!(inner_skipped.is_empty(), "{name}: {inner_skipped:?}");
                bytes.advance(len);
                Value::Metadata(inner)
            }
            Kind::Bool => Value::Bool(decode_varint(&mut bytes).unwrap() != 0),
            // int32 on the wire: the low 32 bits of the sign-extended varint.
            Kind::Int32 => Value::Int32(decode_varint(&mut bytes).unwrap() as u32 as i32),
        };
        known.push((number, value));
    }
    (known, skipped)
}

/// Sorted by field number, as a comparison needs (the wire order is the writer's choice).
fn by_number(mut fields: Vec<(u32, Value)>) -> Vec<(u32, Value)> {
    fields.sort_by_key(|f| f.0);
    fields
}

/// Every field of `schema` appears in `fields` (so the test exercises them all), repeated ones aside.
fn covers_schema(schema: Schema, fields: &[(u32, Value)]) {
    for (number, name, _, _) in schema {
        assert!(
            fields.iter().any(|f| f.0 == *number),
            "{name} ({number}) not exercised"
        );
    }
}

fn metadata(ipv4: &str, ipv6: &str, device: i32, table: i32) -> Value {
    Value::Metadata(vec![
        (1, s(ipv4)),
        (2, s(ipv6)),
        (3, Value::Int32(device)),
        (4, Value::Int32(table)),
    ])
}

#[test]
fn the_originals_add_request_decodes_as_vpcnis() {
    let original = vec![
        (8, s("v1.23.1")),
        (1, s("web-0")),
        (2, s("shop")),
        (3, s("infra-1")),
        (7, s("c0ffee")),
        (5, s("eth0")),
        (6, s("aws-cni")),
        (4, s("/var/run/netns/cni-1")),
        (9, Value::Bool(true)),
    ];
    covers_schema(ADD_NETWORK_REQUEST, &original);
    let ours = AddNetworkRequest::decode(encode(&original).as_slice()).unwrap();
    assert_eq!(
        ours,
        AddNetworkRequest {
            client_version: "v1.23.1".into(),
            k8s_pod_name: "web-0".into(),
            k8s_pod_namespace: "shop".into(),
            k8s_pod_infra_container_id: "infra-1".into(),
            container_id: "c0ffee".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            netns: "/var/run/netns/cni-1".into(),
            requires_multi_nic_attachment: true,
            k8s_pod_uid: String::new(),
        }
    );
    assert!(vpcni_rpc::accepts_client_version(&ours.client_version));
}

#[test]
fn the_originals_del_request_decodes_as_vpcnis() {
    let original = vec![
        (9, s("v1.23.1")),
        (1, s("web-0")),
        (2, s("shop")),
        (3, s("infra-1")),
        (5, s("PodDeleted")),
        (8, s("c0ffee")),
        (6, s("eth0")),
        (7, s("aws-cni")),
        (10, s("6f1c0b1e-uid")),
    ];
    covers_schema(DEL_NETWORK_REQUEST, &original);
    let ours = DelNetworkRequest::decode(encode(&original).as_slice()).unwrap();
    assert_eq!(
        ours,
        DelNetworkRequest {
            client_version: "v1.23.1".into(),
            k8s_pod_name: "web-0".into(),
            k8s_pod_namespace: "shop".into(),
            k8s_pod_infra_container_id: "infra-1".into(),
            reason: "PodDeleted".into(),
            container_id: "c0ffee".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            k8s_pod_uid: "6f1c0b1e-uid".into(),
        }
    );
}

#[test]
fn the_originals_replies_decode_as_vpcnis() {
    let add = vec![
        (1, Value::Bool(true)),
        (2, metadata("10.0.1.7", "", 2, 3)),
        (2, metadata("10.0.9.9", "2001:db8::9", 0, 254)),
        (5, Value::Bool(true)),
        (6, s("10.0.0.0/16")),
        (6, s("100.64.0.0/10")),
        (12, s("2001:db8::/56")),
        (7, Value::Int32(-1)),
        (8, s("0a:1b:2c:3d:4e:5f")),
        (9, s("10.0.1.1")),
        (10, Value::Int32(4)),
        (13, s("standard")),
    ];
    covers_schema(ADD_NETWORK_REPLY, &add);
    let ours = AddNetworkReply::decode(encode(&add).as_slice()).unwrap();
    let meta = |ipv4: &str, ipv6: &str, device, table| IpAllocationMetadata {
        i_pv4_addr: ipv4.into(),
        i_pv6_addr: ipv6.into(),
        device_number: device,
        route_table_id: table,
    };
    assert_eq!(
        ours,
        AddNetworkReply {
            success: true,
            ip_allocation_metadata: vec![
                meta("10.0.1.7", "", 2, 3),
                meta("10.0.9.9", "2001:db8::9", 0, 254)
            ],
            use_external_snat: true,
            vp_cv4_cid_rs: vec!["10.0.0.0/16".into(), "100.64.0.0/10".into()],
            vp_cv6_cid_rs: vec!["2001:db8::/56".into()],
            pod_vlan_id: -1,
            pod_enimac: "0a:1b:2c:3d:4e:5f".into(),
            pod_eni_subnet_gw: "10.0.1.1".into(),
            parent_if_index: 4,
            network_policy_mode: "standard".into(),
            ..Default::default()
        }
    );

    let del = vec![
        (1, Value::Bool(true)),
        (2, metadata("10.0.1.7", "", 2, 3)),
        (4, Value::Int32(7)),
        (6, s("strict")),
    ];
    covers_schema(DEL_NETWORK_REPLY, &del);
    let ours = DelNetworkReply::decode(encode(&del).as_slice()).unwrap();
    assert_eq!(
        ours,
        DelNetworkReply {
            success: true,
            ip_allocation_metadata: vec![meta("10.0.1.7", "", 2, 3)],
            pod_vlan_id: 7,
            network_policy_mode: "strict".into(),
            found: false,
        }
    );
}

#[test]
fn vpcnis_requests_read_as_the_originals() {
    let add = AddNetworkRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.into(),
        k8s_pod_name: "web-0".into(),
        k8s_pod_namespace: "shop".into(),
        k8s_pod_infra_container_id: "infra-1".into(),
        container_id: "c0ffee".into(),
        if_name: "eth0".into(),
        network_name: "vpcni".into(),
        netns: "/var/run/netns/cni-1".into(),
        requires_multi_nic_attachment: true,
        k8s_pod_uid: "6f1c0b1e-uid".into(),
    };
    let (fields, skipped) = read_as_original(ADD_NETWORK_REQUEST, &add.encode_to_vec());
    assert_eq!(
        by_number(fields),
        vec![
            (1, s("web-0")),
            (2, s("shop")),
            (3, s("infra-1")),
            (4, s("/var/run/netns/cni-1")),
            (5, s("eth0")),
            (6, s("vpcni")),
            (7, s("c0ffee")),
            (8, s(vpcni_rpc::CLIENT_VERSION)),
            (9, Value::Bool(true)),
        ]
    );
    assert_eq!(
        skipped,
        [100],
        "only vpcni's K8S_POD_UID is unknown to the original"
    );

    let del = DelNetworkRequest {
        client_version: vpcni_rpc::CLIENT_VERSION.into(),
        k8s_pod_name: "web-0".into(),
        k8s_pod_namespace: "shop".into(),
        k8s_pod_infra_container_id: "infra-1".into(),
        reason: "PodDeleted".into(),
        container_id: "c0ffee".into(),
        if_name: "eth0".into(),
        network_name: "vpcni".into(),
        k8s_pod_uid: "6f1c0b1e-uid".into(),
    };
    let (fields, skipped) = read_as_original(DEL_NETWORK_REQUEST, &del.encode_to_vec());
    assert_eq!(
        by_number(fields),
        vec![
            (1, s("web-0")),
            (2, s("shop")),
            (3, s("infra-1")),
            (5, s("PodDeleted")),
            (6, s("eth0")),
            (7, s("vpcni")),
            (8, s("c0ffee")),
            (9, s(vpcni_rpc::CLIENT_VERSION)),
            (10, s("6f1c0b1e-uid")),
        ]
    );
    assert!(skipped.is_empty(), "{skipped:?}");
}

#[test]
fn vpcnis_replies_read_as_the_originals() {
    let add = AddNetworkReply {
        success: true,
        ip_allocation_metadata: vec![IpAllocationMetadata {
            i_pv4_addr: "10.0.1.7".into(),
            i_pv6_addr: String::new(),
            device_number: 2,
            route_table_id: 3,
        }],
        use_external_snat: true,
        vp_cv4_cid_rs: vec!["10.0.0.0/16".into(), "100.64.0.0/10".into()],
        vp_cv6_cid_rs: vec!["2001:db8::/56".into()],
        pod_vlan_id: -1,
        pod_enimac: "0a:1b:2c:3d:4e:5f".into(),
        pod_eni_subnet_gw: "10.0.1.1".into(),
        parent_if_index: 4,
        network_policy_mode: "standard".into(),
        reason: vpcni_rpc::FailureReason::NodeMaxPods as i32,
        message: "node max pods reached".into(),
        eniid: "eni-0abc".into(),
    };
    let (fields, skipped) = read_as_original(ADD_NETWORK_REPLY, &add.encode_to_vec());
    assert_eq!(
        by_number(fields),
        vec![
            (1, Value::Bool(true)),
            // proto3 leaves an empty string out, so IPv6Addr is absent.
            (
                2,
                Value::Metadata(vec![
                    (1, s("10.0.1.7")),
                    (3, Value::Int32(2)),
                    (4, Value::Int32(3))
                ])
            ),
            (5, Value::Bool(true)),
            (6, s("10.0.0.0/16")),
            (6, s("100.64.0.0/10")),
            (7, Value::Int32(-1)),
            (8, s("0a:1b:2c:3d:4e:5f")),
            (9, s("10.0.1.1")),
            (10, Value::Int32(4)),
            (12, s("2001:db8::/56")),
            (13, s("standard")),
        ]
    );
    assert_eq!(skipped, [100, 101, 102], "Reason, Message and ENIID are vpcni's");

    let del = DelNetworkReply {
        success: true,
        ip_allocation_metadata: vec![IpAllocationMetadata {
            i_pv4_addr: "10.0.1.7".into(),
            i_pv6_addr: "2001:db8::7".into(),
            device_number: 0,
            route_table_id: 254,
        }],
        pod_vlan_id: 7,
        network_policy_mode: "strict".into(),
        found: true,
    };
    let (fields, skipped) = read_as_original(DEL_NETWORK_REPLY, &del.encode_to_vec());
    assert_eq!(
        by_number(fields),
        vec![
            (1, Value::Bool(true)),
            (
                2,
                Value::Metadata(vec![
                    (1, s("10.0.1.7")),
                    (2, s("2001:db8::7")),
                    (4, Value::Int32(254))
                ])
            ),
            (4, Value::Int32(7)),
            (6, s("strict")),
        ]
    );
    assert_eq!(skipped, [100], "Found is vpcni's");
}
