//! The pool's settings read from ipamd's environment variables: the names, defaults, accepted values,
//! fallbacks and error lines of `vpcni-ipamd` (`crates/ipamd/src/config.rs` and its `config/reader.rs`), for
//! the variables that shape the pool. Pure: variables come in through a lookup function, so the planner
//! reads them from a cluster file and tests pass a map.
//!
//! The daemon reads its whole environment with this module's [`EnvReader`], and the pool's variables with
//! [`PoolSettings::read`], so a setting the daemon refuses is refused here with the same line, and a value
//! it accepts by falling back falls back here too, with the same warning: one definition for both.

use std::fmt;

use serde::Serialize;

use crate::model::Millis;
use crate::policy::PoolConfig;

/// One invalid variable: `NAME="value" is not valid: expected …`, as the daemon prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidSetting {
    /// Variable name.
    pub variable: &'static str,
    /// Value found.
    pub value: String,
    /// What is accepted.
    pub accepted: String,
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.variable, self.value, self.accepted
        )
    }
}

/// A value accepted by falling back, as the original does: `NAME="value": what was done instead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingWarning {
    /// Variable name.
    pub variable: &'static str,
    /// Value found.
    pub value: String,
    /// What was done instead.
    pub outcome: String,
}

impl fmt::Display for SettingWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.variable, self.value, self.outcome)
    }
}

/// The variables this module reads (every other ipamd variable has no effect on the pool's size).
pub const POOL_VARIABLES: [&str; 15] = [
    "WARM_ENI_TARGET",
    "WARM_IP_TARGET",
    "MINIMUM_IP_TARGET",
    "WARM_PREFIX_TARGET",
    "ENABLE_PREFIX_DELEGATION",
    "MAX_ENI",
    "IP_COOLDOWN_PERIOD",
    "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
    "ENABLE_POD_ENI",
    "DISABLE_NETWORK_RESOURCE_PROVISIONING",
    "ENABLE_IMDS_ONLY_MODE",
    "DISABLE_LEAKED_ENI_CLEANUP",
    "ENABLE_SUBNET_DISCOVERY",
    "ENABLE_IPv4",
    "ENABLE_IPv6",
];

/// The pool's settings, with the daemon's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSettings {
    /// WARM_ENI_TARGET (default 1).
    pub warm_eni_target: u32,
    /// WARM_IP_TARGET (0 = unset).
    pub warm_ip_target: u32,
    /// MINIMUM_IP_TARGET (0 = unset).
    pub minimum_ip_target: u32,
    /// WARM_PREFIX_TARGET (default 1 with prefix delegation, 0 without).
    pub warm_prefix_target: u32,
    /// ENABLE_PREFIX_DELEGATION.
    pub prefix_delegation: bool,
    /// MAX_ENI (`None` = the instance limit).
    pub max_eni: Option<u32>,
    /// IP_COOLDOWN_PERIOD, seconds (default 30).
    pub ip_cooldown_s: u32,
    /// AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG.
    pub custom_networking: bool,
    /// ENABLE_POD_ENI.
    pub pod_eni: bool,
    /// DISABLE_NETWORK_RESOURCE_PROVISIONING.
    pub disable_provisioning: bool,
    /// ENABLE_IMDS_ONLY_MODE.
    pub imds_only: bool,
    /// DISABLE_LEAKED_ENI_CLEANUP.
    pub disable_leaked_eni_cleanup: bool,
    /// ENABLE_SUBNET_DISCOVERY (default true).
    pub subnet_discovery: bool,
    /// ENABLE_IPv6=true (with ENABLE_IPv4=false): pods get IPv6 addresses from the primary ENI's /80.
    pub ipv6: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        match Self::from_lookup(|_| None) {
            Ok((settings, _)) => settings,
            Err(_) => unreachable!("the defaults are valid"),
        }
    }
}

