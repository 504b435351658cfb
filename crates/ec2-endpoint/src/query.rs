//! EC2 Query API requests: `Action=…&Version=…&Name.1=…` form parameters, with EC2's list and struct
//! flattening (`Filter.1.Name`, `Filter.1.Value.1`, `TagSpecification.1.Tag.1.Key`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_ec2::{Ec2Error, Filter, PrivateIpSpec, Tags};

/// Largest request body accepted; real EC2 requests of the kinds served here are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

fn missing(name: &str) -> Ec2Error {
    Ec2Error::new(
        "MissingParameter",
        format!("The request must contain the parameter {name}"),
    )
}

fn malformed(name: &str, value: &str, expected: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidParameterValue",
        format!("Value ({value}) for parameter {name} is invalid. Expected {expected}."),
    )
}

impl Params {
    /// Parses a form-encoded body or query string. Non-UTF-8 text is replaced, never trusted.
    pub fn parse(body: &[u8]) -> Self {
        Self {
            map: form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Adds parameters (a query string alongside a body).
    pub fn extend(&mut self, other: Params) {
        self.map.extend(other.map);
    }

    /// A parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A required parameter.
    pub fn required(&self, name: &str) -> Result<&str, Ec2Error> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing(name))
    }

    /// An optional number.
    pub fn number(&self, name: &str) -> Result<Option<u32>, Ec2Error> {
        self.get(name)
            .map(|v| v.parse::<u32>().map_err(|_| malformed(name, v, "a whole number")))
            .transpose()
    }

