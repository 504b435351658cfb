//! Past max pods, the next pod gets no address, and the lab reports ipamd's reason for it at once rather
//! than retrying, since only pods leaving can fix it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

mod common;

use std::time::Duration;

use common::TestLab;

#[test]
fn a_node_past_max_pods_refuses_the_next_pod_with_ipamds_reason() {
    // t3.micro: 2 ENIs × (2 − 1) addresses + 2 = 4 max pods, 2 of them with an address of their own.
    let mut lab = TestLab::up(1, "t3.micro", |spec| {
        spec.ipamd_env.push(("IP_COOLDOWN_PERIOD".into(), "0".into()));
    });
    let fitted = lab.pods("node-1", 2);
    let mut ips: Vec<_> = fitted.iter().map(|p| p.ip).collect();
    ips.dedup();
    assert_eq!(ips.len(), 2, "two pods share an address: {fitted:?}");

    let refused = lab.add_pods("node-1", 2, Duration::from_secs(60)).unwrap_err();
    assert!(
        refused.created.is_empty(),
        "a pod got an address past max pods: {:?}",
        refused.created
    );
    assert_eq!(
        refused.not_attempted, 1,
        "the lab kept trying after a final refusal"
    );
    let failure = refused.failure;
    assert_eq!(failure.reason(), Some("NODE_MAX_PODS"), "{failure}");
    assert_eq!(failure.code, vpcni_lab::pods::TRY_AGAIN_LATER, "{failure}");
    assert!(failure.message.contains("max pods reached (4)"), "{failure}");
    assert_eq!(failure.attempts, 1, "a final refusal was retried: {failure}");
    let refused_netns = format!("{}{}", lab.state().spec.prefix, failure.pod);
    assert!(
        !vpcni_lab::netns_list().contains(&refused_netns),
        "the refused pod's namespace {refused_netns} was left behind"
    );
    assert_eq!(lab.state().pods.len(), 2);

    // Deleting a pod frees its address for the next one.
    lab.del_pods(&[fitted[0].name.clone()]).unwrap();
    let again = lab.pods("node-1", 1);
    assert_ne!(again[0].ip, fitted[1].ip);
}
