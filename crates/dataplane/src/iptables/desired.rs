//! The node's SNAT and CONNMARK rules as the original programs them
//! (<https://github.com/aws/amazon-vpc-cni-k8s/blob/v1.23.1/pkg/networkutils/network.go> and
//! `iptables_connmark.go`), written in the
//! exact form `iptables-save` prints them, so that comparing with what the kernel holds is a string
//! comparison and a second run changes nothing.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The chain non-VPC traffic from pods is SNATed in.
pub const SNAT_CHAIN: &str = "AWS-SNAT-CHAIN-0";
/// The chain that marks pod connections leaving the VPC.
pub const CONNMARK_CHAIN: &str = "AWS-CONNMARK-CHAIN-0";
/// Comments of the rules ipamd keeps in the built-in chains; any rule there with one of them is ipamd's.
pub const MANAGED_COMMENTS: [&str; 4] = [
    "AWS SNAT CHAIN",
    "AWS, outbound connections",
    "AWS, CONNMARK",
    "AWS, primary ENI",
];

/// How SNAT picks source ports (AWS_VPC_K8S_CNI_RANDOMIZESNAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnatPorts {
    /// `--random-fully` (`prng`, the default).
    RandomFully,
    /// `--random` (`hashrandom`).
    Random,
    /// Neither (`none`).
    Sequential,
}

/// What the node's rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatSettings {
    /// The primary ENI's primary address: the SNAT source.
    pub primary_ip: Ipv4Addr,
    /// The primary ENI's interface name (NodePort mark rule).
    pub primary_interface: String,
    /// VPC CIDRs: traffic to them keeps the pod's address.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: treated like VPC CIDRs.
    pub excluded_cidrs: Vec<Ipv4Net>,
    /// AWS_VPC_K8S_CNI_EXTERNALSNAT: no SNAT or CONNMARK rules at all.
    pub external_snat: bool,
    /// AWS_VPC_K8S_CNI_RANDOMIZESNAT.
    pub ports: SnatPorts,
    /// AWS_VPC_K8S_CNI_CONNMARK (0x80).
    pub connmark: u32,
    /// AWS_VPC_CNI_NODE_PORT_SUPPORT.
    pub node_port_support: bool,
    /// AWS_VPC_K8S_CNI_VETHPREFIX (`eni`).
    pub veth_prefix: String,
}

/// One table's wanted state: chains ipamd owns (with their rules, in order) and rules it keeps in
/// built-in chains (as `(chain, rule spec)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableRules {
    /// Table name.
    pub table: &'static str,
    /// Owned chains and their rules.
    pub owned: Vec<(String, Vec<String>)>,
    /// Rules in built-in chains.
    pub builtin: Vec<(String, String)>,
}

fn comment(text: &str) -> String {
    format!("-m comment --comment \"{text}\"")
}

/// `-d <cidr> ` or nothing for 0.0.0.0/0, as iptables-save prints it.
fn destination(cidr: &Ipv4Net) -> String {
    if cidr.prefix_len() == 0 {
        String::new()
    } else {
        format!("-d {cidr} ")
    }
}