impl PoolSettings {
    /// Reads the pool's variables through `lookup`, as the daemon does: every variable is read before
    /// the errors (one per bad variable) are returned; warnings name values accepted by falling back.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(Self, Vec<SettingWarning>), Vec<InvalidSetting>> {
        let mut env = EnvReader::new(lookup);
        let settings = Self::read(&mut env);
        env.finish().map(|warnings| (settings, warnings))
    }

    /// Reads the pool's variables from `env`, in the daemon's order; problems are collected in `env`.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> Self {
        let prefix_delegation = env.bool("ENABLE_PREFIX_DELEGATION", false);
        let warm_eni_target = env.target("WARM_ENI_TARGET", 1);
        let warm_ip_target = env.target("WARM_IP_TARGET", 0);
        let minimum_ip_target = env.target("MINIMUM_IP_TARGET", 0);
        let warm_prefix_target = env.target("WARM_PREFIX_TARGET", u32::from(prefix_delegation));
        let prefix_target_set_to_nothing = env
            .raw("WARM_PREFIX_TARGET")
            .and_then(|value| value.parse::<i64>().ok())
            .is_some_and(|n| n <= 0);
        if prefix_delegation
            && warm_ip_target == 0
            && minimum_ip_target == 0
            && (warm_prefix_target == 0 || prefix_target_set_to_nothing)
        {
            let value = env.raw("WARM_PREFIX_TARGET").unwrap_or_else(|| "0".to_owned());
            env.invalid(
                "WARM_PREFIX_TARGET",
                &value,
                "at least 1 with ENABLE_PREFIX_DELEGATION=true, unless WARM_IP_TARGET or MINIMUM_IP_TARGET is set",
            );
        }
        let max_eni = env.max_eni("MAX_ENI");
        let ip_cooldown_s = env.number("IP_COOLDOWN_PERIOD", 30, 0, u32::MAX);
        let custom_networking = env.bool("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", false);
        let ipv6 = check_address_family(env, prefix_delegation, custom_networking);
        Self {
            warm_eni_target,
            warm_ip_target,
            minimum_ip_target,
            warm_prefix_target,
            prefix_delegation,
            max_eni,
            ip_cooldown_s,
            custom_networking,
            pod_eni: env.bool("ENABLE_POD_ENI", false),
            disable_provisioning: env.bool("DISABLE_NETWORK_RESOURCE_PROVISIONING", false),
            imds_only: env.bool("ENABLE_IMDS_ONLY_MODE", false),
            disable_leaked_eni_cleanup: env.bool("DISABLE_LEAKED_ENI_CLEANUP", false),
            subnet_discovery: env.bool("ENABLE_SUBNET_DISCOVERY", true),
            ipv6,
        }
    }

    /// The engine's configuration, as the daemon builds it (`startup::pool_config`).
    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            warm_eni_target: self.warm_eni_target,
            warm_ip_target: self.warm_ip_target,
            minimum_ip_target: self.minimum_ip_target,
            warm_prefix_target: self.warm_prefix_target,
            prefix_delegation: self.prefix_delegation,
            ip_cooldown_ms: Millis::from(self.ip_cooldown_s) * 1000,
            ..PoolConfig::default()
        }
    }
}

