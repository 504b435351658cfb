//! Instance metadata of one simulated instance, lagging behind EC2 by the configured delay, as the real
//! service can (the original's stale-metadata bugs come from exactly this).

use std::net::Ipv4Addr;

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};

use super::Simulator;
use crate::{Ec2Error, Imds, ImdsInterface};

/// Instance metadata as one instance sees it.
#[derive(Debug, Clone)]
pub struct SimImds {
    sim: Simulator,
    instance_id: String,
}

impl SimImds {
    pub(super) fn new(sim: Simulator, instance_id: &str) -> Self {
        Self {
            sim,
            instance_id: instance_id.to_owned(),
        }
    }

    /// The instance this view belongs to.
    pub fn instance(&self) -> &str {
        &self.instance_id
    }

    fn with_instance<T>(
        &self,
        read: impl FnOnce(&super::AccountState, &super::state::InstanceRecord, u64, u64) -> Result<T, Ec2Error>,
    ) -> Result<T, Ec2Error> {
        let now = self.sim.now_ms();
        let inner = self.sim.lock();
        let instance = inner
            .account
            .instances
            .get(&self.instance_id)
            .filter(|i| i.state == "running")
            .ok_or_else(|| Ec2Error::new("NotFound", format!("no running instance {}", self.instance_id)))?;
        read(&inner.account, instance, now, inner.config.imds_lag_ms)
    }

    fn not_found(path: &str) -> Ec2Error {
        Ec2Error::new("NotFound", format!("metadata path {path} not found"))
    }
}

#[async_trait]
impl Imds for SimImds {
    async fn instance_id(&self) -> Result<String, Ec2Error> {
        self.with_instance(|_, instance, _, _| Ok(instance.id.clone()))
    }

    async fn instance_type(&self) -> Result<String, Ec2Error> {
        self.with_instance(|_, instance, _, _| Ok(instance.instance_type.clone()))
    }

    async fn region(&self) -> Result<String, Ec2Error> {
        self.with_instance(|account, _, _, _| Ok(account.region.clone()))
    }

    async fn availability_zone(&self) -> Result<String, Ec2Error> {
        self.with_instance(|account, instance, _, _| {
            Ok(account.subnets[&instance.subnet_id].availability_zone.clone())
        })
    }

    async fn local_ipv4(&self) -> Result<Ipv4Addr, Ec2Error> {
        self.with_instance(|account, instance, _, _| {
            account
                .enis
                .get(&instance.primary_eni)
                .map(|e| e.primary_ip)
                .ok_or_else(|| Self::not_found("local-ipv4"))
        })
    }

    async fn primary_mac(&self) -> Result<String, Ec2Error> {
        self.with_instance(|account, instance, _, _| {
            account
                .enis
                .get(&instance.primary_eni)
                .map(|e| e.mac.clone())
                .ok_or_else(|| Self::not_found("mac"))
        })
    }

    async fn macs(&self) -> Result<Vec<String>, Ec2Error> {
        self.with_instance(|account, instance, now, lag| {
            let mut listed: Vec<(u32, u32, String)> = account
                .attached_enis(&instance.id)
                .filter_map(|e| {
                    let a = e.attachment.as_ref()?;
                    attachment_visible(a, now, lag).then(|| (a.network_card, a.device_index, e.mac.clone()))
                })
                .collect();
            // Detached within the lag: still listed.
            for (eni, attachment) in departed(account, &instance.id, now, lag) {
                if !listed.iter().any(|(_, _, mac)| *mac == eni.mac) {
                    listed.push((attachment.network_card, attachment.device_index, eni.mac.clone()));
                }
            }
            listed.sort();
            Ok(listed.into_iter().map(|(_, _, mac)| mac).collect())
        })
    }

    async fn interface(&self, mac: &str) -> Result<ImdsInterface, Ec2Error> {
        self.with_instance(|account, instance, now, lag| {
            let path = format!("network/interfaces/macs/{mac}/");
            let attached = account
                .attached_enis(&instance.id)
                .filter(|e| e.mac.eq_ignore_ascii_case(mac))
                .find_map(|e| {
                    let a = e.attachment.as_ref()?;
                    attachment_visible(a, now, lag).then_some((e, a))
                });
            let (eni, attachment) = attached
                .or_else(|| {
                    departed(account, &instance.id, now, lag)
                        .filter(|(e, _)| e.mac.eq_ignore_ascii_case(mac))
                        .last()
                })
                .ok_or_else(|| Self::not_found(&path))?;
            Ok(describe(account, eni, attachment, now, lag))
        })
    }
}

