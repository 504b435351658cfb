//! IPv6 pods through the real `vpcni` binary, against a stand-in ipamd that answers as ipamd in IPv6 mode
//! (an `IPv6Addr` from the node's /80 and no `IPv4Addr`), on a test node made of network namespaces: ADD,
//! CHECK and DEL in every CNI version vpcni answers, each ADD result checked against the spec, the pods
//! usable when ADD returns, and bad input refused with the spec's code. ipamd's own IPv6 mode is not in
//! this crate's tests yet: its binary needs the AWS SDK. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::collections::HashMap;
use std::io::Write;
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

/// The node's own address, on its `lo`, for the pods to reach.
const NODE_ADDRESS: &str = "2600:1f14:abc:de00::10";
/// The node's /80, as ipamd in IPv6 mode holds it.
const NODE_PREFIX: &str = "2600:1f14:abc:de00:1f2e";

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique(kind: &str) -> String {
    format!(
        "vt-c6{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn ip(netns: &str, args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(kind: &str) -> Self {
        let name = unique(kind);
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        ip(&name, &["link", "set", "lo", "up"]);
        Self(name)
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// What the stand-in ipamd answers for a pod, by the pod's name.
#[derive(Default)]
struct Ipamd {
    /// Container id → address held.
    held: Mutex<HashMap<String, String>>,
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
            _ => {
                let n = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
                let ip = format!("{NODE_PREFIX}::{n:x}");
                self.0
                    .held
                    .lock()
                    .unwrap()
                    .insert(request.container_id.clone(), ip.clone());
                (String::new(), ip)
            }
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
                .map(|ip| IpAllocationMetadata {
                    i_pv6_addr: ip,
                    route_table_id: 254,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }))
    }
}

/// A test node: its namespace (IPv6 forwarding on, as the init container sets it, and an address of its
/// own), a stand-in ipamd on a unix socket in a directory of its own, and the plugin's configuration.
struct Node {
    netns: Netns,
    dir: PathBuf,
    ipamd: Arc<Ipamd>,
    _runtime: tokio::runtime::Runtime,
}

