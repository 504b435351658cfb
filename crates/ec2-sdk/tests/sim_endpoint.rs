//! What is particular to the SDK backend, against the EC2 simulator's endpoint on a virtual clock: retries of
//! throttled calls, an unreachable endpoint, attach delay, termination and injected faults over the wire, and
//! IMDSv2 through the SDK's metadata client. EC2's rules over the wire, and what moto agrees on, are the
//! conformance suite (tests/conformance.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::sync::Arc;
use std::time::Duration;

use vpcni_ec2::sim::{BucketSpec, VirtualClock};
use vpcni_ec2::{
    AddressRequest, CreateNetworkInterfaceRequest, DescribeNetworkInterfacesRequest, Ec2, Ec2ErrorKind,
    Filter, Imds,
};
use vpcni_ec2_endpoint::{EndpointConfig, EndpointHandle, Topology};
use vpcni_ec2_sdk::{BudgetConfig, SdkEc2, SdkEc2Options, SdkImds};

const TOPOLOGY: &str = r#"
[vpc]
cidr = "10.0.0.0/16"

[[subnets]]
name = "big"
cidr = "10.0.0.0/20"

[[subnets]]
name = "tiny"
cidr = "10.0.16.0/27"

[[instances]]
name = "node"
type = "m5.large"
subnet = "big"
primary_ip = "10.0.0.10"
"#;

