//! The directory source (VPCNI_ENI_CONFIG_DIR): ENIConfig objects in YAML or JSON files, the same schema as
//! the CRD, several documents to a file if wanted; and, optionally, this node's own `v1` Node object, whose
//! labels and annotations the selection rule then reads (the lab labels its nodes this way; on a real
//! cluster the node comes from the API). The directory is read again on every poll; a file that cannot be
//! read or parsed is reported by name and contributes nothing, the others still count.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::eniconfig::{EniConfig, EniConfigSpec, NodeMeta};
use crate::view::{DirState, ViewHandle};

/// Reads the directory: ENIConfigs by name, the Node named `node_name` if present, and each problem.
pub fn load(dir: &Path, node_name: &str) -> DirState {
    let mut state = DirState {
        loaded: true,
        ..DirState::default()
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            state
                .errors
                .push(format!("cannot read directory {}: {error}", dir.display()));
            return state;
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                state.errors.push(format!("{}: {error}", file.display()));
                continue;
            }
        };
        let mut found: BTreeMap<String, EniConfigSpec> = BTreeMap::new();
        let mut problems = Vec::new();
        for (n, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = match serde_yaml::Value::deserialize(document) {
                Ok(serde_yaml::Value::Null) => continue,
                Ok(value) => value,
                Err(error) => {
                    problems.push(format!("{}: document {}: {error}", file.display(), n + 1));
                    break;
                }
            };
            let field = |key: &str| {
                value
                    .get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (api_version, kind) = (field("apiVersion"), field("kind"));
            let at = format!("{}: document {}", file.display(), n + 1);
            match (api_version.as_str(), kind.as_str()) {
                (EniConfig::API_VERSION, EniConfig::KIND) => match serde_yaml::from_value::<EniConfig>(value)
                {
                    Ok(config) if config.name().is_empty() => {
                        problems.push(format!("{at}: ENIConfig has no metadata.name"))
                    }
                    Ok(config) => {
                        let name = config.name().to_owned();
                        if found.insert(name.clone(), config.spec).is_some()
                            || state.configs.contains_key(&name)
                        {
                            problems.push(format!("{at}: ENIConfig {name:?} is defined more than once"));
                        }
                    }
                    Err(error) => problems.push(format!("{at}: not a valid ENIConfig: {error}")),
                },
                ("v1", "Node") => match serde_yaml::from_value::<k8s_openapi::api::core::v1::Node>(value) {
                    Ok(node) if node.metadata.name.as_deref() == Some(node_name) => {
                        state.node = Some(NodeMeta::of(&node));
                    }
                    // Another node's labels: the same directory may serve every node of a lab.
                    Ok(_) => {}
                    Err(error) => problems.push(format!("{at}: not a valid Node: {error}")),
                },
                _ => problems.push(format!(
                    "{at}: apiVersion {api_version:?} kind {kind:?} is neither {} {} nor v1 Node; ignored",
                    EniConfig::API_VERSION,
                    EniConfig::KIND
                )),
            }
        }
        for (name, spec) in found {
            state.configs.entry(name).or_insert(spec);
        }
        state.errors.extend(problems);
    }
    state
}

/// Reads the directory into `view` now and then every `interval` until `stop` changes; logs each new
/// problem once.
pub async fn follow(
    dir: std::path::PathBuf,
    interval: Duration,
    view: ViewHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let node_name = view.snapshot().node_name;
    let mut reported: Vec<String> = Vec::new();
    loop {
        let state = load(&dir, &node_name);
        for error in state.errors.iter().filter(|e| !reported.contains(e)) {
            tracing::warn!("ENIConfig directory: {error}");
        }
        reported.clone_from(&state.errors);
        view.update(|v| v.dir = state);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn configs_and_this_nodes_labels_from_several_files_and_documents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("zones.yaml"),
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: us-west-2a\nspec:\n  subnet: subnet-a\n  securityGroups: [sg-1, sg-2]\n---\napiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: us-west-2b\nspec:\n  subnet: subnet-b\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("nodes.yaml"),
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels:\n    topology.kubernetes.io/zone: us-west-2a\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: node-2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("README.txt"), "not read").unwrap();
        let state = load(dir.path(), "node-1");
        assert_eq!(state.errors, Vec::<String>::new());
        assert_eq!(state.configs["us-west-2a"].security_groups, ["sg-1", "sg-2"]);
        assert_eq!(state.configs["us-west-2b"].subnet, "subnet-b");
        let node = state.node.unwrap();
        assert_eq!(node.labels["topology.kubernetes.io/zone"], "us-west-2a");
    }

    #[test]
    fn a_bad_file_is_named_and_the_others_still_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: [unclosed").unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: ok\nspec:\n  subnet: subnet-1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}"#,
        )
        .unwrap();
        let state = load(dir.path(), "node-1");
        assert!(state.configs.contains_key("ok"));
        assert_eq!(state.errors.len(), 2, "{:?}", state.errors);
        assert!(state.errors[0].contains("a.yaml"), "{:?}", state.errors);
        assert!(state.errors[1].contains("c.json") && state.errors[1].contains("ConfigMap"));
    }

    #[test]
    fn a_missing_directory_is_an_error_not_an_empty_set() {
        let state = load(Path::new("/nonexistent/vpcni-eniconfigs"), "node-1");
        assert!(state.loaded);
        assert!(
            state.errors[0].contains("/nonexistent/vpcni-eniconfigs"),
            "{:?}",
            state.errors
        );
    }
}
