//! The real daemon survives being killed: kill -9 in the middle of a stream of ADDs and DELs, restart, and
//! no address is held twice, none leaks, none is lost, and an address released before the crash is not
//! handed out again within its cooldown; a pod whose veth went while the daemon was down is released;
//! SIGTERM finishes the ENI attach under way, leaves the checkpoint whole and detaches nothing. Runs
//! `vpcni-ipamd` in a testbed node against `vpcnictl sim serve`; needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod node_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use node_support::{EVENTUALLY, outcome, sh};
use vpcni_dataplane::naming::host_veth_name;
use vpcni_testbed::TestNode;

/// IP_COOLDOWN_PERIOD for the stream: short, so the clients are not held up for long by addresses that all
/// cool down at once (cooling addresses count towards the warm target, as in the original).
const COOLDOWN: Duration = Duration::from_secs(5);

/// What the clients believe, as a CNI runtime would: live pods and their addresses, and when each
/// released address was last sent back.
#[derive(Debug, Default)]
struct Model {
    live: BTreeMap<String, Ipv4Addr>,
    released: BTreeMap<Ipv4Addr, Instant>,
    /// Operations cut short by the crash: (pod, was it an ADD, when it was first sent).
    in_doubt: Vec<(String, bool, Instant)>,
    /// ADDs and DELs answered.
    answered: usize,
}

fn veth(pod: &str) -> String {
    host_veth_name("eni", "default", pod)
}

/// The host veth the plugin would have made for the pod (ipamd checks it exists at start-up).
fn plug_veth(node: &TestNode, pod: &str) {
    let name = veth(pod);
    let peer = format!("q{}", &name[3..]);
    // A veth that could not be made shows later, as this pod released by the daemon's veth check.
    let _ = node.exec(&["ip", "link", "add", &name, "type", "veth", "peer", "name", &peer]);
}

fn unplug_veth(node: &TestNode, pod: &str) {
    // Gone already (never made, or its pod released) is the state wanted.
    let _ = node.exec(&["ip", "link", "del", &veth(pod)]);
}

