//! CNI versions: which configurations we accept and how results are shaped for each.

use serde_json::json;

use super::error::{CniError, ErrorCode};

/// Every version this plugin reads configurations of and writes results in.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A supported CNI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 0.3.0 and 0.3.1 (results as in 0.4.0; no CHECK).
    V0_3,
    /// 0.4.0: adds CHECK; IPs carry a `version` field.
    V0_4,
    /// 1.0.0: IPs lose `version`.
    V1_0,
    /// 1.1.0: adds STATUS and GC.
    V1_1,
}

impl Version {
    /// Parses a `cniVersion` string.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        match text {
            "0.3.0" | "0.3.1" => Ok(Self::V0_3),
            "0.4.0" => Ok(Self::V0_4),
            "1.0.0" => Ok(Self::V1_0),
            "1.1.0" => Ok(Self::V1_1),
            other => Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("unsupported CNI version {other:?}"),
                format!("supported: {}", SUPPORTED_VERSIONS.join(", ")),
            )),
        }
    }

    /// Whether result IPs carry the `"version": "4"` field (before 1.0.0).
    pub fn ips_have_version_field(self) -> bool {
        self < Self::V1_0
    }

    /// Whether result interfaces may carry `mtu` (added in 1.1.0).
    pub fn interfaces_have_mtu(self) -> bool {
        self >= Self::V1_1
    }

    /// Whether the CHECK command exists in this version.
    pub fn has_check(self) -> bool {
        self >= Self::V0_4
    }

    /// Whether STATUS and GC exist in this version.
    pub fn has_status_and_gc(self) -> bool {
        self >= Self::V1_1
    }
}

/// The VERSION command's answer.
pub fn version_reply(cni_version: &str) -> String {
    json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS }).to_string()
}
