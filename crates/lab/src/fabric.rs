//! The fabric: the process that is the VPC. It runs in the router namespace (`vpcnictl lab fabric`),
//! embeds the EC2 simulator endpoint (EC2 API on 169.254.169.254:8787, IMDSv2 on 169.254.169.254:80,
//! answering each node by its source address), and keeps the namespaces in step with the simulator:
//! an ENI EC2 reports attached appears in its node as `eth<device>` with the ENI's MAC, and every address
//! EC2 assigns to it is routed to it by the router; detached ENIs disappear.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use vpcni_ec2::sim::{SimConfig, Simulator};
use vpcni_ec2::{AddressRequest, AttachmentStatus, Tags};
use vpcni_ec2_endpoint::topology::{InstanceSpec, SubnetSpec, VpcSpec};
use vpcni_ec2_endpoint::{EndpointConfig, Topology};

use crate::LabError;
use crate::router::{self, EniLink};
use crate::spec::{EC2_PORT, LabSpec, METADATA_IP, Names, eni_links};
use crate::state::{
    Ec2Summary, FabricInstance, FabricReport, FaultSettings, LabState, PluggedEni, StatePaths,
};

/// How often the fabric compares the simulator with the namespaces.
const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// The VPC, subnets and instances of a lab, as a simulator topology.
pub fn topology(spec: &LabSpec) -> Topology {
    let mut subnets: Vec<SubnetSpec> = spec
        .subnets
        .iter()
        .enumerate()
        .map(|(i, cidr)| SubnetSpec {
            name: format!("subnet-{}", i + 1),
            cidr: *cidr,
            az: spec.zone(i),
            tags: Tags::new(),
            prefix_reservations: Vec::new(),
            ipv6_cidr: None,
            // IPv6 labs: subnet i gets the VPC /56's i-th /64.
            ipv6_index: spec.ipv6.then_some(i as u8),
        })
        .collect();
    // Custom networking: pod subnet i in node subnet i's zone.
    subnets.extend(spec.pod_subnets.iter().enumerate().map(|(i, cidr)| SubnetSpec {
        name: format!("pods-{}", i + 1),
        cidr: *cidr,
        az: spec.zone(i),
        tags: Tags::new(),
        prefix_reservations: Vec::new(),
        ipv6_cidr: None,
        ipv6_index: None,
    }));
    let instances = (1..=spec.nodes)
        .map(|index| InstanceSpec {
            name: crate::spec::node_name(index),
            instance_type: spec.instance_type.clone(),
            subnet: format!("subnet-{}", (index as usize - 1) % spec.subnets.len() + 1),
            primary_ip: spec.planned_primary_ip(index),
            default: index == 1,
        })
        .collect();
    Topology {
        vpc: VpcSpec {
            cidr: spec.vpc_cidr,
            secondary_cidrs: spec.secondary_cidrs.clone(),
            amazon_ipv6: spec.ipv6,
            ipv6_cidr: None,
            tags: Tags::new(),
        },
        subnets,
        instances,
        sim: SimConfig {
            attach_delay_ms: spec.attach_delay_ms,
            ..SimConfig::default()
        },
    }
}

