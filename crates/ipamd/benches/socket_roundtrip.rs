//! ADD+DEL round trips to the real `vpcni-ipamd` over its unix socket: throughput, p50 and p99.
//!
//! `cargo build --release -p vpcni-ipamd -p vpcnictl && cargo bench -p vpcni-ipamd --bench socket_roundtrip -- --pairs 2000 --clients 4 [--checkpoint-dir /dev/shm]`
//!
//! Runs as root: the daemon runs in a testbed node (its own network namespace, `vpcnictl sim serve` as EC2),
//! with the binaries next to the bench (`target/release`, or `VPCNI_BIN_DIR`). The cooldown is 0 so the
//! same addresses serve every pair: this measures the daemon's request path (gRPC, pool lock, checkpoint
//! write with fsync, metrics), not the pool policy. Three ways of calling: one connection reused (a
//! long-lived client), a new connection per call (what the plugin does: one process per CNI call), and
//! several clients at once on their own connections.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a benchmark is its failure report

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use vpcni_rpc::cni_backend_client::CniBackendClient;
use vpcni_testbed::TestNode;

struct Options {
    pairs: usize,
    clients: usize,
    /// Where the checkpoint goes (default: the node's directory under /tmp); a tmpfs such as /dev/shm
    /// separates the daemon's own cost from the disk's fsync.
    checkpoint_dir: Option<PathBuf>,
}

fn parse_args() -> Options {
    let mut options = Options {
        pairs: 2000,
        clients: 4,
        checkpoint_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pairs" => options.pairs = args.next().and_then(|n| n.parse().ok()).unwrap_or(2000),
            "--clients" => options.clients = args.next().and_then(|n| n.parse().ok()).unwrap_or(4),
            "--checkpoint-dir" => options.checkpoint_dir = args.next().map(PathBuf::from),
            // cargo bench passes --bench; nothing else is ours.
            _ => {}
        }
    }
    options
}

async fn connect(socket: PathBuf) -> Channel {
    Endpoint::from_static("http://ipamd.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .unwrap()
}

/// One ADD and one DEL of `pod`; the time both took.
async fn pair(node: &TestNode, client: &mut CniBackendClient<Channel>, pod: &str) -> Duration {
    let started = Instant::now();
    let added = client
        .add_network(node.add_request(pod))
        .await
        .unwrap()
        .into_inner();
    assert!(added.success, "{pod}: {}", added.message);
    let deleted = client
        .del_network(node.del_request(pod))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.found);
    started.elapsed()
}

fn report(what: &str, mut times: Vec<Duration>, wall: Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{what:<42} {:>6} pairs  p50 {:>7.1} µs  p99 {:>7.1} µs  mean {:>7.1} µs  {:>7.0} pairs/s",
        times.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        times.len() as f64 / wall.as_secs_f64()
    );
}

fn main() {
    let options = parse_args();
    let mut builder = TestNode::builder()
        .ipamd_env("IP_COOLDOWN_PERIOD", "0")
        .ipamd_env("WARM_IP_TARGET", &options.clients.max(1).to_string())
        .ipamd_env("AWS_VPC_K8S_CNI_LOGLEVEL", "warn");
    let scratch = options.checkpoint_dir.as_ref().map(|dir| {
        let path = dir.join(format!("vpcni-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        path
    });
    if let Some(dir) = &scratch {
        let checkpoint = dir.join("ipam.json").display().to_string();
        builder = builder.ipamd_env("AWS_VPC_K8S_CNI_BACKING_STORE", &checkpoint);
    }
    let node = builder.start().unwrap();
    println!(
        "checkpoint in {}",
        scratch
            .as_ref()
            .map_or_else(|| node.checkpoint_path(), |d| d.join("ipam.json"))
            .display()
    );
    node.wait_for_addresses(options.clients.max(1) as i32).unwrap();
    let socket = node.socket_path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Warm-up: connections, the checkpoint file, the allocator.
        let mut client = CniBackendClient::new(connect(socket.clone()).await);
        for n in 0..100 {
            pair(&node, &mut client, &format!("warm-{n}")).await;
        }

        let started = Instant::now();
        let mut times = Vec::with_capacity(options.pairs);
        for n in 0..options.pairs {
            times.push(pair(&node, &mut client, &format!("reused-{n}")).await);
        }
        report("one client, connection reused", times, started.elapsed());

        let started = Instant::now();
        let mut times = Vec::with_capacity(options.pairs);
        for n in 0..options.pairs {
            let call_started = Instant::now();
            let pod = format!("fresh-{n}");
            let mut add = CniBackendClient::new(connect(socket.clone()).await);
            let added = add
                .add_network(node.add_request(&pod))
                .await
                .unwrap()
                .into_inner();
            assert!(added.success);
            let mut del = CniBackendClient::new(connect(socket.clone()).await);
            assert!(
                del.del_network(node.del_request(&pod))
                    .await
                    .unwrap()
                    .into_inner()
                    .found
            );
            times.push(call_started.elapsed());
        }
        report("one client, new connection per call", times, started.elapsed());

        let started = Instant::now();
        let per_client = options.pairs / options.clients.max(1);
        let mut tasks = Vec::new();
        for c in 0..options.clients.max(1) {
            let socket = socket.clone();
            let node = &node;
            tasks.push(async move {
                let mut client = CniBackendClient::new(connect(socket).await);
                let mut times = Vec::with_capacity(per_client);
                for n in 0..per_client {
                    times.push(pair(node, &mut client, &format!("c{c}-{n}")).await);
                }
                times
            });
        }
        let times: Vec<Duration> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .flatten()
            .collect();
        report(
            &format!("{} clients at once, connections reused", options.clients.max(1)),
            times,
            started.elapsed(),
        );
    });
    drop(node);
    if let Some(dir) = scratch {
        // Scratch space in a temporary directory: left behind, it costs only disk until the next boot.
        let _ = std::fs::remove_dir_all(dir);
    }
}
