//! ipamd's resident memory and open descriptors under churn: 250 pods held, then 100,000 ADD/DEL
//! operations over them, sampled every 10,000. The figures in BENCHMARKS.md come from here.
//!
//! `cargo build --release -p vpcni-ipamd -p vpcnictl && VPCNI_BIN_DIR=target/release cargo bench -p vpcni-ipamd --bench churn_memory -- --ops 100000`
//!
//! Runs as root: the daemon runs in a testbed node (its own network namespace, `vpcnictl sim serve` as EC2)
//! on an m5.24xlarge (room for 250 pods), over its unix socket with one connection per call, as the plugin
//! calls it. Every call is checked; a refusal stops the run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a benchmark is its failure report

use std::path::PathBuf;
use std::time::Instant;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use vpcni_rpc::cni_backend_client::CniBackendClient;
use vpcni_testbed::TestNode;

const HELD: usize = 250;

fn ops_from_args() -> u64 {
    let mut args = std::env::args().skip(1);
    let mut ops = 100_000;
    while let Some(arg) = args.next() {
        if arg == "--ops" {
            ops = args.next().and_then(|n| n.parse().ok()).unwrap_or(ops);
        }
    }
    ops
}

async fn connect(socket: PathBuf) -> CniBackendClient<Channel> {
    let channel = Endpoint::from_static("http://ipamd.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .unwrap();
    CniBackendClient::new(channel)
}

/// (VmRSS KiB, open descriptors) of a process.
fn resources(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss, fds)
}

fn main() {
    let ops = ops_from_args();
    let node = TestNode::builder()
        .instance_type("m5.24xlarge")
        .ipamd_env("WARM_IP_TARGET", "300")
        .ipamd_env("IP_COOLDOWN_PERIOD", "0")
        .ipamd_env("AWS_VPC_K8S_CNI_LOGLEVEL", "warn")
        .start()
        .unwrap();
    node.wait_for_addresses(HELD as i32 + 10).unwrap();
    let pid = node.ipamd_pid().unwrap();
    let socket = node.socket_path();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rss, fds) = resources(pid);
    println!("{:>9} {:>6} {:>10} {:>5}", "ops", "pods", "rss_kib", "fds");
    println!("{:>9} {:>6} {rss:>10} {fds:>5}", 0, 0);
    runtime.block_on(async {
        for n in 0..HELD {
            let reply = connect(socket.clone())
                .await
                .add_network(node.add_request(&format!("held-{n}")))
                .await
                .unwrap()
                .into_inner();
            assert!(reply.success, "held-{n}: {}", reply.message);
        }
        let (rss, fds) = resources(pid);
        println!("{:>9} {HELD:>6} {rss:>10} {fds:>5}", HELD);
        let started = Instant::now();
        // Churn: delete the oldest held pod, add a new one; each is one operation.
        let mut oldest = 0;
        for op in 0..ops {
            if op % 2 == 0 {
                let reply = connect(socket.clone())
                    .await
                    .del_network(node.del_request(&format!("held-{oldest}")))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(reply.found, "held-{oldest} was not found");
                oldest += 1;
            } else {
                let pod = format!("held-{}", HELD as u64 + op / 2);
                let reply = connect(socket.clone())
                    .await
                    .add_network(node.add_request(&pod))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(reply.success, "{pod}: {}", reply.message);
            }
            if (op + 1) % 10_000 == 0 {
                let (rss, fds) = resources(pid);
                println!("{:>9} {HELD:>6} {rss:>10} {fds:>5}", HELD as u64 + op + 1);
            }
        }
        println!(
            "{ops} operations in {:.1} s ({:.0} per second)",
            started.elapsed().as_secs_f64(),
            ops as f64 / started.elapsed().as_secs_f64()
        );
    });
}