/// Runs the fabric until SIGTERM or SIGINT. Called inside the router namespace.
pub fn run(state_dir: &Path) -> Result<(), LabError> {
    let paths = StatePaths::new(state_dir);
    let state = LabState::load(&paths)?.ok_or_else(|| LabError::NotUp(state_dir.to_owned()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LabError::Spec(format!("cannot start the fabric's runtime: {e}")))?;
    runtime.block_on(async {
        let handle = vpcni_ec2_endpoint::serve(EndpointConfig {
            ec2_listen: SocketAddr::from((METADATA_IP, EC2_PORT)),
            imds_listen: SocketAddr::from((METADATA_IP, 80)),
            topology: Some(topology(&state.spec)),
            sim: SimConfig::default(),
            state_dir: Some(paths.ec2_dir()),
        })
        .await
        .map_err(|e| LabError::Spec(format!("the EC2 simulator did not start: {e}")))?;
        tracing::info!(ec2 = %handle.ec2_url(), imds = %handle.imds_url(), "simulator serving");
        if state.spec.ipv6 {
            give_nodes_ipv6(&handle.sim, &paths)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sync = {
            let (sim, stop, paths) = (handle.sim.clone(), stop.clone(), paths.clone());
            std::thread::spawn(move || sync_loop(&sim, &state, &paths, &stop))
        };
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| LabError::Spec(format!("cannot watch SIGTERM: {e}")))?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        stop.store(true, Ordering::SeqCst);
        let _ = sync.join();
        handle.shutdown();
        Ok(())
    })
}

/// IPv6 labs: every node's primary ENI gets an IPv6 address from its subnet's /64, as an instance launched
/// with `Ipv6AddressCount=1` (an EKS IPv6 node) has. Done before any ipamd runs (the fabric is not ready
/// yet), through the simulator's own account, so the saved account is rewritten here; a restarted fabric
/// finds the addresses already there.
fn give_nodes_ipv6(sim: &Simulator, paths: &StatePaths) -> Result<(), LabError> {
    let result = sim.admin(|account, now| {
        let primaries: Vec<String> = account
            .instances
            .values()
            .filter(|i| i.state == "running")
            .map(|i| i.primary_eni.clone())
            .collect();
        for eni_id in primaries {
            let has_one = account
                .enis
                .get(&eni_id)
                .is_some_and(|e| !e.ipv6_addresses.is_empty());
            if !has_one {
                account.assign_ipv6_addresses(&eni_id, &AddressRequest::Count(1), now)?;
            }
        }
        Ok::<(), vpcni_ec2::Ec2Error>(())
    });
    result.map_err(|e| LabError::Spec(format!("cannot give the nodes IPv6 addresses: {e}")))?;
    let path = paths.ec2_state_file();
    let text = serde_json::to_vec(&sim.snapshot())
        .map_err(|e| LabError::Spec(format!("cannot save the simulator's account: {e}")))?;
    let temp = path.with_extension("json.fabric-tmp");
    std::fs::write(&temp, text).map_err(LabError::io(&temp))?;
    std::fs::rename(&temp, &path).map_err(LabError::io(&path))
}

/// One plugged ENI as the sync loop remembers it.
#[derive(Debug, Clone)]
struct Plugged {
    eni_id: String,
    link: EniLink,
    card: u32,
    device: u32,
    routed: BTreeSet<IpNet>,
}

/// One ENI as EC2 has it attached now.
#[derive(Debug, Clone)]
struct Attached {
    node: usize,
    eni_id: String,
    mac: String,
    card: u32,
    device: u32,
    primary_ip: Ipv4Addr,
    /// The ENI's first IPv6 address (a node's primary IPv6 address on its primary ENI).
    ipv6: Option<Ipv6Addr>,
    addresses: BTreeSet<IpNet>,
}

/// What the sync loop learns from the simulator in one pass.
struct Observed {
    instances: Vec<FabricInstance>,
    vpc_id: String,
    vpc_ipv6_cidr: Option<Ipv6Net>,
    attached: Vec<Attached>,
}

fn attached_enis(sim: &Simulator, state: &LabState) -> Observed {
    let mut instances = Vec::new();
    let mut vpc_id = String::new();
    let mut attached = Vec::new();
    for instance in sim.instances() {
        let Some(name) = instance.tags.get("Name") else {
            continue;
        };
        let Some(node) = state.nodes.iter().position(|n| &n.name == name) else {
            continue;
        };
        if instance.state != "running" {
            continue;
        }
        vpc_id.clone_from(&instance.vpc_id);
        let primary_ipv6 = instance
            .network_interfaces
            .iter()
            .find(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.device_index == 0 && a.network_card_index == 0)
            })
            .and_then(|e| e.ipv6_addresses.first().copied());
        instances.push(FabricInstance {
            name: name.clone(),
            instance_id: instance.instance_id.clone(),
            primary_ip: instance.private_ip,
            ipv6: primary_ipv6,
        });
        for eni in &instance.network_interfaces {
            let Some(attachment) = &eni.attachment else {
                continue;
            };
            if attachment.status != AttachmentStatus::Attached
                || attachment.instance_id != instance.instance_id
            {
                continue;
            }
            let mut addresses: BTreeSet<IpNet> = eni
                .secondary_ips
                .iter()
                .map(|ip| IpNet::V4(Ipv4Net::from(*ip)))
                .collect();
            addresses.extend(eni.ipv4_prefixes.iter().map(|p| IpNet::V4(*p)));
            if state.spec.ipv6 {
                addresses.extend(eni.ipv6_addresses.iter().map(|ip| IpNet::V6(Ipv6Net::from(*ip))));
                addresses.extend(eni.ipv6_prefixes.iter().map(|p| IpNet::V6(*p)));
            }
            attached.push(Attached {
                node,
                eni_id: eni.network_interface_id.clone(),
                mac: eni.mac_address.clone(),
                card: attachment.network_card_index,
                device: attachment.device_index,
                primary_ip: eni.private_ip,
                ipv6: eni.ipv6_addresses.first().copied(),
                addresses,
            });
        }
    }
    let vpc_ipv6_cidr = if vpc_id.is_empty() {
        None
    } else {
        sim.vpc_ipv6_cidr(&vpc_id)
    };
    Observed {
        instances,
        vpc_id,
        vpc_ipv6_cidr,
        attached,
    }
}

