//! A test node made of network namespaces, for the tests that run the plugin binaries as a runtime would
//! (`ipv6.rs`, `egress.rs`): the node's namespace (IPv6 forwarding on, as the init container sets it), a
//! stand-in ipamd on a unix socket in a directory of the node's own, and the runner that calls a plugin binary
//! inside the node's namespace. Names are `vt-cni-<kind>-<pid>-<n>`, so tests in parallel processes (and
//! other suites' `vt-<suite>-…` namespaces) never meet.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tonic::{Request, Response, Status};
use vpcni_rpc::cni_backend_server::{CniBackend, CniBackendServer};
use vpcni_rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, IpAllocationMetadata,
};

/// The node's /80, as ipamd in IPv6 mode holds it: IPv6 pods' addresses come from it.
pub const NODE_PREFIX: &str = "2600:1f14:abc:de00:1f2e";

/// The two plugin binaries of the conflist.
pub const VPCNI: &str = env!("CARGO_BIN_EXE_vpcni");
pub const VPCNI_EGRESS: &str = env!("CARGO_BIN_EXE_vpcni-egress");

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name no other test process uses: the pid, and a counter within the process.
pub fn unique(kind: &str) -> String {
    format!(
        "vt-cni-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a program to its end; its stdout, or a failed test naming its stderr.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ip -n <netns> …`.
pub fn ip(netns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", netns];
    all.extend(args);
    run("ip", &all)
}

/// `ip netns exec <netns> …`.
pub fn exec(netns: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", netns];
    all.extend(args);
    run("ip", &all)
}

/// A network namespace with `lo` up, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(kind: &str) -> Self {
        let name = unique(kind);
        run("ip", &["netns", "add", &name]);
        let netns = Self(name);
        // From here on, a failure still deletes the namespace.
        ip(&netns.0, &["link", "set", "lo", "up"]);
        netns
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    /// Runs `work` on a thread inside this namespace (sockets it makes stay in it).
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let file = File::open(self.path()).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    work()
                })
                .join()
                .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A test may have deleted it already (DEL without the netns); one left behind by a failure here
        // shows in `ip netns list` after the run.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// A stand-in ipamd, answering as ipamd does by the pod's name: pods named `v4…` get an IPv4 address from
/// 10.0.1.0/24 (ipamd in IPv4 mode), every other pod an IPv6 address from the node's /80 and no IPv4 address
/// (IPv6 mode). A repeated ADD of a container gets what it holds; DEL gives it back. Pods named
/// `neither-…`, `both-…` and `linklocal-…` get answers no ipamd should give (no address, one of each family,
/// fe80::5), held by nobody.
#[derive(Default)]
pub struct Ipamd {
    /// Container id → (IPv4 address, IPv6 address) held, one of them empty.
    held: Mutex<HashMap<String, (String, String)>>,
    next: AtomicUsize,
}

/// The stand-in as the server holds it, shared with the test.
struct Shared(Arc<Ipamd>);

