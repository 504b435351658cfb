//! The number to give kubelet `--max-pods`, derived the way EKS derives it, with the original
//! calculator's known mistakes fixed (prefix delegation on bare metal) and every step explained.
//!
//! Secondary-IP mode: `ENIs × (IPv4 per ENI − 1) + 2`; prefix mode: `ENIs × (IPv4 per ENI − 1) × 16 + 2`.
//! The `+ 2` is for the host-network pods (aws-node, kube-proxy). ENIs are those of the default network card,
//! less the ones that carry no pod addresses (custom networking's primary ENI, a trunk ENI's slot).
//! Managed node groups then cap the result: 110 for types with 30 vCPUs or fewer, 250 above.
//!
//! IPv6 ([`max_pods_ipv6`]): pods take /128s from the primary ENI's /80, so addresses do not limit density;
//! EKS gives IPv6 nodes the prefix-delegation number (the formula above with × 16) under the same cap, which
//! is the cap on every type but the smallest. Nitro and bare-metal types only: EC2 delegates /80s to no other.

use serde::Serialize;

use crate::InstanceLimits;

/// Addresses in one /28 prefix.
pub const IPS_PER_PREFIX: u32 = 16;
/// Host-network pods that need no VPC address (aws-node and kube-proxy).
pub const HOST_NETWORK_PODS: u32 = 2;
/// vCPU count above which the larger cap applies.
pub const LARGE_INSTANCE_VCPUS: u32 = 30;
/// Cap for instances with at most [`LARGE_INSTANCE_VCPUS`] vCPUs.
pub const SMALL_INSTANCE_CAP: u32 = 110;
/// Cap for larger instances.
pub const LARGE_INSTANCE_CAP: u32 = 250;

/// How the node's pods get addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressMode {
    /// One secondary IPv4 address per ENI slot.
    SecondaryIp,
    /// One /28 prefix (16 addresses) per ENI slot.
    PrefixDelegation,
    /// IPv6 mode: one /80 on the primary ENI; the number is prefix delegation's, as EKS computes it.
    Ipv6,
}

impl AddressMode {
    /// Name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecondaryIp => "secondary-ip",
            Self::PrefixDelegation => "prefix-delegation",
            Self::Ipv6 => "ipv6",
        }
    }
}

/// What the node is configured to do, as far as max pods is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxPodsOptions {
    /// ENABLE_PREFIX_DELEGATION.
    pub prefix_delegation: bool,
    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: the primary ENI carries no pod addresses.
    pub custom_networking: bool,
    /// MAX_ENI: at most this many ENIs.
    pub max_eni: Option<u32>,
    /// ENABLE_POD_ENI: one ENI slot is kept for the trunk ENI on trunking-compatible types.
    pub security_groups_for_pods: bool,
    /// Report the IP-limited value without the 110 / 250 cap.
    pub show_max_allowed: bool,
}

/// The result and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaxPods {
    /// Instance type.
    pub instance_type: String,
    /// The value for kubelet `--max-pods`.
    pub max_pods: u32,
    /// What the addresses alone allow, before any cap.
    pub ip_limited_max_pods: u32,
    /// The cap that applies to this type (`None` when `show_max_allowed` was asked for).
    pub cap: Option<u32>,
    /// Address mode actually used (prefix delegation falls back on types without it).
    pub mode: AddressMode,
    /// ENIs whose slots carry pod addresses.
    pub enis_used: u32,
    /// Pod addresses per such ENI.
    pub ips_per_eni: u32,
    /// ENIs on the default network card, before any reduction.
    pub max_enis: u32,
    /// IPv4 addresses per ENI as EC2 publishes it (primary included).
    pub ipv4_per_eni: u32,
    /// Every adjustment made, in plain words.
    pub notes: Vec<String>,
}

impl MaxPods {
    /// One line saying how the number was derived.
    pub fn derivation(&self) -> String {
        let per_eni = match self.mode {
            AddressMode::SecondaryIp => format!("({} − 1) IPs", self.ipv4_per_eni),
            AddressMode::PrefixDelegation | AddressMode::Ipv6 => {
                format!("({} − 1) prefixes × {IPS_PER_PREFIX} IPs", self.ipv4_per_eni)
            }
        };
        let mut line = format!(
            "{}: {} ENIs × {per_eni} + {HOST_NETWORK_PODS} host-network pods = {}",
            self.mode.as_str(),
            self.enis_used,
            self.ip_limited_max_pods
        );
        match self.cap {
            Some(cap) if cap < self.ip_limited_max_pods => {
                line.push_str(&format!(", capped at {cap} → {}", self.max_pods));
            }
            Some(cap) => line.push_str(&format!(" (under the cap of {cap})")),
            None => line.push_str(" (no cap: --show-max-allowed)"),
        }
        line
    }
}

