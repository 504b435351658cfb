//! The egress plugin's rules (the original's `egress-cni`): one SNAT chain per pod in the nat table, entered
//! from `POSTROUTING` for the pod's egress address, and the node's filter rule that refuses new connections
//! to egress addresses. IPv4 egress (IPv6 pods) through `iptables`, IPv6 egress (IPv4 pods) through
//! `ip6tables`, whichever backend they are (nf_tables or legacy).
//!
//! A pod's chain is (re)written in one `iptables-restore --noflush` transaction, so a repeated ADD never
//! leaves the pod without SNAT, and the jump from `POSTROUTING` is added only when it is missing. DEL finds
//! the jumps by the chain's name (it needs neither the pod's namespace nor its address) and removes them,
//! then the chain.
//!
//! Runs in the calling thread's network namespace (child processes inherit it).

use std::net::IpAddr;

use sha2::{Digest, Sha512};
use vpcni_layout::egress::{
    CHAIN_LENGTH, CHAIN_PREFIX, V4_MULTICAST, V4_RANGE, V4_RANGE_PREFIX, V4_REJECT_COMMENT, V6_MULTICAST,
    V6_RANGE, V6_RANGE_PREFIX, V6_REJECT_COMMENT,
};

use super::{LOCK_WAIT_SECONDS, SnatPorts, run, supports_random_fully};
use crate::DataplaneError;

/// Which egress: IPv4 addresses for IPv6 pods, or IPv6 addresses for IPv4 pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressFamily {
    /// IPv4 egress (`iptables`, 169.254.172.0/22).
    V4,
    /// IPv6 egress (`ip6tables`, fd00::ac:00/118).
    V6,
}

impl EgressFamily {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    fn tool(self) -> &'static str {
        match self {
            Self::V4 => "iptables",
            Self::V6 => "ip6tables",
        }
    }

    fn multicast(self) -> &'static str {
        match self {
            Self::V4 => V4_MULTICAST,
            Self::V6 => V6_MULTICAST,
        }
    }

    fn host_prefix(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    /// The egress range, in the form `iptables-save` prints it.
    pub fn range(self) -> String {
        match self {
            Self::V4 => format!("{V4_RANGE}/{V4_RANGE_PREFIX}"),
            Self::V6 => format!("{V6_RANGE}/{V6_RANGE_PREFIX}"),
        }
    }

    fn reject_comment(self) -> &'static str {
        match self {
            Self::V4 => V4_REJECT_COMMENT,
            Self::V6 => V6_REJECT_COMMENT,
        }
    }
}

/// A pod's SNAT chain: `CNI-` + the family's infix (`E4-`/`E6-`) + sha512(network + container id) in hex,
/// cut to 28 characters, as containernetworking names chains (so the original's chains have these names).
pub fn chain_name(infix: &str, network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("{CHAIN_PREFIX}{infix}{hex}");
    name.truncate(CHAIN_LENGTH);
    name
}

/// The comment on a pod's rules, as containernetworking writes it: `name: "<network>" id: "<container>"`.
pub fn chain_comment(network: &str, container_id: &str) -> String {
    format!("name: {network:?} id: {container_id:?}")
}

/// One pod's SNAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSnat {
    /// The pod's chain ([`chain_name`]).
    pub chain: String,
    /// The rules' comment ([`chain_comment`]).
    pub comment: String,
    /// The pod's egress address.
    pub source: IpAddr,
    /// The node's address the pod's traffic leaves with (same family as `source`).
    pub node_ip: IpAddr,
    /// How SNAT picks ports (the plugin's `randomizeSNAT`).
    pub ports: SnatPorts,
}

/// Quotes a word for `iptables-restore` (which reads what `iptables-save` prints: `"…"` with `\"`).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The rules of a pod's chain, as `-A` lines for `iptables-restore`: multicast is accepted as is, the rest
/// is SNATed to the node's address.
fn chain_rules(snat: &EgressSnat, ports: SnatPorts) -> Vec<String> {
    let family = EgressFamily::of(snat.source);
    let comment = quoted(&snat.comment);
    let chain = &snat.chain;
    let ports = match ports {
        SnatPorts::RandomFully => " --random-fully",
        SnatPorts::Random => " --random",
        SnatPorts::Sequential => "",
    };
    vec![
        format!(
            "-A {chain} -d {} -m comment --comment {comment} -j ACCEPT",
            family.multicast()
        ),
        format!(
            "-A {chain} -m comment --comment {comment} -j SNAT --to-source {}{ports}",
            snat.node_ip
        ),
    ]
}

