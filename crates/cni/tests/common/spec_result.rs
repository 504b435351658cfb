//! A checker of CNI ADD results, written from the CNI specification (SPEC.md of spec versions 0.3.0, 0.3.1,
//! 0.4.0, 1.0.0 and 1.1.0), independent of the plugin's own result code: every field's presence and format
//! for the version the result claims. Strict runtimes (podman, through libcni's typed results and Go's
//! `net.ParseMAC` / `net.ParseCIDR`) reject what it rejects.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// The versions whose ADD result this checks.
pub const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Every violation of the spec in `result`, which answered a configuration of `cni_version`, as a sentence
/// naming the field. `netns` is `CNI_NETNS` of the ADD: the `sandbox` of interfaces in the container.
pub fn violations(result: &Value, cni_version: &str, netns: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some(top) = result.as_object() else {
        return vec!["the result is not a JSON object".into()];
    };
    let before_1_0 = cni_version.starts_with("0.");
    let is_1_1 = cni_version == "1.1.0";
    if !VERSIONS.contains(&cni_version) {
        found.push(format!("{cni_version} is not a version this checker knows"));
    }
    if top.get("cniVersion").and_then(Value::as_str) != Some(cni_version) {
        found.push(format!(
            "cniVersion is {:?}, not the configuration's {cni_version:?}",
            top.get("cniVersion")
        ));
    }
    unknown_keys(
        top,
        &["cniVersion", "interfaces", "ips", "routes", "dns"],
        "result",
        &mut found,
    );

    let interfaces = list(top, "interfaces", &mut found);
    for (i, interface) in interfaces.iter().enumerate() {
        let at = format!("interfaces[{i}]");
        let Some(object) = interface.as_object() else {
            found.push(format!("{at} is not an object"));
            continue;
        };
        let mut allowed = vec!["name", "mac", "sandbox"];
        if is_1_1 {
            allowed.extend(["mtu", "socketPath", "pciID"]);
        }
        unknown_keys(object, &allowed, &at, &mut found);
        match object.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => {}
            _ => found.push(format!("{at}.name is missing or empty")),
        }
        match object.get("mac") {
            None => {}
            Some(Value::String(mac)) if is_mac(mac) => {}
            Some(other) => found.push(format!("{at}.mac {other} is not a MAC address")),
        }
        match object.get("sandbox") {
            None => {}
            Some(Value::String(sandbox)) if sandbox.is_empty() || sandbox.starts_with('/') => {}
            Some(other) => found.push(format!(
                "{at}.sandbox {other} is not a network namespace path (nor empty, for a host interface)"
            )),
        }
        if let Some(mtu) = object.get("mtu")
            && !mtu.as_u64().is_some_and(|m| m > 0 && m <= u64::from(u32::MAX))
        {
            found.push(format!("{at}.mtu {mtu} is not a positive integer"));
        }
        if let Some(path) = object.get("socketPath")
            && !path.as_str().is_some_and(|p| p.starts_with('/'))
        {
            found.push(format!("{at}.socketPath {path} is not an absolute path"));
        }
        if let Some(id) = object.get("pciID")
            && !id.is_string()
        {
            found.push(format!("{at}.pciID {id} is not a string"));
        }
    }

    for (i, ip) in list(top, "ips", &mut found).iter().enumerate() {
        let at = format!("ips[{i}]");
        let Some(object) = ip.as_object() else {
            found.push(format!("{at} is not an object"));
            continue;
        };
        let allowed: &[&str] = if before_1_0 {
            &["version", "address", "gateway", "interface"]
        } else {
            &["address", "gateway", "interface"]
        };
        unknown_keys(object, allowed, &at, &mut found);
        let address = object.get("address").and_then(Value::as_str).and_then(parse_cidr);
        let Some((address, _)) = address else {
            found.push(format!(
                "{at}.address {:?} is not an address in CIDR notation",
                object.get("address")
            ));
            continue;
        };
        if before_1_0 {
            let expected = if address.is_ipv4() { "4" } else { "6" };
            if object.get("version").and_then(Value::as_str) != Some(expected) {
                found.push(format!(
                    "{at}.version is {:?}; before 1.0.0 it is required and must be {expected:?} for {address}",
                    object.get("version")
                ));
            }
        }
        if let Some(gateway) = object.get("gateway") {
            match gateway.as_str().and_then(|g| g.parse::<IpAddr>().ok()) {
                Some(g) if g.is_ipv4() == address.is_ipv4() => {}
                _ => found.push(format!(
                    "{at}.gateway {gateway} is not an address of {address}'s family"
                )),
            }
        }
        // A plugin that creates interfaces (not an IPAM plugin) says which one the address is on.
        match object.get("interface").and_then(Value::as_u64) {
            Some(index) => match interfaces.get(index as usize) {
                None => found.push(format!(
                    "{at}.interface {index} is not an index into interfaces (length {})",
                    interfaces.len()
                )),
                Some(interface) => {
                    let sandbox = interface.get("sandbox").and_then(Value::as_str).unwrap_or("");
                    if sandbox != netns {
                        found.push(format!(
                            "{at}.interface {index} is not the container's interface (sandbox {sandbox:?}, CNI_NETNS {netns:?})"
                        ));
                    }
                }
            },
            None => found.push(format!("{at}.interface is missing or not an unsigned integer")),
        }
    }

    for (i, route) in list(top, "routes", &mut found).iter().enumerate() {
        let at = format!("routes[{i}]");
        let Some(object) = route.as_object() else {
            found.push(format!("{at} is not an object"));
            continue;
        };
        let mut allowed = vec!["dst", "gw"];
        if is_1_1 {
            allowed.extend(["mtu", "advmss", "priority", "table", "scope"]);
        }
        unknown_keys(object, &allowed, &at, &mut found);
        let dst = object.get("dst").and_then(Value::as_str).and_then(parse_cidr);
        let Some((dst, _)) = dst else {
            found.push(format!(
                "{at}.dst {:?} is not in CIDR notation",
                object.get("dst")
            ));
            continue;
        };
        if let Some(gw) = object.get("gw") {
            match gw.as_str().and_then(|g| g.parse::<IpAddr>().ok()) {
                Some(g) if g.is_ipv4() == dst.is_ipv4() => {}
                _ => found.push(format!("{at}.gw {gw} is not an address of {dst}'s family")),
            }
        }
        for key in ["mtu", "advmss", "priority", "table", "scope"] {
            if let Some(value) = object.get(key)
                && value.as_u64().is_none()
            {
                found.push(format!("{at}.{key} {value} is not an unsigned integer"));
            }
        }
    }

    match top.get("dns") {
        None => {}
        Some(Value::Object(dns)) => {
            unknown_keys(
                dns,
                &["nameservers", "domain", "search", "options"],
                "dns",
                &mut found,
            );
            if let Some(servers) = dns.get("nameservers")
                && !servers.as_array().is_some_and(|s| {
                    s.iter()
                        .all(|a| a.as_str().is_some_and(|a| a.parse::<IpAddr>().is_ok()))
                })
            {
                found.push(format!("dns.nameservers {servers} is not a list of addresses"));
            }
            if let Some(domain) = dns.get("domain")
                && !domain.is_string()
            {
                found.push(format!("dns.domain {domain} is not a string"));
            }
            for key in ["search", "options"] {
                if let Some(items) = dns.get(key)
                    && !items.as_array().is_some_and(|i| i.iter().all(Value::is_string))
                {
                    found.push(format!("dns.{key} {items} is not a list of strings"));
                }
            }
        }
        Some(other) => found.push(format!("dns {other} is not an object")),
    }
    found
}

/// Six two-digit hexadecimal groups separated by `:` (what Go's `net.ParseMAC` reads for Ethernet).
fn is_mac(text: &str) -> bool {
    let groups: Vec<&str> = text.split(':').collect();
    groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `address/prefix` with a prefix the family allows.
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= max && !text.contains(' ')).then_some((address, prefix))
}

fn list<'a>(object: &'a Map<String, Value>, key: &str, found: &mut Vec<String>) -> &'a [Value] {
    match object.get(key) {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(other) => {
            found.push(format!("{key} {other} is not an array"));
            &[]
        }
    }
}

fn unknown_keys(object: &Map<String, Value>, allowed: &[&str], at: &str, found: &mut Vec<String>) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            found.push(format!(
                "{at} has {key:?}, which this version's result does not define"
            ));
        }
    }
}