/// ENABLE_IPv4 and ENABLE_IPv6, with the original's rules: exactly one family; IPv6 pods take their addresses
/// from a /80 prefix, so IPv6 needs ENABLE_PREFIX_DELEGATION=true, and it cannot be combined with custom
/// networking. (That the instance type must be Nitro is checked at start-up, where the type is known.)
/// Every rule broken is named. Returns whether the node is in IPv6 mode.
fn check_address_family<F: Fn(&str) -> Option<String>>(
    env: &mut EnvReader<F>,
    prefix_delegation: bool,
    custom_networking: bool,
) -> bool {
    const ONE_FAMILY: &str = "exactly one of ENABLE_IPv4 and ENABLE_IPv6 is true (dual-stack pods are not supported, as in the original)";
    let enable_ipv4 = env.bool("ENABLE_IPv4", true);
    let enable_ipv6 = env.bool("ENABLE_IPv6", false);
    match (enable_ipv4, enable_ipv6) {
        (true, false) => false,
        (true, true) => {
            env.invalid(
                "ENABLE_IPv4",
                "true",
                format!("false with ENABLE_IPv6=true: {ONE_FAMILY}"),
            );
            false
        }
        (false, false) => {
            env.invalid(
                "ENABLE_IPv4",
                "false",
                format!("true, or ENABLE_IPv6=true: {ONE_FAMILY}"),
            );
            false
        }
        (false, true) => {
            if !prefix_delegation {
                let value = env
                    .raw("ENABLE_PREFIX_DELEGATION")
                    .unwrap_or_else(|| "false".to_owned());
                env.invalid(
                    "ENABLE_PREFIX_DELEGATION",
                    &value,
                    "true with ENABLE_IPv6=true: IPv6 pods take their addresses from a /80 prefix on the primary ENI",
                );
            }
            if custom_networking {
                env.invalid(
                    "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
                    "true",
                    "false with ENABLE_IPv6=true: IPv6 pods use the node's own /80, not an ENIConfig's subnet (the original refuses the pair too)",
                );
            }
            true
        }
    }
}

/// Reads variables through a lookup function (the environment, a cluster file, a test's map) and collects
/// every problem, so all of them are reported at once, one line each.
pub struct EnvReader<F> {
    lookup: F,
    /// Refused values.
    pub errors: Vec<InvalidSetting>,
    /// Values accepted by falling back.
    pub warnings: Vec<SettingWarning>,
}

