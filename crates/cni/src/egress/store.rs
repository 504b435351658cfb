//! The egress addresses' store, on disk in containernetworking host-local's layout so that a node moving
//! from aws-node (whose `egress-cni` runs host-local) keeps its pods' egress addresses, and so that every
//! allocation survives any restart: the files are the state.
//!
//! `<dataDir>/<network>/` holds one file per address, named by the address (`169.254.172.5`,
//! `fd00::ac:5`), containing `<container id>\r\n<CNI_IFNAME>`; `last_reserved_ip.0` names the address
//! reserved last, where the next search starts (round robin); `lock` is `flock`ed while the store is open.
//! The range's first address is its gateway and never handed out; an IPv4 range's broadcast address neither.
//!
//! Where vpcni differs from host-local: ADD for a container and interface that already hold an address
//! returns that address (host-local refuses a duplicate allocation), so a repeated ADD keeps the pod's
//! address. After a switch from the original, the runtime names the network `vpcni` where the original's
//! store is under `aws-cni`: addresses recorded there are treated as taken, found and released as ours.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};

/// Where the round robin resumes (host-local's name, range set 0).
const LAST_RESERVED: &str = "last_reserved_ip.0";
/// host-local's line break between container id and interface name.
const LINE_BREAK: &str = "\r\n";
/// The largest range the store searches: 65536 addresses (an IPv4 /16 or an IPv6 /112).
pub const MAX_RANGE_BITS: u8 = 16;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Every address of the range is taken.
    #[error("no address left in {0}")]
    Exhausted(IpNet),
    /// The range cannot be used.
    #[error("range {0}: {1}")]
    Range(IpNet, String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { what, path, source }
}

/// The usable addresses of a range, as host-local computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The range.
    pub subnet: IpNet,
    /// Its gateway: the first address after the network address.
    pub gateway: IpAddr,
    first: u128,
    last: u128,
}

impl Range {
    /// The range of `subnet` (its host bits are ignored): addresses from the network address + 1 to the last
    /// (the last but one for IPv4, whose last is the broadcast address), the first being the gateway.
    pub fn new(subnet: IpNet) -> Result<Self, StoreError> {
        let subnet = subnet.trunc();
        let host_bits = subnet.max_prefix_len() - subnet.prefix_len();
        if host_bits > MAX_RANGE_BITS {
            return Err(StoreError::Range(
                subnet,
                format!(
                    "larger than the {} addresses the store searches",
                    1u32 << MAX_RANGE_BITS
                ),
            ));
        }
        if host_bits < 2 {
            return Err(StoreError::Range(
                subnet,
                "has no address besides its gateway".into(),
            ));
        }
        let network = number(subnet.network());
        let size = 1u128 << host_bits;
        let last = if subnet.addr().is_ipv4() {
            network + size - 2
        } else {
            network + size - 1
        };
        Ok(Self {
            subnet,
            gateway: address(subnet.addr().is_ipv4(), network + 1),
            first: network + 1,
            last,
        })
    }

    /// Whether `ip` is one of the range's addresses (the gateway included).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.subnet.addr().is_ipv4() && (self.first..=self.last).contains(&number(ip))
    }

    fn at(&self, n: u128) -> IpAddr {
        address(self.subnet.addr().is_ipv4(), n)
    }
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(ip) => u128::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

fn address(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// One network's store, locked while this value lives.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The original's directory for the same data (`<dataDir>/aws-cni`), when ours is another.
    legacy: Option<PathBuf>,
    _lock: Flock<File>,
}

