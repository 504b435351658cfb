//! What the daemon knows of the Kubernetes side at this moment, from both sources, and the answer it gives:
//! use this ENIConfig, or no pod ENIs and why. Sources write into a [`ViewHandle`]; the daemon reads it
//! without waiting on anything, so an unreachable API only ever shows up as a state and a reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::eniconfig::{EniConfigSpec, NodeMeta};
use crate::selection::{Choice, SelectionRule};

/// Where the ENIConfig objects come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The Kubernetes API (the CRD).
    Api,
    /// A directory of YAML files (VPCNI_ENI_CONFIG_DIR).
    Directory(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Api => write!(f, "the Kubernetes API"),
            Self::Directory(path) => write!(f, "directory {}", path.display()),
        }
    }
}

/// How the Kubernetes API is doing, as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "kebab-case")]
pub enum ApiState {
    /// No API to talk to (not in a cluster, and no VPCNI_KUBERNETES_API_URL), or not needed.
    NotConfigured,
    /// Configured, no answer yet.
    Connecting,
    /// The last request succeeded.
    Connected,
    /// The last request failed for want of an answer (connection refused, timeout, 5xx).
    Unreachable(String),
    /// The API answered 401 or 403: the service account lacks a permission.
    Forbidden(String),
}

impl ApiState {
    /// Whether the API answered the last request.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Connected)
    }

    fn describe(&self) -> String {
        match self {
            Self::NotConfigured => "no Kubernetes API is configured".into(),
            Self::Connecting => "the Kubernetes API has not answered yet".into(),
            Self::Connected => "the Kubernetes API is reachable".into(),
            Self::Unreachable(error) => format!("the Kubernetes API is unreachable: {error}"),
            Self::Forbidden(error) => format!("the Kubernetes API refuses vpcni (RBAC): {error}"),
        }
    }
}

/// What the directory source last read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirState {
    /// Whether it has been read at least once.
    pub loaded: bool,
    /// The node's own object, if the directory holds one named as this node.
    pub node: Option<NodeMeta>,
    /// ENIConfig specs by name.
    pub configs: BTreeMap<String, EniConfigSpec>,
    /// Problems with files (each names the file), or with the directory itself.
    pub errors: Vec<String>,
}

/// Everything known, from both sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// ENI_CONFIG_LABEL_DEF / ENI_CONFIG_ANNOTATION_DEF.
    pub rule: SelectionRule,
    /// MY_NODE_NAME.
    pub node_name: String,
    /// VPCNI_ENI_CONFIG_DIR, if set.
    pub dir_path: Option<PathBuf>,
    /// The directory's contents.
    pub dir: DirState,
    /// The API's state.
    pub api: ApiState,
    /// The node from the API: `None` until listed, `Some(None)` if the API has no such node.
    pub api_node: Option<Option<NodeMeta>>,
    /// ENIConfig specs from the API by name: `None` until listed.
    pub api_configs: Option<BTreeMap<String, EniConfigSpec>>,
}

/// The node's ENIConfig, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Create ENIs with this.
    Use {
        /// Which ENIConfig and how it was chosen.
        choice: Choice,
        /// Its spec (`subnet` is never empty here).
        spec: EniConfigSpec,
        /// Where it was read.
        source: Source,
    },
    /// No ENIConfig can be used: create no pod ENI.
    Unavailable {
        /// Which ENIConfig the node asks for, if the node is known.
        choice: Option<Choice>,
        /// One sentence naming the ENIConfig, the key that chose it and the source.
        reason: String,
        /// The sources have answered and say so (a missing ENIConfig, no subnet), as opposed to "not
        /// known yet" (API not answered or unreachable, directory not read): worth an event.
        settled: bool,
    },
}

impl View {
    /// A view before any source has answered.
    pub fn new(rule: SelectionRule, node_name: &str, dir_path: Option<PathBuf>, api: ApiState) -> Self {
        Self {
            rule,
            node_name: node_name.to_owned(),
            dir_path,
            dir: DirState::default(),
            api,
            api_node: None,
            api_configs: None,
        }
    }

    /// The source of ENIConfig objects: the directory if one is configured, else the API.
    pub fn source(&self) -> Source {
        self.dir_path.clone().map_or(Source::Api, Source::Directory)
    }

    fn node_label(&self) -> String {
        if self.node_name.is_empty() {
            "this node (MY_NODE_NAME is not set)".into()
        } else {
            format!("node {}", self.node_name)
        }
    }

    /// The node's labels and annotations: from the directory if it holds this node, else from the API.
    /// `Err` says why they are not known yet.
    fn node(&self) -> Result<Option<&NodeMeta>, String> {
        if let Some(node) = &self.dir.node {
            return Ok(Some(node));
        }
        if self.node_name.is_empty() {
            return Ok(None);
        }
        match &self.api_node {
            Some(found) => Ok(found.as_ref()),
            None if self.api == ApiState::NotConfigured && self.dir_path.is_some() => Ok(None),
            None => Err(format!(
                "{}'s labels and annotations are not known: {}",
                self.node_label(),
                if self.api.is_up() {
                    "the node has not been read from the Kubernetes API yet".to_owned()
                } else {
                    self.api.describe()
                }
            )),
        }
    }