/// The arguments of the `POSTROUTING` jump for a pod's address.
fn jump_args(family: EgressFamily, source: &str, chain: &str, comment: &str) -> Vec<String> {
    let source = if source.contains('/') {
        source.to_owned()
    } else {
        format!("{source}/{}", family.host_prefix())
    };
    ["-s", &source, "-m", "comment", "--comment", comment, "-j", chain]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn iptables(family: EgressFamily, table: &str, args: &[String]) -> Result<String, DataplaneError> {
    let mut all: Vec<&str> = vec!["-w", LOCK_WAIT_SECONDS, "-t", table];
    all.extend(args.iter().map(String::as_str));
    run(family.tool(), &all, None)
}

/// Whether a rule is there (`-C`): its exit status says so; an error naming something else is an error.
fn exists(family: EgressFamily, table: &str, chain: &str, rule: &[String]) -> Result<bool, DataplaneError> {
    let mut args = vec!["-C".to_owned(), chain.to_owned()];
    args.extend(rule.iter().cloned());
    match iptables(family, table, &args) {
        Ok(_) => Ok(true),
        Err(DataplaneError::System(message))
            if message.contains("does a matching rule exist")
                || message.contains("No chain/target/match by that name")
                || message.contains("does not exist") =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// The lines of `-S <chain>` in `table` (empty when the chain does not exist).
fn list(family: EgressFamily, table: &str, chain: Option<&str>) -> Result<Vec<String>, DataplaneError> {
    let mut args = vec!["-S".to_owned()];
    args.extend(chain.map(str::to_owned));
    match iptables(family, table, &args) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(DataplaneError::System(message))
            if chain.is_some()
                && (message.contains("No chain/target/match by that name")
                    || message.contains("does not exist")) =>
        {
            Ok(Vec::new())
        }
        Err(error) => Err(error),
    }
}

/// Writes a pod's chain (replacing what it held) and adds the jump to it from `POSTROUTING` if missing.
/// `--random-fully` falls back to `--random` on an iptables that does not know it, as the original.
pub fn add_snat(snat: &EgressSnat) -> Result<(), DataplaneError> {
    let family = EgressFamily::of(snat.source);
    if EgressFamily::of(snat.node_ip) != family {
        return Err(DataplaneError::System(format!(
            "cannot SNAT {} to {}: not the same address family",
            snat.source, snat.node_ip
        )));
    }
    let mut ports = snat.ports;
    if ports == SnatPorts::RandomFully && !supports_random_fully(&run(family.tool(), &["--version"], None)?) {
        tracing::warn!(
            "this {} does not know --random-fully; using --random",
            family.tool()
        );
        ports = SnatPorts::Random;
    }
    let jump = jump_args(family, &snat.source.to_string(), &snat.chain, &snat.comment);
    let mut input = format!("*nat\n:{} - [0:0]\n", snat.chain);
    for rule in chain_rules(snat, ports) {
        input.push_str(&rule);
        input.push('\n');
    }
    if !exists(family, "nat", "POSTROUTING", &jump)? {
        let source = &jump[1];
        input.push_str(&format!(
            "-A POSTROUTING -s {source} -m comment --comment {} -j {}\n",
            quoted(&snat.comment),
            snat.chain
        ));
    }
    input.push_str("COMMIT\n");
    tracing::debug!(tool = family.tool(), "restore --noflush:\n{input}");
    let restore = format!("{}-restore", family.tool());
    run(&restore, &["-w", LOCK_WAIT_SECONDS, "--noflush"], Some(&input))?;
    Ok(())
}

/// The source address of a `POSTROUTING` rule as `-S` prints it, when the rule jumps to `chain`.
fn jump_source<'a>(line: &'a str, chain: &str) -> Option<&'a str> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let jumps = words.windows(2).any(|w| w[0] == "-j" && w[1] == chain);
    if !jumps {
        return None;
    }
    words.windows(2).find(|w| w[0] == "-s").map(|w| w[1])
}

