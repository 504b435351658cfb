//! CNI results: what ADD prints, what DEL and CHECK get back as `prevResult`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
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
    /// Address with prefix length (`/32` for pods).
    pub address: Ipv4Net,
    /// Gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: Ipv4Net,
    /// Next hop.
    pub gw: Option<Ipv4Addr>,
}

/// A CNI result (IPv4 only; other families in a prevResult are kept raw by the caller).
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
    /// The result JSON in the shape of `version` (`"version": "4"` on IPs before 1.0.0).
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
                    object.insert("version".into(), json!("4"));
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

    /// Reads a result of any supported version. IPv6 entries are skipped (vpcni is IPv4 only for now).
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
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or(format!("ips[{index}] has no address"))?;
            if address.contains(':') {
                continue;
            }
            let address: Ipv4Net = address
                .parse()
                .map_err(|_| format!("ips[{index}].address {address:?} is not an IPv4 CIDR"))?;
            let gateway = match ip.get("gateway").and_then(Value::as_str) {
                None => None,
                Some(text) => Some(
                    text.parse()
                        .map_err(|_| format!("ips[{index}].gateway {text:?} is not IPv4"))?,
                ),
            };
            let interface = match ip.get("interface") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or(format!("ips[{index}].interface is not an index"))?
                        as usize,
                ),
            };
            result.ips.push(IpConfig {
                address,
                gateway,
                interface,
            });
        }
        for (index, route) in array(object, "routes")?.iter().enumerate() {
            let dst = route
                .get("dst")
                .and_then(Value::as_str)
                .ok_or(format!("routes[{index}] has no dst"))?;
            if dst.contains(':') {
                continue;
            }
            let dst: Ipv4Net = dst
                .parse()
                .map_err(|_| format!("routes[{index}].dst {dst:?} is not an IPv4 CIDR"))?;
            let gw = match route.get("gw").and_then(Value::as_str) {
                None => None,
                Some(text) => Some(
                    text.parse()
                        .map_err(|_| format!("routes[{index}].gw {text:?} is not IPv4"))?,
                ),
            };
            result.routes.push(Route { dst, gw });
        }
        Ok(result)
    }
}

impl CniResult {
    /// The pod's address for DEL and CHECK: the first IPv4 address on the pod interface `ifname` (the one
    /// with a `sandbox`), or the first address at all when no such interface is listed.
    pub fn pod_address(&self, ifname: &str) -> Option<Ipv4Addr> {
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
