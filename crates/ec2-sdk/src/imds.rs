//! [`SdkImds`]: the `Imds` trait over aws-config's IMDSv2 client (token PUT, then GETs).

use std::net::Ipv4Addr;

use async_trait::async_trait;
use aws_config::imds::client::Client;
use ipnet::Ipv4Net;
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
            Ok(value) => Ok(value.as_ref().trim().to_owned()),
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
        Ok(self
            .get(path)
            .await?
            .lines()
            .map(|l| l.trim().trim_end_matches('/').to_owned())
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn optional_lines(&self, path: &str) -> Result<Vec<String>, Ec2Error> {
        match self.lines(path).await {
            Err(error) if error.code == "NotFound" => Ok(Vec::new()),
            other => other,
        }
    }
}

fn parsed<T: std::str::FromStr>(path: &str, text: &str) -> Result<T, Ec2Error> {
    text.trim().parse().map_err(|_| {
        Ec2Error::new(
            "InvalidResponse",
            format!("metadata {path}: cannot parse {text:?}"),
        )
    })
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
        let device = self.get(&format!("{base}/device-number")).await?;
        let card = match self.get(&format!("{base}/network-card")).await {
            Ok(text) => parsed(&format!("{base}/network-card"), &text)?,
            Err(error) if error.code == "NotFound" => 0,
            Err(error) => return Err(error),
        };
        let cidr = self.get(&format!("{base}/subnet-ipv4-cidr-block")).await?;
        let addresses = self.lines(&format!("{base}/local-ipv4s")).await?;
        let prefixes = self.optional_lines(&format!("{base}/ipv4-prefix")).await?;
        let vpc_cidrs = self.lines(&format!("{base}/vpc-ipv4-cidr-blocks")).await?;
        Ok(ImdsInterface {
            mac: mac.to_owned(),
            device_number: parsed("device-number", &device)?,
            network_card: card,
            interface_id: self.get(&format!("{base}/interface-id")).await?,
            subnet_id: self.get(&format!("{base}/subnet-id")).await?,
            subnet_ipv4_cidr_block: parsed("subnet-ipv4-cidr-block", &cidr)?,
            local_ipv4s: addresses
                .iter()
                .map(|a| parsed::<Ipv4Addr>("local-ipv4s", a))
                .collect::<Result<_, _>>()?,
            ipv4_prefixes: prefixes
                .iter()
                .map(|p| parsed::<Ipv4Net>("ipv4-prefix", p))
                .collect::<Result<_, _>>()?,
            vpc_ipv4_cidr_blocks: vpc_cidrs
                .iter()
                .map(|c| parsed::<Ipv4Net>("vpc-ipv4-cidr-blocks", c))
                .collect::<Result<_, _>>()?,
            security_group_ids: self.optional_lines(&format!("{base}/security-group-ids")).await?,
        })
    }
}