impl Store {
    /// Opens (creating it if need be) the store of `network` under `data_dir`, and waits for its lock.
    pub fn open(data_dir: &Path, network: &str) -> Result<Self, StoreError> {
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let lock_path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io("locking", &lock_path)(std::io::Error::from(errno)))?;
        let legacy = (network != vpcni_layout::ORIGINAL_NETWORK_NAME)
            .then(|| data_dir.join(vpcni_layout::ORIGINAL_NETWORK_NAME))
            .filter(|d| d.is_dir());
        Ok(Self {
            dir,
            legacy,
            _lock: lock,
        })
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.dir).chain(self.legacy.iter())
    }

    /// Every recorded address with its owner `(container id, interface name)`, in our directory and the
    /// original's. An old-format file holds the container id alone: its interface is `""`.
    pub fn entries(&self) -> Result<Vec<(IpAddr, String, String, PathBuf)>, StoreError> {
        let mut entries = Vec::new();
        for dir in self.dirs() {
            let listing = match std::fs::read_dir(dir) {
                Ok(listing) => listing,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("listing", dir)(e)),
            };
            for item in listing {
                let item = item.map_err(io("listing", dir))?;
                let Some(ip) = item.file_name().to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let path = item.path();
                let text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    // Released by someone else between listing and reading.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("reading", &path)(e)),
                };
                let text = text.trim();
                let (id, ifname) = text.split_once(LINE_BREAK).unwrap_or((text, ""));
                entries.push((ip, id.trim().to_owned(), ifname.trim().to_owned(), path));
            }
        }
        Ok(entries)
    }

    /// The addresses held by a container's interface (an old-format entry of the container counts).
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(_, owner, interface, _)| owner == id && (interface == ifname || interface.is_empty()))
            .map(|(ip, ..)| ip)
            .collect())
    }

    /// The container's address in `range`: the one it already holds, or the next free one after the address
    /// reserved last (host-local's round robin). Returns the address and whether it is new.
    pub fn allocate(&self, range: &Range, id: &str, ifname: &str) -> Result<(IpAddr, bool), StoreError> {
        if let Some(held) = self
            .get_by_id(id, ifname)?
            .into_iter()
            .find(|ip| range.contains(*ip))
        {
            return Ok((held, false));
        }
        let taken: std::collections::BTreeSet<IpAddr> =
            self.entries()?.into_iter().map(|(ip, ..)| ip).collect();
        let last = std::fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .filter(|ip| range.contains(*ip))
            .map(number);
        let count = range.last - range.first + 1;
        let start = last.map_or(range.first, |l| if l >= range.last { range.first } else { l + 1 });
        for step in 0..count {
            let n = range.first + (start - range.first + step) % count;
            let candidate = range.at(n);
            if candidate == range.gateway || taken.contains(&candidate) {
                continue;
            }
            if self.reserve(candidate, id, ifname)? {
                return Ok((candidate, true));
            }
        }
        Err(StoreError::Exhausted(range.subnet))
    }

    /// Creates the address's file (exclusively: `false` when it exists) and records it as reserved last.
    fn reserve(&self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool, StoreError> {
        let path = self.dir.join(ip.to_string());
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io("creating", &path)(e)),
        };
        let written = file
            .write_all(format!("{}{LINE_BREAK}{ifname}", id.trim()).as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // The half-written file would hold the address for nobody: remove it (best effort, the error
            // below is what the caller needs).
            if let Err(undo) = std::fs::remove_file(&path) {
                tracing::warn!("removing {}: {undo}", path.display());
            }
            return Err(io("writing", &path)(e));
        }
        let last = self.dir.join(LAST_RESERVED);
        std::fs::write(&last, ip.to_string()).map_err(io("writing", &last))?;
        Ok(true)
    }

    /// Releases what a container's interface holds (an old-format entry of the container too); returns the
    /// addresses released. Releasing nothing is fine.
    pub fn release(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        let mut released = Vec::new();
        for (ip, owner, interface, path) in self.entries()? {
            if owner == id && (interface == ifname || interface.is_empty()) {
                match std::fs::remove_file(&path) {
                    Ok(()) => released.push(ip),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io("removing", &path)(e)),
                }
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vpcni-egress-store-{name}-{}", std::process::id()));
        // A leftover of an earlier run, if any; none is the usual case.
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn ranges_are_host_locals() {
        let v4 = Range::new("169.254.172.0/22".parse().unwrap()).unwrap();
        assert_eq!(v4.gateway.to_string(), "169.254.172.1");
        assert_eq!(v4.at(v4.last).to_string(), "169.254.175.254");
        let v6 = Range::new("fd00::ac:00/118".parse().unwrap()).unwrap();
        assert_eq!(v6.gateway.to_string(), "fd00::ac:1");
        assert_eq!(v6.at(v6.last).to_string(), "fd00::ac:3ff");
        assert!(Range::new("10.0.0.0/8".parse().unwrap()).is_err());
        assert!(Range::new("10.0.0.0/31".parse().unwrap()).is_err());
    }

    /// The files host-local writes, round robin from the last reservation, the same address for a repeated
    /// request, release by owner, and the original's directory honoured.
    #[test]
    fn allocations_are_files_in_host_locals_layout() {
        let data = temp_dir("layout");
        let range = Range::new("169.254.172.0/22".parse().unwrap()).unwrap();
        let store = Store::open(&data, "vpcni").unwrap();
        let (a, new) = store.allocate(&range, "ctr-a", "eth0").unwrap();
        assert_eq!((a.to_string().as_str(), new), ("169.254.172.2", true));
        assert_eq!(store.allocate(&range, "ctr-a", "eth0").unwrap(), (a, false));
        let file = data.join("vpcni/169.254.172.2");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "ctr-a\r\neth0");
        assert_eq!(
            std::fs::read_to_string(data.join("vpcni/last_reserved_ip.0")).unwrap(),
            "169.254.172.2"
        );
        assert!(data.join("vpcni/lock").exists());
        let (b, _) = store.allocate(&range, "ctr-b", "eth0").unwrap();
        assert_eq!(b.to_string(), "169.254.172.3");
        assert_eq!(store.release("ctr-a", "eth0").unwrap(), vec![a]);
        assert!(store.release("ctr-a", "eth0").unwrap().is_empty());
        // Round robin: the freed .2 is not reused before the range wraps.
        let (c, _) = store.allocate(&range, "ctr-c", "eth0").unwrap();
        assert_eq!(c.to_string(), "169.254.172.4");
        drop(store);

        // The original's store: its pod keeps its address, which is not handed out again.
        std::fs::create_dir_all(data.join("aws-cni")).unwrap();
        std::fs::write(data.join("aws-cni/169.254.172.5"), "old-pod\r\neth0").unwrap();
        let store = Store::open(&data, "vpcni").unwrap();
        assert_eq!(
            store.get_by_id("old-pod", "eth0").unwrap(),
            vec!["169.254.172.5".parse::<IpAddr>().unwrap()]
        );
        let (d, _) = store.allocate(&range, "ctr-d", "eth0").unwrap();
        assert_eq!(d.to_string(), "169.254.172.6");
        assert_eq!(store.release("old-pod", "eth0").unwrap().len(), 1);
        assert!(!data.join("aws-cni/169.254.172.5").exists());
        // Clean-up of the test's own directory; a failure leaves a file in /tmp and nothing else.
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn a_full_range_is_refused() {
        let data = temp_dir("full");
        let range = Range::new("fd00::ac:0/126".parse().unwrap()).unwrap();
        let store = Store::open(&data, "vpcni").unwrap();
        let got: Vec<String> = (0..2)
            .map(|i| {
                store
                    .allocate(&range, &format!("c{i}"), "eth0")
                    .unwrap()
                    .0
                    .to_string()
            })
            .collect();
        assert_eq!(got, ["fd00::ac:2", "fd00::ac:3"]);
        assert!(matches!(
            store.allocate(&range, "c9", "eth0"),
            Err(StoreError::Exhausted(_))
        ));
        // Clean-up of the test's own directory; a failure leaves a file in /tmp and nothing else.
        let _ = std::fs::remove_dir_all(&data);
    }
}
