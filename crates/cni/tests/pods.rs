//! The real `vpcni` binary against a real ipamd on a testbed node, in real namespaces: ADD / CHECK / DEL
//! cycles, 100 pods on a node, 16 ADDs at once, pods on the primary and a secondary ENI, and DEL repeated,
//! without a netns and with ipamd stopped. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};

use common::{pod_state, result_ip, rules_for, settle, spec_result};
use serde_json::{Value, json};
use vpcni_testbed::{PluginCall, PluginOutput, PodNetns, TestNode};

/// The config with the ADD result as prevResult, as runtimes send it to DEL and CHECK.
fn with_prev(config: &Value, result: &Value) -> String {
    let mut config = config.clone();
    config["prevResult"] = result.clone();
    config.to_string()
}

fn add(node: &TestNode, pod: &PodNetns, name: &str, config: &Value) -> PluginOutput {
    node.plugin(&PluginCall::add(pod, name, &config.to_string()))
        .unwrap()
}

fn del(node: &TestNode, pod: &PodNetns, name: &str, config: &Value, result: &Value) -> PluginOutput {
    node.plugin(&PluginCall::del(pod, name, &with_prev(config, result)))
        .unwrap()
}

/// The pod address in an ADD result.
fn ip_of(result: &Value) -> Ipv4Addr {
    let address = result["ips"][0]["address"].as_str().unwrap();
    address.trim_end_matches("/32").parse().unwrap()
}

/// The device number of the ENI holding `ip`, from EC2's side (the simulator's account).
fn device_of(node: &TestNode, ip: Ipv4Addr) -> u32 {
    let state = node.sim_state().unwrap();
    let enis = state.attached_enis(node.instance_id(), u64::MAX);
    let (device, _) = enis
        .iter()
        .find(|(_, eni)| eni.secondary.contains_key(&ip))
        .unwrap_or_else(|| panic!("{ip} is a secondary address of one of the node's ENIs"));
    *device
}

/// One ping, retried for up to 30 s until answered (the first may wait on neighbour resolution on a busy
/// machine; a bound, not a timing assertion). Negative checks use [`ping`] once.
fn reaches(node: &TestNode, from: Option<&PodNetns>, to: Ipv4Addr) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ping(node, from, to) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

fn ping(node: &TestNode, from: Option<&PodNetns>, to: Ipv4Addr) -> bool {
    let target = to.to_string();
    let args = ["ping", "-c1", "-W2", target.as_str()];
    let output = match from {
        Some(pod) => pod.exec(&args).unwrap(),
        None => node.exec(&args).unwrap(),
    };
    output.status.success()
}