impl<F> fmt::Debug for EnvReader<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvReader")
            .field("errors", &self.errors)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    /// A reader over `lookup`.
    pub fn new(lookup: F) -> Self {
        Self {
            lookup,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The warnings if nothing was refused, else every refusal.
    pub fn finish(self) -> Result<Vec<SettingWarning>, Vec<InvalidSetting>> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(self.errors)
        }
    }

    /// The value, trimmed; `None` when unset or empty.
    pub fn raw(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Records a refused value.
    pub fn invalid(&mut self, variable: &'static str, value: &str, accepted: impl Into<String>) {
        self.errors.push(InvalidSetting {
            variable,
            value: value.to_owned(),
            accepted: accepted.into(),
        });
    }

    /// Records a value accepted by falling back.
    pub fn warn(&mut self, variable: &'static str, value: &str, outcome: impl Into<String>) {
        self.warnings.push(SettingWarning {
            variable,
            value: value.to_owned(),
            outcome: outcome.into(),
        });
    }

    /// Go's strconv.ParseBool spellings, which the original's manifests use.
    pub fn bool(&mut self, variable: &'static str, default: bool) -> bool {
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

    /// A whole number in `min..=max`.
    pub fn number(&mut self, variable: &'static str, default: u32, min: u32, max: u32) -> u32 {
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

    /// A warm-pool target as the original's ipamd reads it: a whole number (Go's Atoi: sign allowed), and
    /// the default, with a warning, for anything negative or not a number.
    pub fn target(&mut self, variable: &'static str, default: u32) -> u32 {
        let Some(value) = self.raw(variable) else {
            return default;
        };
        match value.parse::<i64>() {
            Ok(n) if n >= 0 => u32::try_from(n).unwrap_or(u32::MAX),
            _ => {
                self.warn(
                    variable,
                    &value,
                    format!(
                        "not a whole number 0 or more; using the default, {default}, as the original does"
                    ),
                );
                default
            }
        }
    }

    /// MAX_ENI: a whole number; 0 or less means the instance's limit, as in the original. Anything else is
    /// refused: the original would quietly drop the cap, and with it the bound on the node's addresses.
    pub fn max_eni(&mut self, variable: &'static str) -> Option<u32> {
        let value = self.raw(variable)?;
        match value.parse::<i64>() {
            Ok(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Ok(_) => None,
            Err(_) => {
                self.invalid(
                    variable,
                    &value,
                    "a whole number: 1 or more caps the node's ENIs, 0 or less means the instance's limit",
                );
                None
            }
        }
    }

    /// One of `accepted`, spelt exactly.
    pub fn choice(
        &mut self,
        variable: &'static str,
        default: &'static str,
        accepted: &[&'static str],
    ) -> String {
        let Some(value) = self.raw(variable) else {
            return default.to_owned();
        };
        if accepted.contains(&value.as_str()) {
            value
        } else {
            self.invalid(variable, &value, format!("one of {}", accepted.join(", ")));
            default.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<(PoolSettings, Vec<SettingWarning>), Vec<InvalidSetting>> {
        PoolSettings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_are_the_daemons() {
        let (settings, warnings) = read(&[]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(settings.warm_eni_target, 1);
        assert_eq!(settings.warm_prefix_target, 0);
        assert_eq!(settings.max_eni, None);
        assert_eq!(settings.pool_config().ip_cooldown_ms, 30_000);
        let (pd, _) = read(&[("ENABLE_PREFIX_DELEGATION", "true")]).unwrap();
        assert_eq!(pd.warm_prefix_target, 1);
    }

    #[test]
    fn refusals_and_fallbacks_read_as_the_daemons() {
        let errors = read(&[("MAX_ENI", "ten"), ("ENABLE_PREFIX_DELEGATION", "yes")]).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "ENABLE_PREFIX_DELEGATION=\"yes\" is not valid: expected true or false",
                "MAX_ENI=\"ten\" is not valid: expected a whole number: 1 or more caps the node's ENIs, 0 or less means the instance's limit",
            ]
        );
        let errors = read(&[("ENABLE_PREFIX_DELEGATION", "true"), ("WARM_PREFIX_TARGET", "0")]).unwrap_err();
        assert_eq!(errors[0].variable, "WARM_PREFIX_TARGET");
        let (settings, warnings) = read(&[("WARM_IP_TARGET", "-3"), ("MAX_ENI", "0")]).unwrap();
        assert_eq!((settings.warm_ip_target, settings.max_eni), (0, None));
        assert_eq!(
            warnings[0].to_string(),
            "WARM_IP_TARGET=\"-3\": not a whole number 0 or more; using the default, 0, as the original does"
        );
    }
    /// Each broken rule of the address family is one error naming its variable and what it needs.
    #[test]
    fn address_family_rules_name_every_variable_they_break() {
        let variables = |pairs: &[(&str, &str)]| -> Vec<&'static str> {
            read(pairs).unwrap_err().iter().map(|e| e.variable).collect()
        };
        assert_eq!(variables(&[("ENABLE_IPv6", "true")]), ["ENABLE_IPv4"]);
        assert_eq!(variables(&[("ENABLE_IPv4", "false")]), ["ENABLE_IPv4"]);
        assert_eq!(
            variables(&[("ENABLE_IPv4", "false"), ("ENABLE_IPv6", "true")]),
            ["ENABLE_PREFIX_DELEGATION"]
        );
        assert_eq!(
            variables(&[
                ("ENABLE_IPv4", "false"),
                ("ENABLE_IPv6", "true"),
                ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
            ]),
            ["ENABLE_PREFIX_DELEGATION", "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"]
        );
        let (ipv6, _) = read(&[
            ("ENABLE_IPv4", "false"),
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
        ])
        .unwrap();
        assert!(ipv6.ipv6);
        assert!(!read(&[]).unwrap().0.ipv6);
        let both = read(&[("ENABLE_IPv6", "true")]).unwrap_err();
        assert!(
            both[0]
                .to_string()
                .contains("exactly one of ENABLE_IPv4 and ENABLE_IPv6"),
            "{}",
            both[0]
        );
        assert!(read(&[("ENABLE_IPv4", "true"), ("ENABLE_IPv6", "false")]).is_ok());
    }
}