/// Removes a pod's jumps from `POSTROUTING` and its chain; returns whether anything was there. What is
/// already gone is fine (DEL may come twice).
pub fn remove_snat(family: EgressFamily, chain: &str, comment: &str) -> Result<bool, DataplaneError> {
    let mut removed = false;
    for line in list(family, "nat", Some("POSTROUTING"))? {
        if let Some(source) = jump_source(&line, chain) {
            let mut args = vec!["-D".to_owned(), "POSTROUTING".to_owned()];
            args.extend(jump_args(family, source, chain, comment));
            iptables(family, "nat", &args)?;
            removed = true;
        }
    }
    let declared = format!("-N {chain}");
    if list(family, "nat", None)?.contains(&declared) {
        iptables(family, "nat", &["-F".to_owned(), chain.to_owned()])?;
        iptables(family, "nat", &["-X".to_owned(), chain.to_owned()])?;
        removed = true;
    }
    Ok(removed)
}

/// The arguments of the reject rule (filter `FORWARD`).
fn reject_rule(family: EgressFamily) -> Vec<String> {
    [
        "-d",
        &family.range(),
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        family.reject_comment(),
        "-j",
        "REJECT",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Makes sure the node refuses new connections to the egress range from anywhere but the pod itself:
/// `FORWARD -d <range> -m conntrack --ctstate NEW -j REJECT`, first in the chain, as the original's ipamd
/// inserts it. Returns whether it had to be added.
pub fn ensure_reject(family: EgressFamily) -> Result<bool, DataplaneError> {
    let rule = reject_rule(family);
    if exists(family, "filter", "FORWARD", &rule)? {
        return Ok(false);
    }
    let mut args = vec!["-I".to_owned(), "FORWARD".to_owned(), "1".to_owned()];
    args.extend(rule);
    iptables(family, "filter", &args)?;
    Ok(true)
}

/// Removes the reject rule (every copy); returns how many there were.
pub fn remove_reject(family: EgressFamily) -> Result<usize, DataplaneError> {
    let rule = reject_rule(family);
    let mut count = 0;
    while exists(family, "filter", "FORWARD", &rule)? {
        let mut args = vec!["-D".to_owned(), "FORWARD".to_owned()];
        args.extend(rule.iter().cloned());
        iptables(family, "filter", &args)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containernetworking's names, computed outside this code (`printf %s vpcnictr-1 | sha512sum` starts
    /// 0dbbc6b5ee1844f67ec9f): the prefix and the digest, cut to 28 characters.
    #[test]
    fn chain_names_are_containernetworkings() {
        let name = chain_name("E4-", "vpcni", "ctr-1");
        assert_eq!(name, "CNI-E4-0dbbc6b5ee1844f67ec9f");
        assert_eq!(
            chain_name("E6-", "aws-cni", "abc"),
            "CNI-E6-bace7da15479ea5a56cb0"
        );
        assert!(name.starts_with("CNI-E4-"), "{name}");
        assert_ne!(name, chain_name("E4-", "vpcni", "ctr-2"));
        assert_ne!(name, chain_name("E4-", "aws-cni", "ctr-1"));
        assert!(chain_name("E6-", "vpcni", "ctr-1").starts_with("CNI-E6-"));
        assert_eq!(chain_comment("aws-cni", "abc"), "name: \"aws-cni\" id: \"abc\"");
    }

    #[test]
    fn chain_rules_are_the_originals() {
        let snat = EgressSnat {
            chain: "CNI-E4-x".into(),
            comment: "name: \"vpcni\" id: \"c\"".into(),
            source: IpAddr::from([169, 254, 172, 2]),
            node_ip: IpAddr::from([10, 0, 0, 5]),
            ports: SnatPorts::RandomFully,
        };
        assert_eq!(
            chain_rules(&snat, SnatPorts::RandomFully),
            [
                "-A CNI-E4-x -d 224.0.0.0/4 -m comment --comment \"name: \\\"vpcni\\\" id: \\\"c\\\"\" -j ACCEPT",
                "-A CNI-E4-x -m comment --comment \"name: \\\"vpcni\\\" id: \\\"c\\\"\" -j SNAT --to-source 10.0.0.5 --random-fully",
            ]
        );
        assert!(chain_rules(&snat, SnatPorts::Sequential)[1].ends_with("10.0.0.5"));
        assert!(chain_rules(&snat, SnatPorts::Random)[1].ends_with(" --random"));
    }

    #[test]
    fn jump_sources_are_read_from_save_output() {
        let line = "-A POSTROUTING -s 169.254.172.2/32 -m comment --comment \"name: \\\"vpcni\\\" id: \\\"c\\\"\" -j CNI-E4-abc";
        assert_eq!(jump_source(line, "CNI-E4-abc"), Some("169.254.172.2/32"));
        assert_eq!(jump_source(line, "CNI-E4-abd"), None);
        assert_eq!(EgressFamily::V6.range(), "fd00::ac:0/118");
    }
}
