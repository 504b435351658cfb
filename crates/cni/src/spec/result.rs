//! CNI results: what ADD prints, what DEL and CHECK get back as `prevResult`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};
use vpcni_layout::{EniSlot, MAIN_TABLE};

use super::version::Version;

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address (`aa:bb:cc:dd:ee:ff`). Runtimes parse it: podman rejects a result whose `mac` is not one.
    pub mac: String,
    /// Netns path (`CNI_NETNS`) for interfaces inside the pod; `None` for host interfaces.
    pub sandbox: Option<String>,
    /// MTU, written in 1.1.0 results only (the version that added the field).
    pub mtu: Option<u32>,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length (`/32` for IPv4 pods, `/128` for IPv6 pods).
    pub address: IpNet,
    /// Gateway, of the address's family.
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop, of the destination's family.
    pub gw: Option<IpAddr>,
}

/// A CNI result, IPv4 and IPv6 alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
}

impl CniResult {
    /// The result JSON in the shape of `version` (`"version": "4"` or `"6"` on IPs before 1.0.0). Every
    /// version vpcni answers (0.3.0 to 1.1.0) carries IPv6 addresses in `ips`, as IPv4 ones.
    pub fn to_json(&self, cni_version: &str, version: Version) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|interface| {
                let mut object = Map::new();
                object.insert("name".into(), json!(interface.name));
                object.insert("mac".into(), json!(interface.mac));
                if let Some(sandbox) = &interface.sandbox {
                    object.insert("sandbox".into(), json!(sandbox));
                }
                if let Some(mtu) = interface.mtu.filter(|_| version.interfaces_have_mtu()) {
                    object.insert("mtu".into(), json!(mtu));
                }
                Value::Object(object)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut object = Map::new();
                if version.ips_have_version_field() {
                    let family = match ip.address {
                        IpNet::V4(_) => "4",
                        IpNet::V6(_) => "6",
                    };
                    object.insert("version".into(), json!(family));
                }
                object.insert("address".into(), json!(ip.address.to_string()));
                if let Some(gateway) = ip.gateway {
                    object.insert("gateway".into(), json!(gateway.to_string()));
                }
                if let Some(index) = ip.interface {
                    object.insert("interface".into(), json!(index));
                }
                Value::Object(object)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|route| match route.gw {
                Some(gw) => json!({ "dst": route.dst.to_string(), "gw": gw.to_string() }),
                None => json!({ "dst": route.dst.to_string() }),
            })
            .collect();
        json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": {},
        })
    }

    /// The result a chained plugin prints: `prev` (the previous plugin's result, passed on exactly as
    /// received, IPv6 entries, DNS and unknown fields included) with this result's interfaces, addresses
    /// and routes appended, its interface indices shifted past `prev`'s interfaces.
    pub fn appended_to(&self, prev: Option<&Value>, cni_version: &str, version: Version) -> Value {
        let mut ours = self.to_json(cni_version, version);
        let Some(Value::Object(prev)) = prev else {
            return ours;
        };
        let mut merged = prev.clone();
        let offset = merged
            .get("interfaces")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if let Some(ips) = ours.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                if let Some(index) = ip.get("interface").and_then(Value::as_u64) {
                    ip["interface"] = json!(index + offset as u64);
                }
            }
        }
        for key in ["interfaces", "ips", "routes"] {
            let mut list = match merged.remove(key) {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            };
            if let Some(Value::Array(added)) = ours.get_mut(key).map(Value::take) {
                list.extend(added);
            }
            merged.insert(key.to_owned(), Value::Array(list));
        }
        merged.insert("cniVersion".to_owned(), json!(cni_version));
        merged.entry("dns").or_insert_with(|| json!({}));
        Value::Object(merged)
    }

    /// Reads a result of any supported version, IPv4 and IPv6 entries alike: an entry that does not parse
    /// is an error naming it (a `prevResult` DEL and CHECK cannot read must not be taken for an empty one).
    ///
    /// Lenient about `mac` and `sandbox`: a `prevResult` written by an earlier vpcni, or by the original
    /// plugin, carries a record interface (`dummy…`, `"mac": "0"`, `"sandbox": "<device number>"`) and, from
    /// the original, a route table number in the pod interface's `mac`. DEL must still work for those pods.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let object = value.as_object().ok_or("not a JSON object")?;
        let mut result = Self::default();
        for (index, interface) in array(object, "interfaces")?.iter().enumerate() {
            let text = |key: &str| interface.get(key).and_then(Value::as_str).map(str::to_owned);
            result.interfaces.push(Interface {
                name: text("name").ok_or(format!("interfaces[{index}] has no name"))?,
                mac: text("mac").unwrap_or_default(),
                sandbox: text("sandbox").filter(|s| !s.is_empty()),
                mtu: interface
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|mtu| u32::try_from(mtu).ok()),
            });
        }
        for (index, ip) in array(object, "ips")?.iter().enumerate() {
            let at = format!("ips[{index}]");
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or(format!("{at} has no address"))?;
            let address = parse_cidr(address, &format!("{at}.address"))?;
            if let Some(family) = ip.get("version").and_then(Value::as_str) {
                let expected = if address.addr().is_ipv4() { "4" } else { "6" };
                if family != expected {
                    return Err(format!(
                        "{at}.version {family:?} does not match the address {address}"
                    ));
                }
            }
            let gateway = parse_next_hop(ip.get("gateway"), address, &format!("{at}.gateway"))?;
            let interface = match ip.get("interface") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or(format!("{at}.interface is not an index"))? as usize),
            };
            result.ips.push(IpConfig {
                address,
                gateway,
                interface,
            });
        }
        for (index, route) in array(object, "routes")?.iter().enumerate() {
            let at = format!("routes[{index}]");
            let dst = route
                .get("dst")
                .and_then(Value::as_str)
                .ok_or(format!("{at} has no dst"))?;
            let dst = parse_cidr(dst, &format!("{at}.dst"))?;
            let gw = parse_next_hop(route.get("gw"), dst, &format!("{at}.gw"))?;
            result.routes.push(Route { dst, gw });
        }
        Ok(result)
    }
}

