//! The chart on a node, with kubelet played over containerd's CRI: real Helm renders charts/vpcni, the image
//! built by scripts/image.sh is imported into a containerd running in lab node-1's namespace (whose own
//! ipamd is stopped: the node's ipamd is the image's), and the DaemonSet's pod runs as kubelet would run
//! it — host network, security context, host paths, env, init container first, probes called.
//!
//! Then: the plugin and conflist land in the node's directories only once ipamd can serve an ADD, and the
//! runtime reports the network ready only then; application pods get VPC addresses of node-1's ENIs,
//! reach a pod on node-2 and the lab's internet, and give their addresses back when removed. The daemon
//! pod is replaced as a rolling update does, and running pods keep their addresses and connectivity, with
//! no address handed out twice.
//!
//! Needs root, containerd, runc, podman, busybox-static, containernetworking-plugins, npm (for Helm).
//! `VPCNI_HELM` and `VPCNI_IMAGE_ARCHIVE` name Helm and the image (scripts/test.sh sets them); without
//! them the test runs scripts/helm.sh and scripts/image.sh itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use vpcni_e2e::containerd::{Containerd, ContainerdSpec};
use vpcni_e2e::cri::Cri;
use vpcni_e2e::kubelet::{Kubelet, RunningPod};
use vpcni_lab::spec::{INTERNET_IP, INTROSPECTION};
use vpcni_lab::{Lab, LabGuard, LabSpec};

