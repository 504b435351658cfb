//! Instance metadata as text: how the daemon reads the bodies IMDS answers with. IMDS serves plain text, a
//! value per path, or a listing of one entry a line (directories with a trailing `/`); the SDK backend
//! (`vpcni-ec2-sdk`) fetches the bodies and hands them to these functions, which hold every parsing rule
//! so they can be tested and fuzzed without the SDK (`fuzz/fuzz_targets/imds_text.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_layout::{MAX_DEVICE_NUMBER, MAX_NETWORK_CARD};

use crate::{Ec2Error, ImdsInterface};

/// A value: the body without surrounding white space.
pub fn value(body: &str) -> String {
    body.trim().to_owned()
}

/// A listing: one entry a line, without surrounding white space or a directory's trailing `/`; blank
/// lines skipped.
pub fn lines(body: &str) -> Vec<String> {
    body.lines()
        .map(|l| {
            l.trim_end_matches(|c: char| c == '/' || c.is_whitespace())
                .trim_start()
                .to_owned()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// A value parsed as `T`; an `InvalidResponse` naming the metadata path when it is not one.
pub fn parsed<T: FromStr>(path: &str, text: &str) -> Result<T, Ec2Error> {
    text.trim().parse().map_err(|_| {
        Ec2Error::new(
            "InvalidResponse",
            format!("metadata {path}: cannot parse {text:?}"),
        )
    })
}

/// The bodies of `network/interfaces/macs/<mac>/…` that make an [`ImdsInterface`], as IMDS returned them;
/// `None` where IMDS answered 404 for a path that may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceAnswers {
    /// `device-number`.
    pub device_number: String,
    /// `network-card` (absent on single-card instance types).
    pub network_card: Option<String>,
    /// `interface-id`.
    pub interface_id: String,
    /// `subnet-id`.
    pub subnet_id: String,
    /// `subnet-ipv4-cidr-block`.
    pub subnet_ipv4_cidr_block: String,
    /// `local-ipv4s`.
    pub local_ipv4s: String,
    /// `ipv4-prefix` (absent when the ENI has no prefix).
    pub ipv4_prefix: Option<String>,
    /// `vpc-ipv4-cidr-blocks`.
    pub vpc_ipv4_cidr_blocks: String,
    /// `security-group-ids` (may be absent).
    pub security_group_ids: Option<String>,
    /// `ipv6s` (absent when the ENI has no IPv6 address).
    pub ipv6s: Option<String>,
    /// `ipv6-prefix` (absent when the ENI has no IPv6 prefix).
    pub ipv6_prefix: Option<String>,
    /// `subnet-ipv6-cidr-blocks` (absent when the subnet has no IPv6 block).
    pub subnet_ipv6_cidr_blocks: Option<String>,
    /// `vpc-ipv6-cidr-blocks` (absent when the VPC has no IPv6 block).
    pub vpc_ipv6_cidr_blocks: Option<String>,
}

/// A number at most `max`; an `InvalidResponse` naming the path when it is no such number.
fn bounded(path: &str, text: &str, max: u32) -> Result<u32, Ec2Error> {
    let n: u32 = parsed(path, text)?;
    if n > max {
        return Err(Ec2Error::new(
            "InvalidResponse",
            format!("metadata {path}: {n} is out of range (0 to {max})"),
        ));
    }
    Ok(n)
}

/// The interface with MAC `mac`, from IMDS's answers. Its device number and network card must be ones the
/// node layout numbers route tables for ([`vpcni_layout::EniSlot::checked`]).
pub fn interface(mac: &str, answers: &InterfaceAnswers) -> Result<ImdsInterface, Ec2Error> {
    let base = format!("network/interfaces/macs/{mac}");
    let network_card = match &answers.network_card {
        Some(text) => bounded(&format!("{base}/network-card"), text, MAX_NETWORK_CARD)?,
        None => 0,
    };
    let optional_lines = |body: &Option<String>| body.as_deref().map(lines).unwrap_or_default();
    Ok(ImdsInterface {
        mac: mac.to_owned(),
        device_number: bounded("device-number", &answers.device_number, MAX_DEVICE_NUMBER)?,
        network_card,
        interface_id: value(&answers.interface_id),
        subnet_id: value(&answers.subnet_id),
        subnet_ipv4_cidr_block: parsed("subnet-ipv4-cidr-block", &answers.subnet_ipv4_cidr_block)?,
        local_ipv4s: lines(&answers.local_ipv4s)
            .iter()
            .map(|a| parsed::<Ipv4Addr>("local-ipv4s", a))
            .collect::<Result<_, _>>()?,
        ipv4_prefixes: optional_lines(&answers.ipv4_prefix)
            .iter()
            .map(|p| parsed::<Ipv4Net>("ipv4-prefix", p))
            .collect::<Result<_, _>>()?,
        vpc_ipv4_cidr_blocks: lines(&answers.vpc_ipv4_cidr_blocks)
            .iter()
            .map(|c| parsed::<Ipv4Net>("vpc-ipv4-cidr-blocks", c))
            .collect::<Result<_, _>>()?,
        security_group_ids: optional_lines(&answers.security_group_ids),
        ipv6s: optional_lines(&answers.ipv6s)
            .iter()
            .map(|a| parsed::<Ipv6Addr>("ipv6s", a))
            .collect::<Result<_, _>>()?,
        ipv6_prefixes: optional_lines(&answers.ipv6_prefix)
            .iter()
            .map(|p| parsed::<Ipv6Net>("ipv6-prefix", p))
            .collect::<Result<_, _>>()?,
        subnet_ipv6_cidr_blocks: optional_lines(&answers.subnet_ipv6_cidr_blocks)
            .iter()
            .map(|c| parsed::<Ipv6Net>("subnet-ipv6-cidr-blocks", c))
            .collect::<Result<_, _>>()?,
        vpc_ipv6_cidr_blocks: optional_lines(&answers.vpc_ipv6_cidr_blocks)
            .iter()
            .map(|c| parsed::<Ipv6Net>("vpc-ipv6-cidr-blocks", c))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> InterfaceAnswers {
        InterfaceAnswers {
            device_number: "1".into(),
            network_card: None,
            interface_id: "eni-0123456789abcdef0".into(),
            subnet_id: "subnet-1".into(),
            subnet_ipv4_cidr_block: "10.0.0.0/24".into(),
            local_ipv4s: "10.0.0.10\n10.0.0.11\n".into(),
            ipv4_prefix: Some("10.0.0.32/28".into()),
            vpc_ipv4_cidr_blocks: "10.0.0.0/16\n100.64.0.0/16".into(),
            security_group_ids: Some("sg-1\nsg-2".into()),
            ipv6s: None,
            ipv6_prefix: None,
            subnet_ipv6_cidr_blocks: None,
            vpc_ipv6_cidr_blocks: None,
        }
    }

    #[test]
    fn an_interface_is_read() {
        let interface = interface("0a:00:00:00:00:01", &answers()).unwrap();
        assert_eq!(interface.device_number, 1);
        assert_eq!(interface.network_card, 0);
        assert_eq!(
            interface.local_ipv4s,
            [Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 11)]
        );
        assert_eq!(interface.ipv4_prefixes.len(), 1);
        assert_eq!(interface.vpc_ipv4_cidr_blocks.len(), 2);
        assert_eq!(interface.security_group_ids, ["sg-1", "sg-2"]);
    }

    #[test]
    fn ipv6_paths_are_read_and_absent_ones_are_empty() {
        let read = interface("0a:00:00:00:00:01", &answers()).unwrap();
        assert!(read.ipv6s.is_empty() && read.ipv6_prefixes.is_empty());
        assert!(read.subnet_ipv6_cidr_blocks.is_empty());
        let dual = InterfaceAnswers {
            ipv6s: Some("2600:1f14:0:100::4\n2600:1f14:0:100::5\n".into()),
            ipv6_prefix: Some("2600:1f14:0:100:1::/80".into()),
            subnet_ipv6_cidr_blocks: Some("2600:1f14:0:100::/64".into()),
            vpc_ipv6_cidr_blocks: Some("2600:1f14:0:100::/56".into()),
            ..answers()
        };
        let read = interface("0a:00:00:00:00:01", &dual).unwrap();
        assert_eq!(read.ipv6s.len(), 2);
        assert_eq!(
            read.ipv6_prefixes,
            ["2600:1f14:0:100:1::/80".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(read.subnet_ipv6_cidr_blocks.len(), 1);
        assert_eq!(read.vpc_ipv6_cidr_blocks.len(), 1);
        for (bad, path) in [
            (
                InterfaceAnswers {
                    ipv6s: Some("10.0.0.1".into()),
                    ..answers()
                },
                "ipv6s",
            ),
            (
                InterfaceAnswers {
                    ipv6_prefix: Some("2600:1f14::/200".into()),
                    ..answers()
                },
                "ipv6-prefix",
            ),
            (
                InterfaceAnswers {
                    subnet_ipv6_cidr_blocks: Some("nope".into()),
                    ..answers()
                },
                "subnet-ipv6-cidr-blocks",
            ),
        ] {
            let error = interface("m", &bad).unwrap_err();
            assert_eq!(error.code, "InvalidResponse");
            assert!(error.message.contains(path), "{path}: {error}");
        }
    }

    #[test]
    fn listings_drop_directory_slashes_and_blank_lines() {
        assert_eq!(
            lines("0a:00:00:00:00:01/\n\n 0a:00:00:00:00:02/ \n"),
            ["0a:00:00:00:00:01", "0a:00:00:00:00:02"]
        );
    }

    /// Found by the imds_text fuzzer: white space before a directory's `/` stayed in the entry ("sg-1 /" gave
    /// "sg-1 "), and " / /" gave "/ ", so a MAC listed that way named a path that does not exist.
    #[test]
    fn entries_are_trimmed_after_the_directory_slash_is_dropped() {
        assert_eq!(
            lines("sg-1 /\n / /\n0a:00:00:00:00:02 / \n"),
            ["sg-1", "0a:00:00:00:00:02"]
        );
    }

    /// Found by the imds_text fuzzer: a network card of 40414001 (or a device number of 4294967295) was
    /// read as given, and the route table the daemon computes from it overflowed (10000 + 100 × card).
    #[test]
    fn slots_the_node_layout_cannot_number_are_refused() {
        for (device, card, path) in [
            ("0", Some("40414001"), "network-card"),
            ("4294967295", None, "device-number"),
            ("100", Some("0"), "device-number"),
            ("1", Some("100"), "network-card"),
        ] {
            let bad = InterfaceAnswers {
                device_number: device.into(),
                network_card: card.map(Into::into),
                ..answers()
            };
            let error = interface("m", &bad).unwrap_err();
            assert_eq!(error.code, "InvalidResponse");
            assert!(error.message.contains(path), "{path}: {error}");
        }
        let largest = InterfaceAnswers {
            device_number: "99".into(),
            network_card: Some("99".into()),
            ..answers()
        };
        assert!(interface("m", &largest).is_ok());
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_path() {
        let bad = InterfaceAnswers {
            network_card: Some("one".into()),
            ..answers()
        };
        let error = interface("0a:00:00:00:00:01", &bad).unwrap_err();
        assert_eq!(error.code, "InvalidResponse");
        assert!(
            error
                .message
                .contains("network/interfaces/macs/0a:00:00:00:00:01/network-card"),
            "{error}"
        );
        let bad = InterfaceAnswers {
            local_ipv4s: "10.0.0.10\n10.0.0.300".into(),
            ..answers()
        };
        assert!(interface("m", &bad).unwrap_err().message.contains("local-ipv4s"));
    }
}
