//! The EC2 endpoint's Query API parser (`vpcni_ec2_endpoint::query::Params`): the form-encoded body or
//! query string any client on the network can send to `vpcnictl sim serve`.
//!
//! Input: the body.
//!
//! Checks: every typed read the actions make (numbers, booleans, addresses, CIDRs, lists, filters, tags,
//! tag specifications, private address structures, prefix lists) either fails with EC2's error code
//! naming the parameter, or gives values that, encoded again as an EC2 client would, parse to the same
//! values.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcni_ec2::Ec2Error;
use vpcni_ec2_endpoint::query::Params;

/// Names the actions read (crates/ec2-endpoint/src/actions.rs), plus short ones the fuzzer finds easily.
const SCALARS: [&str; 12] = [
    "Action",
    "Version",
    "NetworkInterfaceId",
    "SubnetId",
    "InstanceId",
    "AttachmentId",
    "MaxResults",
    "DeviceIndex",
    "SecondaryPrivateIpAddressCount",
    "Force",
    "PrivateIpAddress",
    "CidrBlock",
];
const LISTS: [&str; 6] = [
    "NetworkInterfaceId",
    "PrivateIpAddress",
    "Ipv4Prefix",
    "SubnetId",
    "ResourceId",
    "A",
];

fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish().into_bytes()
}

fn names(error: &Ec2Error, name: &str) {
    assert!(
        error.code == "InvalidParameterValue" || error.code == "MissingParameter",
        "{error:?}"
    );
    assert!(error.message.contains(name), "{name}: {error:?}");
}

fn numbered<T: ToString>(name: &str, values: &[T]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{name}.{}", i + 1), v.to_string()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let params = Params::parse(data);
    assert_eq!(Params::parse(data), params);

    for name in SCALARS {
        match params.required(name) {
            Ok(value) => assert!(!value.is_empty()),
            Err(error) => names(&error, name),
        }
        match params.number(name) {
            Ok(Some(n)) => {
                let again = Params::parse(&encode(&[(name.to_owned(), n.to_string())]));
                assert_eq!(again.number(name).ok(), Some(Some(n)));
            }
            Ok(None) => assert!(params.get(name).is_none()),
            Err(error) => names(&error, name),
        }
        match params.boolean(name) {
            Ok(Some(b)) => {
                let again = Params::parse(&encode(&[(name.to_owned(), b.to_string())]));
                assert_eq!(again.boolean(name).ok(), Some(Some(b)));
            }
            Ok(None) => {}
            Err(error) => names(&error, name),
        }
        match params.ip(name) {
            Ok(Some(ip)) => {
                let again = Params::parse(&encode(&[(name.to_owned(), ip.to_string())]));
                assert_eq!(again.ip(name).ok(), Some(Some(ip)));
            }
            Ok(None) => {}
            Err(error) => names(&error, name),
        }
        match params.cidr(name) {
            Ok(cidr) => {
                let again = Params::parse(&encode(&[(name.to_owned(), cidr.to_string())]));
                assert_eq!(again.cidr(name).ok(), Some(cidr));
            }
            Err(error) => names(&error, name),
        }
    }

    for name in LISTS {
        let list = params.list(name);
        let again = Params::parse(&encode(&numbered(name, &list)));
        assert_eq!(again.list(name), list);
        match params.ip_list(name) {
            Ok(ips) => {
                assert_eq!(ips.len(), list.len());
                let again = Params::parse(&encode(&numbered(name, &ips)));
                assert_eq!(again.ip_list(name).ok(), Some(ips));
            }
            Err(error) => names(&error, name),
        }
        match params.cidr_list(name) {
            Ok(cidrs) => {
                let again = Params::parse(&encode(&numbered(name, &cidrs)));
                assert_eq!(again.cidr_list(name).ok(), Some(cidrs));
            }
            Err(error) => names(&error, name),
        }
    }

    match params.filters() {
        Ok(filters) => {
            let mut pairs = Vec::new();
            for (i, filter) in filters.iter().enumerate() {
                assert!(!filter.values.is_empty());
                pairs.push((format!("Filter.{}.Name", i + 1), filter.name.clone()));
                pairs.extend(numbered(&format!("Filter.{}.Value", i + 1), &filter.values));
            }
            assert_eq!(Params::parse(&encode(&pairs)).filters().ok(), Some(filters));
        }
        Err(error) => names(&error, "Filter."),
    }

    for prefix in ["Tag", "TagSpecification.1.Tag"] {
        match params.tags(prefix) {
            Ok(tags) => {
                let mut pairs = Vec::new();
                for (i, (key, value)) in tags.iter().enumerate() {
                    assert!(!key.is_empty() && key.len() <= 128);
                    pairs.push((format!("{prefix}.{}.Key", i + 1), key.clone()));
                    pairs.push((format!("{prefix}.{}.Value", i + 1), value.clone()));
                }
                assert_eq!(Params::parse(&encode(&pairs)).tags(prefix).ok(), Some(tags));
            }
            Err(error) => names(&error, prefix),
        }
    }

    match params.tag_specifications("network-interface") {
        Ok(tags) => {
            let mut pairs = vec![(
                "TagSpecification.1.ResourceType".to_owned(),
                "network-interface".to_owned(),
            )];
            for (i, (key, value)) in tags.iter().enumerate() {
                pairs.push((format!("TagSpecification.1.Tag.{}.Key", i + 1), key.clone()));
                pairs.push((format!("TagSpecification.1.Tag.{}.Value", i + 1), value.clone()));
            }
            let again = Params::parse(&encode(&pairs));
            assert_eq!(again.tag_specifications("network-interface").ok(), Some(tags));
        }
        Err(error) => names(&error, "TagSpecification."),
    }

    match params.private_ip_specs() {
        Ok(specs) => {
            let mut pairs = Vec::new();
            for (i, spec) in specs.iter().enumerate() {
                let base = format!("PrivateIpAddresses.{}", i + 1);
                pairs.push((format!("{base}.PrivateIpAddress"), spec.address.to_string()));
                pairs.push((format!("{base}.Primary"), spec.primary.to_string()));
            }
            assert_eq!(
                Params::parse(&encode(&pairs)).private_ip_specs().ok(),
                Some(specs)
            );
        }
        Err(error) => names(&error, "PrivateIpAddresses."),
    }

    match params.cidr_member_list("Ipv4Prefix", "Ipv4Prefix") {
        Ok(cidrs) => {
            let pairs: Vec<(String, String)> = cidrs
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("Ipv4Prefix.{}.Ipv4Prefix", i + 1), c.to_string()))
                .collect();
            let again = Params::parse(&encode(&pairs));
            assert_eq!(
                again.cidr_member_list("Ipv4Prefix", "Ipv4Prefix").ok(),
                Some(cidrs)
            );
        }
        Err(error) => names(&error, "Ipv4Prefix."),
    }
});
