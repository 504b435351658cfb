//! podman (Debian's 4.3, CNI backend) runs containers on a lab node's vpcni network: `podman run` gives the
//! container a VPC address of one of the node's ENIs (podman parses the plugin's result strictly: an
//! invalid `mac` or `sandbox` fails the run), the container pings a pod on another node, `podman restart`
//! gives it an address again and it still reaches the pod, and `podman rm -f` gives the address back to the
//! node's ipamd and leaves no rule or route behind. Needs root, podman, runc, busybox-static and
//! containernetworking-plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::net::Ipv4Addr;

use vpcni_e2e::podman::{IMAGE, Podman, PodmanSpec};
use vpcni_lab::Lab;

mod common;

use common::{RuntimeLab, allocated, eventually, runtime_lab, wiring_of};

/// The ENI of `node` that holds `ip` in EC2, per the lab's status (the simulator's account).
fn eni_holding(lab: &Lab, node: &str, ip: Ipv4Addr) -> Option<String> {
    let status = lab.status().unwrap();
    let node = status.nodes.iter().find(|n| n.name == node).unwrap();
    node.enis
        .iter()
        .find(|eni| eni.ips.contains(&ip) && eni.ips.first() != Some(&ip))
        .map(|eni| eni.id.clone())
}

/// The network name of the first conflist in a CNI configuration directory.
fn network_name(conf_dir: &std::path::Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(conf_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conflist"))
        .collect();
    files.sort();
    let conflist: serde_json::Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    conflist["name"].as_str().unwrap().to_owned()
}

/// The container's address as podman recorded it from the plugin's result, checked against the node:
/// a secondary address of one of its ENIs, handed out by its ipamd, on the container's eth0.
fn vpc_address_of(lab: &Lab, podman: &Podman, container: &str, network: &str) -> Ipv4Addr {
    let (ip, sandbox) = podman.address(container, network).unwrap();
    let address: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("podman recorded address {ip:?} for {container}"));
    assert!(sandbox.starts_with("/run/netns/"), "{sandbox}");
    eventually(&format!("{ip} to be an ENI address of node-1"), || {
        eni_holding(lab, "node-1", address).is_some()
    });
    assert!(allocated(lab, "node-1").contains(&ip), "node-1's ipamd gave {ip}");
    let own = podman
        .ok(&["exec", container, "ip", "-4", "addr", "show", "eth0"])
        .unwrap();
    assert!(
        own.contains(&format!("{ip}/32")),
        "the container sees its VPC address: {own}"
    );
    address
}

fn ping(podman: &Podman, container: &str, target: Ipv4Addr) {
    let target = target.to_string();
    let output = podman
        .output(&["exec", container, "ping", "-c", "3", "-W", "2", &target])
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("3 packets received"),
        "ping {target} from {container}: {output:?}"
    );
}

#[test]
fn podman_runs_restarts_and_removes_a_container_on_the_vpc() {
    let RuntimeLab {
        lab,
        peer,
        node,
        dir,
        bin,
    } = runtime_lab("podman", "podman-e2e");
    let conf_dir = lab.cni_conf_dir("node-1").unwrap();
    let network = network_name(&conf_dir);
    let podman = Podman::start(&PodmanSpec {
        dir: dir.join("podman"),
        netns: node.netns.clone(),
        cni_bin_dir: bin,
        cni_conf_dir: conf_dir,
    })
    .unwrap();

    let id = podman
        .ok(&["run", "--detach", "--name", "web", "--network", &network, IMAGE])
        .unwrap();
    let ip = vpc_address_of(&lab, &podman, "web", &network);
    let log = std::fs::read_to_string(lab.paths().node_dir("node-1").join("plugin.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("command=Add") && l.contains(&id) && l.contains("pod=default/web")),
        "the vpcni plugin wired the container: {log}"
    );
    ping(&podman, "web", peer.ip);

    // A restart tears the network down (DEL) and sets it up again (ADD) in a new namespace.
    podman.ok(&["restart", "--time", "5", "web"]).unwrap();
    let again = vpc_address_of(&lab, &podman, "web", &network);
    ping(&podman, "web", peer.ip);
    if again != ip {
        let old = ip.to_string();
        eventually(
            &format!("node-1's ipamd to release {old} after the restart"),
            || !allocated(&lab, "node-1").contains(&old),
        );
        assert!(
            wiring_of(&lab, "node-1", &old).is_empty(),
            "no rule or route left for {old}"
        );
    }

    podman.ok(&["rm", "--force", "--time", "0", "web"]).unwrap();
    let gone = again.to_string();
    eventually(&format!("node-1's ipamd to release {gone}"), || {
        !allocated(&lab, "node-1").contains(&gone)
    });
    assert!(
        wiring_of(&lab, "node-1", &gone).is_empty(),
        "no rule or route left for {gone}"
    );
    assert!(podman.ok(&["ps", "--all", "--quiet"]).unwrap().is_empty());
    let deletes = std::fs::read_to_string(lab.paths().node_dir("node-1").join("plugin.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("command=Del") && l.contains(&id))
        .count();
    assert!(deletes >= 2, "DEL at the restart and at the removal: {deletes}");
}
