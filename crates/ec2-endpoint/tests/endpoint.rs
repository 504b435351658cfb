//! The endpoint over plain HTTP: state kept across restarts, topology errors, and requests no SDK would send.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use vpcni_ec2_endpoint::{EndpointConfig, EndpointHandle, Topology};

const TOPOLOGY: &str = r#"
[vpc]
cidr = "10.1.0.0/16"

[[subnets]]
name = "a"
cidr = "10.1.0.0/24"

[[instances]]
name = "node"
type = "t3.medium"
subnet = "a"
"#;

async fn start(state_dir: Option<std::path::PathBuf>, topology: Option<&str>) -> EndpointHandle {
    vpcni_ec2_endpoint::serve(EndpointConfig {
        ec2_listen: "127.0.0.1:0".parse().unwrap(),
        imds_listen: "127.0.0.1:0".parse().unwrap(),
        topology: topology.map(|t| Topology::parse(t).unwrap()),
        sim: Default::default(),
        state_dir,
    })
    .await
    .unwrap()
}

/// One HTTP/1.1 POST on a fresh connection; returns status and body.
async fn post(address: SocketAddr, body: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: ec2\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_survives_a_restart_with_a_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(Some(dir.path().to_owned()), Some(TOPOLOGY)).await;
    let subnet = first.created.subnets["a"].clone();
    let body: &'static str = Box::leak(
        format!("Action=CreateNetworkInterface&SubnetId={subnet}&Description=kept").into_boxed_str(),
    );
    let (status, text) = post(first.ec2_addr, body).await;
    assert_eq!(status, 200, "{text}");
    let eni_id = text
        .split("<networkInterfaceId>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    first.shutdown();

    // The topology is not applied again: the saved account wins.
    let second = start(Some(dir.path().to_owned()), Some(TOPOLOGY)).await;
    assert!(second.created.instances.is_empty());
    let (status, text) = post(second.ec2_addr, "Action=DescribeNetworkInterfaces").await;
    assert_eq!(status, 200);
    assert!(text.contains(&eni_id), "{text}");
    assert_eq!(second.sim.instances().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_answers_carry_the_namespace_and_errors_are_ec2s() {
    let handle = start(None, None).await;
    let (status, text) = post(handle.ec2_addr, "Action=DescribeVpcs&Version=2016-11-15").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>"),
        "{text}"
    );
    let (status, text) = post(
        handle.ec2_addr,
        "Action=CreateSubnet&VpcId=vpc-nope&CidrBlock=10.0.0.0/24",
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("<Code>InvalidVpcID.NotFound</Code>"), "{text}");
    let (status, text) = post(
        handle.ec2_addr,
        "Action=CreateTags&ResourceId.1=eni-0&Tag.1.Key=&Tag.1.Value=x",
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("<Code>InvalidParameterValue</Code>"), "{text}");
}

#[test]
fn bad_topologies_say_what_is_wrong() {
    let error = Topology::parse("[vpc]\ncidr = \"10.0.0.0/16\"\ncolour = 1\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("colour"), "{error}");
    let topology = Topology::parse(
        "[vpc]\ncidr = \"10.0.0.0/16\"\n[[instances]]\nname = \"n\"\ntype = \"m5.large\"\nsubnet = \"missing\"\n",
    )
    .unwrap();
    let sim = vpcni_ec2::sim::Simulator::new(
        Default::default(),
        std::sync::Arc::new(vpcni_ec2::sim::VirtualClock::new(0)),
    );
    let error = topology.apply(&sim).unwrap_err().to_string();
    assert!(error.contains("unknown subnet \"missing\""), "{error}");
    let overlapping = Topology::parse(
        "[vpc]\ncidr = \"10.0.0.0/16\"\n[[subnets]]\nname = \"a\"\ncidr = \"10.0.0.0/24\"\n[[subnets]]\nname = \"b\"\ncidr = \"10.0.0.128/25\"\n",
    )
    .unwrap();
    let error = overlapping.apply(&sim).unwrap_err().to_string();
    assert!(
        error.contains("subnet b") && error.contains("conflicts"),
        "{error}"
    );
}

/// EC2's HTTP statuses for its own failures: 500 for InternalError, 503 for Unavailable and throttling,
/// so an SDK retries them as it retries EC2's (a 400 is the caller's mistake, never retried). The soak found
/// ipamd exiting at start-up on one injected InternalError the SDK had not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2s_own_failures_are_5xx() {
    let endpoint = start(None, Some(TOPOLOGY)).await;
    for (code, status) in [
        ("InternalError", 500),
        ("Unavailable", 503),
        ("RequestLimitExceeded", 503),
        ("InvalidParameterValue", 400),
    ] {
        endpoint.sim.configure(|config| {
            config.faults = vec![vpcni_ec2::sim::FaultRule {
                action: Some("DescribeSubnets".into()),
                code: code.into(),
                probability: 1.0,
                remaining: Some(1),
            }];
        });
        let (got, text) = post(endpoint.ec2_addr, "Action=DescribeSubnets").await;
        assert_eq!(got, status, "{code}: {text}");
        assert!(text.contains(&format!("<Code>{code}</Code>")), "{text}");
    }
}

/// Subnet CIDR reservations over the Query API: both types, listed and deleted as EC2 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_cidr_reservations_are_created_listed_and_deleted() {
    let endpoint = start(None, Some(TOPOLOGY)).await;
    let subnet = endpoint.created.subnets["a"].clone();
    let address = endpoint.ec2_addr;
    let leak = |body: String| -> &'static str { Box::leak(body.into_boxed_str()) };
    let create = |cidr: &str, kind: &str| {
        leak(format!(
            "Action=CreateSubnetCidrReservation&Version=2016-11-15&SubnetId={subnet}&Cidr={cidr}&ReservationType={kind}"
        ))
    };
    let (status, body) = post(address, create("10.1.0.64%2F28", "explicit")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<reservationType>explicit</reservationType>"),
        "{body}"
    );
    let explicit_id = body
        .split("<subnetCidrReservationId>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    let (status, body) = post(address, create("10.1.0.128%2F26", "prefix")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(address, create("10.1.0.64%2F27", "prefix")).await;
    assert_eq!(status, 400, "overlapping reservations are refused: {body}");
    let (status, body) = post(address, create("10.1.0.0%2F28", "sometimes")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Expected: prefix, explicit"), "{body}");

    let get = leak(format!(
        "Action=GetSubnetCidrReservations&Version=2016-11-15&SubnetId={subnet}"
    ));
    let (status, body) = post(address, get).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<cidr>10.1.0.64/28</cidr>") && body.contains("<cidr>10.1.0.128/26</cidr>"),
        "{body}"
    );

    let delete = leak(format!(
        "Action=DeleteSubnetCidrReservation&Version=2016-11-15&SubnetCidrReservationId={explicit_id}"
    ));
    let (status, body) = post(address, delete).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<deletedSubnetCidrReservation>"), "{body}");
    let (_, body) = post(address, get).await;
    assert!(
        !body.contains("10.1.0.64/28") && body.contains("10.1.0.128/26"),
        "{body}"
    );
    let (status, body) = post(address, delete).await;
    assert_eq!(status, 400);
    assert!(body.contains("InvalidSubnetCidrReservationID.NotFound"), "{body}");
    endpoint.shutdown();
}
