//! The node install's file and kernel steps, each safe to repeat: plugins copied into the host's CNI bin
//! directory and the conflist written into its configuration directory, both atomically (a runtime never
//! sees half a binary or half a file); the sysctls the original's init container sets; the original's
//! checkpoint imported so pods running under aws-node keep their addresses.

use std::fs::{self, File};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vpcni_engine::checkpoint::Checkpoint;

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed to disk, renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    // A dot name: runtimes ignore it in the CNI directories while it is being written.
    let temp = dir.join(format!(".{name}.vpcni-tmp"));
    let result = (|| -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(error) = result {
        // The temporary file is ours; removing it may fail if it was never created, which is harmless.
        let _ = fs::remove_file(&temp);
        return Err(error).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Copies each named plugin from `from` into `to` atomically (a running binary is replaced, not
/// overwritten: a runtime executing the old one keeps its inode). Returns the installed paths.
pub fn install_plugins(from: &Path, to: &Path, names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    if !to.is_dir() {
        bail!(
            "{} is not a directory: mount the host's CNI bin directory there (HOST_CNI_BIN_PATH)",
            to.display()
        );
    }
    let mut installed = Vec::new();
    for name in names {
        let source = from.join(name);
        let bytes = fs::read(&source).with_context(|| format!("reading the plugin {}", source.display()))?;
        let target = to.join(name);
        write_atomically(&target, &bytes, 0o755)?;
        installed.push(target);
    }
    Ok(installed)
}

/// One kernel setting the install made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// e.g. `net/ipv4/conf/eth0/rp_filter`.
    pub key: String,
    /// Value written.
    pub value: String,
}

/// The interface of the IPv4 default route in `/proc/net/route` (the node's primary interface).
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask: the default route has destination and mask 0.
        (fields.len() >= 8 && fields[1] == "00000000" && fields[7] == "00000000")
            .then(|| fields[0].to_owned())
    })
}

/// The address the egress plugin SNATs to, among the node's addresses `(interface, address)`: the first
/// address of the egress family on the primary interface (the IPv4 default route's), as the original's
/// entrypoint takes `local-ipv4` or `ipv6` from instance metadata, which name the primary ENI's. An IPv6
/// address must be global: not link-local, loopback or unique-local.
pub fn egress_node_ip(
    egress: super::settings::Egress,
    primary_interface: &str,
    addresses: &[(String, IpAddr)],
) -> Option<IpAddr> {
    addresses
        .iter()
        .filter(|(interface, ip)| interface == primary_interface && egress.matches(*ip))
        .map(|(_, ip)| *ip)
        .find(|ip| match ip {
            IpAddr::V4(ip) => !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified(),
            IpAddr::V6(ip) => {
                !(ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_unicast_link_local()
                    || ip.is_unique_local())
            }
        })
}

/// Every address of the node's interfaces, `(interface, address)`.
pub fn node_addresses() -> anyhow::Result<Vec<(String, IpAddr)>> {
    let addresses = nix::ifaddrs::getifaddrs().context("listing the node's addresses")?;
    Ok(addresses
        .filter_map(|a| {
            let address = a.address?;
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(address.as_sockaddr_in6()?.ip())
            };
            Some((a.interface_name, ip))
        })
        .collect())
}

/// The sysctls the original's init container sets (IPv4): loose reverse-path filtering on the primary
/// interface (replies to NodePort traffic and to pods on secondary ENIs are asymmetric), and TCP early
/// demux on unless DISABLE_TCP_EARLY_DEMUX (kubelet's TCP probes to pods with their own security group).
pub fn node_sysctls(primary_interface: &str, disable_tcp_early_demux: bool) -> Vec<Sysctl> {
    vec![
        Sysctl {
            key: format!("net/ipv4/conf/{primary_interface}/rp_filter"),
            value: "2".into(),
        },
        Sysctl {
            key: "net/ipv4/tcp_early_demux".into(),
            value: if disable_tcp_early_demux { "0" } else { "1" }.into(),
        },
    ]
}