/// `address/prefix` of either family; `what` names the field in the error.
fn parse_cidr(text: &str, what: &str) -> Result<IpNet, String> {
    text.parse().map_err(|_| {
        let family = if text.contains(':') { "IPv6 " } else { "" };
        format!("{what} {text:?} is not an {family}address in CIDR notation")
    })
}

/// An optional gateway, which must be of the family of `of`.
fn parse_next_hop(value: Option<&Value>, of: IpNet, what: &str) -> Result<Option<IpAddr>, String> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(other) => return Err(format!("{what} {other} is not an address")),
    };
    let gateway: IpAddr = text
        .parse()
        .map_err(|_| format!("{what} {text:?} is not an address"))?;
    if gateway.is_ipv4() != of.addr().is_ipv4() {
        return Err(format!("{what} {gateway} is not of the family of {of}"));
    }
    Ok(Some(gateway))
}

impl CniResult {
    /// The pod's address for DEL and CHECK: the first address (IPv4 or IPv6) on the pod interface `ifname`
    /// (the one with a `sandbox`), or the first address at all when no such interface is listed.
    pub fn pod_address(&self, ifname: &str) -> Option<IpAddr> {
        let index = self
            .interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.is_some());
        self.ips
            .iter()
            .find(|ip| index.is_none() || ip.interface == index)
            .map(|ip| ip.address.addr())
    }

    /// The ENI's route table of a pod added before vpcni kept records, from what its `prevResult` carries:
    /// the original (v1.20+) wrote the table number in the pod interface's `mac`; it and earlier vpcni also
    /// added a record interface `dummy…` with the ENI's device number as `sandbox` (device 0 = main; device d
    /// on network card 0 = table d + 1, for d up to [`vpcni_layout::MAX_DEVICE_NUMBER`]). `None` when
    /// neither is there.
    pub fn legacy_route_table(&self, ifname: &str) -> Option<u32> {
        let from_pod_interface = self
            .interfaces
            .iter()
            .find(|i| i.name == ifname && i.sandbox.is_some())
            .and_then(|i| i.mac.parse::<u32>().ok())
            .map(|table| if table == 0 { MAIN_TABLE } else { table });
        let from_record_interface = || {
            let device: u32 = self
                .interfaces
                .iter()
                .find(|i| i.name.starts_with("dummy"))?
                .sandbox
                .as_deref()?
                .parse()
                .ok()?;
            // Only a device number the node layout numbers: a larger one names no ENI of ours.
            EniSlot::checked(0, device).map(EniSlot::route_table)
        };
        from_pod_interface.or_else(from_record_interface)
    }
}

fn array<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{key} is not an array")),
    }
}
