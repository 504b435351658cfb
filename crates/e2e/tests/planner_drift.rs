//! The planner and the daemon cannot drift: one node's workload runs through both — a real vpcni-ipamd
//! on a lab node (EC2 simulator behind EC2's API, pods wired by the plugin) and the planner's node
//! (`vpcni_planner::single::SingleNode`: the same engine against the simulator, on a virtual clock) —
//! and after every step, once each has settled with every timer run out, their pools must hold the same
//! number of addresses, ENIs and prefixes, and read the settings the same way.
//!
//! Needs root and the lab's binaries (`sudo scripts/test.sh` builds them); it takes a few minutes, as the
//! daemon's timers (60 s ENI lifetime, 30 s cooldown and release interval) run on the wall clock.
//! (.config/nextest.toml gives these two tests fifteen minutes.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::time::{Duration, Instant};

use vpcni_engine::settings::PoolSettings;
use vpcni_lab::spec::INTROSPECTION;
use vpcni_lab::{Lab, LabGuard, LabSpec};
use vpcni_planner::single::SingleNode;

/// Pods on the node after each step.
const STEPS: [usize; 7] = [0, 3, 12, 20, 9, 2, 0];

fn pool(lab: &Lab) -> serde_json::Value {
    let body = lab
        .http_get(
            "node-1",
            &format!("http://{INTROSPECTION}/v1/pool"),
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// (addresses, ENIs, prefixes) as the daemon reports them.
fn daemon_size(pool: &serde_json::Value) -> (u64, u64, u64) {
    let stats = &pool["stats"];
    (
        stats["total"].as_u64().unwrap(),
        stats["enis"].as_u64().unwrap(),
        stats["total_prefixes"].as_u64().unwrap(),
    )
}

/// Waits until the daemon's pool holds what the planner settled at and wants nothing more. The planner's
/// figure is the fixed point with every timer run out, which the daemon's pool moves towards and stays at;
/// a daemon that drifts never reaches it and fails at the deadline (generous: the ENI lifetime, cooldown
/// and release timers run on the wall clock).
fn daemon_reaches(lab: &Lab, planned: (u64, u64, u64)) -> (u64, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let now = pool(lab);
        let size = daemon_size(&now);
        if size == planned && now["nextDecision"]["action"] == "nothing" {
            return size;
        }
        if Instant::now() >= deadline {
            return size;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn drift_free(suite: &str, env: &[(&str, &str)]) {
    let mut spec = LabSpec::isolated(suite);
    spec.nodes = 1;
    // Short pool cycles: the policy and its timers are the same, decisions come sooner.
    spec.ipamd_env
        .push(("VPCNI_POOL_INTERVAL_MS".into(), "300".into()));
    for (key, value) in env {
        spec.ipamd_env.push(((*key).to_owned(), (*value).to_owned()));
    }
    let subnet = spec.subnets[0];
    let instance_type = spec.instance_type.clone();
    let mut lab = LabGuard::up(spec).unwrap();

    let (settings, _) =
        PoolSettings::from_lookup(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
            .unwrap();
    let mut planner = SingleNode::new(&instance_type, subnet, &settings).unwrap();
    // Both read the settings alike: the daemon's engine configuration is the planner's.
    let daemon_config = pool(&lab)["config"].clone();
    assert_eq!(
        daemon_config,
        serde_json::to_value(settings.pool_config()).unwrap()
    );

    let mut planner_pods: Vec<String> = Vec::new();
    let mut lab_pods: Vec<String> = Vec::new();
    for (step, &wanted) in STEPS.iter().enumerate() {
        while lab_pods.len() < wanted {
            let created = lab.add_pods("node-1", 1, Duration::from_secs(120)).unwrap();
            lab_pods.push(created[0].name.clone());
            let name = format!("p{}", planner_pods.len());
            // A pod that finds no address yet waits for the pool, as the runtime retries ADD.
            while planner.add_pod(&name).is_err() {
                planner.cycle();
            }
            planner_pods.push(name);
        }
        while lab_pods.len() > wanted {
            let name = lab_pods.pop().unwrap();
            lab.del_pods(&[name]).unwrap();
            planner.del_pod(&planner_pods.pop().unwrap()).unwrap();
        }
        planner.settle_fully();
        let stats = planner.stats();
        let planned = (stats.total as u64, stats.enis as u64, stats.total_prefixes as u64);
        let daemon = daemon_reaches(&lab, planned);
        assert_eq!(
            daemon, planned,
            "step {step} ({wanted} pods): the daemon holds (addresses, ENIs, prefixes) = {daemon:?}, the planner {planned:?}"
        );
    }
    lab.down().unwrap();
}

#[test]
fn planner_and_daemon_agree_step_by_step_with_the_defaults() {
    drift_free("drift-defaults", &[]);
}

#[test]
fn planner_and_daemon_agree_step_by_step_with_warm_ip_targets() {
    drift_free(
        "drift-warm-ip",
        &[("WARM_IP_TARGET", "2"), ("MINIMUM_IP_TARGET", "4")],
    );
}