#[test]
fn add_check_del_cycles_wire_the_pod_and_leave_nothing() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(2).unwrap();
    let config = node.cni_config_value("1.0.0");
    let baseline = pod_state(&node);
    let pod = node.pod_netns("cycle").unwrap();
    let neighbour = node.pod_netns("neighbour").unwrap();
    let neighbour_result = add(&node, &neighbour, "neighbour", &config);
    let neighbour_ip = result_ip(&neighbour_result);

    for round in 0..3 {
        let added = add(&node, &pod, "cycle", &config);
        let ip = result_ip(&added);
        let result = added.json();
        let host_veth = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
        // sha1("default.cycle") = f765b6ece787… (sha1sum, not the plugin's code): the same name every round.
        assert_eq!(host_veth, "enif765b6ece78");
        assert_eq!(result["interfaces"][1]["name"], "eth0");
        assert_eq!(result["interfaces"][1]["sandbox"], pod.path());
        assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");

        // The pod side, as the original wires it.
        let addr =
            String::from_utf8(pod.exec(&["ip", "-4", "addr", "show", "eth0"]).unwrap().stdout).unwrap();
        assert!(addr.contains(&format!("{ip}/32")), "round {round}: {addr}");
        let routes = String::from_utf8(pod.exec(&["ip", "route"]).unwrap().stdout).unwrap();
        assert!(routes.contains("default via 169.254.1.1 dev eth0"), "{routes}");
        assert!(routes.contains("169.254.1.1 dev eth0 scope link"), "{routes}");
        let neigh =
            String::from_utf8(pod.exec(&["ip", "neigh", "show", "169.254.1.1"]).unwrap().stdout).unwrap();
        assert!(
            neigh.contains(result["interfaces"][0]["mac"].as_str().unwrap()) && neigh.contains("PERMANENT"),
            "{neigh}"
        );
        // The host side.
        let host_route = String::from_utf8(
            node.exec(&["ip", "route", "show", &format!("{ip}/32")])
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(
            host_route.contains(&format!("dev {host_veth} scope link")),
            "{host_route}"
        );
        assert_eq!(
            rules_for(&node, ip),
            [format!("512:\tfrom all to {ip} lookup main")]
        );
        // Traffic: node to pod, pod to pod through the node.
        assert!(reaches(&node, None, ip), "node → pod {ip}");
        assert!(reaches(&node, Some(&pod), neighbour_ip), "pod → pod");

        let check = node
            .plugin(&PluginCall::check(&pod, "cycle", &with_prev(&config, &result)))
            .unwrap();
        assert!(check.success(), "{check}");
        // CHECK says what differs.
        let rule = node
            .exec(&[
                "ip",
                "rule",
                "del",
                "to",
                &ip.to_string(),
                "lookup",
                "main",
                "priority",
                "512",
            ])
            .unwrap();
        assert!(rule.status.success());
        let broken = node
            .plugin(&PluginCall::check(&pod, "cycle", &with_prev(&config, &result)))
            .unwrap();
        assert_eq!(broken.error_code(), Some(100), "{broken}");
        assert!(
            broken.json()["details"]
                .as_str()
                .unwrap()
                .contains(&format!("'to {ip} lookup main' at 512 is missing")),
            "{broken}"
        );

        let deleted = del(&node, &pod, "cycle", &config, &result);
        assert!(deleted.success() && deleted.stdout.is_empty(), "{deleted}");
        // As the original's DEL: rules and the route go; the veth goes with the namespace, and the next
        // ADD of this pod (next round, same namespace) replaces it.
        assert!(rules_for(&node, ip).is_empty());
        let route = node.exec(&["ip", "route", "show", &format!("{ip}/32")]).unwrap();
        assert!(
            route.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&route.stdout)
        );
        assert!(!ping(&node, None, ip), "the node no longer routes to {ip}");
    }
    let deleted = del(&node, &neighbour, "neighbour", &config, &neighbour_result.json());
    assert!(deleted.success(), "{deleted}");
    // The runtime deletes the namespaces after DEL.
    drop((pod, neighbour));
    settle(&node, &baseline);
}

#[test]
fn a_hundred_pods_on_one_node() {
    // m5.4xlarge: 8 ENIs of 30 addresses, 234 pods.
    let node = TestNode::builder()
        .instance_type("m5.4xlarge")
        .ipamd_env("WARM_IP_TARGET", "105")
        .start()
        .unwrap();
    node.wait_for_addresses(100).unwrap();
    let config = node.cni_config_value("1.1.0");
    let baseline = pod_state(&node);
    let pods: Vec<(String, PodNetns)> = (0..100)
        .map(|i| {
            let name = format!("p{i}");
            let netns = node.pod_netns(&name).unwrap();
            (name, netns)
        })
        .collect();
    let results: Vec<Value> = pods
        .iter()
        .map(|(name, netns)| {
            let output = add(&node, netns, name, &config);
            assert!(output.success(), "{name}: {output}");
            output.json()
        })
        .collect();
    let ips: Vec<Ipv4Addr> = results.iter().map(ip_of).collect();
    assert_eq!(ips.iter().collect::<BTreeSet<_>>().len(), 100, "no address twice");
    let assigned = node.sim_state().unwrap().assigned_addresses(node.instance_id());
    let devices: BTreeSet<u32> = ips.iter().map(|ip| device_of(&node, *ip)).collect();
    assert!(devices.len() >= 4, "100 pods span several ENIs: {devices:?}");
    for ip in &ips {
        assert!(assigned.contains(ip), "{ip} is assigned to this node in EC2");
        let device = device_of(&node, *ip);
        let mut expected = vec![format!("512:\tfrom all to {ip} lookup main")];
        if device > 0 {
            expected.push(format!("1536:\tfrom {ip} lookup {}", device + 1));
        }
        assert_eq!(rules_for(&node, *ip), expected);
        assert!(reaches(&node, None, *ip), "node → {ip}");
    }
    let state = pod_state(&node);
    assert_eq!(state.veths.len(), 100);
    assert_eq!(state.allocations.len(), 100);
    for ((name, netns), result) in pods.iter().zip(&results) {
        let output = del(&node, netns, name, &config, result);
        assert!(output.success(), "{name}: {output}");
    }
    let state = pod_state(&node);
    assert!(
        state.rules.is_empty() && state.allocations.is_empty(),
        "{:?}",
        state.rules
    );
    drop(pods);
    settle(&node, &baseline);
}