/// The endpoint on a virtual clock: time behind it (attach delay, throttle refill) moves only when the test
/// moves it, however slow the machine or the SDK's randomised retry backoff.
async fn endpoint() -> (EndpointHandle, VirtualClock) {
    let clock = VirtualClock::new(1_700_000_000_000);
    let handle = vpcni_ec2_endpoint::serve_with_clock(
        EndpointConfig {
            ec2_listen: "127.0.0.1:0".parse().unwrap(),
            imds_listen: "127.0.0.1:0".parse().unwrap(),
            topology: Some(Topology::parse(TOPOLOGY).unwrap()),
            sim: Default::default(),
            state_dir: None,
        },
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    (handle, clock)
}

async fn client(handle: &EndpointHandle, max_attempts: u32, budget: BudgetConfig) -> SdkEc2 {
    SdkEc2::new(SdkEc2Options {
        endpoint: Some(handle.ec2_url()),
        region: Some("us-west-2".into()),
        static_credentials: Some(("testing".into(), "testing".into())),
        max_attempts,
        initial_backoff: Duration::from_millis(50),
        budget,
        ..SdkEc2Options::default()
    })
    .await
}

fn node(handle: &EndpointHandle) -> String {
    handle.created.instances[0].1.clone()
}

async fn attached_eni(ec2: &SdkEc2, handle: &EndpointHandle, subnet: &str, device: u32) -> String {
    let eni = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: handle.created.subnets[subnet].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    ec2.attach_network_interface(&eni.network_interface_id, &node(handle), device, 0)
        .await
        .unwrap();
    eni.network_interface_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_surfaces_typed_without_retries() {
    let (handle, clock) = endpoint().await;
    // One token, refilled at 5 per second, and each DescribeSubnets takes 150 ms of simulated time: the clock
    // behind the endpoint moves by exactly that per attempt and by nothing else. So the second call's first
    // attempt finds 0.75 of a token (refused), its retry 1.5 (admitted): exactly one refusal, whatever the
    // SDK's random backoff and the machine's speed.
    handle.sim.configure(|config| {
        config.throttle.per_action.insert(
            "DescribeSubnets".into(),
            BucketSpec {
                capacity: 1.0,
                refill_per_second: 5.0,
            },
        );
        config.latency_ms.insert("DescribeSubnets".into(), 150);
    });
    let ec2 = client(&handle, 5, BudgetConfig::default()).await;
    let start = handle.sim.now_ms();
    ec2.describe_subnets(&[], &[]).await.unwrap();
    ec2.describe_subnets(&[], &[]).await.unwrap();
    let counters = handle.sim.counters();
    assert_eq!(counters.calls_to("DescribeSubnets"), 3, "{counters:?}");
    assert_eq!(
        counters.errors.get("DescribeSubnets/RequestLimitExceeded"),
        Some(&1),
        "{counters:?}"
    );
    assert_eq!(handle.sim.now_ms() - start, 450, "three attempts of 150 ms");
    // Two calls through the backend, three attempts at the endpoint: the SDK retried the refused one.
    assert_eq!(ec2.budget().stats().calls()["DescribeSubnets"], 2);

    // Without retries the throttle surfaces, typed: the clock stands still, so the bucket keeps the half
    // token the retry left.
    handle.sim.configure(|config| {
        config.latency_ms.clear();
    });
    let once = client(&handle, 1, BudgetConfig::default()).await;
    let error = once.describe_subnets(&[], &[]).await.unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.kind),
        ("RequestLimitExceeded", Ec2ErrorKind::Throttled)
    );
    // Once the bucket has refilled (another 200 ms: a whole token more), the same call goes through.
    clock.advance(200);
    once.describe_subnets(&[], &[]).await.unwrap();
    assert_eq!(
        once.budget().stats().errors()["DescribeSubnets/RequestLimitExceeded"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_metadata_through_the_sdk_client() {
    let (handle, _clock) = endpoint().await;
    let imds = SdkImds::new(Some(&handle.imds_url())).unwrap();
    assert_eq!(imds.instance_id().await.unwrap(), node(&handle));
    assert_eq!(imds.instance_type().await.unwrap(), "m5.large");
    assert_eq!(imds.region().await.unwrap(), "us-west-2");
    assert_eq!(imds.local_ipv4().await.unwrap().to_string(), "10.0.0.10");
    let macs = imds.macs().await.unwrap();
    assert_eq!(macs.len(), 1);
    let primary = imds.interface(&macs[0]).await.unwrap();
    assert_eq!(primary.device_number, 0);
    assert_eq!(primary.subnet_ipv4_cidr_block.to_string(), "10.0.0.0/20");
    assert!(primary.ipv4_prefixes.is_empty());

    let ec2 = client(&handle, 1, BudgetConfig::default()).await;
    let eni = attached_eni(&ec2, &handle, "big", 1).await;
    ec2.assign_ipv4_prefixes(&eni, &AddressRequest::Count(1))
        .await
        .unwrap();
    ec2.assign_private_ip_addresses(&primary.interface_id, &AddressRequest::Count(2))
        .await
        .unwrap();
    let macs = imds.macs().await.unwrap();
    assert_eq!(macs.len(), 2);
    let second = imds.interface(&macs[1]).await.unwrap();
    assert_eq!(
        (
            second.interface_id.as_str(),
            second.device_number,
            second.ipv4_prefixes.len()
        ),
        (eni.as_str(), 1, 1)
    );
    assert_eq!(imds.interface(&macs[0]).await.unwrap().local_ipv4s.len(), 3);
    assert!(imds.interface("02:00:00:00:00:00").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_delay_termination_leaks_and_injected_faults() {
    let (handle, clock) = endpoint().await;
    handle.sim.configure(|config| config.attach_delay_ms = 300);
    let ec2 = client(&handle, 1, BudgetConfig::default()).await;
    let subnet = handle.created.subnets["big"].clone();
    let kept = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: subnet.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deleted = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: subnet.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    ec2.attach_network_interface(&kept.network_interface_id, &node(&handle), 1, 0)
        .await
        .unwrap();
    let attachment = ec2
        .attach_network_interface(&deleted.network_interface_id, &node(&handle), 2, 0)
        .await
        .unwrap();
    let status = |ec2: &SdkEc2, id: String| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                network_interface_ids: vec![id],
                ..Default::default()
            })
            .await
            .unwrap()
            .network_interfaces[0]
                .status
        }
    };
    assert_eq!(
        status(&ec2, kept.network_interface_id.clone()).await,
        vpcni_ec2::InterfaceStatus::Attaching
    );
    // The attach completes when the simulator's clock says so, not after some wall-clock time.
    clock.advance(299);
    assert_eq!(
        status(&ec2, kept.network_interface_id.clone()).await,
        vpcni_ec2::InterfaceStatus::Attaching
    );
    clock.advance(1);
    assert_eq!(
        status(&ec2, kept.network_interface_id.clone()).await,
        vpcni_ec2::InterfaceStatus::InUse
    );
    ec2.set_delete_on_termination(&deleted.network_interface_id, &attachment, true)
        .await
        .unwrap();

    handle.sim.terminate_instance(&node(&handle)).unwrap();
    let leaked = ec2
        .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
            filters: vec![Filter::new("status", "available")],
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = leaked
        .network_interfaces
        .iter()
        .map(|e| e.network_interface_id.clone())
        .collect();
    assert_eq!(
        ids,
        vec![kept.network_interface_id.clone()],
        "the ENI without DeleteOnTermination is left behind"
    );

    handle.sim.configure(|config| {
        config.faults.push(vpcni_ec2::sim::FaultRule {
            action: Some("DeleteNetworkInterface".into()),
            code: "UnauthorizedOperation".into(),
            probability: 1.0,
            remaining: Some(1),
        })
    });
    let error = ec2
        .delete_network_interface(&kept.network_interface_id)
        .await
        .unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.kind),
        ("UnauthorizedOperation", Ec2ErrorKind::Other)
    );
    ec2.delete_network_interface(&kept.network_interface_id)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_unavailable_not_a_hang() {
    // A port that was just free: nothing listens on it, so the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ec2 = SdkEc2::new(SdkEc2Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-west-2".into()),
        static_credentials: Some(("testing".into(), "testing".into())),
        max_attempts: 1,
        ..SdkEc2Options::default()
    })
    .await;
    let error = ec2.describe_subnets(&[], &[]).await.unwrap_err();
    assert_eq!(error.kind, Ec2ErrorKind::Unavailable, "{error}");
}