const NAMESPACE: &str = "kube-system";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tool's path from `variable`, or what the script that installs or builds it prints.
fn tool(variable: &str, script: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    let output = Command::new(repo().join(script)).output().unwrap();
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Renders the chart with real Helm and a values file, and returns the DaemonSet's pod template.
fn render_daemonset(helm: &Path, values: &Value, dir: &Path) -> Value {
    let file = dir.join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    let output = Command::new(helm)
        .args(["template", "vpcni"])
        .arg(repo().join("charts/vpcni"))
        .args(["--namespace", NAMESPACE, "--values"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let daemonset = serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .find(|o| o["kind"] == "DaemonSet")
        .expect("the chart renders a DaemonSet");
    daemonset["spec"]["template"].clone()
}

/// Addresses node-1's ipamd has given to pods (its introspection), as (container id, address).
fn allocations(lab: &Lab) -> Vec<(String, String)> {
    let body = lab
        .http_get(
            "node-1",
            &format!("http://{INTROSPECTION}/v1/pods"),
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
    let pods: Value = serde_json::from_str(&body).unwrap();
    pods.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["containerID"].as_str().unwrap_or_default().to_owned(),
                p["ipv4"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn eventually<T>(what: &str, timeout: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An application pod: a sandbox on the pod network and a container that sleeps.
struct AppPod {
    sandbox: String,
    container: String,
    ip: String,
}

fn app_pod(cri: &Cri, name: &str, uid: &str, logs: &Path, containerd: &Containerd) -> AppPod {
    let config = Cri::sandbox_config(name, "default", uid, logs);
    let sandbox = cri
        .run_pod_sandbox(&config)
        .unwrap_or_else(|e| panic!("{e}; containerd's log ends with:\n{}", containerd.log_tail()));
    let ip = cri.pod_ip(&sandbox).unwrap();
    let container = cri
        .start_container(&sandbox, &config, "app", &["/bin/sleep", "3600"])
        .unwrap();
    AppPod {
        sandbox,
        container,
        ip,
    }
}

/// The pod reaches `peer` (ping) and the lab's internet, which sees the node's public address.
fn assert_connected(cri: &Cri, pod: &AppPod, peer: Ipv4Addr, public: Ipv4Addr) {
    let ping = cri
        .exec_sync(
            &pod.container,
            &["ping", "-c", "2", "-W", "2", &peer.to_string()],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(ping.exit_code, 0, "{} pings {peer}: {ping:?}", pod.ip);
    let whoami = cri
        .exec_sync(
            &pod.container,
            // busybox's wget crashes on this host; a plain HTTP/1.0 request through nc instead.
            &[
                "sh",
                "-c",
                // nc closes the connection when its input ends: keep it open until the answer came.
                &format!(
                    "(printf 'GET / HTTP/1.0\\r\\nHost: {INTERNET_IP}\\r\\n\\r\\n'; sleep 3) | nc -w 5 {INTERNET_IP} 80"
                ),
            ],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(whoami.exit_code, 0, "{} reaches the internet: {whoami:?}", pod.ip);
    let body = whoami.stdout.lines().last().unwrap_or_default().trim();
    assert_eq!(
        body,
        public.to_string(),
        "the internet saw {}: {whoami:?}",
        pod.ip
    );
}

/// Runs the daemon pod, checking on the way that nothing is installed before the init container ran and
/// that the conflist appears only once ipamd can serve an ADD.
fn run_daemon_pod(
    kubelet: &Kubelet,
    template: &Value,
    name: &str,
    uid: &str,
    host: &HostDirs,
    conflist_expected_before: bool,
) -> RunningPod {
    let plugin = host.cni_bin.join("vpcni");
    let conflist = host.cni_conf.join("10-vpcni.conflist");
    let pod = kubelet
        .run_pod(template, name, NAMESPACE, uid, || {
            // The init container ran to completion: the plugins are installed, the conflist is not (or is
            // the previous daemon's, on a replacement).
            assert!(plugin.is_file(), "the init container installed the plugin");
            for reference in ["vpcni-egress", "loopback", "portmap"] {
                assert!(host.cni_bin.join(reference).is_file(), "{reference} installed");
            }
            assert_eq!(conflist.exists(), conflist_expected_before);
            Ok(())
        })
        .unwrap();
    // The daemon container says when it wrote the conflist (on a replacement the previous daemon's is
    // already there); ipamd's readiness is monotonic until shutdown, so the probe must pass from then on.
    let started = Instant::now();
    let main = &template["spec"]["containers"][0];
    while !kubelet
        .container_log(&pod, NAMESPACE, uid, main)
        .contains("conflist written")
    {
        let state = kubelet.container_state(&pod.containers["vpcni"]).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(120)
                && state.0 != vpcni_e2e::kubelet::ContainerState::ContainerExited,
            "no conflist after 120 s; the daemon container is {state:?}, its log:\n{}",
            kubelet.container_log(&pod, NAMESPACE, uid, main)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(conflist.is_file());
    assert!(
        kubelet.probe(&pod, "vpcni", "readinessProbe").unwrap(),
        "the conflist exists, so ipamd can serve an ADD"
    );
    assert!(kubelet.probe(&pod, "vpcni", "livenessProbe").unwrap());
    pod
}

/// The node's directories the chart's host paths point at.
struct HostDirs {
    root: PathBuf,
    cni_bin: PathBuf,
    cni_conf: PathBuf,
    run: PathBuf,
    plugin_log: PathBuf,
}

#[test]
fn the_daemonset_installs_vpcni_on_a_node_and_a_rolling_update_keeps_its_pods() {
    let helm = tool("VPCNI_HELM", "scripts/helm.sh");
    let image = tool("VPCNI_IMAGE_ARCHIVE", "scripts/image.sh");

    let mut spec = LabSpec::isolated("ds");
    spec.nodes = 2;
    let ipamd_env = spec.ipamd_environment(Path::new("/unused"));
    let mut lab = LabGuard::up(spec).unwrap();
    let peer = lab
        .add_pods("node-2", 1, Duration::from_secs(60))
        .unwrap()
        .remove(0);
    // node-1's ipamd will be the image's: the lab's own stops (its ENIs and addresses stay attached).
    lab.stop_ipamd("node-1").unwrap();
    let node = lab.node("node-1").unwrap().clone();

    let root = lab.paths().node_dir("node-1").join("k8s-node");
    let host = HostDirs {
        cni_bin: root.join("opt/cni/bin"),
        cni_conf: root.join("etc/cni/net.d"),
        run: root.join("var/run/vpcni"),
        plugin_log: root.join("var/log/aws-routed-eni/plugin.log"),
        root: root.clone(),
    };
    // What the lab gives its ipamd (EC2 endpoint, instance metadata, credentials), less the paths, which
    // are the chart's.
    let mut env: serde_json::Map<String, Value> = ipamd_env
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "VPCNI_IPAMD_SOCKET" | "AWS_VPC_K8S_CNI_BACKING_STORE"))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    env.insert(
        "AWS_VPC_K8S_PLUGIN_LOG_FILE".into(),
        host.plugin_log.display().to_string().into(),
    );
    env.insert("AWS_VPC_K8S_PLUGIN_LOG_LEVEL".into(), "debug".into());
    let values = json!({
        "env": env,
        "hostPaths": {
            "cniBin": host.cni_bin,
            "cniConf": host.cni_conf,
            "run": host.run,
            "awsNodeRun": root.join("var/run/aws-node"),
        },
    });
    let template = render_daemonset(&helm, &values, lab.paths().node_dir("node-1").as_path());
    std::fs::create_dir_all(&host.root).unwrap();

    let containerd = Containerd::start(&ContainerdSpec {
        dir: root.join("containerd"),
        netns: node.netns.clone(),
        cni_bin_dir: host.cni_bin.clone(),
        cni_conf_dir: host.cni_conf.clone(),
    })
    .unwrap();
    let import = Command::new("ctr")
        .arg("--address")
        .arg(containerd.socket())
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(import.status.success(), "ctr import: {import:?}");
    let cri = Cri::connect(&containerd.socket()).unwrap();
    let kubelet = Kubelet::connect(&containerd.socket(), "node-1", &root.join("pods")).unwrap();
    assert!(
        !kubelet.network_ready().unwrap(),
        "no CNI configuration yet: the node's network is not ready"
    );

    // The DaemonSet's pod, as kubelet runs it.
    let daemon = run_daemon_pod(
        &kubelet,
        &template,
        "vpcni-a",
        "0b1e7c6a-0000-4000-8000-00000000000a",
        &host,
        false,
    );
    eventually("containerd to load the conflist", Duration::from_secs(60), || {
        kubelet.network_ready().unwrap().then_some(())
    });
    let conflist: Value =
        serde_json::from_str(&std::fs::read_to_string(host.cni_conf.join("10-vpcni.conflist")).unwrap())
            .unwrap();
    assert_eq!(conflist["plugins"][0]["type"], "vpcni");
    assert_eq!(
        conflist["plugins"][0]["pluginLogFile"],
        host.plugin_log.display().to_string()
    );
    assert_eq!(
        conflist["plugins"][0]["ipamdSocket"],
        host.run.join("ipamd.sock").display().to_string()
    );
    assert_eq!(conflist["plugins"][1]["type"], "portmap");
    let main_log = kubelet.container_log(
        &daemon,
        NAMESPACE,
        "0b1e7c6a-0000-4000-8000-00000000000a",
        &template["spec"]["containers"][0],
    );
    let waiting = main_log.find("waiting until it can serve an ADD");
    let written = main_log.find("conflist written");
    assert!(
        waiting.is_some() && written.is_some() && waiting < written,
        "the daemon container waited for ipamd before writing the conflist: {main_log}"
    );

    // Application pods on node-1, through the same CRI.
    let logs = root.join("app-logs");
    let web1 = app_pod(
        &cri,
        "web-1",
        "7d5c0a3e-0000-4000-8000-000000000001",
        &logs,
        &containerd,
    );
    let web2 = app_pod(
        &cri,
        "web-2",
        "7d5c0a3e-0000-4000-8000-000000000002",
        &logs,
        &containerd,
    );
    for pod in [&web1, &web2] {
        let address: Ipv4Addr = pod
            .ip
            .parse()
            .unwrap_or_else(|_| panic!("sandbox address {:?}", pod.ip));
        assert!(
            node.subnet.contains(&address),
            "{address} is in node-1's subnet {}",
            node.subnet
        );
        assert_ne!(address, node.primary_ip);
    }
    assert_ne!(web1.ip, web2.ip);
    let held = allocations(&lab);
    assert!(
        held.contains(&(web1.sandbox.clone(), web1.ip.clone())),
        "{held:?}"
    );
    assert!(
        held.contains(&(web2.sandbox.clone(), web2.ip.clone())),
        "{held:?}"
    );
    let plugin_log = std::fs::read_to_string(&host.plugin_log).unwrap();
    assert!(
        plugin_log
            .lines()
            .any(|l| l.contains("command=Add") && l.contains(&web1.sandbox)),
        "the installed plugin wired web-1: {plugin_log}"
    );
    assert_connected(&cri, &web1, peer.ip, node.public_ip);
    assert_connected(&cri, &web2, peer.ip, node.public_ip);

    // Removing a pod gives its address back.
    cri.remove_container(&web2.container).unwrap();
    cri.stop_pod_sandbox(&web2.sandbox).unwrap();
    cri.remove_pod_sandbox(&web2.sandbox).unwrap();
    eventually("web-2's address to be released", Duration::from_secs(60), || {
        (!allocations(&lab).iter().any(|(_, ip)| *ip == web2.ip)).then_some(())
    });

    // Rolling update: the daemon pod is deleted (SIGTERM, grace period), a new one takes its place.
    kubelet.delete_pod(&daemon).unwrap();
    assert!(
        !host.run.join("ipamd.sock").exists(),
        "the old ipamd stopped and removed its socket"
    );
    let checkpoint = std::fs::read_to_string(host.run.join("ipam.json")).unwrap();
    assert!(
        checkpoint.contains(&web1.ip),
        "the old ipamd's checkpoint holds web-1: {checkpoint}"
    );
    let replacement = run_daemon_pod(
        &kubelet,
        &template,
        "vpcni-b",
        "0b1e7c6a-0000-4000-8000-00000000000b",
        &host,
        true,
    );
    assert!(kubelet.network_ready().unwrap());

    // web-1 kept its address and its connectivity; the new ipamd knows it holds it.
    assert_eq!(cri.pod_ip(&web1.sandbox).unwrap(), web1.ip);
    let held = allocations(&lab);
    assert!(
        held.contains(&(web1.sandbox.clone(), web1.ip.clone())),
        "{held:?}"
    );
    assert_connected(&cri, &web1, peer.ip, node.public_ip);
    // New pods get new addresses: nothing handed out twice.
    let web3 = app_pod(
        &cri,
        "web-3",
        "7d5c0a3e-0000-4000-8000-000000000003",
        &logs,
        &containerd,
    );
    let web4 = app_pod(
        &cri,
        "web-4",
        "7d5c0a3e-0000-4000-8000-000000000004",
        &logs,
        &containerd,
    );
    let addresses: BTreeSet<&String> = [&web1.ip, &web3.ip, &web4.ip].into_iter().collect();
    assert_eq!(
        addresses.len(),
        3,
        "web-1 {}, web-3 {}, web-4 {}",
        web1.ip,
        web3.ip,
        web4.ip
    );
    let held = allocations(&lab);
    let distinct: BTreeSet<&String> = held.iter().map(|(_, ip)| ip).collect();
    assert_eq!(distinct.len(), held.len(), "no address held twice: {held:?}");
    for pod in [&web1, &web3, &web4] {
        assert!(held.contains(&(pod.sandbox.clone(), pod.ip.clone())), "{held:?}");
    }
    assert_connected(&cri, &web3, peer.ip, node.public_ip);

    for pod in [&web1, &web3, &web4] {
        cri.remove_container(&pod.container).unwrap();
        cri.stop_pod_sandbox(&pod.sandbox).unwrap();
        cri.remove_pod_sandbox(&pod.sandbox).unwrap();
    }
    eventually("every address back", Duration::from_secs(60), || {
        allocations(&lab).is_empty().then_some(())
    });
    kubelet.delete_pod(&replacement).unwrap();
    drop(containerd);
}
