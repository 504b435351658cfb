//! The node-wide policy rules ipamd keeps (docs/node-layout.md, "Policy rules"): `fwmark <mark>/<mark> lookup main` at
//! priority 1024, so connections marked by the CONNMARK rules (NodePort traffic, pod traffic leaving the
//! VPC) reply through the primary ENI, and `to <cidr> lookup main` at 1535 for every
//! AWS_EXTERNAL_SERVICE_CIDRS entry. Rules at those priorities that the settings do not want are removed.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use crate::DataplaneError;
use crate::eni::rule_table;
use crate::netlink::{connect, netlink_error};
use crate::netlink::{delete_rule, rules_at};
use vpcni_layout::MAIN_TABLE;
use vpcni_layout::priority::{
    EXTERNAL_SERVICE as EXTERNAL_SERVICE_RULE_PRIORITY, FWMARK as FWMARK_RULE_PRIORITY,
};

/// The node rules wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRules {
    /// The connmark to route by; `None` when neither node-port support nor on-node SNAT wants it.
    pub fwmark: Option<u32>,
    /// AWS_EXTERNAL_SERVICE_CIDRS.
    pub external_service_cidrs: Vec<Ipv4Net>,
}

fn fwmark_of(rule: &RuleMessage) -> (Option<u32>, Option<u32>) {
    let mut mark = None;
    let mut mask = None;
    for attribute in &rule.attributes {
        match attribute {
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            _ => {}
        }
    }
    (mark, mask)
}

fn destination_of(rule: &RuleMessage) -> Option<Ipv4Net> {
    rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::Destination(IpAddr::V4(ip)) => Ipv4Net::new(*ip, rule.header.dst_len).ok(),
        _ => None,
    })
}

/// Brings the rules at 1024 and 1535 to what `wanted` says; returns how many rules were added or removed.
pub async fn program_node_rules(wanted: &NodeRules) -> Result<usize, DataplaneError> {
    let handle = connect()?;
    let mut changes = 0;

    let mut fwmark_present = false;
    for rule in rules_at(&handle, FWMARK_RULE_PRIORITY).await? {
        let good = wanted
            .fwmark
            .is_some_and(|m| fwmark_of(&rule) == (Some(m), Some(m)))
            && rule_table(&rule) == MAIN_TABLE
            && !fwmark_present;
        if good {
            fwmark_present = true;
        } else {
            delete_rule(&handle, rule, "removing a stale fwmark rule").await?;
            changes += 1;
        }
    }
    if let (Some(mark), false) = (wanted.fwmark, fwmark_present) {
        let mut request = handle
            .rule()
            .add()
            .v4()
            .fw_mark(mark)
            .table_id(MAIN_TABLE)
            .priority(FWMARK_RULE_PRIORITY)
            .action(RuleAction::ToTable);
        request.message_mut().attributes.push(RuleAttribute::FwMask(mark));
        request.execute().await.map_err(netlink_error(format!(
            "adding 'fwmark {mark:#x}/{mark:#x} lookup main'"
        )))?;
        changes += 1;
    }

    let mut present: Vec<Ipv4Net> = Vec::new();
    for rule in rules_at(&handle, EXTERNAL_SERVICE_RULE_PRIORITY).await? {
        let destination = destination_of(&rule);
        let good = destination
            .is_some_and(|d| wanted.external_service_cidrs.contains(&d) && !present.contains(&d))
            && rule_table(&rule) == MAIN_TABLE;
        if let (true, Some(d)) = (good, destination) {
            present.push(d);
        } else {
            delete_rule(&handle, rule, "removing a stale external-service rule").await?;
            changes += 1;
        }
    }
    for cidr in &wanted.external_service_cidrs {
        if present.contains(cidr) {
            continue;
        }
        present.push(*cidr);
        handle
            .rule()
            .add()
            .v4()
            .destination_prefix(cidr.network(), cidr.prefix_len())
            .table_id(MAIN_TABLE)
            .priority(EXTERNAL_SERVICE_RULE_PRIORITY)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(netlink_error(format!("adding 'to {cidr} lookup main'")))?;
        changes += 1;
    }
    Ok(changes)
}
