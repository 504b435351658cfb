//! Instance-metadata answers as the daemon parses them (`vpcni_ec2::imds_text`, which the SDK backend
//! calls on every body IMDS returns): IMDS is trusted but not infallible, and on a node with a proxy or a
//! misconfigured endpoint override it is whatever answers on that address.
//!
//! Input: the bodies of `network/interfaces/macs/<mac>/…` separated by NUL bytes: mac, device-number,
//! network-card, interface-id, subnet-id, subnet-ipv4-cidr-block, local-ipv4s, ipv4-prefix,
//! vpc-ipv4-cidr-blocks, security-group-ids, ipv6s, ipv6-prefix, subnet-ipv6-cidr-blocks,
//! vpc-ipv6-cidr-blocks (an optional path left empty is IMDS's 404).
//!
//! Checks: a listing's entries are non-empty, trimmed and without a directory's `/`; a value that does not
//! parse is an `InvalidResponse` naming its path; an interface that parses, served again as the
//! simulator's IMDS serves one (crates/ec2-endpoint/src/imds.rs), parses to the same interface; and the
//! route table the daemon derives from its device number and network card is a usable table.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcni_ec2::ImdsInterface;
use vpcni_ec2::imds_text::{self, InterfaceAnswers};
use vpcni_layout::{EniSlot, MAIN_TABLE};

fn check_listing(body: &str) {
    for entry in imds_text::lines(body) {
        assert!(!entry.is_empty());
        assert_eq!(entry.trim(), entry, "entries are trimmed");
        assert!(!entry.ends_with('/'), "{entry:?}");
        assert!(!entry.contains('\n'));
    }
}

/// The bodies the simulator's IMDS serves for `interface`.
fn served(interface: &ImdsInterface) -> InterfaceAnswers {
    let lines = |items: Vec<String>| (!items.is_empty()).then(|| items.join("\n"));
    InterfaceAnswers {
        device_number: interface.device_number.to_string(),
        network_card: Some(interface.network_card.to_string()),
        interface_id: interface.interface_id.clone(),
        subnet_id: interface.subnet_id.clone(),
        subnet_ipv4_cidr_block: interface.subnet_ipv4_cidr_block.to_string(),
        local_ipv4s: interface
            .local_ipv4s
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        ipv4_prefix: lines(interface.ipv4_prefixes.iter().map(ToString::to_string).collect()),
        vpc_ipv4_cidr_blocks: interface
            .vpc_ipv4_cidr_blocks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        security_group_ids: lines(interface.security_group_ids.clone()),
        ipv6s: lines(interface.ipv6s.iter().map(ToString::to_string).collect()),
        ipv6_prefix: lines(interface.ipv6_prefixes.iter().map(ToString::to_string).collect()),
        subnet_ipv6_cidr_blocks: lines(
            interface
                .subnet_ipv6_cidr_blocks
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
        vpc_ipv6_cidr_blocks: lines(
            interface
                .vpc_ipv6_cidr_blocks
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    let optional = |body: String| (!body.is_empty()).then_some(body);
    let mac = next();
    let answers = InterfaceAnswers {
        device_number: next(),
        network_card: optional(next()),
        interface_id: next(),
        subnet_id: next(),
        subnet_ipv4_cidr_block: next(),
        local_ipv4s: next(),
        ipv4_prefix: optional(next()),
        vpc_ipv4_cidr_blocks: next(),
        security_group_ids: optional(next()),
        ipv6s: optional(next()),
        ipv6_prefix: optional(next()),
        subnet_ipv6_cidr_blocks: optional(next()),
        vpc_ipv6_cidr_blocks: optional(next()),
    };
    for body in [&answers.local_ipv4s, &answers.vpc_ipv4_cidr_blocks, &mac] {
        check_listing(body);
    }
    check_listing(answers.security_group_ids.as_deref().unwrap_or(""));
    assert_eq!(
        imds_text::value(&answers.interface_id).trim(),
        imds_text::value(&answers.interface_id)
    );

    match imds_text::interface(&mac, &answers) {
        Ok(interface) => {
            assert_eq!(interface.mac, mac);
            let again = imds_text::interface(&mac, &served(&interface)).expect("served again, it parses");
            assert_eq!(again, interface);
            // What start-up and reconcile compute from it.
            let table = EniSlot::new(interface.network_card, interface.device_number).route_table();
            if (interface.network_card, interface.device_number) == (0, 0) {
                assert_eq!(table, MAIN_TABLE);
            } else {
                assert!(
                    !matches!(table, 0 | 253..=255),
                    "device {} on card {} routes through reserved table {table}",
                    interface.device_number,
                    interface.network_card
                );
            }
        }
        Err(error) => {
            assert_eq!(error.code, "InvalidResponse", "{error:?}");
            assert!(error.message.starts_with("metadata "), "{error:?}");
        }
    }
});
