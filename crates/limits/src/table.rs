//! The limits table: parsing, lookup and serialisation of `ec2-instance-network-limits.csv`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;

/// The table shipped with this build.
const BUILTIN_CSV: &str = include_str!("../data/ec2-instance-network-limits.csv");

/// Column order of the CSV file; `import` writes the same header.
pub(crate) const CSV_HEADER: [&str; 11] = [
    "instance_type",
    "max_enis",
    "ipv4_per_eni",
    "ipv6_per_eni",
    "default_vcpus",
    "hypervisor",
    "bare_metal",
    "efa_supported",
    "default_network_card_index",
    "network_cards",
    "branch_interfaces",
];

/// How the instance is virtualised. Prefix delegation needs Nitro or bare metal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// The Nitro system.
    Nitro,
    /// The older Xen hypervisor (no prefix delegation, no trunk ENIs).
    Xen,
    /// EC2 reports none: bare metal, and a few old types.
    Unknown,
}

impl Hypervisor {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "nitro" => Some(Self::Nitro),
            "xen" => Some(Self::Xen),
            "unknown" | "" => Some(Self::Unknown),
            _ => None,
        }
    }

    /// The name used in the CSV file and in EC2's API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nitro => "nitro",
            Self::Xen => "xen",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One network card of an instance type and the ENIs it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NetworkCard {
    /// Network card index (0 is the default card on every type today).
    pub index: u32,
    /// Maximum ENIs attached through this card.
    pub max_enis: u32,
}

/// The network limits of one instance type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceLimits {
    /// EC2 name, e.g. `m5.xlarge`.
    pub instance_type: String,
    /// Maximum ENIs on the default network card: what max-pods formulas and ipamd use.
    pub max_enis: u32,
    /// IPv4 addresses per ENI, the ENI's own primary address included. In prefix mode each /28 prefix
    /// takes one of these slots.
    pub ipv4_per_eni: u32,
    /// IPv6 addresses per ENI; `None` when unknown.
    pub ipv6_per_eni: Option<u32>,
    /// Default vCPU count; decides the 110 / 250 max-pods cap. `None` when unknown.
    pub default_vcpus: Option<u32>,
    /// Hypervisor as EC2 reports it.
    pub hypervisor: Hypervisor,
    /// Whether this is a bare-metal type.
    pub bare_metal: bool,
    /// Whether EFA is supported; `None` when unknown.
    pub efa_supported: Option<bool>,
    /// Index of the default network card.
    pub default_network_card_index: u32,
    /// Every network card with its ENI limit.
    pub network_cards: Vec<NetworkCard>,
    /// Branch ENIs for security groups per pod: `Some(0)` means not trunking-compatible, `None` unknown.
    pub branch_interfaces: Option<u32>,
}

impl InstanceLimits {
    /// Prefix delegation works on Nitro and on bare metal (which reports no hypervisor).
    pub fn supports_prefix_delegation(&self) -> bool {
        self.hypervisor == Hypervisor::Nitro || self.bare_metal
    }

    /// Whether a trunk ENI (security groups for pods) can be attached; `None` when the table does not know.
    pub fn trunking_compatible(&self) -> Option<bool> {
        self.branch_interfaces.map(|n| n > 0)
    }

    /// ENIs across every network card.
    pub fn total_enis(&self) -> u32 {
        self.network_cards.iter().map(|card| card.max_enis).sum()
    }

