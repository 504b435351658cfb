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

/// Concurrent changes all reach the saved file. Each request saves a snapshot after its change; saves that
/// overlapped could land out of order (an older snapshot renamed last hid a newer change: a lab's
/// `status` then missed a node's /80), and both wrote the same temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_all_reach_the_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = start(Some(dir.path().to_owned()), Some(TOPOLOGY)).await;
    let subnet = endpoint.created.subnets["a"].clone();
    let body: &'static str = Box::leak(
        format!("Action=CreateNetworkInterface&SubnetId={subnet}&Description=concurrent").into_boxed_str(),
    );
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        requests.spawn(post(endpoint.ec2_addr, body));
    }
    while let Some(answer) = requests.join_next().await {
        let (status, text) = answer.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let created = endpoint.sim.snapshot().enis.len();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ec2-state.json")).unwrap()).unwrap();
    let saved_enis = saved["enis"].as_object().map_or(0, serde_json::Map::len);
    assert_eq!(
        saved_enis, created,
        "the saved state misses changes the simulator holds"
    );
    endpoint.shutdown();
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

/// One HTTP/1.1 request (any method, any headers) on a fresh connection; returns status and body.
async fn request(address: SocketAddr, head: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "{head}Host: imds\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

const DUAL_STACK: &str = r#"
[vpc]
cidr = "10.1.0.0/16"
ipv6_cidr = "2600:1f14:aa:bb00::/56"

[[subnets]]
name = "a"
cidr = "10.1.0.0/24"
ipv6_index = 3

[[subnets]]
name = "v4"
cidr = "10.1.1.0/24"

[[instances]]
name = "node"
type = "m5.large"
subnet = "a"
"#;

/// IPv6 over the Query API and IMDS: the topology's /56 and /64, AssignIpv6Addresses by prefix and by address,
/// the XML element names EC2 uses, and the metadata paths `ipv6s`, `ipv6-prefix`, `subnet-ipv6-cidr-blocks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_is_served_over_the_query_api_and_imds() {
    let endpoint = start(None, Some(DUAL_STACK)).await;
    let address = endpoint.ec2_addr;
    let leak = |body: String| -> &'static str { Box::leak(body.into_boxed_str()) };
    let vpc = endpoint.created.vpc_id.clone();
    let (status, body) = post(
        address,
        leak(format!("Action=DescribeVpcs&Version=2016-11-15&VpcId.1={vpc}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<ipv6CidrBlockAssociationSet><item>")
            && body.contains("<ipv6CidrBlock>2600:1f14:aa:bb00::/56</ipv6CidrBlock>"),
        "{body}"
    );
    let (status, body) = post(
        address,
        leak(format!(
            "Action=AssociateVpcCidrBlock&Version=2016-11-15&VpcId={vpc}&AmazonProvidedIpv6CidrBlock=true"
        )),
    )
    .await;
    assert_eq!(status, 400, "one IPv6 block per VPC: {body}");
    assert!(body.contains("CidrLimitExceeded"), "{body}");
    let (_, body) = post(
        address,
        leak(format!(
            "Action=DescribeSubnets&Version=2016-11-15&SubnetId.1={}",
            endpoint.created.subnets["a"]
        )),
    )
    .await;
    assert!(
        body.contains("<ipv6CidrBlock>2600:1f14:aa:bb03::/64</ipv6CidrBlock>"),
        "{body}"
    );
    // A /64 outside the VPC's /56, and one already taken.
    for (cidr, code) in [
        ("2600:1f14:aa:cc00::/64", "InvalidSubnet.Range"),
        ("2600:1f14:aa:bb03::/64", "InvalidSubnet.Conflict"),
        ("2600:1f14:aa:bb04::/60", "InvalidParameterValue"),
    ] {
        let (status, body) = post(
            address,
            leak(format!(
                "Action=AssociateSubnetCidrBlock&Version=2016-11-15&SubnetId={}&Ipv6CidrBlock={cidr}",
                endpoint.created.subnets["v4"]
            )),
        )
        .await;
        assert_eq!(status, 400, "{cidr}: {body}");
        assert!(body.contains(code), "{cidr}: {body}");
    }

    let (_, body) = post(
        address,
        leak(format!(
            "Action=DescribeInstances&Version=2016-11-15&InstanceId.1={}",
            endpoint.created.instances[0].1
        )),
    )
    .await;
    let eni = body
        .split("<networkInterfaceId>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    let (status, body) = post(
        address,
        leak(format!(
            "Action=AssignIpv6Addresses&Version=2016-11-15&NetworkInterfaceId={eni}&Ipv6PrefixCount=1"
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<assignedIpv6PrefixSet><item>2600:1f14:aa:bb03:1::/80</item></assignedIpv6PrefixSet>"),
        "{body}"
    );
    let (status, body) = post(
        address,
        leak(format!(
            "Action=AssignIpv6Addresses&Version=2016-11-15&NetworkInterfaceId={eni}&Ipv6Addresses.1=2600%3A1f14%3Aaa%3Abb03%3A%3A10"
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<assignedIpv6Addresses><item>2600:1f14:aa:bb03::10</item>"),
        "{body}"
    );
    let (status, body) = post(
        address,
        leak(format!(
            "Action=AssignIpv6Addresses&Version=2016-11-15&NetworkInterfaceId={eni}&Ipv6PrefixCount=1&Ipv6AddressCount=1"
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidParameterCombination"), "{body}");
    let (_, body) = post(
        address,
        leak(format!(
            "Action=DescribeNetworkInterfaces&Version=2016-11-15&NetworkInterfaceId.1={eni}"
        )),
    )
    .await;
    assert!(
        body.contains("<ipv6AddressesSet><item><ipv6Address>2600:1f14:aa:bb03::10</ipv6Address>"),
        "{body}"
    );
    assert!(
        body.contains(
            "<ipv6PrefixSet><item><ipv6Prefix>2600:1f14:aa:bb03:1::/80</ipv6Prefix></item></ipv6PrefixSet>"
        ),
        "{body}"
    );
    let (_, body) = post(
        address,
        leak(
            "Action=DescribeNetworkInterfaces&Version=2016-11-15&Filter.1.Name=ipv6-addresses.ipv6-address&Filter.1.Value.1=2600:1f14:aa:bb03::10"
                .to_owned(),
        ),
    )
    .await;
    assert!(body.contains(&eni), "found by its IPv6 address: {body}");

    // Instance metadata: the primary ENI's IPv6 paths.
    let imds = endpoint.imds_addr;
    let (status, token) = request(
        imds,
        "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n".to_owned(),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let get = |path: String| {
        let head = format!("GET /latest/meta-data/{path} HTTP/1.1\r\nX-aws-ec2-metadata-token: {token}\r\n");
        request(imds, head)
    };
    let (_, mac) = get("mac".into()).await;
    let base = format!("network/interfaces/macs/{mac}");
    for (path, expected) in [
        ("ipv6s", "2600:1f14:aa:bb03::10"),
        ("ipv6-prefix", "2600:1f14:aa:bb03:1::/80"),
        ("subnet-ipv6-cidr-blocks", "2600:1f14:aa:bb03::/64"),
        ("vpc-ipv6-cidr-blocks", "2600:1f14:aa:bb00::/56"),
    ] {
        let (status, body) = get(format!("{base}/{path}")).await;
        assert_eq!((status, body.trim()), (200, expected), "{path}");
    }
    let (status, _) = post(
        address,
        leak(format!(
            "Action=UnassignIpv6Addresses&Version=2016-11-15&NetworkInterfaceId={eni}&Ipv6Addresses.1=2600:1f14:aa:bb03::10&Ipv6Prefix.1=2600:1f14:aa:bb03:1::/80"
        )),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get(format!("{base}/ipv6-prefix")).await;
    assert_eq!(status, 404, "no prefix left: IMDS answers 404, as EC2's does");
    endpoint.shutdown();
}