/// Why a type cannot run IPv6 pods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{instance_type} cannot run IPv6 pods: they take their addresses from a /80 prefix, which EC2 delegates to \
     Nitro and bare-metal types only, and {instance_type} is {hypervisor} (ipamd refuses ENABLE_IPv6=true on it)"
)]
pub struct NoIpv6 {
    /// The type.
    pub instance_type: String,
    /// Its hypervisor.
    pub hypervisor: String,
}

/// Max pods for an IPv6 node (ENABLE_IPv6=true): prefix delegation's number, as EKS gives IPv6 nodes, then
/// the cap; refused for types that cannot hold a /80. Custom networking does not apply (ipamd refuses it
/// with IPv6), so it is ignored here with a note.
pub fn max_pods_ipv6(limits: &InstanceLimits, options: &MaxPodsOptions) -> Result<MaxPods, NoIpv6> {
    if !limits.supports_prefix_delegation() {
        return Err(NoIpv6 {
            instance_type: limits.instance_type.clone(),
            hypervisor: limits.hypervisor.to_string(),
        });
    }
    let mut result = max_pods(
        limits,
        &MaxPodsOptions {
            prefix_delegation: true,
            custom_networking: false,
            ..*options
        },
    );
    result.mode = AddressMode::Ipv6;
    let mut notes = vec![
        "IPv6: pods take /128s from the primary ENI's /80 (2^48 addresses), so addresses do not limit density; \
         the number is prefix delegation's, as EKS gives IPv6 nodes"
            .to_owned(),
    ];
    if options.custom_networking {
        notes.push("custom networking does not apply to IPv6 (ipamd refuses the pair): ignored".to_owned());
    }
    notes.append(&mut result.notes);
    result.notes = notes;
    Ok(result)
}

