//! Plugin logs: to the configured file, or stderr; never stdout, which carries the CNI result.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A log file that cannot be opened falls back to stderr: losing logs must
/// never fail a pod.
pub fn init(log_file: &str, level: &str) {
    let filter = EnvFilter::new(format!("vpcni={level},vpcni_cni={level},vpcni_dataplane={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let file = (log_file != "stderr").then(|| {
        if let Some(dir) = Path::new(log_file).parent() {
            // A failure here shows as the open's error below, which says more.
            std::fs::create_dir_all(dir).ok();
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log_file)
    });
    // try_init fails only if a subscriber is already installed (a test calling this twice): the one
    // installed keeps logging, which is all this function is for.
    match file {
        Some(Ok(file)) => builder.with_writer(Mutex::new(file)).try_init().ok(),
        None => builder.with_writer(std::io::stderr).try_init().ok(),
        Some(Err(error)) => {
            let installed = builder.with_writer(std::io::stderr).try_init().ok();
            // The runtime keeps the plugin's stderr: the fallback is visible there.
            tracing::warn!("log file {log_file} cannot be opened ({error}); logging to stderr");
            installed
        }
    };
}