/// The forwarding the egress path needs, as the original sets it: IPv4 forwarding for IPv4 egress (its
/// plugin switches it on too, as vpcni-egress does), and `net.ipv6.conf.all.forwarding` for IPv6 egress
/// (ENABLE_V6_EGRESS; the original's init container sets it).
pub fn egress_sysctls(egress: Option<super::settings::Egress>) -> Vec<Sysctl> {
    use super::settings::Egress;
    match egress {
        None => Vec::new(),
        Some(Egress::V4) => vec![Sysctl {
            key: "net/ipv4/ip_forward".into(),
            value: "1".into(),
        }],
        Some(Egress::V6) => vec![Sysctl {
            key: "net/ipv6/conf/all/forwarding".into(),
            value: "1".into(),
        }],
    }
}

/// Writes each setting under `proc_sys` (normally `/proc/sys`; needs a writable one, hence the init
/// container is privileged as the original's is).
pub fn apply_sysctls(proc_sys: &Path, settings: &[Sysctl]) -> anyhow::Result<()> {
    for setting in settings {
        let path = proc_sys.join(&setting.key);
        fs::write(&path, &setting.value)
            .with_context(|| format!("setting {} = {}", path.display(), setting.value))?;
    }
    Ok(())
}

/// What the checkpoint import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// vpcni's checkpoint exists: it is the newer truth, the original's is not read.
    KeptOurs,
    /// There is no checkpoint of the original.
    NothingToImport,
    /// The original's allocations were written as vpcni's checkpoint.
    Imported {
        /// How many allocations.
        allocations: usize,
    },
}

