//! The system edge: `ip` and `iptables` runs, sysctls and sockets inside a named namespace, and the lab's
//! long-running processes.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;

/// Where `ip netns add` puts namespaces.
pub const NETNS_DIR: &str = "/run/netns";

fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` to completion; its stdout, or its stderr as the error.
pub fn run(command: &mut Command) -> Result<String, LabError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: shown(command),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: shown(command),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `ip [-n netns] args…`.
pub fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, LabError> {
    let mut command = Command::new("ip");
    if let Some(netns) = netns {
        command.args(["-n", netns]);
    }
    run(command.args(args))
}

/// `ip [-n netns] -batch -` with one command per line; the error names the failing line.
pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut command = Command::new("ip");
    if let Some(netns) = netns {
        command.args(["-n", netns]);
    }
    command.args(["-batch", "-"]);
    let text = lines.join("\n") + "\n";
    let shown_command = format!("{} <<EOF\n{text}EOF", shown(&command));
    run_with_stdin(command, &text, shown_command)
}

/// `ip netns exec <netns> <program>`: a command that runs inside the namespace.
pub fn netns_command(netns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns]).arg(program);
    command
}

/// Runs `work` on a thread that has entered `netns`: sysctls written and sockets opened there belong to
/// that namespace, and the caller's thread never changes namespace.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> Result<T, LabError> + Send + 'static,
) -> Result<T, LabError> {
    let path = Path::new(NETNS_DIR).join(netns);
    let file = File::open(&path).map_err(LabError::io(&path))?;
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Io {
            path,
            source: e.into(),
        })?;
        work()
    })
    .join()
    .map_err(|_| LabError::Spec("a namespace worker thread panicked".into()))?
}

/// Writes sysctls (`net/ipv4/ip_forward` style keys) inside `netns`.
pub fn sysctl(netns: &str, settings: &[(&str, &str)]) -> Result<(), LabError> {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    in_netns(netns, move || {
        for (key, value) in settings {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, &value).map_err(LabError::io(path))?;
        }
        Ok(())
    })
}

/// `iptables-restore` of `rules` inside `netns` (the namespace's tables named in `rules` are replaced).
pub fn iptables_restore(netns: &str, rules: &str) -> Result<(), LabError> {
    let command = netns_command(netns, "iptables-restore");
    let shown_command = format!("ip netns exec {netns} iptables-restore <<EOF\n{rules}EOF");
    run_with_stdin(command, rules, shown_command)
}

/// `ip6tables-restore` of `rules` inside `netns`.
pub fn ip6tables_restore(netns: &str, rules: &str) -> Result<(), LabError> {
    let command = netns_command(netns, "ip6tables-restore");
    let shown_command = format!("ip netns exec {netns} ip6tables-restore <<EOF\n{rules}EOF");
    run_with_stdin(command, rules, shown_command)
}

/// Runs `command` with `input` on its stdin; a failure names the command as `shown` and carries its stderr.
fn run_with_stdin(mut command: Command, input: &str, shown: String) -> Result<(), LabError> {
    let failed = |detail: String| LabError::Command {
        command: shown.clone(),
        detail,
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()))
    }
}

/// Named network namespaces on this machine.
pub fn netns_list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the named namespace exists.
pub fn netns_exists(netns: &str) -> bool {
    Path::new(NETNS_DIR).join(netns).exists()
}

/// `ip netns add`, after removing a stale one of the same name.
pub fn netns_add(netns: &str) -> Result<(), LabError> {
    if netns_exists(netns) {
        let _ = ip(None, &["netns", "del", netns]);
    }
    ip(None, &["netns", "add", netns])?;
    ip(Some(netns), &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Processes inside `netns` (`ip netns pids`).
pub fn netns_pids(netns: &str) -> Vec<u32> {
    ip(None, &["netns", "pids", netns])
        .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The first directory on PATH (plus the sbin directories, which root's PATH may lack) holding `tool`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|candidate| candidate.is_file())
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A long-running lab process (fabric, internet service, ipamd), started in its own process group so a
/// terminal's Ctrl-C to `vpcnictl` does not reach it, with output appended to a log file.
#[derive(Debug)]
pub struct LabProcess {
    /// Process id (the `ip netns exec` wrapper execs the program, so this is the program's).
    pub pid: u32,
    child: Option<Child>,
}

impl LabProcess {
    /// Starts `command`, logging to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> Result<Self, LabError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(LabError::io(log))?;
        let err = file.try_clone().map_err(LabError::io(log))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| LabError::Command {
                command: shown(&command),
                detail: e.to_string(),
            })?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
        })
    }

    /// A process started by another `vpcnictl` run, known by pid only.
    pub fn adopt(pid: u32) -> Self {
        Self { pid, child: None }
    }

    /// Whether it still runs (a zombie child is reaped and counts as gone).
    pub fn alive(&mut self) -> bool {
        if let Some(child) = self.child.as_mut() {
            return matches!(child.try_wait(), Ok(None));
        }
        pid_alive(self.pid)
    }

    /// SIGTERM, then SIGKILL after `grace`; waits until it is gone.
    pub fn stop(&mut self, grace: Duration) {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.alive() {
            self.kill();
        }
    }

    /// SIGKILL, as a crash would; waits until it is gone.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&mut self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Whether a process's environment holds `needle` (as `KEY=VALUE` text).
pub fn environ_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .any(|v| String::from_utf8_lossy(v).contains(needle))
        })
        .unwrap_or(false)
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