#[test]
fn sixteen_parallel_adds_never_share_an_address() {
    let node = Arc::new(
        TestNode::builder()
            .instance_type("m5.xlarge")
            .ipamd_env("WARM_IP_TARGET", "20")
            .start()
            .unwrap(),
    );
    node.wait_for_addresses(16).unwrap();
    let baseline = pod_state(&node);
    let config = node.cni_config_value("1.0.0");
    let pods: Arc<Vec<PodNetns>> = Arc::new(
        (0..16)
            .map(|i| node.pod_netns(&format!("par{i}")).unwrap())
            .collect(),
    );
    let barrier = Arc::new(Barrier::new(16));
    let run = |verb: &'static str, results: Option<Vec<Value>>| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (node, pods, barrier, config) =
                    (node.clone(), pods.clone(), barrier.clone(), config.clone());
                let prev = results.as_ref().map(|r| r[i].clone());
                std::thread::spawn(move || {
                    let name = format!("par{i}");
                    barrier.wait();
                    let output = match &prev {
                        None => add(&node, &pods[i], &name, &config),
                        Some(result) => del(&node, &pods[i], &name, &config, result),
                    };
                    assert!(output.success(), "{verb} {name}: {output}");
                    output.json()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<Value>>()
    };
    let results = run("ADD", None);
    let ips: BTreeSet<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 16, "16 pods, 16 addresses: {ips:?}");
    assert_eq!(pod_state(&node).allocations.len(), 16);
    run("DEL", Some(results));
    drop(pods);
    settle(&node, &baseline);
}

#[test]
fn pods_on_the_primary_and_a_secondary_eni_get_their_rules() {
    // 12 warm addresses: the primary ENI's 9 and some of a second ENI's.
    let node = TestNode::builder()
        .ipamd_env("WARM_IP_TARGET", "12")
        .start()
        .unwrap();
    node.wait_for_addresses(12).unwrap();
    let config = node.cni_config_value("1.0.0");
    let mut by_device = std::collections::BTreeMap::new();
    let mut pods = Vec::new();
    for i in 0..12 {
        let name = format!("eni{i}");
        let netns = node.pod_netns(&name).unwrap();
        let output = add(&node, &netns, &name, &config);
        let ip = result_ip(&output);
        by_device.entry(device_of(&node, ip)).or_insert(ip);
        pods.push((name, netns, output.json()));
    }
    let primary = by_device[&0];
    let secondary = by_device[&1];
    assert_eq!(
        rules_for(&node, primary),
        [format!("512:\tfrom all to {primary} lookup main")]
    );
    assert_eq!(
        rules_for(&node, secondary),
        [
            format!("512:\tfrom all to {secondary} lookup main"),
            format!("1536:\tfrom {secondary} lookup 2"),
        ]
    );
    // The secondary address belongs to the ENI on eth1 in EC2.
    let state = node.sim_state().unwrap();
    let eni1 = state.attached_enis(node.instance_id(), u64::MAX)[&1].clone();
    assert!(eni1.secondary.contains_key(&secondary));
    // Table 2 (ipamd's, for the ENI on eth1) sends the pod's traffic out of eth1 via the subnet router.
    let gateway = node.subnet_gateway();
    let table = String::from_utf8(node.exec(&["ip", "route", "show", "table", "2"]).unwrap().stdout).unwrap();
    assert!(
        table.contains(&format!("default via {gateway} dev eth1")),
        "{table}"
    );
    assert!(
        table.contains(&format!("{gateway} dev eth1 scope link")),
        "{table}"
    );
    let lookup = String::from_utf8(
        node.exec(&[
            "ip",
            "route",
            "get",
            "10.0.99.9",
            "from",
            &secondary.to_string(),
            "iif",
            "lo",
        ])
        .unwrap()
        .stdout,
    )
    .unwrap();
    assert!(
        lookup.contains("dev eth1"),
        "the pod on ENI 1 leaves through eth1: {lookup}"
    );
    for (name, netns, result) in &pods {
        let check = node
            .plugin(&PluginCall::check(netns, name, &with_prev(&config, result)))
            .unwrap();
        assert!(check.success(), "{check}");
    }
    // A missing 1536 rule is a difference CHECK reports.
    let (name, netns, result) = pods
        .iter()
        .find(|(_, _, r)| device_of(&node, ip_of(r)) == 1)
        .unwrap();
    let ip = ip_of(result);
    node.exec(&[
        "ip",
        "rule",
        "del",
        "from",
        &ip.to_string(),
        "lookup",
        "2",
        "priority",
        "1536",
    ])
    .unwrap();
    let check = node
        .plugin(&PluginCall::check(netns, name, &with_prev(&config, result)))
        .unwrap();
    assert_eq!(check.error_code(), Some(100), "{check}");
    assert!(check.stdout.contains("lookup 2' at 1536 is missing"), "{check}");
}

