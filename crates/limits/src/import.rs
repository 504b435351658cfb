//! Regenerates the limits table from `aws ec2 describe-instance-types --output json`, so users can add
//! instance types AWS launched after this build without waiting for a release.
//!
//! EC2 does not publish branch-ENI (trunk) counts; those are kept from the current table for types it
//! already knows and left unknown for new ones. Types absent from the import are kept as they are, so an
//! import from one region does not drop types only sold in others.

use serde::Deserialize;

use crate::{Hypervisor, InstanceLimits, LimitsTable, NetworkCard};

/// Errors in a DescribeInstanceTypes document.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON of the expected shape.
    #[error("not DescribeInstanceTypes output: {0}")]
    Json(#[from] serde_json::Error),
    /// A type lacks a field the table needs.
    #[error("instance type {instance_type}: {problem}")]
    Incomplete {
        /// Instance type.
        instance_type: String,
        /// What is missing.
        problem: String,
    },
    /// The document lists no instance types.
    #[error("the document lists no instance types")]
    Empty,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Document {
    One(Page),
    Many(Vec<Page>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    instance_types: Vec<InstanceTypeInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceTypeInfo {
    instance_type: String,
    hypervisor: Option<String>,
    bare_metal: Option<bool>,
    v_cpu_info: Option<VCpuInfo>,
    network_info: Option<NetworkInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VCpuInfo {
    default_v_cpus: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkInfo {
    maximum_network_interfaces: Option<u32>,
    ipv4_addresses_per_interface: Option<u32>,
    ipv6_addresses_per_interface: Option<u32>,
    efa_supported: Option<bool>,
    default_network_card_index: Option<u32>,
    #[serde(default)]
    network_cards: Vec<NetworkCardInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkCardInfo {
    network_card_index: u32,
    maximum_network_interfaces: u32,
}

/// What an import changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Types not in the table before.
    pub added: Vec<String>,
    /// Known types whose limits changed.
    pub changed: Vec<String>,
    /// Known types the import confirmed unchanged.
    pub unchanged: usize,
}

/// Merges DescribeInstanceTypes output (one document, or a JSON array of them) into `table`.
pub fn merge_describe_instance_types(
    table: &mut LimitsTable,
    json: &str,
) -> Result<ImportSummary, ImportError> {
    let pages = match serde_json::from_str::<Document>(json)? {
        Document::One(page) => vec![page],
        Document::Many(pages) => pages,
    };
    let infos: Vec<InstanceTypeInfo> = pages.into_iter().flat_map(|page| page.instance_types).collect();
    if infos.is_empty() {
        return Err(ImportError::Empty);
    }
    let mut summary = ImportSummary::default();
    for info in infos {
        let previous = table.get(&info.instance_type).ok().cloned();
        let limits = convert(info, previous.as_ref())?;
        match previous {
            None => summary.added.push(limits.instance_type.clone()),
            Some(old) if old != limits => summary.changed.push(limits.instance_type.clone()),
            Some(_) => summary.unchanged += 1,
        }
        table.insert(limits);
    }
    Ok(summary)
}

fn convert(info: InstanceTypeInfo, previous: Option<&InstanceLimits>) -> Result<InstanceLimits, ImportError> {
    let incomplete = |problem: &str| ImportError::Incomplete {
        instance_type: info.instance_type.clone(),
        problem: problem.to_owned(),
    };
    let network = info
        .network_info
        .as_ref()
        .ok_or_else(|| incomplete("no NetworkInfo"))?;
    let ipv4_per_eni = network
        .ipv4_addresses_per_interface
        .ok_or_else(|| incomplete("no NetworkInfo.Ipv4AddressesPerInterface"))?;
    let default_card = network.default_network_card_index.unwrap_or(0);
    let mut network_cards: Vec<NetworkCard> = network
        .network_cards
        .iter()
        .map(|card| NetworkCard {
            index: card.network_card_index,
            max_enis: card.maximum_network_interfaces,
        })
        .collect();
    network_cards.sort_by_key(|card| card.index);
    if network_cards.is_empty() {
        let max = network
            .maximum_network_interfaces
            .ok_or_else(|| incomplete("no NetworkInfo.MaximumNetworkInterfaces"))?;
        network_cards.push(NetworkCard {
            index: 0,
            max_enis: max,
        });
    }
    let max_enis = network_cards
        .iter()
        .find(|card| card.index == default_card)
        .map(|card| card.max_enis)
        .ok_or_else(|| incomplete("the default network card is not among NetworkCards"))?;
    if max_enis == 0 || ipv4_per_eni == 0 {
        return Err(incomplete("zero ENIs or zero IPv4 addresses per ENI"));
    }
    let hypervisor = match info.hypervisor.as_deref() {
        Some("nitro") => Hypervisor::Nitro,
        Some("xen") => Hypervisor::Xen,
        _ => Hypervisor::Unknown,
    };
    Ok(InstanceLimits {
        instance_type: info.instance_type.to_ascii_lowercase(),
        max_enis,
        ipv4_per_eni,
        ipv6_per_eni: network.ipv6_addresses_per_interface,
        default_vcpus: info.v_cpu_info.as_ref().and_then(|v| v.default_v_cpus),
        hypervisor,
        bare_metal: info.bare_metal.unwrap_or(false),
        efa_supported: network.efa_supported,
        default_network_card_index: default_card,
        network_cards,
        branch_interfaces: previous.and_then(|old| old.branch_interfaces),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;

    const SAMPLE: &str = r#"{"InstanceTypes": [
      {"InstanceType": "m5.xlarge", "Hypervisor": "nitro", "BareMetal": false,
       "VCpuInfo": {"DefaultVCpus": 4},
       "NetworkInfo": {"MaximumNetworkInterfaces": 4, "Ipv4AddressesPerInterface": 15,
         "Ipv6AddressesPerInterface": 15, "EfaSupported": false, "DefaultNetworkCardIndex": 0,
         "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 4}]}},
      {"InstanceType": "z9.metal", "BareMetal": true,
       "VCpuInfo": {"DefaultVCpus": 192},
       "NetworkInfo": {"MaximumNetworkInterfaces": 30, "Ipv4AddressesPerInterface": 50,
         "DefaultNetworkCardIndex": 0,
         "NetworkCards": [{"NetworkCardIndex": 1, "MaximumNetworkInterfaces": 15},
                          {"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 15}]}}
    ]}"#;

    #[test]
    fn merge_adds_new_types_and_keeps_branch_counts() {
        let mut table = builtin().clone();
        let summary = merge_describe_instance_types(&mut table, SAMPLE).unwrap();
        assert_eq!(summary.added, vec!["z9.metal".to_owned()]);
        assert_eq!(summary.unchanged, 1);
        assert_eq!(table.len(), builtin().len() + 1);
        let metal = table.get("z9.metal").unwrap();
        assert_eq!(
            (metal.max_enis, metal.hypervisor, metal.bare_metal),
            (15, Hypervisor::Unknown, true)
        );
        assert_eq!(metal.network_cards[0].index, 0);
        assert_eq!(metal.branch_interfaces, None);
        assert_eq!(table.get("m5.xlarge").unwrap().branch_interfaces, Some(18));
        // The merged table still round-trips through CSV.
        assert_eq!(LimitsTable::from_csv(&table.to_csv()).unwrap(), table);
    }

    #[test]
    fn changed_limits_are_reported() {
        let mut table = builtin().clone();
        let bumped = SAMPLE.replace(
            "\"Ipv4AddressesPerInterface\": 15",
            "\"Ipv4AddressesPerInterface\": 20",
        );
        let summary = merge_describe_instance_types(&mut table, &bumped).unwrap();
        assert_eq!(summary.changed, vec!["m5.xlarge".to_owned()]);
        assert_eq!(table.get("m5.xlarge").unwrap().ipv4_per_eni, 20);
    }

    #[test]
    fn arrays_of_pages_are_accepted() {
        let mut table = LimitsTable::default();
        let summary = merge_describe_instance_types(&mut table, &format!("[{SAMPLE}, {SAMPLE}]")).unwrap();
        assert_eq!(summary.added.len(), 2);
        assert_eq!(summary.unchanged, 2);
    }

    #[test]
    fn bad_documents_are_rejected() {
        let mut table = LimitsTable::default();
        assert!(matches!(
            merge_describe_instance_types(&mut table, "{}"),
            Err(ImportError::Json(_))
        ));
        assert!(matches!(
            merge_describe_instance_types(&mut table, r#"{"InstanceTypes": []}"#),
            Err(ImportError::Empty)
        ));
        let no_network = r#"{"InstanceTypes": [{"InstanceType": "x.large"}]}"#;
        let err = merge_describe_instance_types(&mut table, no_network)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "instance type x.large: no NetworkInfo");
        assert!(table.is_empty());
    }
}
