//! Kernel settings under `/proc/sys`, written and read in the calling thread's network namespace (the
//! `net.*` tree belongs to the namespace of the task that opens the file).

use std::path::PathBuf;

use crate::DataplaneError;

/// Loose reverse-path filtering: the original sets it on the primary interface, because replies to
/// NodePort traffic and traffic of pods on secondary ENIs leave by another interface than they came in on.
pub const RP_FILTER_LOOSE: u32 = 2;

/// `/proc/sys/<key with dots as slashes>`, refusing keys that could leave `/proc/sys/net`.
fn path_of(key: &str) -> Result<PathBuf, DataplaneError> {
    let parts: Vec<&str> = key.split('.').collect();
    let valid = parts.len() >= 3
        && parts[0] == "net"
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        });
    if !valid {
        return Err(DataplaneError::System(format!(
            "refusing sysctl key {key:?}: expected net.<…> with plain names"
        )));
    }
    Ok(PathBuf::from("/proc/sys").join(parts.join("/")))
}

/// The key of a per-interface IPv4 setting, e.g. `net.ipv4.conf.eth0.rp_filter`.
pub fn ipv4_conf_key(interface: &str, setting: &str) -> Result<String, DataplaneError> {
    conf_key("ipv4", interface, setting)
}

/// The key of a per-interface IPv6 setting, e.g. `net.ipv6.conf.eni1a2b.accept_ra`.
pub fn ipv6_conf_key(interface: &str, setting: &str) -> Result<String, DataplaneError> {
    conf_key("ipv6", interface, setting)
}

fn conf_key(family: &str, interface: &str, setting: &str) -> Result<String, DataplaneError> {
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', '.']) {
        return Err(DataplaneError::System(format!(
            "invalid interface name {interface:?}"
        )));
    }
    Ok(format!("net.{family}.conf.{interface}.{setting}"))
}

/// Writes a setting.
pub fn write(key: &str, value: &str) -> Result<(), DataplaneError> {
    let path = path_of(key)?;
    std::fs::write(&path, value).map_err(|e| DataplaneError::System(format!("setting {key}={value}: {e}")))
}

/// Reads a setting, trimmed.
pub fn read(key: &str) -> Result<String, DataplaneError> {
    let path = path_of(key)?;
    std::fs::read_to_string(&path)
        .map(|v| v.trim().to_owned())
        .map_err(|e| DataplaneError::System(format!("reading {key}: {e}")))
}

/// Sets `rp_filter` on an interface. Nothing is written when it already has the value: in the DaemonSet
/// the privileged init container sets it, and ipamd's own container has a read-only `/proc/sys`.
pub fn set_rp_filter(interface: &str, value: u32) -> Result<(), DataplaneError> {
    let key = ipv4_conf_key(interface, "rp_filter")?;
    if read(&key).is_ok_and(|current| current == value.to_string()) {
        return Ok(());
    }
    write(&key, &value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_proc_sys_net() {
        assert_eq!(
            path_of("net.ipv4.conf.eth0.rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/rp_filter")
        );
        for bad in [
            "kernel.panic",
            "net..x",
            "net.ipv4.conf.a/b.rp_filter",
            "net.ipv4",
        ] {
            assert!(path_of(bad).is_err(), "{bad}");
        }
        assert!(ipv4_conf_key("../../x", "rp_filter").is_err());
        assert!(ipv4_conf_key("eth0.100", "rp_filter").is_err());
        assert_eq!(
            ipv4_conf_key("eth0", "rp_filter").unwrap(),
            "net.ipv4.conf.eth0.rp_filter"
        );
        assert_eq!(
            ipv6_conf_key("eni1234", "accept_ra").unwrap(),
            "net.ipv6.conf.eni1234.accept_ra"
        );
        assert!(ipv6_conf_key("a/b", "accept_ra").is_err());
    }
}