/// ENIs detached from the instance less than `lag` ago, as they were then.
fn departed<'a>(
    account: &'a super::AccountState,
    instance_id: &'a str,
    now: u64,
    lag: u64,
) -> impl Iterator<Item = (&'a super::state::EniRecord, &'a super::state::AttachmentRecord)> + 'a {
    account.departed.iter().filter_map(move |d| {
        let attachment = d.eni.attachment.as_ref()?;
        (attachment.instance_id == instance_id && now < d.detached_ms.saturating_add(lag))
            .then_some((&d.eni, attachment))
    })
}

/// What metadata says about one ENI: addresses assigned within the lag are not shown yet, ones removed
/// within it still are.
fn describe(
    account: &super::AccountState,
    eni: &super::state::EniRecord,
    attachment: &super::state::AttachmentRecord,
    now: u64,
    lag: u64,
) -> ImdsInterface {
    let visible = |since: u64| now >= since.saturating_add(lag);
    let lingering = |net: &Ipv4Net| eni.removed.iter().any(|(n, at)| n == net && !visible(*at));
    let mut local_ipv4s = vec![eni.primary_ip];
    local_ipv4s.extend(
        eni.secondary
            .iter()
            .filter(|(_, at)| visible(**at))
            .map(|(ip, _)| *ip),
    );
    local_ipv4s.extend(
        eni.removed
            .iter()
            .filter(|(n, _)| n.prefix_len() == 32 && lingering(n))
            .map(|(n, _)| n.addr()),
    );
    let mut ipv4_prefixes: Vec<Ipv4Net> = eni
        .prefixes
        .iter()
        .filter(|(_, at)| visible(**at))
        .map(|(p, _)| *p)
        .collect();
    ipv4_prefixes.extend(
        eni.removed
            .iter()
            .filter(|(n, _)| n.prefix_len() < 32 && lingering(n))
            .map(|(n, _)| *n),
    );
    let lingering_ipv6 = |single: bool| {
        eni.removed_ipv6
            .iter()
            .filter(move |(n, at)| (n.prefix_len() == 128) == single && !visible(*at))
            .map(|(n, _)| *n)
    };
    let mut ipv6s: Vec<_> = eni
        .ipv6_addresses
        .iter()
        .filter(|(_, at)| visible(**at))
        .map(|(ip, _)| *ip)
        .collect();
    for gone in lingering_ipv6(true).map(|n| n.addr()) {
        if !ipv6s.contains(&gone) {
            ipv6s.push(gone);
        }
    }
    let mut ipv6_prefixes: Vec<Ipv6Net> = eni
        .ipv6_prefixes
        .iter()
        .filter(|(_, at)| visible(**at))
        .map(|(p, _)| *p)
        .collect();
    for gone in lingering_ipv6(false) {
        if !ipv6_prefixes.contains(&gone) {
            ipv6_prefixes.push(gone);
        }
    }
    let subnet = account.subnets.get(&eni.subnet_id);
    let vpc = subnet.and_then(|subnet| account.vpcs.get(&subnet.vpc_id));
    ImdsInterface {
        mac: eni.mac.clone(),
        device_number: attachment.device_index,
        network_card: attachment.network_card,
        interface_id: eni.id.clone(),
        subnet_id: eni.subnet_id.clone(),
        subnet_ipv4_cidr_block: subnet
            .map_or_else(|| Ipv4Net::from(eni.primary_ip), |subnet| subnet.addresses.cidr()),
        local_ipv4s,
        ipv4_prefixes,
        vpc_ipv4_cidr_blocks: vpc.map(|v| v.cidrs.clone()).unwrap_or_default(),
        ipv6s,
        ipv6_prefixes,
        subnet_ipv6_cidr_blocks: subnet
            .and_then(|subnet| subnet.ipv6.as_ref())
            .map(|block| block.cidr())
            .into_iter()
            .collect(),
        vpc_ipv6_cidr_blocks: vpc.and_then(|v| v.ipv6_cidr).into_iter().collect(),
        security_group_ids: eni.security_groups.clone(),
    }
}

/// The primary ENI is there from boot; other attachments appear once metadata catches up.
fn attachment_visible(attachment: &super::state::AttachmentRecord, now: u64, lag: u64) -> bool {
    (attachment.device_index == 0 && attachment.network_card == 0)
        || now >= attachment.attached_ms.saturating_add(lag)
}