#[test]
fn del_is_safe_twice_without_a_netns_and_with_ipamd_stopped() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(3).unwrap();
    let config = node.cni_config_value("1.0.0");
    let baseline = pod_state(&node);

    // Twice, then once more without a netns, as containerd does.
    let a = node.pod_netns("a").unwrap();
    let result = add(&node, &a, "a", &config).json();
    for _ in 0..2 {
        let output = del(&node, &a, "a", &config, &result);
        assert!(output.success(), "{output}");
    }
    let no_netns = PluginCall::new("DEL", None, "a", &with_prev(&config, &result));
    assert!(node.plugin(&no_netns).unwrap().success());
    a.remove();
    settle(&node, &baseline);

    // The sandbox is gone before DEL: the rules and the allocation still go.
    let b = node.pod_netns("b").unwrap();
    let added = add(&node, &b, "b", &config);
    let (b_ip, result) = (result_ip(&added), added.json());
    let path = b.path().to_owned();
    b.remove();
    let gone = PluginCall::new("DEL", Some(&path), "b", &with_prev(&config, &result));
    assert!(node.plugin(&gone).unwrap().success());
    assert!(rules_for(&node, b_ip).is_empty());
    let no_netns = PluginCall::new("DEL", None, "b", &with_prev(&config, &result));
    assert!(node.plugin(&no_netns).unwrap().success());
    settle(&node, &baseline);

    // ipamd down: DEL tears down from prevResult and succeeds; GC releases the address afterwards.
    let c = node.pod_netns("c").unwrap();
    let added = add(&node, &c, "c", &config);
    let (c_ip, result) = (result_ip(&added), added.json());
    node.stop_ipamd().unwrap();
    let output = del(&node, &c, "c", &config, &result);
    assert!(output.success(), "{output}");
    assert!(rules_for(&node, c_ip).is_empty());
    node.start_ipamd().unwrap();
    let held = pod_state(&node);
    assert_eq!(held.allocations.len(), 1, "ipamd never heard the DEL: {held:?}");
    let gc = json!({
        "cniVersion": "1.1.0", "name": "vpcni", "type": "vpcni",
        "ipamdSocket": node.socket_path(), "pluginLogFile": node.plugin_log_path(),
        "cni.dev/valid-attachments": [],
    });
    let output = node
        .plugin(&PluginCall::new("GC", None, "gc", &gc.to_string()))
        .unwrap();
    assert!(output.success(), "{output}");
    c.remove();
    settle(&node, &baseline);
}