    fn from_record(record: &csv::StringRecord, line: u64) -> Result<Self, LimitsError> {
        let field = |index: usize| record.get(index).unwrap_or("").trim();
        let bad = |column: &'static str, value: &str| LimitsError::BadField {
            line,
            column,
            value: value.to_owned(),
        };
        let required_u32 = |index: usize, column: &'static str| {
            field(index).parse::<u32>().map_err(|_| bad(column, field(index)))
        };
        let optional_u32 = |index: usize, column: &'static str| match field(index) {
            "" => Ok(None),
            text => text.parse::<u32>().map(Some).map_err(|_| bad(column, text)),
        };
        let optional_bool = |index: usize, column: &'static str| match field(index) {
            "" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            text => Err(bad(column, text)),
        };

        if record.len() != CSV_HEADER.len() {
            return Err(LimitsError::ColumnCount {
                line,
                found: record.len(),
                expected: CSV_HEADER.len(),
            });
        }
        let instance_type = field(0);
        if instance_type.is_empty() {
            return Err(bad("instance_type", instance_type));
        }
        let hypervisor = Hypervisor::parse(field(5)).ok_or_else(|| bad("hypervisor", field(5)))?;
        let network_cards = parse_network_cards(field(9)).ok_or_else(|| bad("network_cards", field(9)))?;
        let limits = Self {
            instance_type: instance_type.to_owned(),
            max_enis: required_u32(1, "max_enis")?,
            ipv4_per_eni: required_u32(2, "ipv4_per_eni")?,
            ipv6_per_eni: optional_u32(3, "ipv6_per_eni")?,
            default_vcpus: optional_u32(4, "default_vcpus")?,
            hypervisor,
            bare_metal: optional_bool(6, "bare_metal")?.ok_or_else(|| bad("bare_metal", field(6)))?,
            efa_supported: optional_bool(7, "efa_supported")?,
            default_network_card_index: required_u32(8, "default_network_card_index")?,
            network_cards,
            branch_interfaces: optional_u32(10, "branch_interfaces")?,
        };
        if limits.max_enis == 0 || limits.ipv4_per_eni == 0 {
            return Err(bad("max_enis", field(1)));
        }
        Ok(limits)
    }

    fn to_record(&self) -> [String; 11] {
        let opt = |value: Option<u32>| value.map(|n| n.to_string()).unwrap_or_default();
        [
            self.instance_type.clone(),
            self.max_enis.to_string(),
            self.ipv4_per_eni.to_string(),
            opt(self.ipv6_per_eni),
            opt(self.default_vcpus),
            self.hypervisor.as_str().to_owned(),
            self.bare_metal.to_string(),
            self.efa_supported.map(|b| b.to_string()).unwrap_or_default(),
            self.default_network_card_index.to_string(),
            self.network_cards
                .iter()
                .map(|card| format!("{}:{}", card.index, card.max_enis))
                .collect::<Vec<_>>()
                .join(";"),
            opt(self.branch_interfaces),
        ]
    }
}

fn parse_network_cards(text: &str) -> Option<Vec<NetworkCard>> {
    text.split(';')
        .map(|card| {
            let (index, max_enis) = card.split_once(':')?;
            Some(NetworkCard {
                index: index.parse().ok()?,
                max_enis: max_enis.parse().ok()?,
            })
        })
        .collect()
}

/// Errors reading or writing a limits table.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The CSV could not be read at all.
    #[error("limits table: {0}")]
    Csv(#[from] csv::Error),
    /// The header is not the one this version writes.
    #[error("limits table: header is {found:?}, expected {expected:?}")]
    Header {
        /// Header found.
        found: Vec<String>,
        /// Header expected.
        expected: Vec<String>,
    },
    /// A row has the wrong number of columns.
    #[error("limits table line {line}: {found} columns, expected {expected}")]
    ColumnCount {
        /// Line number in the file.
        line: u64,
        /// Columns found.
        found: usize,
        /// Columns expected.
        expected: usize,
    },
    /// A field does not parse.
    #[error("limits table line {line}: column {column} has invalid value {value:?}")]
    BadField {
        /// Line number in the file.
        line: u64,
        /// Column name.
        column: &'static str,
        /// Offending text.
        value: String,
    },
    /// The same type appears twice.
    #[error("limits table line {line}: instance type {instance_type} appears twice")]
    Duplicate {
        /// Line number in the file.
        line: u64,
        /// The repeated name.
        instance_type: String,
    },
}

/// An instance type the table does not know, with the closest names it does know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown instance type '{name}'{}", suggestion_text(.suggestions))]
pub struct UnknownInstanceType {
    /// The name asked for.
    pub name: String,
    /// Known names closest to it, best first.
    pub suggestions: Vec<String>,
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; closest known: {}", suggestions.join(", "))
    }
}

/// Instance types by name, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsTable {
    rows: BTreeMap<String, InstanceLimits>,
}

impl LimitsTable {
    /// Parses the CSV format of `data/ec2-instance-network-limits.csv`.
    pub fn from_csv(text: &str) -> Result<Self, LimitsError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
        if header != CSV_HEADER {
            return Err(LimitsError::Header {
                found: header,
                expected: CSV_HEADER.iter().map(|s| (*s).to_owned()).collect(),
            });
        }
        let mut rows = BTreeMap::new();
        for record in reader.records() {
            let record = record?;
            let line = record.position().map_or(0, |p| p.line());
            let limits = InstanceLimits::from_record(&record, line)?;
            if rows.contains_key(&limits.instance_type) {
                return Err(LimitsError::Duplicate {
                    line,
                    instance_type: limits.instance_type,
                });
            }
            rows.insert(limits.instance_type.clone(), limits);
        }
        Ok(Self { rows })
    }

    /// Writes the table in the same CSV format, sorted by type.
    pub fn to_csv(&self) -> String {
        let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
        // Writing to a Vec cannot fail, and every field is plain text.
        let _ = writer.write_record(CSV_HEADER);
        for limits in self.rows.values() {
            let _ = writer.write_record(limits.to_record());
        }
        String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// Looks a type up by exact name (case-insensitive, surrounding blanks ignored).
    pub fn get(&self, name: &str) -> Result<&InstanceLimits, UnknownInstanceType> {
        let wanted = name.trim().to_ascii_lowercase();
        self.rows.get(&wanted).ok_or_else(|| UnknownInstanceType {
            name: name.to_owned(),
            suggestions: self.closest(&wanted, 3),
        })
    }

    /// Up to `count` known names closest to `name`, best first.
    pub fn closest(&self, name: &str, count: usize) -> Vec<String> {
        let mut scored: Vec<(usize, &String)> = self
            .rows
            .keys()
            .map(|known| (strsim::damerau_levenshtein(name, known), known))
            .filter(|(distance, known)| *distance <= (known.len() / 3).max(2))
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(count)
            .map(|(_, known)| known.clone())
            .collect()
    }

    /// Every type, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &InstanceLimits> {
        self.rows.values()
    }

    /// Number of types.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds or replaces a type.
    pub fn insert(&mut self, limits: InstanceLimits) {
        self.rows.insert(limits.instance_type.clone(), limits);
    }
}

