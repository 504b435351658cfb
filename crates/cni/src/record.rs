//! One small file per attachment, written by ADD: what CHECK and a DEL without ipamd need and a valid CNI
//! result has no field for.
//!
//! The original put these facts in the result itself, as an extra interface (`"mac": "0"`, `"sandbox":
//! "<device number>"`) and as a route table number in the pod interface's `mac`; runtimes that parse the
//! result (podman) refuse it. Here the result stays valid and the facts live on the node, in
//! `<stateDir>/<network>/<container id>:<ifname>`. `stateDir` is under `/var/run` (tmpfs): a record lives
//! exactly as long as the pod's network namespace can, and a reboot clears both. See docs/cni-plugin.md.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{NetConf, ValidAttachment};

/// Longest file name Linux filesystems accept.
const MAX_FILE_NAME: usize = 255;

/// What ADD knew about the attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// The pod's address (IPv4, or IPv6 for a pod of an IPv6 node; written as text either way, so records
    /// written before IPv6 read the same).
    pub ip: IpAddr,
    /// Device number of the ENI holding the address.
    pub device_number: u32,
    /// The ENI's route table (254, main, for the primary ENI): the table of the pod's `from` rule.
    pub route_table: u32,
}

/// Why a record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a record (written by something else, or cut short).
    #[error("{path} is not a pod record: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// Container id and interface name make a file name longer than the file system allows.
    #[error("container id {0:?} is too long for a record file name")]
    NameTooLong(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_owned(),
        source,
    }
}

fn network_dir(config: &NetConf) -> PathBuf {
    Path::new(&config.state_dir).join(&config.name)
}

/// `<stateDir>/<network>/<container id>:<ifname>`. Neither a container id nor an interface name may contain
/// `:` (both are validated before any command runs), so the name is unambiguous.
pub fn path(config: &NetConf, container_id: &str, ifname: &str) -> Result<PathBuf, RecordError> {
    let name = format!("{container_id}:{ifname}");
    if name.len() > MAX_FILE_NAME {
        return Err(RecordError::NameTooLong(container_id.to_owned()));
    }
    Ok(network_dir(config).join(name))
}

/// Writes the record atomically (a temporary file renamed over it): a reader sees the old one, the new one,
/// or none, never half of one.
pub fn write(
    config: &NetConf,
    container_id: &str,
    ifname: &str,
    record: &PodRecord,
) -> Result<(), RecordError> {
    let path = path(config, container_id, ifname)?;
    let dir = network_dir(config);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    let text = serde_json::to_vec(record).map_err(|source| RecordError::Malformed {
        path: path.clone(),
        source,
    })?;
    let written = std::fs::File::create(&temporary).and_then(|mut file| file.write_all(&text));
    if let Err(source) = written.and_then(|()| std::fs::rename(&temporary, &path)) {
        // The temporary file is ours alone (named by our PID); losing it is the point of removing it, and a
        // failure to remove it changes nothing for the error being reported.
        let _ = std::fs::remove_file(&temporary);
        return Err(RecordError::Io { path, source });
    }
    Ok(())
}

/// The attachment's record; `None` when there is none (pods added before records existed, or DEL ran).
pub fn read(config: &NetConf, container_id: &str, ifname: &str) -> Result<Option<PodRecord>, RecordError> {
    let path = path(config, container_id, ifname)?;
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RecordError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RecordError::Malformed { path, source })
}

/// Removes the attachment's record; a missing one is fine (DEL may come twice).
pub fn remove(config: &NetConf, container_id: &str, ifname: &str) -> Result<(), RecordError> {
    let path = path(config, container_id, ifname)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RecordError::Io { path, source }),
    }
}

/// GC: removes the network's records of attachments not in `valid`; returns how many, and the failures.
pub fn prune(config: &NetConf, valid: &[ValidAttachment]) -> (usize, Vec<RecordError>) {
    let dir = network_dir(config);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return (0, Vec::new()),
        Err(source) => return (0, vec![RecordError::Io { path: dir, source }]),
    };
    let keep: Vec<String> = valid
        .iter()
        .map(|a| format!("{}:{}", a.container_id, a.ifname))
        .collect();
    let (mut removed, mut errors) = (0, Vec::new());
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) => {
                errors.push(RecordError::Io {
                    path: dir.clone(),
                    source,
                });
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only record names; a temporary file of an ADD in progress starts with '.'.
        if name.starts_with('.') || !name.contains(':') || keep.contains(&name) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => errors.push(RecordError::Io {
                path: entry.path(),
                source,
            }),
        }
    }
    (removed, errors)
}