/// One client: random ADDs and DELs of its own pods until the daemon stops answering.
fn client(node: &TestNode, model: &Mutex<Model>, id: usize, seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut own: Vec<String> = Vec::new();
    for round in 0.. {
        let delete = !own.is_empty() && next() % 3 == 0;
        if delete {
            let pod = own.swap_remove(next() as usize % own.len());
            let sent = Instant::now();
            match node.ipamd_del(&pod) {
                Ok(reply) => {
                    assert!(reply.success);
                    unplug_veth(node, &pod);
                    let mut model = model.lock().unwrap();
                    model.answered += 1;
                    if let Some(ip) = model.live.remove(&pod) {
                        model.released.insert(ip, sent);
                    }
                }
                Err(_) => {
                    model.lock().unwrap().in_doubt.push((pod, false, sent));
                    return;
                }
            }
        } else {
            let pod = format!("c{id}-{round}");
            let sent = Instant::now();
            match node.ipamd_add(&pod) {
                Ok(reply) => match outcome(&reply) {
                    Ok(ip) => {
                        plug_veth(node, &pod);
                        let mut model = model.lock().unwrap();
                        if let Some(released) = model.released.get(&ip) {
                            assert!(
                                released.elapsed() >= COOLDOWN,
                                "{ip} handed to {pod} {:?} after its release",
                                released.elapsed()
                            );
                        }
                        assert!(!model.live.values().any(|v| *v == ip), "{ip} handed out twice");
                        model.answered += 1;
                        model.live.insert(pod.clone(), ip);
                        own.push(pod);
                    }
                    // Refused (pool growing, addresses cooling down): the runtime retries later.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                },
                Err(_) => {
                    model.lock().unwrap().in_doubt.push((pod, true, sent));
                    return;
                }
            }
        }
    }
}

/// ipamd's allocations, from `/v1/pods`.
fn allocations(node: &TestNode) -> BTreeMap<String, Ipv4Addr> {
    let pods = node.introspection("/v1/pods").unwrap().json().unwrap();
    pods.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["containerID"].as_str().unwrap().to_owned(),
                p["ipv4"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn kill_9_during_adds_and_dels_loses_nothing_and_hands_nothing_out_twice() {
    let node = Arc::new(
        TestNode::builder()
            .ipamd_env("WARM_IP_TARGET", "10")
            .ipamd_env("IP_COOLDOWN_PERIOD", &COOLDOWN.as_secs().to_string())
            .start()
            .unwrap(),
    );
    node.wait_for_addresses(1).unwrap();
    let model = Arc::new(Mutex::new(Model::default()));
    for crash in 0..3u64 {
        let clients: Vec<_> = (0..4)
            .map(|id| {
                let (node, model) = (node.clone(), model.clone());
                std::thread::spawn(move || {
                    client(&node, &model, id + 10 * crash as usize, crash * 7 + id as u64)
                })
            })
            .collect();
        // Let the stream run, then pull the plug in the middle of it.
        let target = model.lock().unwrap().answered + 40;
        node.wait_until("a stream of answered ADDs and DELs", EVENTUALLY, || {
            model.lock().unwrap().answered >= target
        })
        .unwrap();
        node.kill_ipamd().unwrap();
        for client in clients {
            client.join().unwrap();
        }
        node.start_ipamd().unwrap();

        // The runtime retries what it did not hear back about: ADD again (same key), DEL again.
        let in_doubt = std::mem::take(&mut model.lock().unwrap().in_doubt);
        for (pod, was_add, sent) in in_doubt {
            if was_add {
                let reply = node.ipamd_add(&pod).unwrap();
                if let Ok(ip) = outcome(&reply) {
                    plug_veth(&node, &pod);
                    model.lock().unwrap().live.insert(pod, ip);
                }
            } else {
                // The address may have been released by the first DEL, before the crash: its cooldown
                // counts from then at the earliest.
                assert!(node.ipamd_del(&pod).unwrap().success);
                unplug_veth(&node, &pod);
                let mut model = model.lock().unwrap();
                if let Some(ip) = model.live.remove(&pod) {
                    model.released.insert(ip, sent);
                }
            }
        }

        // ipamd holds exactly what the runtime believes: nothing leaked, nothing lost, nothing doubled.
        let model = model.lock().unwrap();
        let held = allocations(&node);
        assert_eq!(held, model.live, "after crash {crash}");
        let distinct: BTreeSet<_> = held.values().collect();
        assert_eq!(distinct.len(), held.len(), "an address held twice: {held:?}");
        let on_node = node.sim_state().unwrap().assigned_addresses(node.instance_id());
        for ip in held.values() {
            assert!(on_node.contains(ip), "{ip} is not on the node in EC2");
        }
    }

    // New pods never get an address released less than the cooldown ago, crash or not.
    for n in 0..12 {
        let pod = format!("after-{n}");
        if let Ok(ip) = outcome(&node.ipamd_add(&pod).unwrap()) {
            let model = model.lock().unwrap();
            if let Some(sent) = model.released.get(&ip) {
                assert!(
                    sent.elapsed() >= COOLDOWN,
                    "{ip} was released {:?} ago and handed to {pod}",
                    sent.elapsed()
                );
            }
            assert!(!model.live.values().any(|v| *v == ip), "{ip} handed out twice");
        }
    }
    let checkpoint = std::fs::read_to_string(node.checkpoint_path()).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&checkpoint).unwrap();
    assert_eq!(parsed["version"], "vpc-cni-ipam/1");
}

/// `/v1/enis`' record of one address: (holder's pod name, UnassignedTime), if listed.
fn address_record(node: &TestNode, ip: Ipv4Addr) -> Option<(String, String)> {
    let cards = node.introspection("/v1/enis").unwrap().json().unwrap();
    cards.as_object()?.values().find_map(|card| {
        card["ENIs"].as_object()?.values().find_map(|eni| {
            eni["AvailableIPv4Cidrs"].as_object()?.values().find_map(|cidr| {
                let record = cidr["IPAddresses"].get(ip.to_string())?;
                Some((
                    record["IPAMMetadata"]["k8sPodName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    record["UnassignedTime"].as_str()?.to_owned(),
                ))
            })
        })
    })
}

#[test]
fn a_pod_whose_veth_went_while_the_daemon_was_down_is_released() {
    // MAX_ENI=1: the primary ENI's nine addresses are all there is, so a pod can only get the released
    // address or nothing; an hour's cooldown outlasts the test on any machine.
    let node = TestNode::builder()
        .ipamd_env("MAX_ENI", "1")
        .ipamd_env("IP_COOLDOWN_PERIOD", "3600")
        .start()
        .unwrap();
    node.wait_for_addresses(9).unwrap();
    let kept = outcome(&node.ipamd_add("kept").unwrap()).unwrap();
    let gone = outcome(&node.ipamd_add("gone").unwrap()).unwrap();
    plug_veth(&node, "kept");
    node.stop_ipamd().unwrap();
    // Both allocations an hour old, so neither could still be in the middle of its ADD.
    let mut checkpoint: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(node.checkpoint_path()).unwrap()).unwrap();
    let hour_ago = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        - Duration::from_secs(3600))
    .as_nanos() as u64;
    for allocation in checkpoint["allocations"].as_array_mut().unwrap() {
        allocation["allocationTimestamp"] = hour_ago.into();
    }
    std::fs::write(node.checkpoint_path(), checkpoint.to_string()).unwrap();
    // RFC 3339 in /v1/enis has whole seconds.
    let restarted_at = vpcni_ipamd::clock::now_ms() / 1000 * 1000;
    node.start_ipamd().unwrap();
    let held = allocations(&node);
    assert_eq!(held.get("kept"), Some(&kept));
    assert!(!held.contains_key("gone"), "{held:?}");
    assert!(node.ipamd_log().contains("released: the pod's host veth is gone"));

    // Its address cools down like any released one: free, released at this start-up, counted as cooling.
    let (holder, unassigned) = address_record(&node, gone).expect("the released address is listed");
    assert_eq!(holder, "", "{gone} is free");
    let released_at = vpcni_ipamd::clock::parse_rfc3339(&unassigned).unwrap();
    assert!(
        (restarted_at..=vpcni_ipamd::clock::now_ms()).contains(&released_at),
        "{gone} released at {unassigned}, not at this start-up"
    );
    let stats = &node_support::pool(&node)["stats"];
    assert_eq!(stats["cooling"], 1, "{stats}");

    // No pod gets it within the cooldown: the seven other free addresses go, then ADDs are refused.
    let mut given = BTreeSet::new();
    for n in 0..7 {
        let ip = outcome(&node.ipamd_add(&format!("new-{n}")).unwrap()).unwrap();
        assert_ne!(ip, gone, "new-{n} got the address released {unassigned}");
        given.insert(ip);
    }
    assert_eq!(given.len(), 7);
    let (reason, message) = outcome(&node.ipamd_add("new-7").unwrap()).unwrap_err();
    assert_eq!(reason, "ALL_COOLING_DOWN", "{message}");
    assert!(
        node.ipamd_del("gone").unwrap().success,
        "a later DEL still succeeds"
    );
}

#[test]
fn sigterm_finishes_the_attach_under_way_and_detaches_nothing() {
    // 12 warm addresses: after the primary ENI's nine, an ENI is attached, which takes 10 s: SIGTERM,
    // sent as soon as EC2 has the attach request, arrives while it is under way on any machine, and
    // shutdown (30 s grace) still has time to finish it.
    let node = TestNode::builder()
        .ipamd_env("WARM_IP_TARGET", "12")
        .sim_setting("attach_delay_ms", "10000")
        .start()
        .unwrap();
    node.wait_for_addresses(1).unwrap();
    let stay = outcome(&node.ipamd_add("stay").unwrap()).unwrap();
    plug_veth(&node, "stay");
    node.wait_until("an ENI being attached", EVENTUALLY, || {
        node.sim_state().unwrap().enis.values().any(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == node.instance_id() && a.device_index == 1)
        })
    })
    .unwrap();
    let status = node.stop_ipamd().unwrap();
    assert!(status.success(), "{status:?}\n{}", node.ipamd_log());
    assert!(!node.socket_path().exists(), "the socket is removed");
    let log = node.ipamd_log();
    assert!(
        log.contains("SIGTERM: shutting down") && log.contains("checkpoint written"),
        "{log}"
    );
    assert!(!log.contains("DetachNetworkInterface"), "{log}");
    let sigterm = log.find("SIGTERM: shutting down").unwrap();
    let attached = log
        .find("ENI attached and set up")
        .unwrap_or_else(|| panic!("the attach under way was not finished:\n{log}"));
    assert!(
        sigterm < attached,
        "the attach was over before SIGTERM, so this test did not test it:\n{log}"
    );

    // Every ENI is still attached; the checkpoint reads back; a restart uses the new ENI.
    let state = node.sim_state().unwrap();
    let attached = state.attached_enis(node.instance_id(), u64::MAX);
    assert_eq!(attached.len(), 2);
    let checkpoint: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(node.checkpoint_path()).unwrap()).unwrap();
    assert_eq!(checkpoint["version"], "vpc-cni-ipam/1");
    node.start_ipamd().unwrap();
    node.wait_until("both ENIs in the pool", EVENTUALLY, || {
        node_support::stats(&node).0 == 2
    })
    .unwrap();
    assert!(sh(&node, &["ip", "rule"]).contains("32765:"));
    assert_eq!(allocations(&node).get("stay"), Some(&stay));
}