    /// An optional boolean.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, Ec2Error> {
        self.get(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(malformed(name, v, "true or false")),
            })
            .transpose()
    }

    /// An optional IPv4 address.
    pub fn ip(&self, name: &str) -> Result<Option<Ipv4Addr>, Ec2Error> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| malformed(name, v, "an IPv4 address")))
            .transpose()
    }

    /// A required CIDR.
    pub fn cidr(&self, name: &str) -> Result<Ipv4Net, Ec2Error> {
        let value = self.required(name)?;
        value
            .parse()
            .map_err(|_| malformed(name, value, "an IPv4 CIDR block"))
    }

    /// `Name.1`, `Name.2`, … in order (EC2 numbers from 1; gaps end the list).
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.get(&format!("{name}.{i}")).map(str::to_owned))
            .collect()
    }

    /// A list of IPv4 addresses.
    pub fn ip_list(&self, name: &str) -> Result<Vec<Ipv4Addr>, Ec2Error> {
        self.list(name)
            .iter()
            .map(|v| v.parse().map_err(|_| malformed(name, v, "an IPv4 address")))
            .collect()
    }

    /// A list of CIDRs.
    pub fn cidr_list(&self, name: &str) -> Result<Vec<Ipv4Net>, Ec2Error> {
        self.list(name)
            .iter()
            .map(|v| v.parse().map_err(|_| malformed(name, v, "an IPv4 CIDR block")))
            .collect()
    }

    /// An optional IPv6 CIDR.
    pub fn ipv6_cidr(&self, name: &str) -> Result<Option<Ipv6Net>, Ec2Error> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| malformed(name, v, "an IPv6 CIDR block")))
            .transpose()
    }

    /// A list of IPv6 addresses.
    pub fn ipv6_list(&self, name: &str) -> Result<Vec<Ipv6Addr>, Ec2Error> {
        self.list(name)
            .iter()
            .map(|v| v.parse().map_err(|_| malformed(name, v, "an IPv6 address")))
            .collect()
    }

    /// A list of IPv6 CIDRs.
    pub fn ipv6_cidr_list(&self, name: &str) -> Result<Vec<Ipv6Net>, Ec2Error> {
        self.list(name)
            .iter()
            .map(|v| v.parse().map_err(|_| malformed(name, v, "an IPv6 CIDR block")))
            .collect()
    }

    /// CreateNetworkInterface's `PrivateIpAddresses.N.PrivateIpAddress` / `.Primary` entries.
    pub fn private_ip_specs(&self) -> Result<Vec<PrivateIpSpec>, Ec2Error> {
        let mut specs = Vec::new();
        for i in 1.. {
            let name = format!("PrivateIpAddresses.{i}.PrivateIpAddress");
            let Some(address) = self.ip(&name)? else {
                break;
            };
            let primary = self
                .boolean(&format!("PrivateIpAddresses.{i}.Primary"))?
                .unwrap_or(false);
            specs.push(PrivateIpSpec { address, primary });
        }
        Ok(specs)
    }

    /// A list of structures with one CIDR member each, e.g. CreateNetworkInterface's `Ipv4Prefix.N.Ipv4Prefix`.
    pub fn cidr_member_list(&self, name: &str, member: &str) -> Result<Vec<Ipv4Net>, Ec2Error> {
        let mut cidrs = Vec::new();
        for i in 1.. {
            let key = format!("{name}.{i}.{member}");
            let Some(value) = self.get(&key) else {
                break;
            };
            cidrs.push(
                value
                    .parse()
                    .map_err(|_| malformed(&key, value, "an IPv4 CIDR block"))?,
            );
        }
        Ok(cidrs)
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, Ec2Error> {
        let mut filters = Vec::new();
        for i in 1.. {
            let Some(name) = self.get(&format!("Filter.{i}.Name")) else {
                break;
            };
            let values = self.list(&format!("Filter.{i}.Value"));
            if values.is_empty() {
                return Err(missing(&format!("Filter.{i}.Value.1")));
            }
            filters.push(Filter {
                name: name.to_owned(),
                values,
            });
        }
        Ok(filters)
    }

    /// `Prefix.N.Key` / `Prefix.N.Value`.
    pub fn tags(&self, prefix: &str) -> Result<Tags, Ec2Error> {
        let mut tags = Tags::new();
        for i in 1.. {
            let Some(key) = self.get(&format!("{prefix}.{i}.Key")) else {
                break;
            };
            if key.is_empty() || key.len() > 128 {
                return Err(malformed(
                    &format!("{prefix}.{i}.Key"),
                    key,
                    "a tag key of 1 to 128 characters",
                ));
            }
            tags.insert(
                key.to_owned(),
                self.get(&format!("{prefix}.{i}.Value"))
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        Ok(tags)
    }

    /// Tags from `TagSpecification.N` entries for `resource_type`.
    pub fn tag_specifications(&self, resource_type: &str) -> Result<Tags, Ec2Error> {
        let mut tags = Tags::new();
        for i in 1.. {
            let Some(kind) = self.get(&format!("TagSpecification.{i}.ResourceType")) else {
                break;
            };
            if kind == resource_type {
                tags.extend(self.tags(&format!("TagSpecification.{i}.Tag"))?);
            }
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_flattening_is_read() {
        let params = Params::parse(
            b"Action=DescribeNetworkInterfaces&Filter.1.Name=tag-key&Filter.1.Value.1=a&Filter.1.Value.2=b\
              &Filter.2.Name=status&Filter.2.Value.1=available&NetworkInterfaceId.1=eni-1&NetworkInterfaceId.2=eni-2\
              &TagSpecification.1.ResourceType=network-interface&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v%20w",
        );
        let filters = params.filters().unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0].values, vec!["a", "b"]);
        assert_eq!(params.list("NetworkInterfaceId"), vec!["eni-1", "eni-2"]);
        assert_eq!(
            params.tag_specifications("network-interface").unwrap()["k"],
            "v w"
        );
        assert!(params.tag_specifications("instance").unwrap().is_empty());
    }

    #[test]
    fn create_network_interface_address_structures_are_read() {
        let params = Params::parse(
            b"PrivateIpAddresses.1.PrivateIpAddress=10.0.0.5&PrivateIpAddresses.1.Primary=true\
              &PrivateIpAddresses.2.PrivateIpAddress=10.0.0.6\
              &Ipv4Prefix.1.Ipv4Prefix=10.0.0.32%2F28&Ipv4Prefix.2.Ipv4Prefix=10.0.0.48/28",
        );
        assert_eq!(
            params.private_ip_specs().unwrap(),
            vec![
                PrivateIpSpec::primary(Ipv4Addr::new(10, 0, 0, 5)),
                PrivateIpSpec::secondary(Ipv4Addr::new(10, 0, 0, 6)),
            ]
        );
        assert_eq!(
            params.cidr_member_list("Ipv4Prefix", "Ipv4Prefix").unwrap(),
            vec![
                "10.0.0.32/28".parse::<Ipv4Net>().unwrap(),
                "10.0.0.48/28".parse::<Ipv4Net>().unwrap()
            ]
        );
        let bad = Params::parse(b"Ipv4Prefix.1.Ipv4Prefix=10.0.0.32&PrivateIpAddresses.1.PrivateIpAddress=x");
        let error = bad.cidr_member_list("Ipv4Prefix", "Ipv4Prefix").unwrap_err();
        assert!(error.message.contains("Ipv4Prefix.1.Ipv4Prefix"), "{error}");
        let error = bad.private_ip_specs().unwrap_err();
        assert!(
            error.message.contains("PrivateIpAddresses.1.PrivateIpAddress"),
            "{error}"
        );
    }

    #[test]
    fn ipv6_parameters_are_read() {
        let params = Params::parse(
            b"Ipv6Addresses.1=2600%3A1f14%3A%3A4&Ipv6Addresses.2=2600:1f14::5&Ipv6Prefix.1=2600:1f14:0:0:1::/80\
              &Ipv6CidrBlock=2600:1f14::/56&Bad.1=10.0.0.1",
        );
        assert_eq!(params.ipv6_list("Ipv6Addresses").unwrap().len(), 2);
        assert_eq!(
            params.ipv6_cidr_list("Ipv6Prefix").unwrap(),
            vec!["2600:1f14:0:0:1::/80".parse::<Ipv6Net>().unwrap()]
        );
        assert!(params.ipv6_cidr("Ipv6CidrBlock").unwrap().is_some());
        assert!(params.ipv6_cidr("Missing").unwrap().is_none());
        let error = params.ipv6_list("Bad").unwrap_err();
        assert_eq!(error.code, "InvalidParameterValue");
        assert!(error.message.contains("Bad"), "{error}");
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let params = Params::parse(b"MaxResults=lots&PrivateIpAddress.1=300.1.1.1&Filter.1.Name=x");
        assert!(
            params
                .number("MaxResults")
                .unwrap_err()
                .message
                .contains("MaxResults")
        );
        assert_eq!(
            params.ip_list("PrivateIpAddress").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(params.filters().unwrap_err().code, "MissingParameter");
        assert_eq!(params.required("SubnetId").unwrap_err().code, "MissingParameter");
    }
}
