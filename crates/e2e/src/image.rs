//! A container image without a registry: a busybox-static root filesystem written as a `docker save`
//! archive, which `ctr images import` reads.
//!
//! The image's default command is a pause process (a shell that sleeps until SIGTERM, then exits 0), so
//! the same image serves as the CRI sandbox image and, with another command, as a container.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{E2eError, Result, run};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked into the image's /bin.
const APPLETS: [&str; 12] = [
    "sh", "sleep", "ping", "ip", "cat", "echo", "hostname", "wget", "nc", "ls", "true", "ifconfig",
];

/// The pause command: PID 1 exits on SIGTERM at once (a shell waiting on a child is interruptible).
pub const PAUSE: [&str; 3] = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| E2eError::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// Writes `<dir>/image.tar`, an image tagged `tag`, and returns its path.
pub fn build_busybox_image(dir: &Path, tag: &str) -> Result<PathBuf> {
    if !Path::new(BUSYBOX).is_file() {
        return Err(E2eError::Setup(format!(
            "{BUSYBOX} not found: install it with `apt-get install -y busybox-static`"
        )));
    }
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "var/run"] {
        let path = rootfs.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| E2eError::io(&path, e))?;
    }
    let busybox = rootfs.join("bin/busybox");
    std::fs::copy(BUSYBOX, &busybox).map_err(|e| E2eError::io(&busybox, e))?;
    for applet in APPLETS {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| E2eError::io(&link, e))?;
        }
    }
    let passwd = rootfs.join("etc/passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").map_err(|e| E2eError::io(&passwd, e))?;
    let group = rootfs.join("etc/group");
    std::fs::write(&group, "root:x:0:\n").map_err(|e| E2eError::io(&group, e))?;

    let archive = dir.join("archive");
    let layer_dir = archive.join("layer");
    std::fs::create_dir_all(&layer_dir).map_err(|e| E2eError::io(&layer_dir, e))?;
    let layer = layer_dir.join("layer.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let layer_digest = sha256_of(&layer)?;

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": PAUSE,
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "vpcni-e2e: busybox-static root filesystem" }],
    })
    .to_string();
    let config_digest = hex(&Sha256::digest(config.as_bytes()));
    let config_name = format!("{config_digest}.json");
    let config_path = archive.join(&config_name);
    std::fs::write(&config_path, &config).map_err(|e| E2eError::io(&config_path, e))?;
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": ["layer/layer.tar"],
    }]);
    let manifest_path = archive.join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).map_err(|e| E2eError::io(&manifest_path, e))?;

    let image = dir.join("image.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&archive)
        .arg("-cf")
        .arg(&image)
        .args(["manifest.json", &config_name, "layer"]))?;
    Ok(image)
}
