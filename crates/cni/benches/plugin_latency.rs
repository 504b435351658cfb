//! Whole-process ADD and DEL latency of `vpcni` (+ a real ipamd) against Debian's `ptp` + `host-local`
//! doing the equivalent work, in one run on one machine, called exactly as a container runtime calls a
//! plugin: a fresh process per call, the configuration on stdin, `CNI_*` in the environment, DEL with the
//! ADD result as prevResult.
//!
//! ```sh
//! cargo build --release -p vpcni-ipamd -p vpcnictl      # the daemon and the simulator, optimised
//! cargo bench -p vpcni-cni --bench plugin_latency -- --pods 200
//! cargo bench -p vpcni-cni --bench plugin_latency -- --pods 200 --ipv6   # IPv6 pods, both plugins
//! ```
//!
//! `--ipv6`: vpcni's node is a dual-stack VPC with ipamd in IPv6 mode (pods get /128s of the node's /80),
//! and `host-local` hands `ptp` addresses from an IPv6 /64.
//!
//! Runs as root. Each plugin gets a testbed node of its own (a network namespace with eth0 as the primary
//! ENI; vpcni's with the EC2 simulator and ipamd, its pool filled before timing starts); every pod is a
//! namespace of its own, created before timing starts. Calls alternate between the two plugins pod by pod so
//! both see the same machine. Prints p50, p99 and mean per verb and plugin, and the ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a benchmark is its failure report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vpcni_testbed::{PodNetns, TestNode, in_netns};

struct Options {
    pods: usize,
    checkpoint_on_disk: bool,
    ipv6: bool,
    reference_dir: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        pods: 200,
        checkpoint_on_disk: false,
        ipv6: false,
        reference_dir: PathBuf::from("/usr/lib/cni"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pods" => options.pods = args.next().and_then(|n| n.parse().ok()).expect("--pods N"),
            "--checkpoint-on-disk" => options.checkpoint_on_disk = true,
            "--ipv6" => options.ipv6 = true,
            "--reference-dir" => {
                options.reference_dir = args.next().map(PathBuf::from).expect("--reference-dir DIR")
            }
            // cargo bench passes --bench; nothing else is ours.
            _ => {}
        }
    }
    options
}

/// One plugin under test: its binary, its node, its configuration, its pods.
struct Subject {
    name: &'static str,
    binary: PathBuf,
    cni_path: String,
    node: TestNode,
    config: Value,
    pods: Vec<PodNetns>,
    results: Vec<Value>,
    adds: Vec<Duration>,
    dels: Vec<Duration>,
}

/// Runs one call in the node's namespace: the process is started from a thread inside it, as a runtime
/// running on the node would start it (no `ip netns exec` in the measured time).
fn call(subject: &Subject, verb: &str, index: usize, config: &Value) -> (Duration, Value) {
    let (binary, cni_path) = (subject.binary.clone(), subject.cni_path.clone());
    let netns = subject.pods[index].path().to_owned();
    let stdin = config.to_string();
    let verb_owned = verb.to_owned();
    let (elapsed, output) = in_netns(subject.node.name(), move || {
        let verb = verb_owned;
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .env_clear()
            .env("CNI_COMMAND", &verb)
            .env("CNI_CONTAINERID", format!("bench{index:08}"))
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &cni_path)
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{index};K8S_POD_INFRA_CONTAINER_ID=bench{index:08}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plugin starts");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("config written");
        let output = child.wait_with_output().expect("plugin finishes");
        (started.elapsed(), output)
    })
    .unwrap();
    assert!(
        output.status.success(),
        "{} {verb} pod {index}: {}{}",
        subject.name,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        elapsed,
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
    )
}