/// The nat and mangle tables as they should be.
pub fn desired(settings: &SnatSettings) -> [TableRules; 2] {
    let mark = settings.connmark;
    let restore = format!("-j CONNMARK --restore-mark --nfmask {mark:#x} --ctmask {mark:#x}");
    let veths = format!("{}+", settings.veth_prefix);
    let mut nat = TableRules {
        table: "nat",
        ..TableRules::default()
    };
    if !settings.external_snat {
        // The original inserts each exempt CIDR's RETURN at the top of its chain, VPC CIDRs first, then
        // AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, so a fresh node holds them last-inserted first. The same order
        // here keeps `iptables-save` on a vpcni node identical to one on the original.
        let exempt: Vec<(&Ipv4Net, bool)> = settings
            .vpc_cidrs
            .iter()
            .map(|cidr| (cidr, false))
            .chain(settings.excluded_cidrs.iter().map(|cidr| (cidr, true)))
            .rev()
            .collect();
        let mut snat = Vec::new();
        let mut connmark = Vec::new();
        for (cidr, excluded) in exempt {
            let snat_comment = if excluded {
                "AWS SNAT CHAIN EXCLUSION"
            } else {
                "AWS SNAT CHAIN"
            };
            snat.push(format!(
                "{}{} -j RETURN",
                destination(cidr),
                comment(snat_comment)
            ));
            // v1.23.1 (`iptables_connmark.go`) uses one comment for VPC and excluded CIDRs alike.
            connmark.push(format!(
                "{}{} -j RETURN",
                destination(cidr),
                comment("AWS CONNMARK CHAIN")
            ));
        }
        let ports = match settings.ports {
            SnatPorts::RandomFully => " --random-fully",
            SnatPorts::Random => " --random",
            SnatPorts::Sequential => "",
        };
        snat.push(format!(
            "! -o vlan+ {} -m addrtype ! --dst-type LOCAL -j SNAT --to-source {}{ports}",
            comment("AWS, SNAT"),
            settings.primary_ip
        ));
        connmark.push(format!(
            "{} -j CONNMARK --set-xmark {mark:#x}/{mark:#x}",
            comment("AWS, CONNMARK")
        ));
        nat.owned.push((SNAT_CHAIN.to_owned(), snat));
        nat.owned.push((CONNMARK_CHAIN.to_owned(), connmark));
        nat.builtin.push((
            "PREROUTING".into(),
            format!(
                "-i {veths} {} -j {CONNMARK_CHAIN}",
                comment("AWS, outbound connections")
            ),
        ));
        nat.builtin.push((
            "PREROUTING".into(),
            format!("{} {restore}", comment("AWS, CONNMARK")),
        ));
        nat.builtin.push((
            "POSTROUTING".into(),
            format!("{} -j {SNAT_CHAIN}", comment("AWS SNAT CHAIN")),
        ));
    }

    let mut mangle = TableRules {
        table: "mangle",
        ..TableRules::default()
    };
    let primary_eni = comment("AWS, primary ENI");
    if settings.node_port_support {
        mangle.builtin.push((
            "PREROUTING".into(),
            format!(
                "-i {} {primary_eni} -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark {mark:#x}/{mark:#x}",
                settings.primary_interface
            ),
        ));
    }
    if settings.node_port_support || !settings.external_snat {
        mangle
            .builtin
            .push(("PREROUTING".into(), format!("-i {veths} {primary_eni} {restore}")));
    }
    if settings.node_port_support {
        mangle
            .builtin
            .push(("PREROUTING".into(), format!("-i vlan+ {primary_eni} {restore}")));
    }
    [nat, mangle]
}

/// Whether an iptables chain name is one of the original's numbered chains (`AWS-SNAT-CHAIN-<n>`,
/// `AWS-CONNMARK-CHAIN-<n>`); older releases chained several of them.
pub fn is_aws_chain(name: &str) -> bool {
    ["AWS-SNAT-CHAIN-", "AWS-CONNMARK-CHAIN-"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SnatSettings {
        SnatSettings {
            primary_ip: "10.0.0.10".parse().unwrap(),
            primary_interface: "eth0".into(),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            excluded_cidrs: vec!["0.0.0.0/0".parse().unwrap()],
            external_snat: false,
            ports: SnatPorts::RandomFully,
            connmark: 0x80,
            node_port_support: true,
            veth_prefix: "eni".into(),
        }
    }

    #[test]
    fn rules_are_the_originals_in_save_form() {
        let [nat, mangle] = desired(&settings());
        assert_eq!(
            nat.owned[0].1,
            vec![
                r#"-m comment --comment "AWS SNAT CHAIN EXCLUSION" -j RETURN"#,
                r#"-d 10.0.0.0/16 -m comment --comment "AWS SNAT CHAIN" -j RETURN"#,
                r#"! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL -j SNAT --to-source 10.0.0.10 --random-fully"#,
            ]
        );
        assert_eq!(
            nat.owned[1].1.last().unwrap(),
            r#"-m comment --comment "AWS, CONNMARK" -j CONNMARK --set-xmark 0x80/0x80"#
        );
        assert_eq!(mangle.builtin.len(), 3);
        assert_eq!(
            mangle.builtin[0].1,
            r#"-i eth0 -m comment --comment "AWS, primary ENI" -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark 0x80/0x80"#
        );
    }

    #[test]
    fn external_snat_drops_nat_rules_but_keeps_node_port_marks() {
        let [nat, mangle] = desired(&SnatSettings {
            external_snat: true,
            ..settings()
        });
        assert!(nat.owned.is_empty() && nat.builtin.is_empty());
        assert_eq!(mangle.builtin.len(), 3);
        let [_, mangle] = desired(&SnatSettings {
            external_snat: true,
            node_port_support: false,
            ..settings()
        });
        assert!(mangle.builtin.is_empty());
    }

    #[test]
    fn port_randomisation_and_mark() {
        let [nat, _] = desired(&SnatSettings {
            ports: SnatPorts::Sequential,
            connmark: 0x4000,
            ..settings()
        });
        assert!(nat.owned[0].1.last().unwrap().ends_with("--to-source 10.0.0.10"));
        assert!(
            nat.builtin[1]
                .1
                .ends_with("--restore-mark --nfmask 0x4000 --ctmask 0x4000")
        );
        assert!(is_aws_chain("AWS-SNAT-CHAIN-12") && !is_aws_chain("AWS-SNAT-CHAIN-x"));
    }
}