#[test]
fn a_wiring_failure_after_the_address_was_given_undoes_everything_and_gives_it_back() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    let config = node.cni_config_value("1.0.0");
    let baseline = pod_state(&node);
    // Something in the pod already holds the name eth0: the veth cannot be made after ipamd said yes.
    let pod = node.pod_netns("taken").unwrap();
    let squatter = pod
        .exec(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "squat",
        ])
        .unwrap();
    assert!(squatter.status.success());
    let output = add(&node, &pod, "taken", &config);
    assert_eq!(output.error_code(), Some(100), "{output}");
    assert!(
        output
            .error_msg()
            .starts_with("failed to wire the pod with 10.0."),
        "{output}"
    );
    assert_eq!(
        pod_state(&node),
        baseline,
        "veth, routes, rules and the allocation are all gone"
    );
    let log = std::fs::read_to_string(node.plugin_log_path()).unwrap();
    assert!(
        log.contains("taken"),
        "the plugin logged the failure to its file: {log}"
    );
}

/// The plugin's record of an attachment (`<stateDir>/<network>/<container id>:<ifname>`, stateDir defaulting
/// to `cni` next to ipamd's socket).
fn record_path(node: &TestNode, config: &Value, pod: &str) -> std::path::PathBuf {
    node.socket_path()
        .parent()
        .unwrap()
        .join("cni")
        .join(config["name"].as_str().unwrap())
        .join(format!("{pod}:eth0"))
}

fn mac_in(output: std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn add_results_are_valid_cni_results_in_every_version() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(2).unwrap();
    let baseline = pod_state(&node);
    for version in spec_result::VERSIONS {
        let config = node.cni_config_value(version);
        let name = format!("v{}", version.replace('.', ""));
        let pod = node.pod_netns(&name).unwrap();
        let added = add(&node, &pod, &name, &config);
        let ip = result_ip(&added);
        let result = added.json();
        let problems = spec_result::violations(&result, version, pod.path());
        assert!(problems.is_empty(), "{version}: {problems:#?}\n{result:#}");

        // What each field says is true of the node and the pod.
        let interfaces = result["interfaces"].as_array().unwrap();
        assert_eq!(
            interfaces.len(),
            2,
            "{version}: the veth's two ends, nothing else: {result}"
        );
        let host_veth = interfaces[0]["name"].as_str().unwrap();
        assert!(interfaces[0].get("sandbox").is_none(), "{version}: {result}");
        assert_eq!(
            interfaces[0]["mac"].as_str().unwrap(),
            mac_in(
                node.exec(&["cat", &format!("/sys/class/net/{host_veth}/address")])
                    .unwrap()
            ),
            "{version}: the host veth's MAC"
        );
        assert_eq!(interfaces[1]["name"], "eth0");
        assert_eq!(interfaces[1]["sandbox"], pod.path());
        assert_eq!(
            interfaces[1]["mac"].as_str().unwrap(),
            mac_in(pod.exec(&["cat", "/sys/class/net/eth0/address"]).unwrap()),
            "{version}: the pod's eth0 MAC"
        );
        assert_eq!(result["ips"].as_array().unwrap().len(), 1);
        assert_eq!(result["ips"][0]["address"], format!("{ip}/32"));
        assert_eq!(result["ips"][0]["interface"], 1);
        assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(
            result["routes"],
            json!([{ "dst": "0.0.0.0/0", "gw": "169.254.1.1" }])
        );
        if version == "1.1.0" {
            assert_eq!(interfaces[0]["mtu"], 9001);
            assert_eq!(interfaces[1]["mtu"], 9001);
        }

        // What DEL and CHECK need beyond the result is in the plugin's record.
        let path = record_path(&node, &config, &name);
        let record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let device = device_of(&node, ip);
        assert_eq!(record["ip"], ip.to_string());
        assert_eq!(record["deviceNumber"], device);
        assert_eq!(record["routeTable"], if device == 0 { 254 } else { device + 1 });

        // Runtimes send prevResult to DEL from 0.4.0 on; before, DEL has only the configuration.
        let output = if version.starts_with("0.3") {
            node.plugin(&PluginCall::del(&pod, &name, &config.to_string()))
                .unwrap()
        } else {
            del(&node, &pod, &name, &config, &result)
        };
        assert!(output.success(), "{version}: {output}");
        assert!(rules_for(&node, ip).is_empty(), "{version}");
        assert!(!path.exists(), "{version}: DEL removed the record");
        pod.remove();
    }
    settle(&node, &baseline);
}

