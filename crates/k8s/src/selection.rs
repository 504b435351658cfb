//! The one rule that picks a node's ENIConfig, as the original's `GetNodeSpecificENIConfigName`: the label
//! `vpc.amazonaws.com/externalEniConfig` if present, else the annotation named by ENI_CONFIG_ANNOTATION_DEF,
//! else the label named by ENI_CONFIG_LABEL_DEF, else the ENIConfig called `default`. Both variables
//! default to `k8s.amazonaws.com/eniConfig`; an empty value means the default, as in the original. The rule
//! is the same whichever source (API or directory) the node and the ENIConfigs come from.

use std::fmt;

use serde::Serialize;

use crate::eniconfig::NodeMeta;

/// The label the original checks before anything else (set by tools that manage ENIConfigs externally).
pub const EXTERNAL_ENI_CONFIG_LABEL: &str = "vpc.amazonaws.com/externalEniConfig";
/// Default of ENI_CONFIG_LABEL_DEF and ENI_CONFIG_ANNOTATION_DEF.
pub const DEFAULT_ENI_CONFIG_KEY: &str = "k8s.amazonaws.com/eniConfig";
/// The ENIConfig used when nothing on the node names one.
pub const DEFAULT_ENI_CONFIG_NAME: &str = "default";

/// Which keys the rule reads (ENI_CONFIG_LABEL_DEF, ENI_CONFIG_ANNOTATION_DEF).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectionRule {
    /// ENI_CONFIG_LABEL_DEF.
    pub label_key: String,
    /// ENI_CONFIG_ANNOTATION_DEF.
    pub annotation_key: String,
}

impl Default for SelectionRule {
    fn default() -> Self {
        Self {
            label_key: DEFAULT_ENI_CONFIG_KEY.into(),
            annotation_key: DEFAULT_ENI_CONFIG_KEY.into(),
        }
    }
}

impl SelectionRule {
    /// The rule from the two variables' values (unset or empty means the default, as in the original).
    pub fn from_values(label_key: Option<&str>, annotation_key: Option<&str>) -> Self {
        let pick = |value: Option<&str>| {
            value
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_ENI_CONFIG_KEY)
                .to_owned()
        };
        Self {
            label_key: pick(label_key),
            annotation_key: pick(annotation_key),
        }
    }

    /// The ENIConfig name for a node; `None` (no node object known) selects `default`, as the original
    /// does when it cannot read its node.
    pub fn choose(&self, node: Option<&NodeMeta>) -> Choice {
        let found = node.and_then(|node| {
            if let Some(name) = node.labels.get(EXTERNAL_ENI_CONFIG_LABEL) {
                return Some((name, ChosenBy::ExternalLabel));
            }
            if let Some(name) = node.annotations.get(&self.annotation_key) {
                return Some((name, ChosenBy::Annotation(self.annotation_key.clone())));
            }
            node.labels
                .get(&self.label_key)
                .map(|name| (name, ChosenBy::Label(self.label_key.clone())))
        });
        match found {
            Some((name, by)) => Choice {
                name: name.clone(),
                by,
            },
            None => Choice {
                name: DEFAULT_ENI_CONFIG_NAME.into(),
                by: ChosenBy::Default,
            },
        }
    }
}

/// How the name was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "key", rename_all = "kebab-case")]
pub enum ChosenBy {
    /// The label `vpc.amazonaws.com/externalEniConfig`.
    ExternalLabel,
    /// The annotation with this key (ENI_CONFIG_ANNOTATION_DEF).
    Annotation(String),
    /// The label with this key (ENI_CONFIG_LABEL_DEF).
    Label(String),
    /// Nothing on the node named one: `default`.
    Default,
}

impl fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExternalLabel => write!(f, "label {EXTERNAL_ENI_CONFIG_LABEL}"),
            Self::Annotation(key) => write!(f, "annotation {key} (ENI_CONFIG_ANNOTATION_DEF)"),
            Self::Label(key) => write!(f, "label {key} (ENI_CONFIG_LABEL_DEF)"),
            Self::Default => write!(f, "default: the node has no ENIConfig label or annotation"),
        }
    }
}

/// The node's ENIConfig name and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// ENIConfig name.
    pub name: String,
    /// How it was found.
    #[serde(rename = "chosenBy")]
    pub by: ChosenBy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> NodeMeta {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        NodeMeta {
            name: "n".into(),
            labels: map(labels),
            annotations: map(annotations),
        }
    }

    const ZONE: &str = "topology.kubernetes.io/zone";

    /// One row per step of the original's lookup order, with default and custom keys.
    #[test]
    fn the_originals_lookup_order() {
        let zone_rule = SelectionRule::from_values(Some(ZONE), None);
        let annotated_rule = SelectionRule::from_values(None, Some("example.com/eni"));
        let cases: &[(&str, &SelectionRule, NodeMeta, &str, ChosenBy)] = &[
            (
                "no label, no annotation",
                &SelectionRule::default(),
                node(&[], &[]),
                "default",
                ChosenBy::Default,
            ),
            (
                "default label key",
                &SelectionRule::default(),
                node(&[(DEFAULT_ENI_CONFIG_KEY, "pods-a")], &[]),
                "pods-a",
                ChosenBy::Label(DEFAULT_ENI_CONFIG_KEY.into()),
            ),
            (
                "zone label with ENI_CONFIG_LABEL_DEF",
                &zone_rule,
                node(&[(ZONE, "us-west-2a")], &[]),
                "us-west-2a",
                ChosenBy::Label(ZONE.into()),
            ),
            (
                "zone label without ENI_CONFIG_LABEL_DEF: not read",
                &SelectionRule::default(),
                node(&[(ZONE, "us-west-2a")], &[]),
                "default",
                ChosenBy::Default,
            ),
            (
                "annotation wins over label",
                &zone_rule,
                node(
                    &[(ZONE, "us-west-2a")],
                    &[(DEFAULT_ENI_CONFIG_KEY, "from-annotation")],
                ),
                "from-annotation",
                ChosenBy::Annotation(DEFAULT_ENI_CONFIG_KEY.into()),
            ),
            (
                "custom annotation key",
                &annotated_rule,
                node(&[], &[("example.com/eni", "pods-b")]),
                "pods-b",
                ChosenBy::Annotation("example.com/eni".into()),
            ),
            (
                "external label wins over everything",
                &zone_rule,
                node(
                    &[(EXTERNAL_ENI_CONFIG_LABEL, "external"), (ZONE, "us-west-2a")],
                    &[(DEFAULT_ENI_CONFIG_KEY, "from-annotation")],
                ),
                "external",
                ChosenBy::ExternalLabel,
            ),
        ];
        for (what, rule, node, name, by) in cases {
            let choice = rule.choose(Some(node));
            assert_eq!(choice.name, *name, "{what}");
            assert_eq!(choice.by, *by, "{what}");
        }
    }

    #[test]
    fn no_node_object_selects_default() {
        assert_eq!(SelectionRule::default().choose(None).by, ChosenBy::Default);
    }

    #[test]
    fn empty_variables_mean_the_default_key() {
        assert_eq!(
            SelectionRule::from_values(Some(""), Some("")),
            SelectionRule::default()
        );
    }
}
