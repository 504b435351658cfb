//! [`SdkEc2`]: the `Ec2` trait over aws-sdk-ec2.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::types as sdk;
use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error, Filter,
    Instance, InstanceTypeInfo, NetworkInterface, NetworkInterfacePage, Subnet, Tags,
};

use crate::budget::{ApiBudget, BudgetConfig};
use crate::convert;

/// How to build the client.
#[derive(Debug, Clone)]
pub struct SdkEc2Options {
    /// EC2 endpoint; `None` reads `AWS_EC2_ENDPOINT`, then the SDK's default for the region.
    pub endpoint: Option<String>,
    /// Region; `None` uses the SDK's chain (env, profile, instance metadata).
    pub region: Option<String>,
    /// Attempts per call, retries included (the SDK's standard mode: exponential backoff with jitter).
    pub max_attempts: u32,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Per-attempt timeout.
    pub attempt_timeout: Duration,
    /// Client-side API budget.
    pub budget: BudgetConfig,
    /// Static access key and secret; `None` uses the standard chain (env, profile, IRSA, Pod Identity).
    pub static_credentials: Option<(String, String)>,
}

impl Default for SdkEc2Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(10),
            budget: BudgetConfig::default(),
            static_credentials: None,
        }
    }
}

/// EC2 through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkEc2 {
    client: aws_sdk_ec2::Client,
    budget: Arc<ApiBudget>,
}

impl SdkEc2 {
    /// Builds the client from the standard AWS configuration chain.
    pub async fn new(options: SdkEc2Options) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some((key, secret)) = &options.static_credentials {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                key,
                secret,
                None,
                None,
                "vpcni-static",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_ec2::config::Builder::from(&shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(options.max_attempts)
                    .with_initial_backoff(options.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(options.attempt_timeout)
                    .build(),
            );
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_EC2_ENDPOINT").ok().filter(|e| !e.is_empty()));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_ec2::Client::from_conf(builder.build()),
            budget: Arc::new(ApiBudget::new(options.budget)),
        }
    }

    /// The API budget and its counters.
    pub fn budget(&self) -> &ApiBudget {
        &self.budget
    }

    /// The underlying SDK client (tests use it to set up VPCs and instances).
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    async fn enter(&self, action: &str) {
        self.budget.acquire(action).await;
    }

    fn fail(&self, action: &str, error: Ec2Error) -> Ec2Error {
        self.budget.stats().record_error(action, &error.code);
        tracing::debug!(action, code = %error.code, "EC2 error: {}", error.message);
        error
    }
}

macro_rules! call {
    ($self:ident, $action:literal, $request:expr) => {{
        $self.enter($action).await;
        $request
            .send()
            .await
            .map_err(|e| $self.fail($action, convert::error(e)))
    }};
}