fn sync_loop(sim: &Simulator, state: &LabState, paths: &StatePaths, stop: &AtomicBool) {
    let names = Names::new(&state.spec.prefix);
    let router_ns = names.router();
    let mut plugged: BTreeMap<(usize, u32, u32), Plugged> = BTreeMap::new();
    let mut last_report = FabricReport::default();
    let mut faults_applied: Option<FaultSettings> = None;
    while !stop.load(Ordering::SeqCst) {
        apply_fault_settings(sim, paths, &mut faults_applied);
        let Observed {
            instances,
            vpc_id,
            vpc_ipv6_cidr,
            attached,
        } = attached_enis(sim, state);
        let mut errors = Vec::new();
        let wanted: BTreeMap<(usize, u32, u32), &Attached> =
            attached.iter().map(|a| ((a.node, a.card, a.device), a)).collect();

        let gone: Vec<(usize, u32, u32)> = plugged
            .iter()
            .filter(|(key, p)| wanted.get(key).is_none_or(|a| a.eni_id != p.eni_id))
            .map(|(key, _)| *key)
            .collect();
        for key in gone {
            if let Some(old) = plugged.remove(&key) {
                match router::unplug(&router_ns, &old.link.router_link) {
                    Ok(()) => {
                        tracing::info!(node = %state.nodes[key.0].name, eni = %old.eni_id, link = %old.link.node_link, "unplugged")
                    }
                    Err(error) => {
                        errors.push(error.to_string());
                        plugged.insert(key, old);
                    }
                }
            }
        }
        for (key, eni) in &wanted {
            if !plugged.contains_key(key) {
                match plug(state, &router_ns, eni) {
                    Ok(entry) => {
                        tracing::info!(node = %state.nodes[eni.node].name, eni = %eni.eni_id, mac = %eni.mac, link = %entry.link.node_link, "plugged");
                        plugged.insert(*key, entry);
                    }
                    Err(error) => {
                        errors.push(error.to_string());
                        continue;
                    }
                }
            }
            let Some(entry) = plugged.get_mut(key) else {
                continue;
            };
            let add: Vec<IpNet> = eni.addresses.difference(&entry.routed).copied().collect();
            let remove: Vec<IpNet> = entry.routed.difference(&eni.addresses).copied().collect();
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            match router::reroute(&router_ns, &entry.link, &add, &remove) {
                Ok(()) => {
                    tracing::debug!(eni = %eni.eni_id, added = add.len(), removed = remove.len(), "routes");
                    entry.routed.clone_from(&eni.addresses);
                }
                Err(error) => errors.push(error.to_string()),
            }
        }

        let ready = (0..state.nodes.len()).all(|n| plugged.contains_key(&(n, 0, 0)));
        let report = FabricReport {
            pid: std::process::id(),
            vpc_id,
            vpc_ipv6_cidr,
            instances,
            ready,
            plugged: plugged
                .values()
                .map(|p| PluggedEni {
                    node: p
                        .link
                        .node_netns
                        .strip_prefix(&state.spec.prefix)
                        .unwrap_or_default()
                        .to_owned(),
                    eni_id: p.eni_id.clone(),
                    mac: p.link.mac.clone(),
                    card: p.card,
                    device: p.device,
                    router_link: p.link.router_link.clone(),
                    node_link: p.link.node_link.clone(),
                    primary_ip: p.link.primary_ip,
                    routed: p
                        .routed
                        .iter()
                        .filter_map(|net| match net {
                            IpNet::V4(net) => Some(*net),
                            IpNet::V6(_) => None,
                        })
                        .collect(),
                    routed_v6: p
                        .routed
                        .iter()
                        .filter_map(|net| match net {
                            IpNet::V6(net) => Some(*net),
                            IpNet::V4(_) => None,
                        })
                        .collect(),
                })
                .collect(),
            last_error: (!errors.is_empty()).then(|| errors.join("; ")),
            ec2: ec2_summary(sim),
        };
        for error in &errors {
            tracing::warn!("sync: {error}");
        }
        if report != last_report {
            if let Err(error) = report.save(paths) {
                tracing::warn!("cannot write the fabric report: {error}");
            }
            last_report = report;
        }
        std::thread::sleep(SYNC_INTERVAL);
    }
}

