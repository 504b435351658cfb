//! `vpcnictl lab demo`: the articles' story, for real, on this machine. Pods on different nodes get VPC
//! addresses and ping each other with no overlay; a pod asks the internet who it is and sees its node's
//! public address; a node is scaled past its max pods and ipamd says why the next pod gets no address; in a
//! second small lab, custom networking puts pods in a subnet of a secondary CIDR; and in a third, an IPv6
//! cluster gives each node a /80 and its pods VPC IPv6 addresses, with IPv4 egress through the node.
//! `vpcnictl lab demo --ipv6` (or a demo on an IPv6 lab already up) tells only the IPv6 chapter.

use std::process::ExitCode;
use std::time::Duration;

use vpcni_lab::{Lab, LabError, LabSpec, PodRecord, PodsError};
use vpcni_limits::max_pods::{MaxPodsOptions, max_pods};

use super::lab::{bring_up, status_text};
use crate::output::{say, say_raw};

fn step(number: u32, title: &str) {
    say!("\n━━ {number}. {title}");
}

fn shell(line: &str) {
    say!("$ {line}");
}

/// Runs the tour on the lab at `spec.state_dir`, bringing one up first if there is none.
pub fn run(spec: LabSpec) -> Result<ExitCode, LabError> {
    let ipv6_lab = match Lab::open(&spec.state_dir) {
        Ok(lab) => lab.state().spec.ipv6,
        Err(_) => spec.ipv6,
    };
    if ipv6_lab {
        // The IPv4 chapters (VPC IPv4 addresses, max pods) do not apply to an IPv6 cluster.
        ipv6_chapter(spec, 1, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    step(1, "A VPC with nodes (EC2 instances), each running vpcni-ipamd");
    let mut lab = match Lab::open(&spec.state_dir) {
        Ok(lab) => {
            say!("using the lab already up in {}", spec.state_dir.display());
            lab
        }
        Err(LabError::NotUp(_)) => {
            shell(&format!(
                "vpcnictl lab up --nodes {} --instance-type {}",
                spec.nodes, spec.instance_type
            ));
            bring_up(spec)?
        }
        Err(error) => return Err(error),
    };
    let nodes: Vec<String> = lab.state().nodes.iter().map(|n| n.name.clone()).collect();

    step(
        2,
        "Pods get addresses from the VPC itself, taken from their node's ENIs",
    );
    let mut demo_pods: Vec<PodRecord> = Vec::new();
    for node in nodes.iter().take(3) {
        shell(&format!("vpcnictl lab pods add --node {node}"));
        let pods = lab
            .add_pods(node, 1, Duration::from_secs(60))
            .map_err(pods_failed)?;
        demo_pods.extend(pods);
    }
    let status = lab.status()?;
    shell("vpcnictl lab status");
    say_raw!("{}", status.pods_table());
    for node in lab.state().nodes.iter().take(3) {
        say!(
            "  {} is {} in subnet {}: its pods' addresses are in the same VPC range",
            node.name,
            node.primary_ip,
            node.subnet
        );
    }

    if demo_pods.len() >= 2 {
        let (from, to) = (&demo_pods[0], &demo_pods[1]);
        step(
            3,
            &format!(
                "{} on {} pings {} on {}: plain VPC routing, no overlay, no tunnel",
                from.name, from.node, to.name, to.node
            ),
        );
        let ping = vec![
            "ping".to_owned(),
            "-c".into(),
            "2".into(),
            "-W".into(),
            "2".into(),
            to.ip.to_string(),
        ];
        shell(&format!("vpcnictl lab exec {} -- {}", from.name, ping.join(" ")));
        if vpcni_lab::find_tool("ping").is_some() {
            lab.exec(&from.name, &ping)?;
        } else {
            say!("(ping is not installed: apt-get install -y iputils-ping)");
        }
        say!(
            "The VPC router delivers {} to the ENI EC2 assigned it to ({}'s), by that ENI's MAC:",
            to.ip,
            to.node
        );
        shell(&format!("vpcnictl lab exec router -- ip route get {}", to.ip));
        lab.exec(
            "router",
            &["ip".into(), "route".into(), "get".into(), to.ip.to_string()],
        )?;
        say!("and on the node, a /32 route per pod to its veth:");
        shell(&format!("vpcnictl lab exec {} -- ip route", to.node));
        lab.exec(&to.node, &["ip".into(), "route".into()])?;
    }

    step(
        4,
        "Pods reach the internet as their node: SNAT to the node's address, then the internet gateway",
    );
    let url = vpcni_lab::internet::service_url();
    let curl = vpcni_lab::find_tool("curl").is_some();
    for pod in &demo_pods {
        let public = lab.node(&pod.node)?.public_ip;
        shell(&format!("vpcnictl lab exec {} -- curl -s {url}", pod.name));
        let seen = if curl {
            let output = lab.output(&pod.name, &["curl", "-s", "-m", "5", &url])?;
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        } else {
            lab.http_get(&pod.name, &url, Duration::from_secs(5))?
                .map(|b| b.trim().to_owned())
                .unwrap_or_else(|e| format!("failed: {e}"))
        };
        let verdict = if seen == public.to_string() {
            format!("= {}'s public address", pod.node)
        } else if seen.is_empty() {
            format!(
                "no answer: the internet gateway drops private sources, so ipamd's SNAT on {} must turn {} into {} first",
                pod.node,
                pod.ip,
                lab.node(&pod.node)?.primary_ip
            )
        } else {
            format!("(expected {public}, {}'s public address)", pod.node)
        };
        say!("{seen:<16} {verdict}");
    }
    if !curl {
        say!("(curl is not installed: fetched with vpcnictl's built-in client)");
    }

    step(5, "The max-pods wall");
    let node = nodes[0].clone();
    let spec = &lab.state().spec;
    let limits = vpcni_limits::builtin()
        .get(&spec.instance_type)
        .map_err(|e| LabError::Spec(e.to_string()))?;
    let computed = max_pods(
        limits,
        &MaxPodsOptions {
            prefix_delegation: spec.prefix_delegation,
            ..MaxPodsOptions::default()
        },
    );
    say!(
        "{}: max pods {} ({}).\nTwo of those are host-network pods (aws-node, kube-proxy) that need no address of their own.",
        spec.instance_type,
        computed.max_pods,
        computed.derivation()
    );
    let on_node = lab.state().pods.iter().filter(|p| p.node == node).count() as u32;
    let room = computed.max_pods.saturating_sub(2).saturating_sub(on_node);
    shell(&format!(
        "vpcnictl lab pods add --node {node} --count {}",
        room + 1
    ));
    let mut reached = false;
    for _ in 0..=room + 4 {
        match lab.add_pods(&node, 1, Duration::from_secs(60)) {
            Ok(pods) => {
                let status = lab.status()?;
                for pod in pods {
                    let eni = status.pods.iter().find(|p| p.name == pod.name);
                    say!(
                        "  {:<8} {:<15} {}  device {}",
                        pod.name,
                        pod.ip,
                        eni.and_then(|e| e.eni.clone()).unwrap_or_default(),
                        eni.and_then(|e| e.device_number)
                            .map_or_else(|| "-".into(), |d| d.to_string())
                    );
                }
            }
            Err(error) => {
                say!("  {}", error.failure);
                reached = error.failure.reason().is_some();
                break;
            }
        }
    }
    if reached {
        say!(
            "ipamd says why: on EKS this pod would stay Pending (kubelet's max pods), here the plugin reports ipamd's reason."
        );
    } else {
        say!("(no pod was refused; the node has more room than max pods suggests)");
    }

    let status = lab.status()?;
    let secondary = status
        .pods
        .iter()
        .find(|p| p.node == node && p.device_number.is_some_and(|d| d >= 1));
    if let (Some(pod), Some(far)) = (secondary, demo_pods.get(1)) {
        let device = pod.device_number.unwrap_or_default();
        step(
            6,
            &format!(
                "{} lives on a secondary ENI (eth{device}): its packets must leave through it",
                pod.name
            ),
        );
        say!(
            "The VPC drops a packet whose source is not assigned to the ENI it came from (the source/destination\n\
             check), so {node} routes {}'s traffic by source, through eth{device}'s route table:",
            pod.name
        );
        shell(&format!("vpcnictl lab exec {node} -- ip rule show priority 1536"));
        lab.exec(
            &node,
            &[
                "ip".into(),
                "rule".into(),
                "show".into(),
                "priority".into(),
                "1536".into(),
            ],
        )?;
        let ping = ["ping", "-c", "1", "-W", "2", "-q"].map(str::to_owned);
        let mut argv = ping.to_vec();
        argv.push(far.ip.to_string());
        shell(&format!("vpcnictl lab exec {} -- {}", pod.name, argv.join(" ")));
        if vpcni_lab::find_tool("ping").is_some() {
            lab.exec(&pod.name, &argv)?;
        }
    }

    step(7, "Where things stand");
    say_raw!("{}", status_text(&lab.status()?));
    custom_networking_chapter(lab.state().spec.clone())?;
    ipv6_chapter(lab.state().spec.clone(), 9, true)?;
    say!(
        "\nKeep exploring: vpcnictl lab exec node-1 -- curl -s http://127.0.0.1:61679/v1/enis   (ipamd's view)\n\
         Remove everything: vpcnictl lab down"
    );
    Ok(ExitCode::SUCCESS)
}

/// The articles' other answer to running out of addresses: pods in a subnet of a secondary CIDR, nodes
/// where they are. A lab of its own (one node, beside the first), taken down at the end of the chapter.
fn custom_networking_chapter(first: LabSpec) -> Result<(), LabError> {
    step(
        8,
        "Out of addresses in the node subnet? Put pods in another one (custom networking)",
    );
    let mut spec = first;
    spec.nodes = 1;
    spec.prefix = format!("{}cn-", spec.prefix);
    spec.state_dir = spec.state_dir.with_file_name(format!(
        "{}-custom-networking",
        spec.state_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("vpcni-lab")
    ));
    spec.subnets.truncate(1);
    spec.custom_networking = true;
    spec.secondary_cidrs = vec![
        "100.64.0.0/16"
            .parse()
            .map_err(|e| LabError::Spec(format!("{e}")))?,
    ];
    spec.pod_subnets = vec![
        "100.64.0.0/24"
            .parse()
            .map_err(|e| LabError::Spec(format!("{e}")))?,
    ];
    shell(&format!(
        "vpcnictl lab up --nodes 1 --instance-type {} --custom-networking --secondary-cidr 100.64.0.0/16 \\\n    \
         --pod-subnet 100.64.0.0/24 --state {} --prefix {}",
        spec.instance_type,
        spec.state_dir.display(),
        spec.prefix
    ));
    // Lab::up rather than bring_up: the chapter says what matters here instead of the "try next" list.
    let mut lab = Lab::up(spec)?;
    say!(
        "The lab wrote one ENIConfig per zone and labelled the node topology.kubernetes.io/zone; ipamd reads\n\
         them from a directory (VPCNI_ENI_CONFIG_DIR) and creates its pod ENIs in the ENIConfig's subnet:"
    );
    shell("vpcnictl lab pods add --node node-1 --count 2");
    let pods = lab
        .add_pods("node-1", 2, Duration::from_secs(60))
        .map_err(pods_failed)?;
    let status = lab.status()?;
    say_raw!("{}", status.pods_table());
    for node in &status.nodes {
        for eni in &node.enis {
            say!(
                "  {} {} (device {}) is in {} ({}), ENIConfig {}",
                node.name,
                eni.id,
                eni.device_number,
                eni.subnet_id,
                eni.subnet_cidr.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                node.eni_config.as_deref().unwrap_or("-")
            );
        }
    }
    say!("The primary ENI (device 0) stays in the node's subnet and holds no pod address.");
    if let Some(pod) = pods.first() {
        let url = vpcni_lab::internet::service_url();
        shell(&format!("vpcnictl lab fetch {url}   (inside {})", pod.name));
        match lab.http_get(&pod.name, &url, Duration::from_secs(5))? {
            Ok(seen) => say!(
                "  the internet sees {} ({}) as {}: its node's public address",
                pod.name,
                pod.ip,
                seen.trim()
            ),
            Err(error) => say!("  asking the internet failed: {error}"),
        }
    }
    shell("vpcnictl lab down   (for this second lab)");
    lab.down()?;
    Ok(())
}

/// The articles' way out of IPv4 exhaustion: an IPv6 cluster. Each node holds one /80 on its primary ENI,
/// pods take VPC IPv6 addresses from it, and reach IPv4-only services through the node (the chained egress
/// plugin's 169.254.172.0/22 address, SNATed to the node's). With `own_lab`, a lab of its own (two
/// m5.xlarge nodes beside the first), taken down at the end; otherwise the lab at `spec.state_dir`.
fn ipv6_chapter(first: LabSpec, number: u32, own_lab: bool) -> Result<(), LabError> {
    step(
        number,
        "IPv6: a /80 per node, pods with VPC IPv6 addresses, IPv4 egress through the node",
    );
    let mut spec = first;
    let mut lab = if own_lab {
        spec.nodes = 2;
        spec.instance_type = "m5.xlarge".into();
        spec.prefix = format!("{}v6-", spec.prefix);
        spec.state_dir = spec.state_dir.with_file_name(format!(
            "{}-ipv6",
            spec.state_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("vpcni-lab")
        ));
        spec.subnets.truncate(1);
        spec.custom_networking = false;
        spec.pod_subnets.clear();
        spec.secondary_cidrs.clear();
        spec.ipv6 = true;
        spec.prefix_delegation = true;
        shell(&format!(
            "vpcnictl lab up --ipv6 --nodes 2 --instance-type m5.xlarge --state {} --prefix {}",
            spec.state_dir.display(),
            spec.prefix
        ));
        Lab::up(spec)?
    } else {
        match Lab::open(&spec.state_dir) {
            Ok(lab) => {
                say!("using the IPv6 lab already up in {}", spec.state_dir.display());
                lab
            }
            Err(LabError::NotUp(_)) => {
                shell(&format!(
                    "vpcnictl lab up --ipv6 --nodes {} --instance-type {}",
                    spec.nodes, spec.instance_type
                ));
                Lab::up(spec)?
            }
            Err(error) => return Err(error),
        }
    };
    let status = lab.status()?;
    say!(
        "The VPC has an IPv6 /56 ({}), each subnet a /64; ipamd runs with ENABLE_IPv6=true and holds one /80\n\
         on each node's primary ENI (no warm pool: a /80 is enough for any number of pods):",
        status
            .vpc_ipv6_cidr
            .map_or_else(|| "?".to_owned(), |c| c.to_string())
    );
    say_raw!("{}", status.nodes_table());
    let nodes: Vec<String> = lab.state().nodes.iter().map(|n| n.name.clone()).collect();
    let mut pods = Vec::new();
    for node in nodes.iter().take(2) {
        shell(&format!("vpcnictl lab pods add --node {node}"));
        pods.extend(
            lab.add_pods(node, 1, Duration::from_secs(60))
                .map_err(pods_failed)?,
        );
    }
    shell("vpcnictl lab status");
    say_raw!("{}", lab.status()?.pods_table());
    let Some(pod) = pods.first().cloned() else {
        return Ok(());
    };
    say!(
        "{} has its IPv6 address on eth0 (a /128, gateway fe80::1) and a second interface with its egress-only\n\
         IPv4 address:",
        pod.name
    );
    shell(&format!("vpcnictl lab exec {} -- ip -brief address", pod.name));
    lab.exec(&pod.name, &["ip".into(), "-brief".into(), "address".into()])?;
    if let (Some(other), Some(to)) = (pods.get(1), pods.get(1).and_then(|p| p.ipv6)) {
        let ping: Vec<String> = ["ping", "-c", "2", "-W", "2"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([to.to_string()])
            .collect();
        shell(&format!("vpcnictl lab exec {} -- {}", pod.name, ping.join(" ")));
        if vpcni_lab::find_tool("ping").is_some() {
            lab.exec(&pod.name, &ping)?;
        }
        say!(
            "The VPC router routes {}'s /80 to {}'s ENI:",
            other.node,
            other.node
        );
        shell(&format!("vpcnictl lab exec router -- ip -6 route get {to}"));
        lab.exec(
            "router",
            &[
                "ip".into(),
                "-6".into(),
                "route".into(),
                "get".into(),
                to.to_string(),
            ],
        )?;
    }
    let node = lab.node(&pod.node)?.clone();
    for (ipv6, url) in [
        (true, vpcni_lab::internet::service_url_v6()),
        (false, vpcni_lab::internet::service_url()),
    ] {
        shell(&format!("vpcnictl lab exec {} -- curl -s {url}", pod.name));
        let seen = lab
            .whoami(&pod.name, ipv6, Duration::from_secs(5))?
            .unwrap_or_else(|e| format!("failed: {e}"));
        let verdict = if ipv6 && Some(seen.as_str()) == pod.ipv6.map(|a| a.to_string()).as_deref() {
            "= the pod's own address: the VPC's /56 is public, no NAT".to_owned()
        } else if !ipv6 && seen == node.public_ip.to_string() {
            format!(
                "= {}'s public address: {} is SNATed to {}, then by the internet gateway",
                node.name,
                pod.egress_ipv4
                    .map_or_else(|| "the egress address".to_owned(), |a| a.to_string()),
                node.primary_ip
            )
        } else {
            "(not what the lab expects: see vpcnictl lab status)".to_owned()
        };
        say!("{seen:<24} {verdict}");
    }
    say!(
        "The egress address is for leaving only: {} rejects new connections to 169.254.172.0/22 arriving from elsewhere:",
        node.name
    );
    shell(&format!("vpcnictl lab exec {} -- iptables -S FORWARD", node.name));
    lab.exec(&node.name, &["iptables".into(), "-S".into(), "FORWARD".into()])?;
    if own_lab {
        shell("vpcnictl lab down   (for this IPv6 lab)");
        lab.down()?;
    }
    Ok(())
}

fn pods_failed(error: PodsError) -> LabError {
    LabError::Spec(format!("the demo could not create its pods: {error}"))
}
