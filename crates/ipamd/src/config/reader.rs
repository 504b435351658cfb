//! Reading variables: each through a lookup function (tests pass a map), every problem collected.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use vpcni_engine::settings::EnvReader;

use super::{Ec2Backend, ListenAddress};

/// ipamd's own kinds of variable, read with the engine's [`EnvReader`] (which reads the shared ones).
pub(super) trait ConfigReader {
    /// AWS_VPC_K8S_CNI_LOGLEVEL.
    fn log_level(&mut self, variable: &'static str) -> String;
    /// VPCNI_EC2_BACKEND.
    fn ec2_backend(&mut self, variable: &'static str) -> Ec2Backend;
    /// ADDITIONAL_ENI_TAGS.
    fn eni_tags(&mut self, variable: &'static str) -> Vec<(String, String)>;
    /// A comma-separated list of IPv4 CIDRs.
    fn cidrs(&mut self, variable: &'static str) -> Vec<Ipv4Net>;
    /// A listen address.
    fn listen(&mut self, variable: &'static str, default: &str) -> ListenAddress;
    /// An absolute path.
    fn absolute_path(&mut self, variable: &'static str, default: &str) -> PathBuf;
}

/// The original's log levels (its zap logger lower-cases the value), plus `trace`.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

impl<F: Fn(&str) -> Option<String>> ConfigReader for EnvReader<F> {
    /// AWS_VPC_K8S_CNI_LOGLEVEL: any case, as the original; an unknown level is `debug` there (its
    /// default) and here, with a warning — a typo in it changes nothing but the log's volume.
    fn log_level(&mut self, variable: &'static str) -> String {
        let Some(value) = self.raw(variable) else {
            return "debug".to_owned();
        };
        let lower = value.to_ascii_lowercase();
        if LOG_LEVELS.contains(&lower.as_str()) {
            lower
        } else {
            self.warn(
                variable,
                &value,
                format!(
                    "not one of {}; logging at debug, as the original does",
                    LOG_LEVELS.join(", ")
                ),
            );
            "debug".to_owned()
        }
    }

    /// VPCNI_EC2_BACKEND: required, so the daemon never reaches for EC2 nobody asked it to use.
    fn ec2_backend(&mut self, variable: &'static str) -> Ec2Backend {
        let value = self.raw(variable).unwrap_or_default();
        if value != "aws" {
            self.invalid(
                variable,
                &value,
                "aws (EC2 and instance metadata through the AWS SDK; point AWS_EC2_ENDPOINT and \
                 AWS_EC2_METADATA_SERVICE_ENDPOINT at `vpcnictl sim serve` to run without AWS)",
            );
        }
        Ec2Backend::Aws
    }

    /// ADDITIONAL_ENI_TAGS: a JSON object of strings. A key containing `k8s.amazonaws.com` is dropped with
    /// a warning, as the original drops it. Text that is not such an object is refused (the original
    /// drops every tag, which its own source marks as a stopgap), and so is a key EC2 would refuse.
    fn eni_tags(&mut self, variable: &'static str) -> Vec<(String, String)> {
        let Some(value) = self.raw(variable) else {
            return Vec::new();
        };
        let accepted = "a JSON object of string tags, e.g. {\"team\":\"net\"}, keys of 1 to 128 characters";
        let Ok(tags) = serde_json::from_str::<std::collections::BTreeMap<String, String>>(&value) else {
            self.invalid(variable, &value, accepted);
            return Vec::new();
        };
        if tags.keys().any(|k| k.is_empty() || k.chars().count() > 128) {
            self.invalid(variable, &value, accepted);
            return Vec::new();
        }
        let (reserved, kept): (Vec<_>, Vec<_>) = tags
            .into_iter()
            .partition(|(key, _)| key.contains("k8s.amazonaws.com"));
        for (key, _) in reserved {
            self.warn(
                variable,
                &value,
                format!(
                    "tag {key:?} dropped: keys containing k8s.amazonaws.com are reserved, as in the original"
                ),
            );
        }
        kept
    }

    fn cidrs(&mut self, variable: &'static str) -> Vec<Ipv4Net> {
        let Some(value) = self.raw(variable) else {
            return Vec::new();
        };
        let mut cidrs = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<Ipv4Net>() {
                Ok(cidr) => cidrs.push(cidr.trunc()),
                // The original skips IPv6 entries: they have no meaning in an IPv4 cluster.
                Err(_) if part.parse::<ipnet::Ipv6Net>().is_ok() => {
                    self.warn(
                        variable,
                        &value,
                        format!("IPv6 entry {part:?} skipped: the cluster is IPv4, as the original skips it"),
                    );
                }
                // The original skips an entry that is no CIDR at all too; vpcni refuses it, because the
                // entry decides which traffic is SNATed or leaves through the main table.
                Err(_) => {
                    self.invalid(
                        variable,
                        &value,
                        format!("comma-separated IPv4 CIDRs such as 10.1.0.0/16 ({part:?} is not one)"),
                    );
                    return Vec::new();
                }
            }
        }
        cidrs
    }

    fn listen(&mut self, variable: &'static str, default: &str) -> ListenAddress {
        let value = self.raw(variable).unwrap_or_else(|| default.to_owned());
        if let Some(path) = value.strip_prefix("unix:") {
            if path.starts_with('/') {
                return ListenAddress::Unix(PathBuf::from(path));
            }
        } else if let Ok(address) = value.parse::<SocketAddr>() {
            return ListenAddress::Tcp(address);
        } else if let Some(port) = value.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
            // Go's ":61678" means every interface.
            return ListenAddress::Tcp(SocketAddr::from(([0, 0, 0, 0], port)));
        }
        self.invalid(
            variable,
            &value,
            "HOST:PORT such as 127.0.0.1:61679, :PORT, or unix:/absolute/path",
        );
        ListenAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn absolute_path(&mut self, variable: &'static str, default: &str) -> PathBuf {
        let value = self.raw(variable).unwrap_or_else(|| default.to_owned());
        if value.starts_with('/') && !value.split('/').any(|p| p == "..") {
            PathBuf::from(value)
        } else {
            self.invalid(variable, &value, "an absolute path without '..'");
            PathBuf::from(default)
        }
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: `0x` hex, `0o`/leading-0 octal, `0b` binary, else decimal.
pub(super) fn parse_with_base_prefix(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        u32::from_str_radix(hex, 16).ok()
    } else if let Some(binary) = lower.strip_prefix("0b") {
        u32::from_str_radix(binary, 2).ok()
    } else if let Some(octal) = lower.strip_prefix("0o") {
        u32::from_str_radix(octal, 8).ok()
    } else if lower.len() > 1 && lower.starts_with('0') {
        u32::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse().ok()
    }
}
