//! The node's processes (ipamd, the simulator) and gRPC over ipamd's unix socket.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::{Result, TestbedError, setup_error};

/// How long a process may take to come up before the test gives up (not a timing assertion: a deadline so
/// a broken daemon fails the test instead of hanging it).
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(60);

/// The last `lines` lines of a log file.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| setup_error(format!("opening {}", path.display()), e))
}

/// Starts `binary args` inside `netns` with exactly `env`, stdout and stderr appended to `log`.
pub(crate) fn spawn_in(
    netns: &str,
    binary: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<Child> {
    let out = append(log)?;
    let err = out
        .try_clone()
        .map_err(|e| setup_error("duplicating a log handle", e))?;
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| setup_error(format!("starting {}", binary.display()), e))
}

/// Fails with the process's log if it has exited.
pub(crate) fn check_alive(child: &mut Child, process: &str, log: &Path) -> Result<()> {
    match child.try_wait() {
        Ok(Some(status)) => Err(TestbedError::Died {
            process: process.to_owned(),
            status: status.to_string(),
            log: log_tail(log, 40),
        }),
        _ => Ok(()),
    }
}

/// Sends a signal and reaps the process.
pub(crate) fn signal_and_wait(
    child: &mut Child,
    signal: nix::sys::signal::Signal,
) -> Option<std::process::ExitStatus> {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
    child.wait().ok()
}

/// Runs `work` with a channel to ipamd's socket, on a runtime of its own (so callers need none, and any
/// number of threads can call at once).
pub(crate) fn with_channel<T, F, Fut>(socket: &Path, work: F) -> Result<T>
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| setup_error("tokio runtime", e))?;
    let socket: PathBuf = socket.to_path_buf();
    runtime.block_on(async move {
        let channel = connect(&socket).await?;
        Ok(work(channel).await)
    })
}

async fn connect(socket: &Path) -> Result<Channel> {
    let socket = socket.to_path_buf();
    let shown = socket.display().to_string();
    Endpoint::from_static("http://ipamd.invalid")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| TestbedError::Rpc(format!("connecting to {shown}: {e}")))
}

/// Whether ipamd's health service reports SERVING for vpcni's service name.
pub(crate) fn is_serving(socket: &Path) -> bool {
    if !socket.exists() {
        return false;
    }
    with_channel(socket, |channel| async move {
        let request = HealthCheckRequest {
            service: vpcni_rpc::HEALTH_SERVICE_NAME.to_owned(),
        };
        HealthClient::new(channel)
            .check(request)
            .await
            .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
    })
    .unwrap_or(false)
}

/// Polls `ready` until it holds, `alive` fails, or the deadline passes.
pub(crate) fn wait_until(
    what: &str,
    deadline: Duration,
    log: &Path,
    mut alive: impl FnMut() -> Result<()>,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        alive()?;
        if ready() {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(TestbedError::Timeout {
                what: what.to_owned(),
                seconds: deadline.as_secs(),
                log: log_tail(log, 40),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
