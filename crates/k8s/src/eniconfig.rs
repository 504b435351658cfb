//! The ENIConfig custom resource (`crd.k8s.amazonaws.com/v1alpha1`, kind `ENIConfig`, cluster-scoped), as
//! the original defines it: `spec.subnet` and `spec.securityGroups`. Written by hand rather than derived, so
//! the crate needs no schema generator; the chart's CRD (`charts/vpcni/crds/`) carries the schema.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// An ENIConfig object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EniConfig {
    /// Always `crd.k8s.amazonaws.com/v1alpha1` when written by vpcni.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// Always `ENIConfig` when written by vpcni.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata; `name` is what nodes select.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What ENIs for this config are created with.
    #[serde(default)]
    pub spec: EniConfigSpec,
}

/// `spec` of an ENIConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniConfigSpec {
    /// The subnet new ENIs are created in (`subnet-…`).
    #[serde(default)]
    pub subnet: String,
    /// The security groups new ENIs get (`sg-…`); empty means the primary ENI's, as the original does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

impl EniConfig {
    /// `crd.k8s.amazonaws.com/v1alpha1`.
    pub const API_VERSION: &'static str = "crd.k8s.amazonaws.com/v1alpha1";
    /// `ENIConfig`.
    pub const KIND: &'static str = "ENIConfig";

    /// An ENIConfig named `name`.
    pub fn new(name: &str, spec: EniConfigSpec) -> Self {
        Self {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec,
        }
    }

    /// Its name (empty if it has none).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

impl k8s_openapi::Resource for EniConfig {
    const API_VERSION: &'static str = Self::API_VERSION;
    const GROUP: &'static str = "crd.k8s.amazonaws.com";
    const KIND: &'static str = Self::KIND;
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "eniconfigs";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::Metadata for EniConfig {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the selection rule reads of the node: its labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeMeta {
    /// The node's name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

impl NodeMeta {
    /// The labels and annotations of a node object.
    pub fn of(node: &k8s_openapi::api::core::v1::Node) -> Self {
        Self::from_meta(&node.metadata)
    }

    /// The labels and annotations of any object's metadata.
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        Self {
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
        }
    }
}