#[test]
fn the_result_checker_rejects_the_record_interface_podman_refused() {
    // What vpcni (and the original) used to answer: podman said "address 0: invalid MAC address".
    let old = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            { "name": "enia1b2c3d4e5f", "mac": "02:00:00:00:00:01" },
            { "name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/x" },
            { "name": "dummya1b2c3d4e5f", "mac": "0", "sandbox": "1" },
        ],
        "ips": [{ "address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1 }],
        "routes": [{ "dst": "0.0.0.0/0", "gw": "169.254.1.1" }],
        "dns": {},
    });
    let problems = spec_result::violations(&old, "1.0.0", "/var/run/netns/x");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("interfaces[2].mac \"0\" is not a MAC address"));
    assert!(problems[1].starts_with("interfaces[2].sandbox \"1\" is not a network namespace path"));
    let mut valid = old.clone();
    valid["interfaces"].as_array_mut().unwrap().pop();
    assert_eq!(
        spec_result::violations(&valid, "1.0.0", "/var/run/netns/x"),
        Vec::<String>::new()
    );
    // Version-specific shapes: `version` on IPs before 1.0.0 only, `mtu` on interfaces from 1.1.0.
    let problems = spec_result::violations(&valid, "0.4.0", "/var/run/netns/x");
    assert!(problems.iter().any(|p| p.contains("cniVersion")), "{problems:#?}");
    assert!(
        problems.iter().any(|p| p.starts_with("ips[0].version")),
        "{problems:#?}"
    );
    let mut with_version = valid.clone();
    with_version["ips"][0]["version"] = json!("4");
    assert!(
        spec_result::violations(&with_version, "1.0.0", "/var/run/netns/x")
            .iter()
            .any(|p| p.contains("\"version\", which this version's result does not define"))
    );
    let mut with_mtu = valid.clone();
    with_mtu["interfaces"][1]["mtu"] = json!(9001);
    assert_eq!(
        spec_result::violations(&with_mtu, "1.0.0", "/var/run/netns/x").len(),
        1
    );
    with_mtu["cniVersion"] = json!("1.1.0");
    assert!(spec_result::violations(&with_mtu, "1.1.0", "/var/run/netns/x").is_empty());
    // An address on an interface that is not the container's, or past the end of the list.
    for (index, why) in [(0, "not the container's interface"), (5, "not an index")] {
        let mut bad = valid.clone();
        bad["ips"][0]["interface"] = json!(index);
        let problems = spec_result::violations(&bad, "1.0.0", "/var/run/netns/x");
        assert!(problems.iter().any(|p| p.contains(why)), "{problems:#?}");
    }
}

/// The pod's result as an earlier vpcni wrote it (a record interface after the veth's ends).
fn as_old_vpcni_wrote_it(result: &Value, device: u32) -> Value {
    let mut old = result.clone();
    let hash = old["interfaces"][0]["name"].as_str().unwrap()[3..].to_owned();
    old["interfaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": format!("dummy{hash}"), "mac": "0", "sandbox": device.to_string() }));
    old
}

/// The pod's result as the original (v1.20+) wrote it in 0.4.0: no MAC on the host veth, the route table in
/// the pod interface's `mac`, no gateway, a record interface, `version` on IPs.
fn as_the_original_wrote_it(result: &Value, device: u32) -> Value {
    let table = if device == 0 { 254 } else { device + 1 };
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
    json!({
        "cniVersion": "0.4.0",
        "interfaces": [
            { "name": host_veth },
            { "name": "eth0", "mac": table.to_string(), "sandbox": result["interfaces"][1]["sandbox"] },
            { "name": format!("dummy{}", &host_veth[3..]), "mac": "0", "sandbox": device.to_string() },
        ],
        "ips": [{ "version": "4", "address": result["ips"][0]["address"], "interface": 1 }],
        "dns": {},
    })
}

