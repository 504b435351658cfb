//! The CNI protocol against a live node: results in the version the configuration asks for, VERSION,
//! chaining in a conflist with Debian's loopback before and portmap after vpcni (prevResult passed through,
//! a host port reaching the pod), STATUS, and ipamd's refusal reasons reaching the runtime. Needs root and
//! Debian's containernetworking-plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::time::Duration;

use common::{pod_state, result_ip, settle};
use serde_json::{Value, json};
use vpcni_testbed::{PluginCall, TestNode};

fn with_prev(config: &Value, result: &Value) -> String {
    let mut config = config.clone();
    config["prevResult"] = result.clone();
    config.to_string()
}

#[test]
fn results_come_in_the_version_the_configuration_asks_for() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    let baseline = pod_state(&node);
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let reply = node
            .plugin(&PluginCall::new(
                "VERSION",
                None,
                "v",
                &json!({ "cniVersion": version }).to_string(),
            ))
            .unwrap();
        assert_eq!(reply.json()["cniVersion"], version, "{reply}");
        assert!(
            reply.json()["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!(version))
        );

        let config = node.cni_config_value(version);
        let pod = node.pod_netns(&format!("v{}", version.replace('.', ""))).unwrap();
        let added = node
            .plugin(&PluginCall::add(&pod, pod.name(), &config.to_string()))
            .unwrap();
        result_ip(&added);
        let result = added.json();
        assert_eq!(result["cniVersion"], version);
        let ip = &result["ips"][0];
        if version.starts_with("0.") {
            assert_eq!(ip["version"], "4", "{version}: {result}");
        } else {
            assert!(ip.get("version").is_none(), "{version}: {result}");
        }
        if version != "0.3.1" {
            let check = node
                .plugin(&PluginCall::check(&pod, pod.name(), &with_prev(&config, &result)))
                .unwrap();
            assert!(check.success(), "{version}: {check}");
        }
        let deleted = node
            .plugin(&PluginCall::del(&pod, pod.name(), &with_prev(&config, &result)))
            .unwrap();
        assert!(deleted.success(), "{version}: {deleted}");
    }
    settle(&node, &baseline);
}

#[test]
fn runtimes_that_send_a_name_only_or_nothing_still_get_pods() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(2).unwrap();
    let config = node.cni_config("1.0.0");
    let podman = node.pod_netns("podman").unwrap();
    // podman: only the container's name.
    let named = node
        .plugin(
            &PluginCall::add(&podman, "ctr-podman", &config)
                .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        )
        .unwrap();
    result_ip(&named);
    // sha1("default.web") = 68caf03a5f4a…, computed with sha1sum, not with the plugin's code.
    assert_eq!(named.json()["interfaces"][0]["name"], "eni68caf03a5f4");
    // ctr run --cni: nothing at all; the container id names the pod.
    let bare = node.pod_netns("bare").unwrap();
    let unnamed = node
        .plugin(&PluginCall::add(&bare, "ctr-bare", &config).without_env("CNI_ARGS"))
        .unwrap();
    result_ip(&unnamed);
    // sha1("default.ctr-bare") = 064651bb3659….
    assert_eq!(unnamed.json()["interfaces"][0]["name"], "eni064651bb365");
    let pods = node.introspection("/v1/pods").unwrap().json().unwrap();
    let names: Vec<&str> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"web") && names.contains(&"ctr-bare"), "{names:?}");
}

/// Background process in a namespace, killed on drop.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iptables_nat(node: &TestNode) -> String {
    String::from_utf8(node.exec(&["iptables-save", "-t", "nat"]).unwrap().stdout).unwrap()
}

