//! [`TestNodeBuilder`]: what kind of node to bring up.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::Ipv4Net;

use crate::netns::PREFIX;
use crate::{Result, TestNode, setup_error};

/// Settings for a [`TestNode`]; [`TestNodeBuilder::start`] brings it up.
#[derive(Debug, Clone)]
pub struct TestNodeBuilder {
    pub(crate) instance_type: String,
    pub(crate) vpc_cidr: Ipv4Net,
    pub(crate) subnet: Ipv4Net,
    pub(crate) extra_subnets: Vec<Ipv4Net>,
    pub(crate) primary_ip: Option<Ipv4Addr>,
    pub(crate) ipamd_env: Vec<(String, String)>,
    pub(crate) sim_settings: Vec<String>,
    pub(crate) topology_extra: String,
    pub(crate) start_ipamd: bool,
    pub(crate) hotplug: bool,
    pub(crate) ipv6: bool,
}

impl Default for TestNodeBuilder {
    fn default() -> Self {
        Self {
            instance_type: "m5.large".to_owned(),
            vpc_cidr: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 16).unwrap_or_default(),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 20).unwrap_or_default(),
            extra_subnets: Vec::new(),
            primary_ip: None,
            // Pool cycles every 250 ms instead of 5 s so tests do not wait on the pool.
            ipamd_env: vec![("VPCNI_POOL_INTERVAL_MS".to_owned(), "250".to_owned())],
            sim_settings: Vec::new(),
            topology_extra: String::new(),
            start_ipamd: true,
            hotplug: true,
            ipv6: false,
        }
    }
}

impl TestNodeBuilder {
    /// Instance type (default `m5.large`: 3 ENIs of 10 addresses, 29 pods).
    pub fn instance_type(mut self, instance_type: &str) -> Self {
        self.instance_type = instance_type.to_owned();
        self
    }

    /// VPC CIDR (default 10.0.0.0/16).
    pub fn vpc_cidr(mut self, cidr: Ipv4Net) -> Self {
        self.vpc_cidr = cidr;
        self
    }

    /// The node's subnet (default 10.0.0.0/20); a tiny one (a /28) runs out of addresses quickly.
    pub fn subnet(mut self, cidr: Ipv4Net) -> Self {
        self.subnet = cidr;
        self
    }

    /// Another subnet in the VPC, tagged `kubernetes.io/role/cni=1` (subnet discovery picks it for ENIs).
    pub fn extra_subnet(mut self, cidr: Ipv4Net) -> Self {
        self.extra_subnets.push(cidr);
        self
    }

    /// The instance's primary address (default: the subnet's lowest free one).
    pub fn primary_ip(mut self, ip: Ipv4Addr) -> Self {
        self.primary_ip = Some(ip);
        self
    }

    /// An environment variable for ipamd (replaces the testbed's value of the same name).
    pub fn ipamd_env(mut self, name: &str, value: &str) -> Self {
        self.ipamd_env.retain(|(k, _)| k != name);
        self.ipamd_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `ENABLE_PREFIX_DELEGATION=true` (use a Nitro instance type).
    pub fn prefix_delegation(self) -> Self {
        self.ipamd_env("ENABLE_PREFIX_DELEGATION", "true")
    }

    /// A dual-stack VPC (an Amazon-provided IPv6 /56, the node's subnet with its first /64) and ipamd in
    /// IPv6 mode (`ENABLE_IPv6=true`, `ENABLE_IPv4=false`, `ENABLE_PREFIX_DELEGATION=true`).
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = true;
        self.ipamd_env("ENABLE_IPv6", "true")
            .ipamd_env("ENABLE_IPv4", "false")
            .prefix_delegation()
    }

    /// A line in the topology's `[sim]` table, e.g. `("attach_delay_ms", "500")` (value in TOML).
    pub fn sim_setting(mut self, key: &str, toml_value: &str) -> Self {
        self.sim_settings.push(format!("{key} = {toml_value}"));
        self
    }

    /// TOML appended to the generated topology (before `[sim]`), e.g. more `[[subnets]]`.
    pub fn topology_extra(mut self, toml: &str) -> Self {
        self.topology_extra.push_str(toml);
        self.topology_extra.push('\n');
        self
    }

    /// Do not start ipamd (start it later with [`TestNode::start_ipamd`]).
    pub fn without_ipamd(mut self) -> Self {
        self.start_ipamd = false;
        self
    }

    /// Do not plug links for attached ENIs.
    pub fn without_hotplug(mut self) -> Self {
        self.hotplug = false;
        self
    }

    pub(crate) fn topology(&self) -> String {
        let mut text = format!("[vpc]\ncidr = \"{}\"\n", self.vpc_cidr);
        if self.ipv6 {
            text.push_str("amazon_ipv6 = true\n");
        }
        text.push('\n');
        let _ = writeln!(
            text,
            "[[subnets]]\nname = \"primary\"\ncidr = \"{}\"\n{}",
            self.subnet,
            if self.ipv6 { "ipv6_index = 0\n" } else { "" }
        );
        for (i, cidr) in self.extra_subnets.iter().enumerate() {
            let _ = writeln!(
                text,
                "[[subnets]]\nname = \"extra-{i}\"\ncidr = \"{cidr}\"\ntags = {{ \"kubernetes.io/role/cni\" = \"1\" }}\n"
            );
        }
        let _ = write!(
            text,
            "[[instances]]\nname = \"node\"\ntype = \"{}\"\nsubnet = \"primary\"\ndefault = true\n",
            self.instance_type
        );
        if let Some(ip) = self.primary_ip {
            let _ = writeln!(text, "primary_ip = \"{ip}\"");
        }
        text.push('\n');
        text.push_str(&self.topology_extra);
        text.push_str("\n[sim]\n");
        for line in &self.sim_settings {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Brings the node up: namespaces, simulator, eth0, hot-plug watcher, ipamd (awaited until SERVING).
    pub fn start(self) -> Result<TestNode> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| setup_error(format!("creating {}", dir.display()), e))?;
        let mut node = TestNode::empty(name, dir);
        // From here on, Drop cleans up whatever was made if a step fails.
        node.bring_up(&self)?;
        Ok(node)
    }
}