/// Computes max pods for one type.
pub fn max_pods(limits: &InstanceLimits, options: &MaxPodsOptions) -> MaxPods {
    let mut notes = Vec::new();
    let mut enis = limits.max_enis;

    if let Some(max_eni) = options.max_eni {
        if max_eni < enis {
            notes.push(format!(
                "MAX_ENI={max_eni} limits the node to {max_eni} of {enis} ENIs"
            ));
            enis = max_eni;
        } else {
            notes.push(format!(
                "MAX_ENI={max_eni} is not below the type's {enis} ENIs; no effect"
            ));
        }
    }

    if options.custom_networking && enis > 0 {
        enis -= 1;
        notes.push("custom networking: the primary ENI carries no pod addresses (ENIs − 1)".to_owned());
    }

    if options.security_groups_for_pods {
        match limits.trunking_compatible() {
            Some(true) if enis > 0 => {
                enis -= 1;
                notes.push("security groups for pods: one ENI slot is kept for the trunk ENI (ENIs − 1); branch-ENI pods count separately".to_owned());
            }
            Some(true) => notes.push(
                "security groups for pods: no ENI slot is left for a trunk ENI, so ipamd will not enable it"
                    .to_owned(),
            ),
            Some(false) => notes.push(format!(
                "security groups for pods: {} is not trunking-compatible; no slot reserved",
                limits.instance_type
            )),
            None => notes.push(format!(
                "security groups for pods: trunk support of {} is unknown; no slot reserved",
                limits.instance_type
            )),
        }
    }

    let mode = if options.prefix_delegation {
        if limits.supports_prefix_delegation() {
            AddressMode::PrefixDelegation
        } else {
            notes.push(format!(
                "prefix delegation needs a Nitro or bare-metal type; {} is {}, so ipamd falls back to secondary IPs",
                limits.instance_type, limits.hypervisor
            ));
            AddressMode::SecondaryIp
        }
    } else {
        AddressMode::SecondaryIp
    };

    let slots_per_eni = limits.ipv4_per_eni.saturating_sub(1);
    let ips_per_eni = match mode {
        AddressMode::SecondaryIp => slots_per_eni,
        AddressMode::PrefixDelegation | AddressMode::Ipv6 => slots_per_eni * IPS_PER_PREFIX,
    };
    if enis == 0 {
        notes.push("no ENI is left for pod addresses: only host-network pods can run".to_owned());
    }
    let ip_limited_max_pods = enis * ips_per_eni + HOST_NETWORK_PODS;

    let cap = if options.show_max_allowed {
        None
    } else {
        Some(match limits.default_vcpus {
            Some(vcpus) if vcpus > LARGE_INSTANCE_VCPUS => LARGE_INSTANCE_CAP,
            Some(_) => SMALL_INSTANCE_CAP,
            None => {
                notes.push(format!(
                    "vCPU count of {} is unknown: the lower cap ({SMALL_INSTANCE_CAP}) applies; --show-max-allowed gives the IP limit",
                    limits.instance_type
                ));
                SMALL_INSTANCE_CAP
            }
        })
    };
    let max_pods = cap.map_or(ip_limited_max_pods, |cap| ip_limited_max_pods.min(cap));

    MaxPods {
        instance_type: limits.instance_type.clone(),
        max_pods,
        ip_limited_max_pods,
        cap,
        mode,
        enis_used: enis,
        ips_per_eni,
        max_enis: limits.max_enis,
        ipv4_per_eni: limits.ipv4_per_eni,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;

    fn for_type(name: &str, options: MaxPodsOptions) -> MaxPods {
        max_pods(builtin().get(name).unwrap(), &options)
    }

    const UNCAPPED: MaxPodsOptions = MaxPodsOptions {
        prefix_delegation: false,
        custom_networking: false,
        max_eni: None,
        security_groups_for_pods: false,
        show_max_allowed: true,
    };

    #[test]
    fn secondary_ip_formula_holds_for_every_row() {
        for limits in builtin().iter() {
            let result = max_pods(limits, &UNCAPPED);
            assert_eq!(
                result.max_pods,
                limits.max_enis * (limits.ipv4_per_eni - 1) + 2,
                "{}",
                limits.instance_type
            );
            assert_eq!(result.cap, None);
            assert_eq!(result.mode, AddressMode::SecondaryIp);
        }
    }

    #[test]
    fn published_values() {
        for (name, expected) in [
            ("m5.xlarge", 58),
            ("t3.medium", 17),
            ("m5.24xlarge", 737),
            ("p5.48xlarge", 100),
        ] {
            assert_eq!(for_type(name, UNCAPPED).max_pods, expected, "{name}");
        }
    }

    #[test]
    fn caps_follow_vcpus() {
        let m5_xlarge = for_type("m5.xlarge", MaxPodsOptions::default());
        assert_eq!((m5_xlarge.max_pods, m5_xlarge.cap), (58, Some(110)));
        let m5_24 = for_type("m5.24xlarge", MaxPodsOptions::default());
        assert_eq!(
            (m5_24.max_pods, m5_24.ip_limited_max_pods, m5_24.cap),
            (250, 737, Some(250))
        );
        // 32 vCPUs is above 30: the large cap. c5.9xlarge has 36 vCPUs, 8 ENIs × 29 + 2 = 234.
        assert_eq!(for_type("c5.9xlarge", MaxPodsOptions::default()).cap, Some(250));
        // 16 vCPUs, 4 ENIs of 30 → 118 IPs, capped to 110.
        let m5_4 = for_type("m5.4xlarge", MaxPodsOptions::default());
        assert_eq!((m5_4.ip_limited_max_pods, m5_4.max_pods), (234, 110));
        for limits in builtin().iter() {
            let capped = max_pods(limits, &MaxPodsOptions::default());
            let cap = capped.cap.unwrap();
            assert!(capped.max_pods <= cap && capped.max_pods <= capped.ip_limited_max_pods);
            assert_eq!(capped.max_pods, capped.ip_limited_max_pods.min(cap));
            match limits.default_vcpus {
                Some(v) if v > 30 => assert_eq!(cap, 250, "{}", limits.instance_type),
                _ => assert_eq!(cap, 110, "{}", limits.instance_type),
            }
        }
    }

    #[test]
    fn prefix_delegation_on_nitro_and_bare_metal_but_not_xen() {
        let pd = MaxPodsOptions {
            prefix_delegation: true,
            ..UNCAPPED
        };
        let m5 = for_type("m5.xlarge", pd);
        assert_eq!(
            (m5.mode, m5.max_pods),
            (AddressMode::PrefixDelegation, 4 * 14 * 16 + 2)
        );
        // Bare metal reports no hypervisor; ipamd still supports prefixes there.
        let metal = for_type("m5.metal", pd);
        assert_eq!(
            (metal.mode, metal.max_pods),
            (AddressMode::PrefixDelegation, 15 * 49 * 16 + 2)
        );
        let xen = for_type("m4.large", pd);
        assert_eq!((xen.mode, xen.max_pods), (AddressMode::SecondaryIp, 2 * 9 + 2));
        assert!(
            xen.notes.iter().any(|n| n.contains("Nitro") && n.contains("xen")),
            "{:?}",
            xen.notes
        );
        let old = for_type("cr1.8xlarge", pd);
        assert_eq!(old.mode, AddressMode::SecondaryIp);
        for limits in builtin().iter() {
            let result = max_pods(limits, &pd);
            let expected_mode = if limits.hypervisor == crate::Hypervisor::Nitro || limits.bare_metal {
                AddressMode::PrefixDelegation
            } else {
                AddressMode::SecondaryIp
            };
            assert_eq!(result.mode, expected_mode, "{}", limits.instance_type);
        }
        // Capped, prefix mode on a small type hits 110.
        assert_eq!(
            for_type(
                "m5.xlarge",
                MaxPodsOptions {
                    prefix_delegation: true,
                    ..Default::default()
                }
            )
            .max_pods,
            110
        );
    }

    #[test]
    fn custom_networking_drops_the_primary_eni() {
        let custom = for_type(
            "m5.xlarge",
            MaxPodsOptions {
                custom_networking: true,
                ..UNCAPPED
            },
        );
        assert_eq!((custom.enis_used, custom.max_pods), (3, 3 * 14 + 2));
        assert!(!custom.notes.is_empty());
    }

    #[test]
    fn max_eni_takes_the_minimum() {
        let limited = for_type(
            "m5.xlarge",
            MaxPodsOptions {
                max_eni: Some(2),
                ..UNCAPPED
            },
        );
        assert_eq!((limited.enis_used, limited.max_pods), (2, 30));
        let above = for_type(
            "m5.xlarge",
            MaxPodsOptions {
                max_eni: Some(9),
                ..UNCAPPED
            },
        );
        assert_eq!(above.max_pods, 58);
        let both = for_type(
            "m5.xlarge",
            MaxPodsOptions {
                max_eni: Some(2),
                custom_networking: true,
                ..UNCAPPED
            },
        );
        assert_eq!(both.max_pods, 14 + 2);
    }

    #[test]
    fn security_groups_for_pods_reserve_a_slot_only_where_trunking_works() {
        let sgp = MaxPodsOptions {
            security_groups_for_pods: true,
            ..UNCAPPED
        };
        let m5 = for_type("m5.xlarge", sgp);
        assert_eq!((m5.enis_used, m5.max_pods), (3, 44));
        // t3 types are not trunking-compatible (branch_interfaces 0): nothing reserved.
        let t3 = for_type("t3.medium", sgp);
        assert_eq!(t3.max_pods, 17);
        assert!(t3.notes.iter().any(|n| n.contains("not trunking-compatible")));
        // Unknown trunk support (empty column): nothing reserved, said so.
        let unknown = builtin().iter().find(|l| l.branch_interfaces.is_none()).unwrap();
        let result = max_pods(unknown, &sgp);
        assert_eq!(result.enis_used, unknown.max_enis);
        assert!(result.notes.iter().any(|n| n.contains("unknown")));
    }

    #[test]
    fn no_eni_left_means_host_network_pods_only() {
        let t2 = builtin().get("t2.nano").unwrap();
        let result = max_pods(
            t2,
            &MaxPodsOptions {
                max_eni: Some(1),
                custom_networking: true,
                ..UNCAPPED
            },
        );
        assert_eq!((result.enis_used, result.max_pods), (0, 2));
    }

    #[test]
    fn ipv6_is_prefix_delegations_number_under_the_cap_and_nitro_only() {
        let capped = MaxPodsOptions {
            show_max_allowed: false,
            ..UNCAPPED
        };
        let m5 = max_pods_ipv6(builtin().get("m5.large").unwrap(), &capped).unwrap();
        assert_eq!(
            (m5.mode, m5.ip_limited_max_pods, m5.max_pods),
            (AddressMode::Ipv6, 434, 110)
        );
        let big = max_pods_ipv6(builtin().get("m5.24xlarge").unwrap(), &capped).unwrap();
        assert_eq!(big.max_pods, 250);
        // The smallest Nitro types stay under the cap, as with prefix delegation.
        let nano = max_pods_ipv6(builtin().get("t3.nano").unwrap(), &capped).unwrap();
        // 2 ENIs × (2 − 1) prefixes × 16 + 2.
        assert_eq!(nano.max_pods, 34);
        assert!(
            m5.derivation()
                .starts_with("ipv6: 3 ENIs × (10 − 1) prefixes × 16 IPs"),
            "{}",
            m5.derivation()
        );
        let refused = max_pods_ipv6(builtin().get("m4.large").unwrap(), &capped).unwrap_err();
        assert!(
            refused.to_string().contains("m4.large") && refused.to_string().contains("xen"),
            "{refused}"
        );
        for limits in builtin().iter() {
            let pd = max_pods(
                limits,
                &MaxPodsOptions {
                    prefix_delegation: true,
                    ..capped
                },
            );
            match max_pods_ipv6(limits, &capped) {
                Ok(ipv6) => assert_eq!(ipv6.max_pods, pd.max_pods, "{}", limits.instance_type),
                Err(_) => assert!(!limits.supports_prefix_delegation(), "{}", limits.instance_type),
            }
        }
    }

    #[test]
    fn derivation_explains_the_number() {
        let text = for_type("m5.24xlarge", MaxPodsOptions::default()).derivation();
        assert_eq!(
            text,
            "secondary-ip: 15 ENIs × (50 − 1) IPs + 2 host-network pods = 737, capped at 250 → 250"
        );
    }
}