fn subject(
    name: &'static str,
    binary: &Path,
    cni_path: &str,
    node: TestNode,
    config: Value,
    pods: usize,
) -> Subject {
    let pods = (0..pods)
        .map(|i| node.pod_netns(&format!("b{i}")).unwrap())
        .collect();
    Subject {
        name,
        binary: binary.to_path_buf(),
        cni_path: cni_path.to_owned(),
        node,
        config,
        pods,
        results: Vec::new(),
        adds: Vec::new(),
        dels: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted[index].as_secs_f64() * 1e3
}

fn summary(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e3 / samples.len() as f64;
    (percentile(samples, 0.50), percentile(samples, 0.99), mean)
}

fn main() {
    let options = options();
    let n = options.pods;

    // vpcni: m5.4xlarge (8 ENIs × 29 pod addresses), the pool filled before timing. ipamd's checkpoint on
    // tmpfs, where it is on a node (/var/run); `--checkpoint-on-disk` keeps it in the node's directory.
    let shm = PathBuf::from(format!("/dev/shm/vt-tb-{}-bench", std::process::id()));
    std::fs::create_dir_all(&shm).expect("tmpfs directory");
    let mut builder = TestNode::builder();
    if !options.checkpoint_on_disk {
        builder = builder.ipamd_env(
            "AWS_VPC_K8S_CNI_BACKING_STORE",
            &shm.join("ipam.json").display().to_string(),
        );
    }
    if options.ipv6 {
        builder = builder.ipv6();
    }
    let vpcni_node = builder
        .instance_type("m5.4xlarge")
        .ipamd_env("WARM_IP_TARGET", &(n + 5).to_string())
        .ipamd_env("AWS_VPC_K8S_CNI_LOGLEVEL", "info")
        .start()
        .expect("vpcni node");
    vpcni_node
        .wait_for_addresses(i32::try_from(n).unwrap())
        .expect("the pool fills");
    let mut vpcni_config = vpcni_node.cni_config_value("1.0.0");
    vpcni_config["pluginLogLevel"] = "info".into();
    let vpcni_bin = PathBuf::from(env!("CARGO_BIN_EXE_vpcni"));
    let cni_path = vpcni_bin.parent().unwrap().display().to_string();
    let mut vpcni = subject(
        if options.ipv6 {
            "vpcni + ipamd, IPv6"
        } else {
            "vpcni + ipamd"
        },
        &vpcni_bin,
        &cni_path,
        vpcni_node,
        vpcni_config,
        n,
    );

    // ptp + host-local on a node of its own (no ipamd needed).
    let ptp_node = TestNode::builder()
        .without_ipamd()
        .without_hotplug()
        .start()
        .expect("ptp node");
    let data_dir = ptp_node.dir().join("host-local");
    let subnet = if options.ipv6 {
        "fd00:99::/64"
    } else {
        "10.99.0.0/16"
    };
    let ptp_config = json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "ptp", "ipMasq": false, "mtu": 9001,
        "ipam": { "type": "host-local", "subnet": subnet, "dataDir": data_dir },
    });
    let reference = options.reference_dir.join("ptp");
    let reference_path = options.reference_dir.display().to_string();
    let mut ptp = subject(
        if options.ipv6 {
            "ptp + host-local, IPv6"
        } else {
            "ptp + host-local"
        },
        &reference,
        &reference_path,
        ptp_node,
        ptp_config,
        n,
    );

    for i in 0..n {
        for subject in [&mut ptp, &mut vpcni] {
            let (elapsed, result) = call(subject, "ADD", i, &subject.config);
            subject.adds.push(elapsed);
            subject.results.push(result);
        }
    }
    for i in 0..n {
        for subject in [&mut ptp, &mut vpcni] {
            let mut config = subject.config.clone();
            config["prevResult"] = subject.results[i].clone();
            let (elapsed, _) = call(subject, "DEL", i, &config);
            subject.dels.push(elapsed);
        }
    }

    // Scratch space on tmpfs: left behind, it costs only memory until the next boot.
    let _ = std::fs::remove_dir_all(&shm);
    println!(
        "{n} pods per plugin, whole process per call, calls alternating between plugins; ipamd's checkpoint on {}",
        if options.checkpoint_on_disk {
            "disk (ext4)"
        } else {
            "tmpfs"
        }
    );
    println!("| plugin | ADD p50 | ADD p99 | ADD mean | DEL p50 | DEL p99 | DEL mean |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for subject in [&mut vpcni, &mut ptp] {
        let add = summary(&mut subject.adds);
        let del = summary(&mut subject.dels);
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            subject.name, add.0, add.1, add.2, del.0, del.1, del.2
        );
        rows.push((add, del));
    }
    let (ours, theirs) = (rows[0], rows[1]);
    println!(
        "ptp / vpcni: ADD p50 {:.2}×, p99 {:.2}×; DEL p50 {:.2}×, p99 {:.2}× (above 1: vpcni is faster)",
        theirs.0.0 / ours.0.0,
        theirs.0.1 / ours.0.1,
        theirs.1.0 / ours.1.0,
        theirs.1.1 / ours.1.1
    );
}
