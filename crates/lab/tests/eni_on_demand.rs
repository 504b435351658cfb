//! As pods outgrow the primary ENI, ipamd attaches more ENIs through EC2, and the fabric plugs each into
//! its node as `eth<device>` with the ENI's MAC and routes the ENI's addresses to it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::time::Duration;

use common::{TestLab, eventually};

#[test]
fn enis_are_attached_and_plugged_as_pods_grow_past_one_eni() {
    // t3.small: 3 ENIs × 4 addresses, 3 of them for pods; keep one free address, no warm ENI.
    let mut lab = TestLab::up(1, "t3.small", |spec| {
        spec.ipamd_env.push(("WARM_ENI_TARGET".into(), "0".into()));
        spec.ipamd_env.push(("WARM_IP_TARGET".into(), "1".into()));
    });
    let enis = |lab: &TestLab| lab.status().unwrap().nodes[0].enis.clone();
    assert_eq!(
        enis(&lab).len(),
        1,
        "an idle node holds only its primary ENI: {:?}",
        enis(&lab)
    );

    let pods = lab.pods("node-1", 5);
    let status = lab.status().unwrap();
    let devices: Vec<u32> = status.pods.iter().filter_map(|p| p.device_number).collect();
    assert_eq!(
        devices.len(),
        5,
        "every pod's address is on one of the node's ENIs: {status:?}"
    );
    assert!(
        devices.iter().any(|d| *d >= 1),
        "5 pods cannot fit on a t3.small's primary ENI, yet all are on it: {devices:?}"
    );
    let attached = &status.nodes[0].enis;
    assert!(attached.len() >= 2, "{attached:?}");

    for eni in attached {
        // The fabric plugged it into the node with its MAC, under eth<device>.
        let plugged = eventually(&format!("{} plugged", eni.id), Duration::from_secs(60), || {
            lab.fabric_report().unwrap().plugged.into_iter().find(|p| {
                // Every address the status saw is routed (ipamd may have added more since).
                p.eni_id == eni.id
                    && eni.ips[1..]
                        .iter()
                        .all(|ip| p.routed.contains(&ipnet::Ipv4Net::from(*ip)))
            })
        });
        assert_eq!(plugged.node_link, format!("eth{}", eni.device_number));
        let link = lab.ip("node-1", &["-o", "link", "show", &plugged.node_link]);
        assert!(
            link.contains(&plugged.mac),
            "{} lacks the ENI's MAC {}: {link}",
            plugged.node_link,
            plugged.mac
        );
        // The router delivers each of its addresses to it.
        for ip in &eni.ips {
            let route = lab.ip("router", &["route", "get", &ip.to_string()]);
            assert!(
                route.contains(&format!("dev {}", plugged.router_link)),
                "router routes {ip} ({}) elsewhere: {route}",
                eni.id
            );
        }
    }
    for pod in &pods {
        let on = status.pods.iter().find(|p| p.name == pod.name).unwrap();
        let eni = attached.iter().find(|e| Some(&e.id) == on.eni.as_ref()).unwrap();
        assert!(
            eni.ips[1..].contains(&pod.ip),
            "{} is not a secondary address of {}",
            pod.ip,
            eni.id
        );
    }
}

#[test]
fn a_restarted_ipamd_keeps_its_pods_and_never_hands_out_their_addresses() {
    let mut lab = TestLab::up(1, "t3.small", |_| {});
    let before = lab.pods("node-1", 2);
    lab.kill_ipamd("node-1").unwrap();
    lab.start_ipamd("node-1").unwrap();
    let after = lab.pods("node-1", 2);
    for pod in &after {
        assert!(
            before.iter().all(|p| p.ip != pod.ip),
            "{} was given {}, which {} still holds",
            pod.name,
            pod.ip,
            before.iter().find(|p| p.ip == pod.ip).unwrap().name
        );
    }
    // With ipamd stopped, an ADD fails because ipamd is not there (not because a short retry ran out).
    lab.stop_ipamd("node-1").unwrap();
    let refused = lab.add_pods("node-1", 1, Duration::from_secs(1)).unwrap_err();
    assert!(refused.created.is_empty(), "{:?}", refused.created);
    let failure = refused.failure;
    assert_eq!(failure.code, vpcni_lab::pods::TRY_AGAIN_LATER, "{failure}");
    assert!(failure.message.contains("ipamd is not reachable"), "{failure}");
}

#[test]
fn an_eni_detached_in_ec2_is_unplugged_from_its_node() {
    let mut lab = TestLab::up(1, "t3.small", |_| {});
    lab.pods("node-1", 2);
    // The warm ENI ipamd attaches once pods use the primary ENI's addresses.
    let plugged = eventually("a secondary ENI plugged", Duration::from_secs(60), || {
        lab.fabric_report()
            .unwrap()
            .plugged
            .into_iter()
            .find(|p| p.device >= 1)
    });
    let account: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.paths().ec2_state_file()).unwrap()).unwrap();
    let attachment = account["enis"][&plugged.eni_id]["attachment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // As EC2's console would: DetachNetworkInterface on the lab's EC2 endpoint.
    let url = format!(
        "http://169.254.169.254:8787/?Action=DetachNetworkInterface&AttachmentId={attachment}&Force=true"
    );
    let answer = lab.http_get("router", &url, Duration::from_secs(5)).unwrap();
    assert!(answer.is_ok(), "EC2 refused the detach: {answer:?}");

    eventually(
        &format!("{} unplugged", plugged.eni_id),
        Duration::from_secs(60),
        || {
            let report = lab.fabric_report().unwrap();
            report
                .plugged
                .iter()
                .all(|p| p.eni_id != plugged.eni_id)
                .then_some(())
        },
    );
    let links = lab.ip("node-1", &["-o", "link", "show"]);
    assert!(
        !links.contains(&plugged.mac),
        "the detached ENI's MAC is still on node-1:\n{links}"
    );
    // Its addresses stay on the detached ENI in EC2, so nothing in the VPC routes them any more.
    let primary = ipnet::Ipv4Net::from(plugged.primary_ip);
    for net in plugged.routed.iter().chain([&primary]) {
        let route = lab.ip("router", &["route", "show", "exact", &net.to_string()]);
        assert!(route.trim().is_empty(), "the router still routes {net}: {route}");
    }
}
