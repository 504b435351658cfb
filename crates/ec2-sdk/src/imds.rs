//! [`SdkImds`]: the `Imds` trait over aws-config's IMDSv2 client (token PUT, then GETs).

use std::net::Ipv4Addr;

use async_trait::async_trait;
use aws_config::imds::client::Client;
use vpcni_ec2::imds_text::{self, InterfaceAnswers, parsed};
use vpcni_ec2::{Ec2Error, Imds, ImdsInterface};

/// Instance metadata through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkImds {
    client: Client,
}

impl SdkImds {
    /// Uses `endpoint` if given, else the SDK's configuration (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, or the
    /// link-local default on EC2).
    pub fn new(endpoint: Option<&str>) -> Result<Self, Ec2Error> {
        let mut builder = Client::builder();
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint(endpoint).map_err(|e| {
                Ec2Error::new(
                    "InvalidParameterValue",
                    format!("instance metadata endpoint {endpoint:?}: {e}"),
                )
            })?;
        }
        Ok(Self {
            client: builder.build(),
        })
    }

    async fn get(&self, path: &str) -> Result<String, Ec2Error> {
        let full = format!("/latest/meta-data/{path}");
        match self.client.get(&full).await {
            Ok(value) => Ok(imds_text::value(value.as_ref())),
            Err(error) => {
                let text = format!("{}", aws_sdk_ec2::error::DisplayErrorContext(&error));
                if text.contains("404") {
                    Err(Ec2Error::new(
                        "NotFound",
                        format!("metadata path {path} not found"),
                    ))
                } else {
                    Err(Ec2Error::unavailable(format!("instance metadata {path}: {text}")))
                }
            }
        }
    }

    async fn lines(&self, path: &str) -> Result<Vec<String>, Ec2Error> {
        Ok(imds_text::lines(&self.get(path).await?))
    }

    /// A path that may be absent: `None` for IMDS's 404.
    async fn optional(&self, path: &str) -> Result<Option<String>, Ec2Error> {
        match self.get(path).await {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.code == "NotFound" => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[async_trait]
impl Imds for SdkImds {
    async fn instance_id(&self) -> Result<String, Ec2Error> {
        self.get("instance-id").await
    }

    async fn instance_type(&self) -> Result<String, Ec2Error> {
        self.get("instance-type").await
    }

    async fn region(&self) -> Result<String, Ec2Error> {
        self.get("placement/region").await
    }

    async fn availability_zone(&self) -> Result<String, Ec2Error> {
        self.get("placement/availability-zone").await
    }

    async fn local_ipv4(&self) -> Result<Ipv4Addr, Ec2Error> {
        parsed("local-ipv4", &self.get("local-ipv4").await?)
    }

    async fn primary_mac(&self) -> Result<String, Ec2Error> {
        self.get("mac").await
    }

    async fn macs(&self) -> Result<Vec<String>, Ec2Error> {
        self.lines("network/interfaces/macs/").await
    }

    async fn interface(&self, mac: &str) -> Result<ImdsInterface, Ec2Error> {
        let base = format!("network/interfaces/macs/{mac}");
        let answers = InterfaceAnswers {
            device_number: self.get(&format!("{base}/device-number")).await?,
            network_card: self.optional(&format!("{base}/network-card")).await?,
            subnet_ipv4_cidr_block: self.get(&format!("{base}/subnet-ipv4-cidr-block")).await?,
            local_ipv4s: self.get(&format!("{base}/local-ipv4s")).await?,
            ipv4_prefix: self.optional(&format!("{base}/ipv4-prefix")).await?,
            vpc_ipv4_cidr_blocks: self.get(&format!("{base}/vpc-ipv4-cidr-blocks")).await?,
            interface_id: self.get(&format!("{base}/interface-id")).await?,
            subnet_id: self.get(&format!("{base}/subnet-id")).await?,
            security_group_ids: self.optional(&format!("{base}/security-group-ids")).await?,
            ipv6s: self.optional(&format!("{base}/ipv6s")).await?,
            ipv6_prefix: self.optional(&format!("{base}/ipv6-prefix")).await?,
            subnet_ipv6_cidr_blocks: self.optional(&format!("{base}/subnet-ipv6-cidr-blocks")).await?,
            vpc_ipv6_cidr_blocks: self.optional(&format!("{base}/vpc-ipv6-cidr-blocks")).await?,
        };
        imds_text::interface(mac, &answers)
    }
}