#[tonic::async_trait]
impl CniBackend for Shared {
    async fn add_network(
        &self,
        request: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let request = request.into_inner();
        let (ipv4, ipv6) = match request.k8s_pod_name.split('-').next() {
            Some("neither") => (String::new(), String::new()),
            Some("both") => ("10.0.1.5".to_owned(), format!("{NODE_PREFIX}::99")),
            Some("linklocal") => (String::new(), "fe80::5".to_owned()),
            _ => self
                .0
                .held
                .lock()
                .unwrap()
                .entry(request.container_id.clone())
                .or_insert_with(|| {
                    let n = self.0.next.fetch_add(1, Ordering::SeqCst) + 10;
                    if request.k8s_pod_name.starts_with("v4") {
                        (format!("10.0.1.{n}"), String::new())
                    } else {
                        (String::new(), format!("{NODE_PREFIX}::{n:x}"))
                    }
                })
                .clone(),
        };
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: vec![IpAllocationMetadata {
                i_pv4_addr: ipv4,
                i_pv6_addr: ipv6,
                device_number: 0,
                route_table_id: 254,
            }],
            ..Default::default()
        }))
    }

    async fn del_network(
        &self,
        request: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let request = request.into_inner();
        let held = self.0.held.lock().unwrap().remove(&request.container_id);
        Ok(Response::new(DelNetworkReply {
            success: true,
            found: held.is_some(),
            ip_allocation_metadata: held
                .into_iter()
                .map(|(ipv4, ipv6)| IpAllocationMetadata {
                    i_pv4_addr: ipv4,
                    i_pv6_addr: ipv6,
                    route_table_id: 254,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }))
    }
}

/// A test node: its namespace (IPv6 forwarding on, as the init container sets it), the stand-in ipamd on
/// `ipamd.sock` in a directory of its own (for the plugins' logs and stores too), removed on drop.
pub struct Node {
    pub netns: Netns,
    pub dir: PathBuf,
    ipamd: Arc<Ipamd>,
    _runtime: tokio::runtime::Runtime,
}

impl Node {
    pub fn start() -> Self {
        let netns = Netns::new("n");
        exec(&netns.0, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        let dir = std::env::temp_dir().join(unique("d"));
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ipamd = Arc::new(Ipamd::default());
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(dir.join("ipamd.sock")).unwrap()
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(CniBackendServer::new(Shared(ipamd.clone())))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        Self {
            netns,
            dir,
            ipamd,
            _runtime: runtime,
        }
    }

    /// The `vpcni` entry of the conflist, talking to the stand-in.
    pub fn config(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "vpcni",
            "type": "vpcni",
            "mtu": 9001,
            "ipamdSocket": self.dir.join("ipamd.sock").display().to_string(),
            "pluginLogFile": self.dir.join("plugin.log").display().to_string(),
            "pluginLogLevel": "debug",
        })
    }

    /// The addresses the stand-in holds, of both families.
    pub fn held(&self) -> Vec<String> {
        self.ipamd
            .held
            .lock()
            .unwrap()
            .values()
            .flat_map(|(ipv4, ipv6)| [ipv4, ipv6])
            .filter(|ip| !ip.is_empty())
            .cloned()
            .collect()
    }

    /// Runs a plugin binary inside the node's namespace as a runtime would; a panic in it fails the test.
    pub fn plugin(
        &self,
        binary: &str,
        command: &str,
        pod: &str,
        netns: Option<&str>,
        config: &Value,
    ) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns.0])
            .arg(binary)
            .env_clear()
            .envs([
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &format!("ctr-{pod}")),
                ("CNI_NETNS", netns.unwrap_or("")),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
                (
                    "CNI_ARGS",
                    &format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}"),
                ),
                ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The plugin may refuse before reading everything; its answer is what the test checks.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(config.to_string().as_bytes());
        let output = child.wait_with_output().unwrap();
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("panicked"),
            "{command} {pod}: {output:?}"
        );
        output
    }

    /// [`Node::plugin`] with `vpcni`.
    pub fn main(&self, command: &str, pod: &str, netns: Option<&str>, config: &Value) -> Output {
        self.plugin(VPCNI, command, pod, netns, config)
    }

    /// [`Node::plugin`] with `vpcni-egress`.
    pub fn egress(&self, command: &str, pod: &str, netns: Option<&str>, config: &Value) -> Output {
        self.plugin(VPCNI_EGRESS, command, pod, netns, config)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Clean-up of the test's own directory; a failure leaves a file in /tmp and nothing else.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plugin's stdout as JSON; null when it printed none.
pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// The config with `result` as prevResult, as runtimes send it to CHECK and DEL (and to the next plugin of
/// the chain).
pub fn with_prev(config: &Value, result: &Value) -> Value {
    let mut config = config.clone();
    config["prevResult"] = result.clone();
    config
}
