//! Where the workspace's binaries are: next to the test executable's directory, or `VPCNI_BIN_DIR`.

use std::path::PathBuf;

use crate::{Result, setup_error};

/// The directory holding `vpcni`, `vpcni-ipamd` and `vpcnictl`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VPCNI_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| setup_error("locating the test executable", e))?;
    // Test executables live in target/<profile>/deps; binaries one level up.
    let deps = exe
        .parent()
        .ok_or_else(|| setup_error("locating binaries", "test executable has no directory"))?;
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    Ok(dir.to_path_buf())
}

/// A binary of the workspace, with a hint on how to build it when missing.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(setup_error(
            format!("{name} not found at {}", path.display()),
            "build it first: cargo build -p vpcni-ipamd -p vpcnictl -p vpcni-cni (or set VPCNI_BIN_DIR)",
        ))
    }
}