    /// The ENIConfig this node uses now.
    pub fn resolve(&self) -> Resolution {
        let node = match self.node() {
            Ok(node) => node,
            Err(reason) => {
                return Resolution::Unavailable {
                    choice: None,
                    reason,
                    settled: false,
                };
            }
        };
        let choice = self.rule.choose(node);
        let source = self.source();
        let configs = match &source {
            Source::Directory(path) if !self.dir.loaded => {
                return Resolution::Unavailable {
                    reason: format!("ENIConfig directory {} has not been read yet", path.display()),
                    choice: Some(choice),
                    settled: false,
                };
            }
            Source::Directory(_) => &self.dir.configs,
            Source::Api => match &self.api_configs {
                Some(configs) => configs,
                None => {
                    let why = if self.api.is_up() {
                        "the ENIConfig objects have not been listed yet".to_owned()
                    } else {
                        self.api.describe()
                    };
                    return Resolution::Unavailable {
                        reason: format!("ENIConfig {:?} cannot be read: {why}", choice.name),
                        choice: Some(choice),
                        settled: false,
                    };
                }
            },
        };
        let chosen_by = format!("chosen by {} of {}", choice.by, self.node_label());
        match configs.get(&choice.name) {
            None => Resolution::Unavailable {
                reason: format!(
                    "ENIConfig {:?} ({chosen_by}) does not exist in {source}",
                    choice.name
                ),
                choice: Some(choice),
                settled: true,
            },
            Some(spec) if spec.subnet.is_empty() => Resolution::Unavailable {
                reason: format!(
                    "ENIConfig {:?} ({chosen_by}) in {source} has no spec.subnet",
                    choice.name
                ),
                choice: Some(choice),
                settled: true,
            },
            Some(spec) => Resolution::Use {
                spec: spec.clone(),
                choice,
                source,
            },
        }
    }

    /// The answer of `/v1/eni-configs`: the ENIConfig in use (or why none), its source, and the API's state.
    pub fn report(&self) -> serde_json::Value {
        let api = json!({ "state": &self.api, "reachable": self.api.is_up() });
        let directory = self.dir_path.as_ref().map(|path| {
            json!({
                "path": path,
                "loaded": self.dir.loaded,
                "eniConfigs": self.dir.configs.keys().collect::<Vec<_>>(),
                "node": self.dir.node.is_some(),
                "errors": &self.dir.errors,
            })
        });
        let source = match self.source() {
            Source::Api => "api",
            Source::Directory(_) => "directory",
        };
        match self.resolve() {
            Resolution::Use { choice, spec, .. } => json!({
                "status": "ok",
                "name": choice.name,
                "chosenBy": choice.by,
                "subnet": spec.subnet,
                "securityGroups": spec.security_groups,
                "source": source,
                "node": self.node_name,
                "api": api,
                "directory": directory,
            }),
            Resolution::Unavailable { choice, reason, .. } => json!({
                "status": "unavailable",
                "name": choice.as_ref().map(|c| c.name.clone()),
                "chosenBy": choice.map(|c| c.by),
                "reason": reason,
                "source": source,
                "node": self.node_name,
                "api": api,
                "directory": directory,
            }),
        }
    }
}

/// The view, shared between the sources that write it and the daemon that reads it.
#[derive(Debug, Clone)]
pub struct ViewHandle {
    sender: Arc<tokio::sync::watch::Sender<View>>,
}

impl ViewHandle {
    /// A handle around a first view.
    pub fn new(view: View) -> Self {
        Self {
            sender: Arc::new(tokio::sync::watch::Sender::new(view)),
        }
    }

    /// A copy of the view now.
    pub fn snapshot(&self) -> View {
        self.sender.borrow().clone()
    }

    /// The node's ENIConfig now.
    pub fn resolve(&self) -> Resolution {
        self.sender.borrow().resolve()
    }

    /// Changes the view; readers waiting in [`ViewHandle::subscribe`] wake only if it changed.
    pub fn update(&self, change: impl FnOnce(&mut View)) {
        self.sender.send_if_modified(|view| {
            let before = view.clone();
            change(view);
            *view != before
        });
    }

    /// A receiver that sees every change (for tests and for the daemon's reactions).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<View> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> EniConfigSpec {
        EniConfigSpec {
            subnet: subnet.into(),
            security_groups: Vec::new(),
        }
    }

    fn reason(view: &View) -> String {
        match view.resolve() {
            Resolution::Unavailable { reason, .. } => reason,
            Resolution::Use { spec, .. } => panic!("resolved to {spec:?}"),
        }
    }

    #[test]
    fn directory_without_this_node_and_no_api_selects_default() {
        let mut view = View::new(
            SelectionRule::default(),
            "n1",
            Some("/etc/eniconfigs".into()),
            ApiState::NotConfigured,
        );
        assert!(reason(&view).contains("has not been read yet"));
        view.dir.loaded = true;
        view.dir.configs.insert("default".into(), spec("subnet-d"));
        match view.resolve() {
            Resolution::Use { spec, source, .. } => {
                assert_eq!(spec.subnet, "subnet-d");
                assert_eq!(source, Source::Directory("/etc/eniconfigs".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn api_not_answered_yet_says_so_and_an_empty_subnet_is_refused() {
        let mut view = View::new(SelectionRule::default(), "n1", None, ApiState::Connecting);
        assert_eq!(
            reason(&view),
            "node n1's labels and annotations are not known: the Kubernetes API has not answered yet"
        );
        view.api_node = Some(None);
        assert!(reason(&view).starts_with("ENIConfig \"default\" cannot be read"));
        view.api_configs = Some([("default".to_owned(), spec(""))].into_iter().collect());
        assert!(
            reason(&view).ends_with("in the Kubernetes API has no spec.subnet"),
            "{}",
            reason(&view)
        );
    }

    #[test]
    fn no_source_at_all_is_a_reason_not_a_default() {
        let view = View::new(SelectionRule::default(), "", None, ApiState::NotConfigured);
        assert_eq!(
            reason(&view),
            "ENIConfig \"default\" cannot be read: no Kubernetes API is configured"
        );
    }
}
