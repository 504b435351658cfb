//! Every EC2 call the daemon makes, counted and timed under the original's metric names
//! (`awscni_ec2api_req_count{fn}`, `awscni_ec2api_error_count{fn}`, `awscni_aws_api_error_count{api,error}`,
//! `awscni_aws_api_latency_ms{api,error,status}`), whichever backend serves it.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};
use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2Error, Filter,
    Instance, InstanceTypeInfo, NetworkInterface, NetworkInterfacePage, Subnet, Tags,
};

use crate::metrics::Metrics;

/// An [`Ec2`] that records metrics around another.
#[derive(Clone)]
pub struct MeteredEc2 {
    inner: Arc<dyn Ec2>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MeteredEc2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeteredEc2")
    }
}

impl MeteredEc2 {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Ec2>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn call<T>(
        &self,
        api: &str,
        call: impl Future<Output = Result<T, Ec2Error>>,
    ) -> Result<T, Ec2Error> {
        let started = Instant::now();
        let result = call.await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let metrics = &self.metrics;
        metrics.ec2api_req_count.with_label_values(&[api]).inc();
        match &result {
            Ok(_) => metrics
                .aws_api_latency_ms
                .observe(&[api, "false", "200"], elapsed_ms),
            Err(error) => {
                metrics.ec2api_error_count.with_label_values(&[api]).inc();
                metrics
                    .aws_api_error_count
                    .with_label_values(&[api, error.code.as_str()])
                    .inc();
                let status = if error.kind == vpcni_ec2::Ec2ErrorKind::Throttled {
                    "503"
                } else {
                    "400"
                };
                metrics
                    .aws_api_latency_ms
                    .observe(&[api, "true", status], elapsed_ms);
            }
        }
        result
    }
}

#[async_trait]
impl Ec2 for MeteredEc2 {
    async fn describe_instance(&self, instance_id: &str) -> Result<Instance, Ec2Error> {
        self.call("DescribeInstances", self.inner.describe_instance(instance_id))
            .await
    }

    async fn describe_instance_types(
        &self,
        instance_types: &[String],
    ) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        self.call(
            "DescribeInstanceTypes",
            self.inner.describe_instance_types(instance_types),
        )
        .await
    }

    async fn describe_subnets(
        &self,
        subnet_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<Subnet>, Ec2Error> {
        self.call(
            "DescribeSubnets",
            self.inner.describe_subnets(subnet_ids, filters),
        )
        .await
    }

    async fn describe_network_interfaces(
        &self,
        request: &DescribeNetworkInterfacesRequest,
    ) -> Result<NetworkInterfacePage, Ec2Error> {
        self.call(
            "DescribeNetworkInterfaces",
            self.inner.describe_network_interfaces(request),
        )
        .await
    }

    async fn create_network_interface(
        &self,
        request: &CreateNetworkInterfaceRequest,
    ) -> Result<NetworkInterface, Ec2Error> {
        self.call(
            "CreateNetworkInterface",
            self.inner.create_network_interface(request),
        )
        .await
    }

    async fn attach_network_interface(
        &self,
        network_interface_id: &str,
        instance_id: &str,
        device_index: u32,
        network_card_index: u32,
    ) -> Result<String, Ec2Error> {
        self.call(
            "AttachNetworkInterface",
            self.inner.attach_network_interface(
                network_interface_id,
                instance_id,
                device_index,
                network_card_index,
            ),
        )
        .await
    }

    async fn set_delete_on_termination(
        &self,
        network_interface_id: &str,
        attachment_id: &str,
        delete_on_termination: bool,
    ) -> Result<(), Ec2Error> {
        self.call(
            "ModifyNetworkInterfaceAttribute",
            self.inner
                .set_delete_on_termination(network_interface_id, attachment_id, delete_on_termination),
        )
        .await
    }

    async fn detach_network_interface(&self, attachment_id: &str, force: bool) -> Result<(), Ec2Error> {
        self.call(
            "DetachNetworkInterface",
            self.inner.detach_network_interface(attachment_id, force),
        )
        .await
    }

    async fn delete_network_interface(&self, network_interface_id: &str) -> Result<(), Ec2Error> {
        self.call(
            "DeleteNetworkInterface",
            self.inner.delete_network_interface(network_interface_id),
        )
        .await
    }

    async fn assign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>, Ec2Error> {
        self.call(
            "AssignPrivateIpAddresses",
            self.inner
                .assign_private_ip_addresses(network_interface_id, addresses),
        )
        .await
    }

    async fn unassign_private_ip_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<(), Ec2Error> {
        self.call(
            "UnassignPrivateIpAddresses",
            self.inner
                .unassign_private_ip_addresses(network_interface_id, addresses),
        )
        .await
    }

    async fn assign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv4Net>,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        self.call(
            "AssignPrivateIpAddresses",
            self.inner.assign_ipv4_prefixes(network_interface_id, prefixes),
        )
        .await
    }

    async fn unassign_ipv4_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv4Net],
    ) -> Result<(), Ec2Error> {
        self.call(
            "UnassignPrivateIpAddresses",
            self.inner.unassign_ipv4_prefixes(network_interface_id, prefixes),
        )
        .await
    }

    async fn assign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &AddressRequest<Ipv6Addr>,
    ) -> Result<Vec<Ipv6Addr>, Ec2Error> {
        self.call(
            "AssignIpv6Addresses",
            self.inner.assign_ipv6_addresses(network_interface_id, addresses),
        )
        .await
    }

    async fn unassign_ipv6_addresses(
        &self,
        network_interface_id: &str,
        addresses: &[Ipv6Addr],
    ) -> Result<(), Ec2Error> {
        self.call(
            "UnassignIpv6Addresses",
            self.inner
                .unassign_ipv6_addresses(network_interface_id, addresses),
        )
        .await
    }

    async fn assign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &AddressRequest<Ipv6Net>,
    ) -> Result<Vec<Ipv6Net>, Ec2Error> {
        self.call(
            "AssignIpv6Addresses",
            self.inner.assign_ipv6_prefixes(network_interface_id, prefixes),
        )
        .await
    }

    async fn unassign_ipv6_prefixes(
        &self,
        network_interface_id: &str,
        prefixes: &[Ipv6Net],
    ) -> Result<(), Ec2Error> {
        self.call(
            "UnassignIpv6Addresses",
            self.inner.unassign_ipv6_prefixes(network_interface_id, prefixes),
        )
        .await
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &Tags) -> Result<(), Ec2Error> {
        self.call("CreateTags", self.inner.create_tags(resource_ids, tags))
            .await
    }
}