impl Node {
    fn start() -> Self {
        let netns = Netns::new("n");
        assert!(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &netns.0,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.forwarding=1"
                ])
                .status()
                .unwrap()
                .success()
        );
        ip(
            &netns.0,
            &["-6", "addr", "add", &format!("{NODE_ADDRESS}/128"), "dev", "lo"],
        );
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

    fn config(&self, version: &str) -> Value {
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

    /// Runs the plugin inside the node's namespace as a runtime would.
    fn plugin(&self, command: &str, pod: &str, netns: Option<&str>, config: &Value) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns.0])
            .arg(env!("CARGO_BIN_EXE_vpcni"))
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

    fn held(&self) -> Vec<String> {
        self.ipamd.held.lock().unwrap().values().cloned().collect()
    }

    /// The node's routes, rules and veths that name a pod.
    fn pod_state(&self) -> (String, String, String) {
        (
            ip(&self.netns.0, &["-6", "route", "show", "table", "all"]),
            ip(&self.netns.0, &["-6", "rule"]),
            ip(&self.netns.0, &["link", "show", "type", "veth"]),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn with_prev(config: &Value, result: &Value) -> Value {
    let mut config = config.clone();
    config["prevResult"] = result.clone();
    config
}

fn ping6(netns: &str, to: &str) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let output = Command::new("ip")
            .args(["netns", "exec", netns, "ping", "-6", "-c", "1", "-W", "2", to])
            .output()
            .unwrap();
        if output.status.success() || std::time::Instant::now() >= deadline {
            return output;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// ADD in every version: a valid result (the spec checker), the /128 with gateway fe80::1 on the pod's
/// interface, `"version": "6"` before 1.0.0, the default route via fe80::1; the pod's address usable at
/// once; the pods reach the node and each other; CHECK passes; DEL with prevResult leaves nothing and gives
/// the address back.
#[test]
fn ipv6_pods_in_every_version() {
    let node = Node::start();
    let empty = node.pod_state();
    let mut pods = Vec::new();
    for version in common::spec_result::VERSIONS {
        let netns = Netns::new("p");
        let pod = format!("web{}", version.replace('.', ""));
        let config = node.config(version);
        let added = node.plugin("ADD", &pod, Some(&netns.path()), &config);
        assert!(added.status.success(), "{version}: {added:?}");
        let result = json(&added);
        let violations = common::spec_result::violations(&result, version, &netns.path());
        assert!(violations.is_empty(), "{version}: {violations:#?}\n{result}");

        let ips = result["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 1, "{version}: {result}");
        let address = ips[0]["address"].as_str().unwrap().to_owned();
        let (bare, prefix) = address.split_once('/').unwrap();
        assert_eq!(prefix, "128", "{version}: {result}");
        assert!(bare.starts_with(NODE_PREFIX), "{version}: {result}");
        assert!(node.held().contains(&bare.to_owned()));
        assert_eq!(ips[0]["gateway"], "fe80::1", "{version}: {result}");
        let index = ips[0]["interface"].as_u64().unwrap() as usize;
        let interface = &result["interfaces"][index];
        assert_eq!(interface["name"], "eth0", "{version}: {result}");
        assert_eq!(interface["sandbox"], netns.path(), "{version}: {result}");
        if version.starts_with("0.") {
            assert_eq!(ips[0]["version"], "6", "{version}: {result}");
        } else {
            assert!(ips[0].get("version").is_none(), "{version}: {result}");
        }
        assert_eq!(
            result["routes"],
            json!([{ "dst": "::/0", "gw": "fe80::1" }]),
            "{version}"
        );

        // Usable now: the address is there and not tentative, and the node is reachable.
        let addresses = ip(&netns.0, &["-6", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            addresses.contains(&format!("inet6 {address} scope global")),
            "{addresses}"
        );
        assert!(!addresses.contains("tentative"), "{addresses}");
        let ping = ping6(&netns.0, NODE_ADDRESS);
        assert!(ping.status.success(), "{version}: {ping:?}");
        let bare = bare.to_owned();
        pods.push((netns, pod, config, result, bare));
    }

    // Pod to pod, through the node.
    let ping = ping6(&pods[0].0.0, &pods[1].4);
    assert!(ping.status.success(), "{ping:?}");

    for (netns, pod, config, result, address) in &pods {
        let version = config["cniVersion"].as_str().unwrap();
        if version != "0.3.0" && version != "0.3.1" {
            let check = node.plugin("CHECK", pod, Some(&netns.path()), &with_prev(config, result));
            assert!(check.status.success(), "{version}: {check:?}");
        }
        let deleted = node.plugin("DEL", pod, Some(&netns.path()), &with_prev(config, result));
        assert!(deleted.status.success(), "{version}: {deleted:?}");
        let (routes, rules, _) = node.pod_state();
        assert!(!routes.contains(address.as_str()), "{version}: {routes}");
        assert!(!rules.contains(address.as_str()), "{version}: {rules}");
        assert!(!node.held().contains(address), "{version}: released");
    }
    drop(pods);
    // The runtime deletes the namespaces; the kernel then destroys the veths (asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.pod_state() != empty && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(node.pod_state(), empty);
}

/// DEL of an IPv6 pod as a 0.3.x runtime sends it (no prevResult: ADD's record names the address), after
/// the namespace is gone; and CHECK of a pod changed behind vpcni's back names what changed.
#[test]
fn ipv6_check_and_del_without_prev_result_or_netns() {
    let node = Node::start();
    let empty = node.pod_state();
    let netns = Netns::new("p");
    let config = node.config("1.1.0");
    let added = node.plugin("ADD", "api-0", Some(&netns.path()), &config);
    assert!(added.status.success(), "{added:?}");
    let result = json(&added);
    ip(&netns.0, &["-6", "neigh", "del", "fe80::1", "dev", "eth0"]);
    let check = node.plugin(
        "CHECK",
        "api-0",
        Some(&netns.path()),
        &with_prev(&config, &result),
    );
    assert_eq!(json(&check)["code"], 100, "{check:?}");
    let details = json(&check)["details"].as_str().unwrap().to_owned();
    assert!(
        details.contains("permanent neighbour entry for fe80::1 with the host veth's MAC is missing"),
        "{details}"
    );

    drop(netns);
    let deleted = node.plugin("DEL", "api-0", None, &node.config("0.3.1"));
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(node.held().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.pod_state() != empty && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(node.pod_state(), empty);
}

/// Bad input: a prevResult whose IPv6 address does not parse (code 6, the field named, for ADD, CHECK and
/// DEL), and ipamd answers with neither family, both, or an address no pod can hold (code 100, said in a
/// sentence). Nothing is wired, nothing is left behind, and nothing panics.
#[test]
fn bad_ipv6_input_is_refused_with_the_right_code() {
    let node = Node::start();
    let empty = node.pod_state();
    let netns = Netns::new("p");
    let config = node.config("1.0.0");
    let bad_prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{ "name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": netns.path() }],
        "ips": [{ "address": "2600:1f14:abc:de00:1f2e::zz/128", "gateway": "fe80::1", "interface": 0 }],
    });
    for command in ["ADD", "CHECK", "DEL"] {
        let output = node.plugin(
            command,
            "web-0",
            Some(&netns.path()),
            &with_prev(&config, &bad_prev),
        );
        let reply = json(&output);
        assert_eq!(reply["code"], 6, "{command}: {output:?}");
        assert_eq!(reply["msg"], "prevResult is not a CNI result", "{command}");
        assert!(
            reply["details"]
                .as_str()
                .unwrap()
                .contains("ips[0].address \"2600:1f14:abc:de00:1f2e::zz/128\" is not an IPv6 address"),
            "{command}: {reply}"
        );
    }
    for (pod, needle) in [
        ("neither-0", "ipamd reported success without an address"),
        ("both-0", "ipamd returned both 10.0.1.5 and"),
        (
            "linklocal-0",
            "ipamd returned fe80::5, which is not an address a pod can hold",
        ),
    ] {
        let output = node.plugin("ADD", pod, Some(&netns.path()), &config);
        let reply = json(&output);
        assert_eq!(reply["code"], 100, "{pod}: {output:?}");
        assert!(reply["msg"].as_str().unwrap().contains(needle), "{pod}: {reply}");
        assert_eq!(output.status.code(), Some(100));
    }
    assert_eq!(node.pod_state(), empty);
    let links = ip(&netns.0, &["-o", "link"]);
    assert_eq!(links.lines().count(), 1, "only lo in the pod: {links}");
}
