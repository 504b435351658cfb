//! Whole-process ADD and DEL latency of a CNI plugin, called exactly as a container runtime calls it.
//!
//! `cargo bench -p vpcni-cni --bench plugin_latency -- --plugin ptp --pods 200`
//!
//! Runs as root. The process re-executes itself inside a fresh "node" network namespace so the plugin's
//! host-side changes never touch the machine's real namespace; every pod is a network namespace of its own,
//! created before timing starts. Prints p50, p99 and mean per verb.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test or benchmark is its failure report

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODE_NETNS: &str = "vpcni-bench-node";

struct Options {
    plugin: String,
    pods: usize,
    conf: Option<PathBuf>,
    plugin_dir: PathBuf,
}

fn parse_args() -> Options {
    let mut options = Options {
        plugin: "ptp".into(),
        pods: 200,
        conf: None,
        plugin_dir: PathBuf::from("/usr/lib/cni"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plugin" => options.plugin = args.next().unwrap_or_default(),
            "--pods" => options.pods = args.next().and_then(|n| n.parse().ok()).unwrap_or(200),
            "--conf" => options.conf = args.next().map(PathBuf::from),
            "--plugin-dir" => options.plugin_dir = args.next().map(PathBuf::from).unwrap_or_default(),
            // cargo bench passes --bench; nothing else is ours.
            _ => {}
        }
    }
    options
}

fn run(command: &mut Command) {
    let status = command.status().expect("command runs");
    assert!(status.success(), "{command:?} failed");
}

fn main() {
    let options = parse_args();
    if std::env::var_os("VPCNI_BENCH_INNER").is_none() {
        let _ = Command::new("ip").args(["netns", "del", NODE_NETNS]).status();
        run(Command::new("ip").args(["netns", "add", NODE_NETNS]));
        run(Command::new("ip").args(["-n", NODE_NETNS, "link", "set", "lo", "up"]));
        let status = Command::new("ip")
            .args(["netns", "exec", NODE_NETNS])
            .arg(std::env::current_exe().expect("own path"))
            .args(std::env::args().skip(1))
            .env("VPCNI_BENCH_INNER", "1")
            .status()
            .expect("re-exec in the node namespace");
        let _ = Command::new("ip").args(["netns", "del", NODE_NETNS]).status();
        std::process::exit(status.code().unwrap_or(1));
    }

    let conf = match &options.conf {
        Some(path) => std::fs::read_to_string(path).expect("read --conf"),
        None => {
            let data_dir = std::env::temp_dir().join("vpcni-bench-host-local");
            let _ = std::fs::remove_dir_all(&data_dir);
            format!(
                r#"{{"cniVersion":"1.0.0","name":"bench","type":"{}","ipMasq":false,"mtu":9001,
                   "ipam":{{"type":"host-local","subnet":"10.99.0.0/16","dataDir":"{}"}}}}"#,
                options.plugin,
                data_dir.display()
            )
        }
    };
    let binary = options.plugin_dir.join(&options.plugin);
    let pods: Vec<String> = (0..options.pods)
        .map(|i| format!("vpcni-bench-pod-{i}"))
        .collect();
    for pod in &pods {
        let _ = Command::new("ip").args(["netns", "del", pod]).status();
        run(Command::new("ip").args(["netns", "add", pod]));
    }

    let call = |verb: &str, index: usize, pod: &str| -> Duration {
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", format!("bench{index:08}"))
            .env("CNI_NETNS", format!("/var/run/netns/{pod}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &options.plugin_dir)
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={pod}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plugin starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.as_bytes())
            .expect("config written");
        let output = child.wait_with_output().expect("plugin finishes");
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "{verb} {pod}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        elapsed
    };

    let mut adds: Vec<Duration> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| call("ADD", i, pod))
        .collect();
    let mut dels: Vec<Duration> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| call("DEL", i, pod))
        .collect();
    for pod in &pods {
        let _ = Command::new("ip").args(["netns", "del", pod]).status();
    }
    println!(
        "plugin {} ({} pods, whole process per call)",
        options.plugin, options.pods
    );
    for (verb, samples) in [("ADD", &mut adds), ("DEL", &mut dels)] {
        samples.sort();
        let percentile = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)];
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        println!(
            "{verb}: p50 {:.2} ms  p99 {:.2} ms  mean {:.2} ms",
            percentile(0.50).as_secs_f64() * 1e3,
            percentile(0.99).as_secs_f64() * 1e3,
            mean.as_secs_f64() * 1e3
        );
    }
}