/// The table compiled into this build.
pub fn builtin() -> &'static LimitsTable {
    static TABLE: OnceLock<LimitsTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The shipped file is checked by this crate's tests; a build whose data does not parse must not ship.
        LimitsTable::from_csv(BUILTIN_CSV).expect("the built-in limits table parses (checked by tests)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_every_row() {
        let table = builtin();
        assert_eq!(table.len(), 1391);
        let m5 = table.get("m5.xlarge").unwrap();
        assert_eq!((m5.max_enis, m5.ipv4_per_eni, m5.default_vcpus), (4, 15, Some(4)));
        assert_eq!(m5.hypervisor, Hypervisor::Nitro);
        assert_eq!(m5.branch_interfaces, Some(18));
        let p5 = table.get("p5.48xlarge").unwrap();
        assert_eq!(p5.network_cards.len(), 32);
        assert_eq!(p5.total_enis(), 64);
    }

    #[test]
    fn builtin_counts_match_the_data_readme() {
        let table = builtin();
        let count = |f: &dyn Fn(&InstanceLimits) -> bool| table.iter().filter(|l| f(l)).count();
        assert_eq!(count(&|l| l.hypervisor == Hypervisor::Nitro), 1150);
        assert_eq!(count(&|l| l.hypervisor == Hypervisor::Xen), 80);
        assert_eq!(count(&|l| l.hypervisor == Hypervisor::Unknown), 161);
        assert_eq!(count(&|l| l.bare_metal), 160);
        assert_eq!(count(&|l| l.network_cards.len() > 1), 67);
    }

    #[test]
    fn csv_round_trips_byte_for_byte() {
        assert_eq!(builtin().to_csv(), BUILTIN_CSV);
    }

    #[test]
    fn lookup_is_case_insensitive_and_unknown_names_get_suggestions() {
        assert!(builtin().get(" M5.XLarge ").is_ok());
        let err = builtin().get("m5.xlargee").unwrap_err();
        assert_eq!(err.suggestions.first().map(String::as_str), Some("m5.xlarge"));
        assert!(
            err.to_string()
                .starts_with("unknown instance type 'm5.xlargee'; closest known: m5.xlarge")
        );
        let err = builtin().get("banana").unwrap_err();
        assert_eq!(err.to_string(), "unknown instance type 'banana'");
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_column() {
        let header = CSV_HEADER.join(",");
        let bad_number = format!("{header}\nx.large,four,15,,4,nitro,false,,0,0:4,1\n");
        let err = LimitsTable::from_csv(&bad_number).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("max_enis") && err.contains("four"),
            "{err}"
        );
        let bad_cards = format!("{header}\nx.large,4,15,,4,nitro,false,,0,0-4,1\n");
        assert!(
            LimitsTable::from_csv(&bad_cards)
                .unwrap_err()
                .to_string()
                .contains("network_cards")
        );
        let duplicate =
            format!("{header}\nx.large,4,15,,4,nitro,false,,0,0:4,1\nx.large,4,15,,4,nitro,false,,0,0:4,1\n");
        assert!(matches!(
            LimitsTable::from_csv(&duplicate),
            Err(LimitsError::Duplicate { .. })
        ));
        assert!(matches!(
            LimitsTable::from_csv("a,b\n"),
            Err(LimitsError::Header { .. })
        ));
        let short = format!("{header}\nx.large,4,15\n");
        assert!(LimitsTable::from_csv(&short).is_err());
    }

    #[test]
    fn prefix_delegation_support_follows_hypervisor_and_metal() {
        let table = builtin();
        assert!(table.get("m5.xlarge").unwrap().supports_prefix_delegation());
        assert!(table.get("m5.metal").unwrap().supports_prefix_delegation());
        assert!(!table.get("t2.micro").unwrap().supports_prefix_delegation());
        assert!(!table.get("cr1.8xlarge").unwrap().supports_prefix_delegation());
    }
}
