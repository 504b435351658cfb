//! The pod's network namespace must exist, and be one, before the plugin asks ipamd for an address.

use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::spec::{CniError, ErrorCode};

/// Fails with code 3 when the path does not exist (the sandbox is gone: nothing to clean up), and with
/// code 4 when it is something other than a namespace.
pub fn check(path: &str) -> Result<(), CniError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(CniError::new(
                ErrorCode::UnknownContainer,
                format!("network namespace {path} does not exist"),
                "the pod's sandbox is gone; nothing was allocated",
            ));
        }
        Err(error) => {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("network namespace {path} cannot be read"),
                error.to_string(),
            ));
        }
    };
    // Namespaces (/proc/<pid>/ns/net and its bind mounts in /var/run/netns) live on nsfs.
    let is_namespace = metadata.is_file() && statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC);
    if !is_namespace {
        return Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_NETNS {path} is not a network namespace"),
            "expected a bind mount of a network namespace, such as /var/run/netns/cni-…",
        ));
    }
    Ok(())
}
