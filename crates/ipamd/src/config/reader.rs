//! Reading variables: each through a lookup function (tests pass a map), every problem collected.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::{InvalidVariable, ListenAddress};

/// Reads variables through a lookup function (tests pass a map) and collects every problem.
pub(super) struct Reader<F> {
    pub(super) lookup: F,
    pub(super) errors: Vec<InvalidVariable>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn raw(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn invalid(&mut self, variable: &'static str, value: &str, accepted: impl Into<String>) {
        self.errors.push(InvalidVariable {
            variable,
            value: value.to_owned(),
            accepted: accepted.into(),
        });
    }

    /// Go's strconv.ParseBool spellings, which the original's manifests use.
    pub(super) fn bool(&mut self, variable: &'static str, default: bool) -> bool {
        let Some(value) = self.raw(variable) else {
            return default;
        };
        match value.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => {
                self.invalid(variable, &value, "true or false");
                default
            }
        }
    }

    pub(super) fn number(&mut self, variable: &'static str, default: u32, min: u32, max: u32) -> u32 {
        let Some(value) = self.raw(variable) else {
            return default;
        };
        match value.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                let accepted = if max == u32::MAX {
                    format!("a whole number ({min} or more)")
                } else {
                    format!("a whole number from {min} to {max}")
                };
                self.invalid(variable, &value, accepted);
                default
            }
        }
    }

    pub(super) fn optional_number(&mut self, variable: &'static str, min: u32) -> Option<u32> {
        let value = self.raw(variable)?;
        match value.parse::<u32>() {
            Ok(n) if n >= min => Some(n),
            // The original's manifests write MAX_ENI=-1 for "no limit".
            _ if value == "-1" => None,
            _ => {
                self.invalid(
                    variable,
                    &value,
                    format!("a whole number ({min} or more), or -1 for no limit"),
                );
                None
            }
        }
    }

    pub(super) fn choice(
        &mut self,
        variable: &'static str,
        default: &'static str,
        accepted: &[&'static str],
    ) -> String {
        let Some(value) = self.raw(variable) else {
            return default.to_owned();
        };
        let lower = value.to_ascii_lowercase();
        if accepted.contains(&lower.as_str()) {
            lower
        } else {
            self.invalid(variable, &value, format!("one of {}", accepted.join(", ")));
            default.to_owned()
        }
    }

    pub(super) fn cidrs(&mut self, variable: &'static str) -> Vec<Ipv4Net> {
        let Some(value) = self.raw(variable) else {
            return Vec::new();
        };
        let mut cidrs = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<Ipv4Net>() {
                Ok(cidr) => cidrs.push(cidr.trunc()),
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

    pub(super) fn listen(&mut self, variable: &'static str, default: &str) -> ListenAddress {
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

    pub(super) fn absolute_path(&mut self, variable: &'static str, default: &str) -> PathBuf {
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
