//! Kubelet's view: containerd's CRI plugin runs the vpcni plugin on a lab node. RunPodSandbox gives the pod a
//! VPC address from that node's ipamd; a container in the sandbox pings a pod on another node, directly
//! through the VPC router (no overlay); StopPodSandbox releases the address and unwires the pod;
//! RemovePodSandbox (a second DEL, without a netns) succeeds. Needs root, containerd, runc, busybox-static
//! and containernetworking-plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vpcni_e2e::containerd::{Containerd, ContainerdSpec, IMAGE};
use vpcni_e2e::cri::Cri;

mod common;

use common::{RuntimeLab, allocated, eventually, runtime_lab, wiring_of};

#[test]
fn containerd_runs_a_pod_that_reaches_another_node_and_gives_its_address_back() {
    let RuntimeLab {
        lab,
        peer,
        node,
        dir,
        bin,
    } = runtime_lab("e2e", "containerd-e2e");
    let containerd = Containerd::start(&ContainerdSpec {
        dir: dir.join("containerd"),
        netns: node.netns.clone(),
        cni_bin_dir: bin,
        cni_conf_dir: lab.cni_conf_dir("node-1").unwrap(),
    })
    .unwrap();
    let cri = Cri::connect(&containerd.socket()).unwrap();
    assert!(cri.version().unwrap().starts_with("containerd"));
    assert!(cri.has_image(IMAGE).unwrap());

    let config = Cri::sandbox_config(
        "web",
        "default",
        "4c1f6b0e-e2e0-4a5e-9a55-1d7b2c9a0001",
        &dir.join("logs"),
    );
    let sandbox = cri
        .run_pod_sandbox(&config)
        .unwrap_or_else(|e| panic!("{e}; containerd's log ends with:\n{}", containerd.log_tail()));
    let ip = cri.pod_ip(&sandbox).unwrap();
    let address: Ipv4Addr = ip.parse().unwrap_or_else(|_| panic!("sandbox address {ip:?}"));
    assert!(
        node.subnet.contains(&address),
        "{ip} is a VPC address of node-1's subnet"
    );
    assert!(
        allocated(&lab, "node-1").contains(&ip),
        "node-1's ipamd gave {ip}"
    );
    assert!(!wiring_of(&lab, "node-1", &ip).is_empty());
    let log = std::fs::read_to_string(lab.paths().node_dir("node-1").join("plugin.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("command=Add") && l.contains(&sandbox) && l.contains("pod=default/web")),
        "the vpcni plugin wired the sandbox: {log}"
    );

    let container = cri
        .start_container(&sandbox, &config, "pinger", &["/bin/sleep", "3600"])
        .unwrap_or_else(|e| panic!("{e}; containerd's log ends with:\n{}", containerd.log_tail()));
    // Three answered pings in one run, retried for up to a minute: the first packets may wait on
    // neighbour resolution on a busy machine (a bound, not a timing assertion).
    let started = Instant::now();
    loop {
        let ping = cri
            .exec_sync(
                &container,
                &["ping", "-c", "3", "-W", "2", &peer.ip.to_string()],
                Duration::from_secs(30),
            )
            .unwrap();
        if ping.exit_code == 0 && ping.stdout.contains("3 packets received") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ping {} from the container: {ping:?}",
            peer.ip
        );
    }
    let own = cri
        .exec_sync(
            &container,
            &["ip", "-4", "addr", "show", "eth0"],
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(
        own.stdout.contains(&format!("{ip}/32")),
        "the container sees its VPC address: {own:?}"
    );

    cri.remove_container(&container).unwrap();
    cri.stop_pod_sandbox(&sandbox).unwrap();
    eventually("node-1's ipamd to release the sandbox's address", || {
        !allocated(&lab, "node-1").contains(&ip)
    });
    assert!(
        wiring_of(&lab, "node-1", &ip).is_empty(),
        "no rule or route left for {ip}"
    );
    cri.remove_pod_sandbox(&sandbox).unwrap();
    assert!(cri.sandboxes().unwrap().is_empty());
    let deletes = std::fs::read_to_string(lab.paths().node_dir("node-1").join("plugin.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("command=Del") && l.contains(&sandbox))
        .count();
    assert_eq!(
        deletes, 2,
        "DEL at StopPodSandbox, and again at RemovePodSandbox, both succeeded"
    );
}