#[test]
fn del_and_check_work_for_pods_an_older_vpcni_or_the_original_added() {
    // 12 warm addresses: pods on the primary ENI and on the second one.
    let node = TestNode::builder()
        .ipamd_env("WARM_IP_TARGET", "12")
        .start()
        .unwrap();
    node.wait_for_addresses(12).unwrap();
    let config = node.cni_config_value("1.0.0");
    let old_config = node.cni_config_value("0.4.0");
    let mut pods = Vec::new();
    for i in 0..12 {
        let name = format!("old{i}");
        let netns = node.pod_netns(&name).unwrap();
        let output = add(&node, &netns, &name, &config);
        let ip = result_ip(&output);
        // Added before records existed.
        std::fs::remove_file(record_path(&node, &config, &name)).unwrap();
        pods.push((name, netns, ip, device_of(&node, ip), output.json()));
    }
    let secondary = pods.iter().find(|p| p.3 == 1).unwrap();
    let primary = pods.iter().find(|p| p.3 == 0).unwrap();

    // CHECK reads the ENI's table from what those results carried, and still sees a missing rule.
    for (name, netns, ip, device, result) in [secondary, primary] {
        let old = as_old_vpcni_wrote_it(result, *device);
        let original = as_the_original_wrote_it(result, *device);
        for (config, prev) in [(&config, &old), (&old_config, &original)] {
            let check = node
                .plugin(&PluginCall::check(netns, name, &with_prev(config, prev)))
                .unwrap();
            assert!(check.success(), "{ip} on device {device}: {check}");
        }
    }
    let (name, netns, ip, device, result) = secondary;
    let removed = node
        .exec(&[
            "ip",
            "rule",
            "del",
            "from",
            &ip.to_string(),
            "lookup",
            "2",
            "priority",
            "1536",
        ])
        .unwrap();
    assert!(removed.status.success());
    let check = node
        .plugin(&PluginCall::check(
            netns,
            name,
            &with_prev(&old_config, &as_the_original_wrote_it(result, *device)),
        ))
        .unwrap();
    assert!(check.stdout.contains("lookup 2' at 1536 is missing"), "{check}");

    // With ipamd down, DEL has only prevResult: in either old form it finds the address and unroutes it.
    node.stop_ipamd().unwrap();
    for (i, (name, netns, ip, device, result)) in pods.iter().enumerate() {
        let (config, prev) = if i % 2 == 0 {
            (&config, as_old_vpcni_wrote_it(result, *device))
        } else {
            (&old_config, as_the_original_wrote_it(result, *device))
        };
        let output = del(&node, netns, name, config, &prev);
        assert!(output.success(), "{name}: {output}");
        assert!(
            rules_for(&node, *ip).is_empty(),
            "{name}: the rules of {ip} are gone"
        );
        let route = String::from_utf8(
            node.exec(&["ip", "route", "show", &format!("{ip}/32")])
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(route.trim().is_empty(), "{name}: {route}");
    }
}

#[test]
fn gc_removes_the_records_of_attachments_the_runtime_no_longer_has() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(2).unwrap();
    let config = node.cni_config_value("1.1.0");
    let baseline = pod_state(&node);
    let keep = node.pod_netns("keep").unwrap();
    let gone = node.pod_netns("gone").unwrap();
    let kept = add(&node, &keep, "keep", &config).json();
    let dropped = add(&node, &gone, "gone", &config).json();
    assert!(record_path(&node, &config, "keep").exists());
    assert!(record_path(&node, &config, "gone").exists());

    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "keep", "ifname": "eth0" }]);
    let output = node
        .plugin(&PluginCall::new("GC", None, "gc", &gc.to_string()))
        .unwrap();
    assert!(output.success(), "{output}");
    assert!(
        record_path(&node, &config, "keep").exists(),
        "a valid attachment keeps its record"
    );
    assert!(
        !record_path(&node, &config, "gone").exists(),
        "GC removed the departed one's"
    );
    let allocations = pod_state(&node).allocations;
    assert_eq!(
        allocations.len(),
        1,
        "ipamd released the departed one too: {allocations:?}"
    );

    for (pod, name, result) in [(&keep, "keep", &kept), (&gone, "gone", &dropped)] {
        let output = del(&node, pod, name, &config, result);
        assert!(output.success(), "{name}: {output}");
    }
    assert!(!record_path(&node, &config, "keep").exists());
    drop((keep, gone));
    settle(&node, &baseline);
}
