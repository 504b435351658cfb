//! Helpers for tests that run the real `vpcni-ipamd` in a testbed node (namespace, `vpcnictl sim serve`,
//! hot-plugged ENIs): commands in the node, the daemon's views, and an EC2 client inside the namespace.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use vpcni_ec2_sdk::{SdkEc2, SdkEc2Options};
use vpcni_testbed::TestNode;

/// A generous deadline for things that must happen eventually (not a timing assertion).
pub const EVENTUALLY: Duration = Duration::from_secs(90);

/// stdout of a command in the node namespace (panics if it fails).
pub fn sh(node: &TestNode, args: &[&str]) -> String {
    let output = node.exec(args).unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// iptables-save without comments and counters: the rules and chains.
pub fn iptables(node: &TestNode) -> String {
    sh(node, &["iptables-save"])
        .lines()
        .filter(|l| l.starts_with("-A ") || l.starts_with(':') || l.starts_with('*'))
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/v1/pool`.
pub fn pool(node: &TestNode) -> Value {
    node.introspection("/v1/pool").unwrap().json().unwrap()
}

/// `/v1/pool` `stats`: (ENIs, addresses, prefixes, assigned).
pub fn stats(node: &TestNode) -> (u64, u64, u64, u64) {
    let stats = &pool(node)["stats"];
    let n = |k: &str| stats[k].as_u64().unwrap_or(u64::MAX);
    (n("enis"), n("total"), n("total_prefixes"), n("assigned"))
}

/// Whether `/v1/pool` says the next decision is to do nothing.
pub fn settled(node: &TestNode) -> bool {
    node.introspection("/v1/pool")
        .ok()
        .and_then(|r| r.json().ok())
        .is_some_and(|p| p["nextDecision"]["action"] == "nothing")
}

/// Runs `work` with an EC2 client (the SDK backend) inside the node namespace, where the simulator
/// listens, on a thread of its own.
pub fn with_ec2<T: Send + 'static, F>(node: &TestNode, work: impl FnOnce(SdkEc2) -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T>,
{
    let netns = node.netns_path();
    let endpoint = node.ec2_endpoint();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(
            std::os::fd::AsFd::as_fd(&file),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let ec2 = SdkEc2::new(SdkEc2Options {
                endpoint: Some(endpoint),
                region: Some("us-west-2".into()),
                static_credentials: Some(("testbed".into(), "testbed".into())),
                max_attempts: 1,
                ..SdkEc2Options::default()
            })
            .await;
            work(ec2).await
        })
    })
    .join()
    .unwrap()
}

/// The reply's address, or the refusal's reason name and message.
pub fn outcome(reply: &vpcni_rpc::AddNetworkReply) -> Result<std::net::Ipv4Addr, (String, String)> {
    if reply.success {
        Ok(reply.ip_allocation_metadata[0].i_pv4_addr.parse().unwrap())
    } else {
        Err((reply.reason().as_str_name().to_owned(), reply.message.clone()))
    }
}