/// Applies `ec2-faults.json` when it changed; a missing file leaves the simulator as it is.
fn apply_fault_settings(sim: &Simulator, paths: &StatePaths, applied: &mut Option<FaultSettings>) {
    match FaultSettings::load(paths) {
        Ok(Some(settings)) if applied.as_ref() != Some(&settings) => {
            tracing::info!(
                faults = settings.faults.len(),
                throttle = settings.throttle.enabled,
                "EC2 fault settings"
            );
            let (faults, throttle) = (settings.faults.clone(), settings.throttle.clone());
            sim.configure(move |config| {
                config.faults = faults;
                config.throttle = throttle;
            });
            *applied = Some(settings);
        }
        Ok(_) => {}
        Err(error) => tracing::warn!("ignoring {}: {error}", paths.ec2_faults_file().display()),
    }
}

/// Calls, errors and unattached ENIs, from the simulator.
fn ec2_summary(sim: &Simulator) -> Ec2Summary {
    let counters = sim.counters();
    let account = sim.snapshot();
    Ec2Summary {
        calls: counters.total_calls(),
        errors: counters.errors,
        injected: counters.injected,
        unattached_enis: account
            .enis
            .values()
            .filter(|e| e.attachment.is_none() && e.description.starts_with("aws-K8S-"))
            .map(|e| e.id.clone())
            .collect(),
    }
}

fn plug(state: &LabState, router_ns: &str, eni: &Attached) -> Result<Plugged, LabError> {
    let node = &state.nodes[eni.node];
    let (router_link, node_link) = eni_links(node.index, eni.card, eni.device);
    let link = EniLink {
        node_netns: node.netns.clone(),
        router_link,
        node_link,
        mac: eni.mac.clone(),
        primary_ip: eni.primary_ip,
        link_local: if state.spec.ipv6 {
            router::eui64_link_local(&eni.mac)
        } else {
            None
        },
    };
    router::plug(router_ns, &link)?;
    if eni.card == 0 && eni.device == 0 {
        let ipv6 = if state.spec.ipv6 { eni.ipv6 } else { None };
        router::configure_primary(&node.netns, &link.node_link, eni.primary_ip, node.subnet, ipv6)?;
    }
    Ok(Plugged {
        eni_id: eni.eni_id.clone(),
        link,
        card: eni.card,
        device: eni.device,
        routed: BTreeSet::new(),
    })
}
