//! Typed EC2 errors.

use std::fmt;

/// What went wrong, in the terms the daemon needs to explain a missing address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ec2ErrorKind {
    /// `RequestLimitExceeded` (or `Throttling`): the account's API rate was exceeded.
    Throttled,
    /// `InsufficientFreeAddressesInSubnet`: the subnet has no free address.
    InsufficientFreeAddressesInSubnet,
    /// `InsufficientCidrBlocks`: the subnet has addresses but no free aligned /28.
    InsufficientCidrBlocks,
    /// `AttachmentLimitExceeded`: the instance (or network card) has no free ENI slot.
    AttachmentLimitExceeded,
    /// `PrivateIpAddressLimitExceeded`: the ENI has no free address or prefix slot.
    AddressLimitExceeded,
    /// `Invalid*.NotFound`: the resource does not exist (any more).
    NotFound,
    /// `InvalidParameterValue`, `InvalidParameterCombination`, `MissingParameter`, …: the request was wrong.
    InvalidParameter,
    /// Transport failure, timeout, instance metadata unreachable.
    Unavailable,
    /// Anything else.
    Other,
}

impl Ec2ErrorKind {
    /// Classifies an EC2 error code.
    pub fn from_code(code: &str) -> Self {
        match code {
            "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => Self::Throttled,
            "InsufficientFreeAddressesInSubnet" => Self::InsufficientFreeAddressesInSubnet,
            "InsufficientCidrBlocks" => Self::InsufficientCidrBlocks,
            "AttachmentLimitExceeded" => Self::AttachmentLimitExceeded,
            "PrivateIpAddressLimitExceeded" | "AddressLimitExceeded" => Self::AddressLimitExceeded,
            "InvalidParameterValue"
            | "InvalidParameterCombination"
            | "MissingParameter"
            | "InvalidParameter"
            | "InvalidAction"
            | "InvalidRequest" => Self::InvalidParameter,
            code if code.ends_with(".NotFound") => Self::NotFound,
            code if code.ends_with(".Malformed") => Self::InvalidParameter,
            _ => Self::Other,
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Unavailable)
    }
}

impl fmt::Display for Ec2ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Throttled => "EC2 throttled the request",
            Self::InsufficientFreeAddressesInSubnet => "subnet has no free addresses",
            Self::InsufficientCidrBlocks => "subnet has no free /28 block",
            Self::AttachmentLimitExceeded => "instance has no free ENI slot",
            Self::AddressLimitExceeded => "ENI has no free address slot",
            Self::NotFound => "not found",
            Self::InvalidParameter => "invalid request",
            Self::Unavailable => "EC2 or instance metadata unreachable",
            Self::Other => "EC2 error",
        })
    }
}

/// An EC2 error: its kind, EC2's own code (e.g. `InvalidNetworkInterfaceID.NotFound`) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    /// Classification.
    pub kind: Ec2ErrorKind,
    /// EC2's error code, as on the wire.
    pub code: String,
    /// EC2's message.
    pub message: String,
}

impl Ec2Error {
    /// Builds an error from an EC2 code, classifying it.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        Self {
            kind: Ec2ErrorKind::from_code(&code),
            code,
            message: message.into(),
        }
    }

    /// A transport-level failure (no EC2 answer at all).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: Ec2ErrorKind::Unavailable,
            code: "Unavailable".to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        for (code, kind) in [
            ("RequestLimitExceeded", Ec2ErrorKind::Throttled),
            (
                "InsufficientFreeAddressesInSubnet",
                Ec2ErrorKind::InsufficientFreeAddressesInSubnet,
            ),
            ("InsufficientCidrBlocks", Ec2ErrorKind::InsufficientCidrBlocks),
            ("AttachmentLimitExceeded", Ec2ErrorKind::AttachmentLimitExceeded),
            (
                "PrivateIpAddressLimitExceeded",
                Ec2ErrorKind::AddressLimitExceeded,
            ),
            ("InvalidNetworkInterfaceID.NotFound", Ec2ErrorKind::NotFound),
            ("InvalidSubnetID.NotFound", Ec2ErrorKind::NotFound),
            (
                "InvalidNetworkInterfaceID.Malformed",
                Ec2ErrorKind::InvalidParameter,
            ),
            ("InvalidParameterValue", Ec2ErrorKind::InvalidParameter),
            ("UnauthorizedOperation", Ec2ErrorKind::Other),
        ] {
            assert_eq!(Ec2ErrorKind::from_code(code), kind, "{code}");
        }
        assert!(
            Ec2Error::new("RequestLimitExceeded", "slow down")
                .kind
                .is_retryable()
        );
        assert!(!Ec2Error::new("InsufficientCidrBlocks", "").kind.is_retryable());
    }
}