#[test]
fn chained_between_loopback_and_portmap_a_host_port_reaches_the_pod() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    let baseline = pod_state(&node);
    let mut ours = node.cni_config_value("1.0.0");
    ours.as_object_mut().unwrap().remove("cniVersion");
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "vpcni",
        "plugins": [
            { "type": "loopback" },
            ours,
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true,
                "runtimeConfig": { "portMappings": [{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }] },
            },
        ],
    });
    let pod = node.pod_netns("web").unwrap();
    let add = PluginCall::new("ADD", Some(pod.path()), "web", "");
    let output = node.conflist(&conflist, &add, None).unwrap();
    let ip = result_ip(&output);
    let result = output.json();

    // portmap printed our result through; ours kept loopback's, IPv6 entry included, and points at eth0.
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "lo", "{result}");
    assert_eq!(names[2], "eth0", "{result}");
    let ips: Vec<&str> = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert!(
        ips.contains(&"::1/128") && ips.contains(&"127.0.0.1/8"),
        "{result}"
    );
    let ours_ip = result["ips"].as_array().unwrap().last().unwrap();
    assert_eq!(ours_ip["address"], format!("{ip}/32"));
    assert_eq!(ours_ip["interface"], 2);

    let nat = iptables_nat(&node);
    assert!(nat.contains(&format!("--to-destination {ip}:80")), "{nat}");

    // A client outside the node (the companion namespace) reaches the pod through the node's port 8080.
    let www = node.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the pod\n").unwrap();
    let server = Background(
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                pod.name(),
                "busybox",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
            ])
            .arg(&www)
            .spawn()
            .unwrap(),
    );
    let host_port = std::net::SocketAddr::from((node.primary_ip(), 8080));
    let mut body = String::new();
    node.wait_until(
        "the pod's web server through the host port",
        Duration::from_secs(60),
        || match vpcni_testbed::http_get(node.companion_name(), host_port, "/") {
            Ok(response) if response.status == 200 => {
                body = response.body;
                true
            }
            _ => false,
        },
    )
    .unwrap();
    assert_eq!(body, "hello from the pod\n");

    // CHECK of vpcni with the chain's result (portmap 1.1.1's own CHECK trips over loopback's ::1: it looks
    // for an IPv6 chain it never made).
    let mut checked_config = conflist["plugins"][1].clone();
    checked_config["cniVersion"] = "1.0.0".into();
    checked_config["name"] = "vpcni".into();
    let checked = node
        .plugin(&PluginCall::check(
            &pod,
            "web",
            &with_prev(&checked_config, &result),
        ))
        .unwrap();
    assert!(checked.success(), "{checked}");
    let del = PluginCall::new("DEL", Some(pod.path()), "web", "");
    let deleted = node.conflist(&conflist, &del, Some(&result)).unwrap();
    assert!(deleted.success(), "{deleted}");
    assert!(
        !iptables_nat(&node).contains(&ip.to_string()),
        "portmap's rules are gone"
    );
    // The runtime stops the pod and deletes its namespace.
    drop(server);
    drop(pod);
    settle(&node, &baseline);
}

fn status(node: &TestNode) -> vpcni_testbed::PluginOutput {
    node.plugin(&PluginCall::new("STATUS", None, "s", &node.cni_config("1.1.0")))
        .unwrap()
}

#[test]
fn a_full_node_says_max_pods_in_the_error_and_stays_ready() {
    // t3.nano: 2 ENIs with 1 pod address each, max pods 4.
    let node = TestNode::builder()
        .instance_type("t3.nano")
        .ipamd_env("WARM_IP_TARGET", "2")
        .start()
        .unwrap();
    node.wait_for_addresses(2).unwrap();
    let config = node.cni_config("1.0.0");
    let status_ok = status(&node);
    assert!(status_ok.success() && status_ok.stdout.is_empty(), "{status_ok}");
    let pods: Vec<_> = (0..3)
        .map(|i| node.pod_netns(&format!("n{i}")).unwrap())
        .collect();
    for pod in &pods[..2] {
        result_ip(&node.plugin(&PluginCall::add(pod, pod.name(), &config)).unwrap());
    }
    let before = pod_state(&node);
    let refused = node
        .plugin(&PluginCall::add(&pods[2], pods[2].name(), &config))
        .unwrap();
    assert_eq!(refused.error_code(), Some(11), "{refused}");
    assert!(
        refused.error_msg().contains("node max pods reached (4)"),
        "{refused}"
    );
    assert_eq!(refused.json()["details"], "ipamd reason NODE_MAX_PODS");
    assert_eq!(pod_state(&node), before, "a refused ADD leaves nothing");
    // Full is not broken: STATUS stays successful so the node's pods are not evicted.
    assert!(status(&node).success());
}

#[test]
fn an_exhausted_subnet_is_named_in_the_error_and_in_status() {
    // A /28: 11 usable addresses; the node has one, the primary ENI takes 9, a second ENI the last.
    let node = TestNode::builder()
        .subnet("10.0.0.0/28".parse().unwrap())
        .ipamd_env("WARM_IP_TARGET", "10")
        .start()
        .unwrap();
    node.wait_for_addresses(9).unwrap();
    let config = node.cni_config("1.0.0");
    let mut pods = Vec::new();
    for i in 0..9 {
        let pod = node.pod_netns(&format!("s{i}")).unwrap();
        result_ip(&node.plugin(&PluginCall::add(&pod, pod.name(), &config)).unwrap());
        pods.push(pod);
    }
    node.wait_until(
        "ipamd to report the subnet exhausted",
        Duration::from_secs(60),
        || {
            node.ipamd_status()
                .is_ok_and(|s| s.reason() == vpcni_rpc::FailureReason::SubnetExhausted)
        },
    )
    .unwrap();
    let before = pod_state(&node);
    let last = node.pod_netns("s9").unwrap();
    let refused = node.plugin(&PluginCall::add(&last, "s9", &config)).unwrap();
    assert_eq!(refused.error_code(), Some(11), "{refused}");
    let subnet = node.sim_state().unwrap().instances[node.instance_id()]
        .subnet_id
        .clone();
    assert!(
        refused
            .error_msg()
            .contains(&format!("subnet {subnet} has no free addresses")),
        "{refused}"
    );
    assert_eq!(pod_state(&node), before);
    let status = status(&node);
    assert_eq!(status.error_code(), Some(50), "{status}");
    assert!(status.error_msg().contains("has no free addresses"), "{status}");
}
