//! From what `iptables-save` shows and what should be, the `iptables-restore --noflush` input that gets
//! there in one transaction: ipamd's own chains are redeclared (which flushes them) and refilled, its rules in
//! built-in chains are added or deleted one by one, and stale `AWS-*-CHAIN-<n>` chains are emptied and
//! removed. Rules of anyone else are never touched.

use std::collections::BTreeMap;

use super::desired::{MANAGED_COMMENTS, TableRules, is_aws_chain};

/// One table as `iptables-save -t <table>` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// Chains, built-in and user-defined, in the order printed.
    pub chains: Vec<String>,
    /// Rules per chain, as printed after `-A <chain> `.
    pub rules: BTreeMap<String, Vec<String>>,
}

/// Parses one table's section of `iptables-save` output.
pub fn parse_saved(text: &str, table: &str) -> SavedTable {
    let mut saved = SavedTable::default();
    let mut in_table = false;
    for line in text.lines().map(str::trim_end) {
        if let Some(name) = line.strip_prefix('*') {
            in_table = name == table;
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(chain) = line.strip_prefix(':') {
            if let Some(name) = chain.split_whitespace().next() {
                saved.chains.push(name.to_owned());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
            saved
                .rules
                .entry(chain.to_owned())
                .or_default()
                .push(spec.to_owned());
        }
    }
    saved
}

/// Whether a rule in a chain ipamd does not own is nevertheless ipamd's: it carries one of ipamd's
/// comments, or jumps to one of the original's numbered chains.
fn is_managed_rule(spec: &str) -> bool {
    let commented = MANAGED_COMMENTS
        .iter()
        .any(|c| spec.contains(&format!("--comment \"{c}\"")));
    let jumps = spec
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "-j" && is_aws_chain(w[1]));
    commented || jumps
}

/// The restore input for one table, and how many changes it makes; `None` when the table is as wanted.
pub fn plan_table(saved: &SavedTable, wanted: &TableRules) -> Option<(String, usize)> {
    let owned: BTreeMap<&str, &Vec<String>> = wanted
        .owned
        .iter()
        .map(|(chain, rules)| (chain.as_str(), rules))
        .collect();
    let mut declarations = Vec::new();
    let mut deletions = Vec::new();
    let mut fills = Vec::new();
    let mut appends = Vec::new();
    let mut removals = Vec::new();
    let mut changes = 0;

    for (chain, rules) in &wanted.owned {
        let current = saved.rules.get(chain).cloned().unwrap_or_default();
        let exists = saved.chains.iter().any(|c| c == chain);
        if !exists || current != *rules {
            declarations.push(format!(":{chain} - [0:0]"));
            fills.extend(rules.iter().map(|r| format!("-A {chain} {r}")));
            changes += 1;
        }
    }
    for chain in &saved.chains {
        if is_aws_chain(chain) && !owned.contains_key(chain.as_str()) {
            declarations.push(format!(":{chain} - [0:0]"));
            removals.push(format!("-X {chain}"));
            changes += 1;
        }
    }
    for (chain, rules) in &saved.rules {
        if owned.contains_key(chain.as_str()) || is_aws_chain(chain) {
            continue;
        }
        // Delete every managed rule that is not wanted, and duplicates of wanted ones.
        let mut kept: Vec<&str> = Vec::new();
        for spec in rules.iter().filter(|s| is_managed_rule(s)) {
            let wanted_here = wanted.builtin.iter().any(|(c, r)| c == chain && r == spec);
            if wanted_here && !kept.contains(&spec.as_str()) {
                kept.push(spec);
            } else {
                deletions.push(format!("-D {chain} {spec}"));
                changes += 1;
            }
        }
    }
    for (chain, spec) in &wanted.builtin {
        let present = saved
            .rules
            .get(chain)
            .is_some_and(|rules| rules.iter().any(|r| r == spec));
        if !present {
            appends.push(format!("-A {chain} {spec}"));
            changes += 1;
        }
    }
    if changes == 0 {
        return None;
    }
    let mut input = format!("*{}\n", wanted.table);
    for line in declarations
        .iter()
        .chain(&deletions)
        .chain(&fills)
        .chain(&appends)
        .chain(&removals)
    {
        input.push_str(line);
        input.push('\n');
    }
    input.push_str("COMMIT\n");
    Some((input, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::desired::{SnatPorts, SnatSettings, desired};

    fn settings() -> SnatSettings {
        SnatSettings {
            primary_ip: "10.0.0.10".parse().unwrap(),
            primary_interface: "eth0".into(),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            excluded_cidrs: vec![],
            external_snat: false,
            ports: SnatPorts::RandomFully,
            connmark: 0x80,
            node_port_support: true,
            veth_prefix: "eni".into(),
        }
    }

    /// What a node looks like after the wanted rules were applied, plus kube-proxy's.
    fn saved_from(wanted: &TableRules, extra: &[(&str, &str)]) -> SavedTable {
        let mut saved = SavedTable {
            chains: vec!["PREROUTING".into(), "POSTROUTING".into()],
            ..SavedTable::default()
        };
        for (chain, rules) in &wanted.owned {
            saved.chains.push(chain.clone());
            saved.rules.insert(chain.clone(), rules.clone());
        }
        for (chain, rule) in &wanted.builtin {
            saved.rules.entry(chain.clone()).or_default().push(rule.clone());
        }
        for (chain, rule) in extra {
            saved
                .rules
                .entry((*chain).to_owned())
                .or_default()
                .push((*rule).to_owned());
        }
        saved
    }

    #[test]
    fn saved_output_is_parsed_per_table() {
        let text = "# Generated\n*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eni+ -j RETURN\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:AWS-SNAT-CHAIN-0 - [0:0]\n-A AWS-SNAT-CHAIN-0 -d 10.0.0.0/16 -m comment --comment \"AWS SNAT CHAIN\" -j RETURN\nCOMMIT\n";
        let nat = parse_saved(text, "nat");
        assert_eq!(nat.chains, vec!["PREROUTING", "AWS-SNAT-CHAIN-0"]);
        assert_eq!(
            nat.rules["AWS-SNAT-CHAIN-0"],
            vec![r#"-d 10.0.0.0/16 -m comment --comment "AWS SNAT CHAIN" -j RETURN"#]
        );
        assert_eq!(parse_saved(text, "mangle").rules["PREROUTING"].len(), 1);
    }

    #[test]
    fn an_empty_node_gets_everything_and_a_programmed_one_nothing() {
        let [nat, _] = desired(&settings());
        let (input, changes) = plan_table(&SavedTable::default(), &nat).unwrap();
        assert_eq!(changes, 2 + 3);
        assert!(input.starts_with("*nat\n:AWS-SNAT-CHAIN-0 - [0:0]\n:AWS-CONNMARK-CHAIN-0 - [0:0]\n"));
        assert!(input.ends_with("COMMIT\n"));
        let programmed = saved_from(&nat, &[("PREROUTING", "-j KUBE-SERVICES")]);
        assert_eq!(plan_table(&programmed, &nat), None);
    }

    #[test]
    fn stale_rules_and_chains_go_and_others_stay() {
        let [old, _] = desired(&settings());
        let mut saved = saved_from(
            &old,
            &[
                ("PREROUTING", "-j KUBE-SERVICES"),
                ("AWS-SNAT-CHAIN-1", "-j RETURN"),
                (
                    "PREROUTING",
                    r#"-i eni+ -m comment --comment "AWS, outbound connections" -m state --state NEW -j AWS-CONNMARK-CHAIN-0"#,
                ),
            ],
        );
        saved.chains.push("AWS-SNAT-CHAIN-1".into());
        let [new, _] = desired(&SnatSettings {
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap(), "10.1.0.0/16".parse().unwrap()],
            ..settings()
        });
        let (input, _) = plan_table(&saved, &new).unwrap();
        assert!(input.contains(":AWS-SNAT-CHAIN-0 - [0:0]\n"), "{input}");
        assert!(input.contains(":AWS-SNAT-CHAIN-1 - [0:0]\n") && input.contains("-X AWS-SNAT-CHAIN-1\n"));
        assert!(input.contains(
            "-D PREROUTING -i eni+ -m comment --comment \"AWS, outbound connections\" -m state --state NEW"
        ));
        assert!(!input.contains("KUBE-SERVICES"), "{input}");
        assert!(input.find("-D ").unwrap() < input.find("-X ").unwrap());

        // External SNAT: every nat rule and chain of ipamd's goes.
        let [none, _] = desired(&SnatSettings {
            external_snat: true,
            ..settings()
        });
        let (input, _) = plan_table(&saved_from(&old, &[]), &none).unwrap();
        assert!(input.contains("-X AWS-SNAT-CHAIN-0") && input.contains("-X AWS-CONNMARK-CHAIN-0"));
        assert_eq!(input.matches("-D ").count(), 3, "{input}");
    }

    #[test]
    fn duplicates_of_a_wanted_rule_are_removed() {
        let [_, mangle] = desired(&settings());
        let rule = mangle.builtin[1].1.clone();
        let saved = saved_from(&mangle, &[("PREROUTING", rule.as_str())]);
        let (input, changes) = plan_table(&saved, &mangle).unwrap();
        assert_eq!(changes, 1);
        assert_eq!(input, format!("*mangle\n-D PREROUTING {rule}\nCOMMIT\n"));
    }
}