#[test]
fn sigterm_exits_non_zero_when_the_checkpoint_cannot_be_written() {
    let node = TestNode::start().unwrap();
    node.wait_for_addresses(1).unwrap();
    outcome(&node.ipamd_add("held").unwrap()).unwrap();
    // The checkpoint's path becomes a directory with something in it: renaming the new checkpoint onto
    // it fails, root or not.
    let path = node.checkpoint_path();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("in-the-way"), "").unwrap();

    let status = node.stop_ipamd().unwrap();
    let log = node.ipamd_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "shutdown: the checkpoint {} was not written",
            path.display()
        )),
        "{log}"
    );
    assert!(!log.contains("checkpoint written"), "{log}");

    // With the way clear, the next shutdown writes it and says so with exit code 0.
    std::fs::remove_dir_all(&path).unwrap();
    node.start_ipamd().unwrap();
    let status = node.stop_ipamd().unwrap();
    assert!(status.success(), "{status:?}\n{}", node.ipamd_log());
    assert!(std::fs::read_to_string(&path).unwrap().contains("vpc-cni-ipam/1"));
}

/// EC2 failing at start-up (here six InternalErrors in a row on DescribeInstances: more than the SDK's three
/// attempts of one call) does not make the daemon exit: it tries start-up again, and serves. Found by the
/// soak, where one injected fault during a restart left a node without ipamd.
#[test]
fn start_up_outlasts_ec2_failing_for_a_while() {
    let node = TestNode::builder()
        .sim_setting(
            "faults",
            r#"[{ action = "DescribeInstances", code = "InternalError", remaining = 6 }]"#,
        )
        .start()
        .unwrap();
    node.wait_for_addresses(1).unwrap();
    assert!(outcome(&node.ipamd_add("after-faults").unwrap()).is_ok());
    let log = node.ipamd_log();
    assert!(
        log.contains("start-up: EC2") && log.contains("trying again"),
        "{log}"
    );
}
