//! Running things inside the lab's namespaces, by the names users give them: `pod-3`, `node-1`, `router`,
//! `internet`.

use std::ffi::OsStr;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use crate::cmd::{in_netns, netns_command};
use crate::internet::{FetchError, http_get};
use crate::spec::Names;
use crate::{Lab, LabError, Target};

impl Lab {
    pub(crate) fn unknown(&self, name: &str) -> LabError {
        let mut known: Vec<String> = vec!["router".into(), "internet".into()];
        known.extend(self.state.nodes.iter().map(|n| n.name.clone()));
        known.extend(self.state.pods.iter().map(|p| p.name.clone()));
        LabError::UnknownTarget {
            name: name.to_owned(),
            known: known.join(", "),
        }
    }

    /// Resolves a user-given name (`pod-3`, `node-1`, `router`, `internet`).
    pub fn target(&self, name: &str) -> Result<Target, LabError> {
        if name == "router" {
            Ok(Target::Router)
        } else if name == "internet" {
            Ok(Target::Internet)
        } else if self.state.pods.iter().any(|p| p.name == name) {
            Ok(Target::Pod(name.to_owned()))
        } else if self.state.nodes.iter().any(|n| n.name == name) {
            Ok(Target::Node(name.to_owned()))
        } else {
            Err(self.unknown(name))
        }
    }

    /// The network namespace of a name.
    pub fn netns(&self, name: &str) -> Result<String, LabError> {
        let names = Names::new(&self.state.spec.prefix);
        Ok(match self.target(name)? {
            Target::Router => names.router(),
            Target::Internet => names.internet(),
            Target::Pod(pod) => names.pod(&pod),
            Target::Node(node) => self.node(&node)?.netns.clone(),
        })
    }

    /// A command that runs `program` inside a lab namespace.
    pub fn command(&self, name: &str, program: impl AsRef<OsStr>) -> Result<Command, LabError> {
        Ok(netns_command(&self.netns(name)?, program))
    }

    /// Runs `argv` inside a namespace with the terminal's stdio; its exit status.
    pub fn exec(&self, name: &str, argv: &[String]) -> Result<ExitStatus, LabError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| LabError::Spec("exec needs a command after `--`".into()))?;
        let mut command = self.command(name, program)?;
        command.args(args).status().map_err(|e| LabError::Command {
            command: argv.join(" "),
            detail: e.to_string(),
        })
    }

    /// Runs `argv` inside a namespace and captures its output.
    pub fn output(&self, name: &str, argv: &[&str]) -> Result<Output, LabError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| LabError::Spec("no command given".into()))?;
        let mut command = self.command(name, program)?;
        command.args(args).output().map_err(|e| LabError::Command {
            command: argv.join(" "),
            detail: e.to_string(),
        })
    }

    /// Asks the lab's internet who `name` is, over IPv4 (`ipv6 = false`) or IPv6: the address it sees,
    /// trimmed. A pod of an IPv6 lab is seen as its own IPv6 address over IPv6 and as its node's public
    /// IPv4 address over IPv4 (its egress address SNATed to the node's, then to the public one).
    pub fn whoami(
        &self,
        name: &str,
        ipv6: bool,
        timeout: Duration,
    ) -> Result<Result<String, FetchError>, LabError> {
        let url = if ipv6 {
            crate::internet::service_url_v6()
        } else {
            crate::internet::service_url()
        };
        Ok(self
            .http_get(name, &url, timeout)?
            .map(|body| body.trim().to_owned()))
    }

    /// GETs `url` from inside a namespace (no curl needed); the body.
    pub fn http_get(
        &self,
        name: &str,
        url: &str,
        timeout: Duration,
    ) -> Result<Result<String, FetchError>, LabError> {
        let url = url.to_owned();
        in_netns(&self.netns(name)?, move || Ok(http_get(&url, timeout)))
    }
}