#[async_trait]
impl Ec2 for SdkEc2 {
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance, Ec2Error> {
        let output = call!(
            self,
            "DescribeInstances",
            self.client.describe_instances().instance_ids(instance_id)
        )?;
        let instance = output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| {
                Ec2Error::new(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{instance_id}' does not exist"),
                )
            })?;
        // DescribeInstances omits ENI tags; the ENIs come from DescribeNetworkInterfaces, as the original does.
        let enis = self
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("attachment.instance-id", instance_id)],
                ..Default::default()
            })
            .await?;
        Ok(Instance {
            instance_id: instance_id.to_owned(),
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            availability_zone: instance
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_owned(),
            vpc_id: instance.vpc_id().unwrap_or_default().to_owned(),
            subnet_id: instance.subnet_id().unwrap_or_default().to_owned(),
            private_ip: instance
                .private_ip_address()
                .and_then(|ip| ip.parse().ok())
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            state: instance
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            network_interfaces: enis.network_interfaces,
            tags: convert::tags(instance.tags()),
        })
    }

    async fn describe_instance_types(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        let types = instance_types
            .iter()
            .map(|t| sdk::InstanceType::from(t.as_str()))
            .collect();
        let output = call!(
            self,
            "DescribeInstanceTypes",
            self.client
                .describe_instance_types()
                .set_instance_types(Some(types))
        )?;
        Ok(output
            .instance_types()
            .iter()
            .map(|info| {
                let network = info.network_info();
                InstanceTypeInfo {
                    instance_type: info
                        .instance_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    max_enis: network.and_then(|n| n.maximum_network_interfaces()).unwrap_or(0) as u32,
                    ipv4_per_eni: network
                        .and_then(|n| n.ipv4_addresses_per_interface())
                        .unwrap_or(0) as u32,
                    ipv6_supported: network.and_then(|n| n.ipv6_supported()).unwrap_or(false),
                    ipv6_per_eni: network
                        .and_then(|n| n.ipv6_addresses_per_interface())
                        .unwrap_or(0)
                        .max(0) as u32,
                    hypervisor: info
                        .hypervisor()
                        .map(|h| h.as_str().to_owned())
                        .unwrap_or_default(),
                    bare_metal: info.bare_metal().unwrap_or(false),
                    default_vcpus: info
                        .v_cpu_info()
                        .and_then(|v| v.default_v_cpus())
                        .map(|n| n as u32),
                    network_cards: network
                        .map(|n| {
                            n.network_cards()
                                .iter()
                                .map(|c| {
                                    (
                                        c.network_card_index().unwrap_or(0) as u32,
                                        c.maximum_network_interfaces().unwrap_or(0) as u32,
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn describe_subnets(
        &self,
        subnet_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Subnet>, Ec2Error> {
        let mut request = self.client.describe_subnets();
        if !subnet_ids.is_empty() {
            request = request.set_subnet_ids(Some(subnet_ids.to_vec()));
        }
        if !filters.is_empty() {
            request = request.set_filters(Some(convert::filters(filters)));
        }
        let output = call!(self, "DescribeSubnets", request)?;
        output.subnets().iter().map(convert::subnet).collect()
    }

    async fn describe_network_interfaces(
        &self,
        request: &DescribeNetworkInterfacesRequest,
    ) -> Result<NetworkInterfacePage, Ec2Error> {
        let mut sdk_request = self.client.describe_network_interfaces();
        if !request.network_interface_ids.is_empty() {
            sdk_request = sdk_request.set_network_interface_ids(Some(request.network_interface_ids.clone()));
        }
        if !request.filters.is_empty() {
            sdk_request = sdk_request.set_filters(Some(convert::filters(&request.filters)));
        }
        if let Some(max) = request.max_results {
            sdk_request = sdk_request.max_results(max as i32);
        }
        if let Some(token) = &request.next_token {
            sdk_request = sdk_request.next_token(token);
        }
        let output = call!(self, "DescribeNetworkInterfaces", sdk_request)?;
        Ok(NetworkInterfacePage {
            network_interfaces: output
                .network_interfaces()
                .iter()
                .map(convert::network_interface)
                .collect::<Result<_, _>>()?,
            next_token: output.next_token().filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }

    async fn create_network_interface(
        &self,
        request: &CreateNetworkInterfaceRequest,
    ) -> Result<NetworkInterface, Ec2Error> {
        let mut sdk_request = self
            .client
            .create_network_interface()
            .subnet_id(&request.subnet_id)
            .description(&request.description);
        if !request.security_groups.is_empty() {
            sdk_request = sdk_request.set_groups(Some(request.security_groups.clone()));
        }
        if let Some(ip) = request.private_ip {
            sdk_request = sdk_request.private_ip_address(ip.to_string());
        }
        for spec in &request.private_ips {
            sdk_request = sdk_request.private_ip_addresses(
                sdk::PrivateIpAddressSpecification::builder()
                    .private_ip_address(spec.address.to_string())
                    .primary(spec.primary)
                    .build(),
            );
        }
        if request.secondary_ip_count > 0 {
            sdk_request = sdk_request.secondary_private_ip_address_count(request.secondary_ip_count as i32);
        }
        for prefix in &request.ipv4_prefixes {
            sdk_request = sdk_request.ipv4_prefixes(
                sdk::Ipv4PrefixSpecificationRequest::builder()
                    .ipv4_prefix(prefix.to_string())
                    .build(),
            );
        }
        if request.ipv4_prefix_count > 0 {
            sdk_request = sdk_request.ipv4_prefix_count(request.ipv4_prefix_count as i32);
        }
        if !request.tags.is_empty() {
            sdk_request = sdk_request.tag_specifications(
                sdk::TagSpecification::builder()
                    .resource_type(sdk::ResourceType::NetworkInterface)
                    .set_tags(Some(convert::sdk_tags(&request.tags)))
                    .build(),
            );
        }
        let output = call!(self, "CreateNetworkInterface", sdk_request)?;
        let eni = output.network_interface().ok_or_else(|| {
            Ec2Error::new("InvalidResponse", "CreateNetworkInterface returned no interface")
        })?;
        convert::network_interface(eni)
    }

    async fn attach_network_interface(
        &self,
        network_interface_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card_index: u32,
    ) -> Result<String, Ec2Error> {
        let mut request = self
            .client
            .attach_network_interface()
            .network_interface_id(network_interface_id)
            .instance_id(instance_id)
            .device_index(device_index as i32);
        // Only multi-card types know network cards; a 0 is the default and some endpoints reject the field.
        if network_card_index > 0 {
            request = request.network_card_index(network_card_index as i32);
        }
        let output = call!(self, "AttachNetworkInterface", request)?;
        output.attachment_id().map(str::to_owned).ok_or_else(|| {
            Ec2Error::new(
                "InvalidResponse",
                "AttachNetworkInterface returned no attachment id",
            )
        })
    }

    async fn set_delete_on_termination(
        &self,
        network_interface_id: &str,
        attachment_id: &str,
        delete_on_termination: bool,
    ) -> Result<(), Ec2Error> {
        let change = sdk::NetworkInterfaceAttachmentChanges::builder()
            .attachment_id(attachment_id)
            .delete_on_termination(delete_on_termination)
            .build();
        call!(
            self,
            "ModifyNetworkInterfaceAttribute",
            self.client
                .modify_network_interface_attribute()
                .network_interface_id(network_interface_id)
                .attachment(change)
        )?;
        Ok(())
    }

    async fn detach_network_interface(&self, attachment_id: &str, force: bool) -> Result<(), Ec2Error> {
        call!(
            self,
            "DetachNetworkInterface",
            self.client
                .detach_network_interface()
                .attachment_id(attachment_id)
                .force(force)
        )?;
        Ok(())
    }

    async fn delete_network_interface(&self, network_interface_id: &str) -> Result<(), Ec2Error> {
        call!(
            self,
            "DeleteNetworkInterface",
            self.client
                .delete_network_interface()
                .network_interface_id(network_interface_id)
        )?;
        Ok(())
    }

    async fn assign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>, Ec2Error> {
        let request = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(network_interface_id);
        let request = match addresses {
            AddressRequest::Count(n) => request.secondary_private_ip_address_count(*n as i32),
            AddressRequest::Explicit(ips) => {
                request.set_private_ip_addresses(Some(ips.iter().map(ToString::to_string).collect()))
            }
        };
        let output = call!(self, "AssignPrivateIpAddresses", request)?;
        Ok(output
            .assigned_private_ip_addresses()
            .iter()
            .filter_map(|a| a.private_ip_address()?.parse().ok())
            .collect())
    }

    async fn unassign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<(), Ec2Error> {
        let request = self
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(network_interface_id)
            .set_private_ip_addresses(Some(addresses.iter().map(ToString::to_string).collect()));
        call!(self, "UnassignPrivateIpAddresses", request)?;
        Ok(())
    }

    async fn assign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv4Net>,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        let request = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(network_interface_id);
        let request = match prefixes {
            AddressRequest::Count(n) => request.ipv4_prefix_count(*n as i32),
            AddressRequest::Explicit(list) => {
                request.set_ipv4_prefixes(Some(list.iter().map(ToString::to_string).collect()))
            }
        };
        let output = call!(self, "AssignPrivateIpAddresses", request)?;
        Ok(output
            .assigned_ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix()?.parse().ok())
            .collect())
    }

    async fn unassign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv4Net],
    ) -> Result<(), Ec2Error> {
        let request = self
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(network_interface_id)
            .set_ipv4_prefixes(Some(prefixes.iter().map(ToString::to_string).collect()));
        call!(self, "UnassignPrivateIpAddresses", request)?;
        Ok(())
    }

    async fn assign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>, Ec2Error> {
        let request = self
            .client
            .assign_ipv6_addresses()
            .network_interface_id(network_interface_id);
        let request = match addresses {
            AddressRequest::Count(n) => request.ipv6_address_count(*n as i32),
            AddressRequest::Explicit(list) => {
                request.set_ipv6_addresses(Some(list.iter().map(ToString::to_string).collect()))
            }
        };
        let output = call!(self, "AssignIpv6Addresses", request)?;
        Ok(output
            .assigned_ipv6_addresses()
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect())
    }

    async fn unassign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv6Addr],
    ) -> Result<(), Ec2Error> {
        let request = self
            .client
            .unassign_ipv6_addresses()
            .network_interface_id(network_interface_id)
            .set_ipv6_addresses(Some(addresses.iter().map(ToString::to_string).collect()));
        call!(self, "UnassignIpv6Addresses", request)?;
        Ok(())
    }

    async fn assign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv6Net>,
    ) -> Result<Vec<Ipv6Net>, Ec2Error> {
        let request = self
            .client
            .assign_ipv6_addresses()
            .network_interface_id(network_interface_id);
        let request = match prefixes {
            AddressRequest::Count(n) => request.ipv6_prefix_count(*n as i32),
            AddressRequest::Explicit(list) => {
                request.set_ipv6_prefixes(Some(list.iter().map(ToString::to_string).collect()))
            }
        };
        let output = call!(self, "AssignIpv6Addresses", request)?;
        Ok(output
            .assigned_ipv6_prefixes()
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    async fn unassign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv6Net],
    ) -> Result<(), Ec2Error> {
        let request = self
            .client
            .unassign_ipv6_addresses()
            .network_interface_id(network_interface_id)
            .set_ipv6_prefixes(Some(prefixes.iter().map(ToString::to_string).collect()));
        call!(self, "UnassignIpv6Addresses", request)?;
        Ok(())
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        let request = self
            .client
            .create_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .set_tags(Some(convert::sdk_tags(tags)));
        call!(self, "CreateTags", request)?;
        Ok(())
    }
}