/// Imports the original's checkpoint (`vpc-cni-ipam/1`, the format vpcni reads) into `ours` when `ours`
/// does not exist, as it is: pods keep the original's network name (`aws-cni`), and ipamd answers the
/// runtime's DEL, CHECK and GC for them under vpcni's network name too (one rule, in ipamd, for this
/// import and for ipamd's own `VPCNI_IMPORT_CHECKPOINT`). The original's file is left as it was.
pub fn import_checkpoint(original: &Path, ours: &Path) -> anyhow::Result<Migration> {
    if ours.exists() {
        return Ok(Migration::KeptOurs);
    }
    let Some(checkpoint) = Checkpoint::load(original)? else {
        return Ok(Migration::NothingToImport);
    };
    checkpoint.write(ours)?;
    Ok(Migration::Imported {
        allocations: checkpoint.allocations.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn plugins_are_replaced_whole_and_executable() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("image"), dir.path().join("host-bin"));
        fs::create_dir_all(&from).unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(from.join("vpcni"), b"new plugin").unwrap();
        fs::write(from.join("portmap"), b"portmap").unwrap();
        fs::write(to.join("vpcni"), b"old plugin").unwrap();
        // A runtime running the old binary holds it open: it must keep reading the old bytes.
        let old = File::open(to.join("vpcni")).unwrap();
        let installed = install_plugins(&from, &to, &["vpcni", "portmap"]).unwrap();
        assert_eq!(installed, [to.join("vpcni"), to.join("portmap")]);
        assert_eq!(fs::read(to.join("vpcni")).unwrap(), b"new plugin");
        assert_eq!(std::io::read_to_string(old).unwrap(), "old plugin");
        let mode = fs::metadata(to.join("portmap")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let names: Vec<String> = fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn a_missing_plugin_or_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = install_plugins(dir.path(), &dir.path().join("absent"), &["vpcni"]).unwrap_err();
        assert!(error.to_string().contains("HOST_CNI_BIN_PATH"), "{error}");
        let error = install_plugins(&dir.path().join("image"), dir.path(), &["vpcni"]).unwrap_err();
        assert!(format!("{error:#}").contains("image/vpcni"), "{error:#}");
    }

    #[test]
    fn default_route_interface_is_found() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth1\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     ens5\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(table).as_deref(), Some("ens5"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn the_egress_node_ip_is_the_primary_interfaces() {
        use super::super::settings::Egress;
        let addresses: Vec<(String, IpAddr)> = [
            ("lo", "127.0.0.1"),
            ("eth1", "10.0.2.9"),
            ("ens5", "fe80::1:2"),
            ("ens5", "fd00::5"),
            ("ens5", "10.0.1.7"),
            ("ens5", "10.0.1.8"),
            ("ens5", "2600:1f14::7"),
        ]
        .iter()
        .map(|(i, a)| ((*i).to_owned(), a.parse().unwrap()))
        .collect();
        assert_eq!(
            egress_node_ip(Egress::V4, "ens5", &addresses),
            Some("10.0.1.7".parse().unwrap())
        );
        assert_eq!(
            egress_node_ip(Egress::V6, "ens5", &addresses),
            Some("2600:1f14::7".parse().unwrap())
        );
        assert_eq!(egress_node_ip(Egress::V6, "eth1", &addresses), None);
    }

    #[test]
    fn sysctls_are_written_as_the_init_container_does() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("net/ipv4/conf/ens5")).unwrap();
        apply_sysctls(dir.path(), &node_sysctls("ens5", true)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv4/conf/ens5/rp_filter")).unwrap(),
            "2"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv4/tcp_early_demux")).unwrap(),
            "0"
        );
        apply_sysctls(dir.path(), &node_sysctls("ens5", false)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv4/tcp_early_demux")).unwrap(),
            "1"
        );
        use super::super::settings::Egress;
        assert!(egress_sysctls(None).is_empty());
        assert_eq!(egress_sysctls(Some(Egress::V4))[0].key, "net/ipv4/ip_forward");
        fs::create_dir_all(dir.path().join("net/ipv6/conf/all")).unwrap();
        apply_sysctls(dir.path(), &egress_sysctls(Some(Egress::V6))).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("net/ipv6/conf/all/forwarding")).unwrap(),
            "1"
        );
        let error = apply_sysctls(dir.path(), &node_sysctls("absent0", false)).unwrap_err();
        assert!(error.to_string().contains("absent0/rp_filter"), "{error}");
    }

    /// A checkpoint as the original v1.23 writes it.
    const ORIGINAL: &str = r#"{"version":"vpc-cni-ipam/1","allocations":[
        {"networkName":"aws-cni","containerID":"abc123","ifName":"eth0","ipv4":"10.0.1.5",
         "allocationTimestamp":1700000000000000000,
         "metadata":{"k8sPodNamespace":"default","k8sPodName":"web","interfacesCount":1}},
        {"networkName":"aws-cni","containerID":"def456","ifName":"eth0","ipv4":"10.0.1.6",
         "allocationTimestamp":1700000000000000001,
         "metadata":{"k8sPodNamespace":"kube-system","k8sPodName":"dns"}}]}"#;

    #[test]
    fn the_originals_checkpoint_is_imported_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("aws-node/ipam.json");
        let ours = dir.path().join("vpcni/ipam.json");
        assert_eq!(
            import_checkpoint(&original, &ours).unwrap(),
            Migration::NothingToImport
        );
        assert!(!ours.exists());
        fs::create_dir_all(original.parent().unwrap()).unwrap();
        fs::write(&original, ORIGINAL).unwrap();
        assert_eq!(
            import_checkpoint(&original, &ours).unwrap(),
            Migration::Imported { allocations: 2 }
        );
        let written: serde_json::Value = serde_json::from_str(&fs::read_to_string(&ours).unwrap()).unwrap();
        assert_eq!(written["version"], "vpc-cni-ipam/1");
        let allocations = written["allocations"].as_array().unwrap();
        assert_eq!(allocations[0]["networkName"], "aws-cni");
        assert_eq!(allocations[0]["containerID"], "abc123");
        assert_eq!(allocations[0]["ipv4"], "10.0.1.5");
        assert_eq!(allocations[0]["metadata"]["k8sPodName"], "web");
        assert_eq!(allocations[1]["ipv4"], "10.0.1.6");
        assert_eq!(
            allocations[1]["allocationTimestamp"],
            1_700_000_000_000_000_001_u64
        );
        assert_eq!(
            fs::read_to_string(&original).unwrap(),
            ORIGINAL,
            "the original's file is untouched"
        );
        // Ours now exists and is the truth: a second run leaves it alone.
        fs::write(&original, ORIGINAL.replace("10.0.1.5", "10.0.1.9")).unwrap();
        assert_eq!(import_checkpoint(&original, &ours).unwrap(), Migration::KeptOurs);
        assert!(fs::read_to_string(&ours).unwrap().contains("10.0.1.5"));
    }

    #[test]
    fn an_unreadable_checkpoint_of_the_original_stops_the_import() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("ipam.json");
        fs::write(&original, r#"{"version":"vpc-cni-ipam/2","allocations":[]}"#).unwrap();
        let error = import_checkpoint(&original, &dir.path().join("ours.json")).unwrap_err();
        assert!(error.to_string().contains("vpc-cni-ipam/2"), "{error}");
        assert!(!dir.path().join("ours.json").exists());
    }
}
