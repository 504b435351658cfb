//! The SDK backend against moto_server, someone else's EC2 endpoint: proves vpcni speaks EC2's wire protocol.
//! moto enforces no limits and knows no prefixes; those are tested against the simulator (sim_endpoint.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2ErrorKind,
    Filter, Tags,
};
use vpcni_ec2_sdk::{SdkEc2, SdkEc2Options};

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Moto {
    let binary = std::env::var("VPCNI_MOTO_SERVER").expect(
        "VPCNI_MOTO_SERVER is not set: run scripts/test.sh, which installs moto_server in a venv and sets it",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn client(url: &str) -> SdkEc2 {
    SdkEc2::new(SdkEc2Options {
        endpoint: Some(url.to_owned()),
        region: Some("us-west-2".into()),
        static_credentials: Some(("testing".into(), "testing".into())),
        max_attempts: 1,
        attempt_timeout: Duration::from_secs(10),
        ..SdkEc2Options::default()
    })
    .await
}

#[tokio::test]
async fn full_eni_lifecycle_against_moto() {
    let moto = start_moto();
    let ec2 = client(&moto.url).await;
    let sdk = ec2.client();
    let vpc = sdk
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let subnet = sdk
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-west-2a")
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap();
    let run = sdk
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::M5Xlarge)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet)
        .send()
        .await
        .unwrap();
    let instance_id = run.instances()[0].instance_id().unwrap().to_owned();

    // DescribeInstances + DescribeNetworkInterfaces through the trait.
    let instance = ec2.describe_instance(&instance_id).await.unwrap();
    assert_eq!(instance.instance_type, "m5.xlarge");
    assert_eq!(instance.network_interfaces.len(), 1);
    assert_eq!(
        instance.network_interfaces[0]
            .attachment
            .as_ref()
            .unwrap()
            .device_index,
        0
    );

    let subnets = ec2
        .describe_subnets(std::slice::from_ref(&subnet), &[])
        .await
        .unwrap();
    assert_eq!(
        subnets[0].cidr_block,
        "10.0.1.0/24".parse::<ipnet::Ipv4Net>().unwrap()
    );
    assert!(subnets[0].available_ip_address_count > 200);

    let mut tags = Tags::new();
    tags.insert("node.k8s.amazonaws.com/instance_id".into(), instance_id.clone());
    let eni = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: subnet.clone(),
            description: format!("aws-K8S-{instance_id}"),
            tags: tags.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(eni.tags, tags);
    let eni_id = eni.network_interface_id.clone();

    let attachment = ec2
        .attach_network_interface(&eni_id, &instance_id, 1, 0)
        .await
        .unwrap();
    ec2.set_delete_on_termination(&eni_id, &attachment, true)
        .await
        .unwrap();

    let assigned = ec2
        .assign_private_ip_addresses(&eni_id, &AddressRequest::Count(3))
        .await
        .unwrap();
    assert!(assigned.len() >= 3, "{assigned:?}");
    let explicit: Ipv4Addr = "10.0.1.200".parse().unwrap();
    ec2.assign_private_ip_addresses(&eni_id, &AddressRequest::Explicit(vec![explicit]))
        .await
        .unwrap();

    let page = ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            network_interface_ids: vec![eni_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let described = &page.network_interfaces[0];
    assert!(described.secondary_ips.contains(&explicit));
    assert_eq!(described.secondary_ips.len(), 4);
    // moto accepts ModifyNetworkInterfaceAttribute but does not record DeleteOnTermination; the simulator
    // tests check the flag.
    assert_eq!(described.attachment.as_ref().unwrap().instance_id, instance_id);

    ec2.unassign_private_ip_addresses(&eni_id, &[explicit])
        .await
        .unwrap();

    let mut more = Tags::new();
    more.insert("cluster.k8s.amazonaws.com/name".into(), "lab".into());
    ec2.create_tags(std::slice::from_ref(&eni_id), &more)
        .await
        .unwrap();
    for filters in [
        vec![Filter::new("tag-key", "node.k8s.amazonaws.com/instance_id")],
        vec![Filter::new("tag:cluster.k8s.amazonaws.com/name", "lab")],
        vec![
            Filter::new("attachment.instance-id", instance_id.clone()),
            Filter::new("vpc-id", vpc.clone()),
        ],
    ] {
        let page = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: filters.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            page.network_interfaces
                .iter()
                .any(|e| e.network_interface_id == eni_id),
            "{filters:?}"
        );
    }

    ec2.detach_network_interface(&attachment, false).await.unwrap();
    let available = ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            filters: vec![Filter::new("status", "available")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        available
            .network_interfaces
            .iter()
            .any(|e| e.network_interface_id == eni_id)
    );
    ec2.delete_network_interface(&eni_id).await.unwrap();

    let missing = ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            network_interface_ids: vec![eni_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code, "InvalidNetworkInterfaceID.NotFound");
    assert_eq!(missing.kind, Ec2ErrorKind::NotFound);
    assert_eq!(
        ec2.delete_network_interface(&eni_id).await.unwrap_err().kind,
        Ec2ErrorKind::NotFound
    );

    let calls = ec2.budget().stats().calls();
    assert_eq!(calls["AttachNetworkInterface"], 1);
    assert!(
        ec2.budget()
            .stats()
            .errors()
            .contains_key("DescribeNetworkInterfaces/InvalidNetworkInterfaceID.NotFound")
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_not_a_hang() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ec2 = client(&format!("http://127.0.0.1:{port}")).await;
    let error = ec2.describe_subnets(&[], &[]).await.unwrap_err();
    assert_eq!(error.kind, Ec2ErrorKind::Unavailable, "{error}");
}
