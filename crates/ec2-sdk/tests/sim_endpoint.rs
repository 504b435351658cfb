//! The SDK backend against the EC2 simulator's endpoint: EC2's rules (limits, prefixes, exhaustion,
//! pagination, throttling) over the real wire protocol, and IMDSv2 through the SDK's metadata client.

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
async fn limits_and_prefixes_over_the_wire() {
    let (handle, _clock) = endpoint().await;
    let ec2 = client(&handle, 1, BudgetConfig::default()).await;
    let first = attached_eni(&ec2, &handle, "big", 1).await;
    let _second = attached_eni(&ec2, &handle, "big", 2).await;
    let third = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: handle.created.subnets["big"].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let error = ec2
        .attach_network_interface(&third.network_interface_id, &node(&handle), 3, 0)
        .await
        .unwrap_err();
    assert_eq!(error.kind, Ec2ErrorKind::AttachmentLimitExceeded);

    let prefixes = ec2
        .assign_ipv4_prefixes(&first, &AddressRequest::Count(2))
        .await
        .unwrap();
    assert!(
        prefixes
            .iter()
            .all(|p| p.prefix_len() == 28 && u32::from(p.network()) % 16 == 0)
    );
    let ips = ec2
        .assign_private_ip_addresses(&first, &AddressRequest::Count(7))
        .await
        .unwrap();
    assert_eq!(ips.len(), 7);
    let error = ec2
        .assign_private_ip_addresses(&first, &AddressRequest::Count(1))
        .await
        .unwrap_err();
    assert_eq!(error.kind, Ec2ErrorKind::AddressLimitExceeded);
    ec2.unassign_ipv4_prefixes(&first, &prefixes[..1]).await.unwrap();
    ec2.unassign_private_ip_addresses(&first, &ips[..2])
        .await
        .unwrap();
    let instance = ec2.describe_instance(&node(&handle)).await.unwrap();
    let eni = instance
        .network_interfaces
        .iter()
        .find(|e| e.network_interface_id == first)
        .unwrap();
    assert_eq!((eni.ipv4_prefixes.len(), eni.secondary_ips.len()), (1, 5));

    let types = ec2
        .describe_instance_types(&["m5.large".into(), "p5.48xlarge".into()])
        .await
        .unwrap();
    assert_eq!(types.len(), 2);
    assert_eq!(types[1].network_cards.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_fragmentation_and_pagination() {
    let (handle, _clock) = endpoint().await;
    let ec2 = client(&handle, 1, BudgetConfig::default()).await;
    let tiny = handle.created.subnets["tiny"].clone();
    // 10.0.16.0/27: 27 usable addresses; the only whole /28 not touching reserved addresses is .16/28,
    // and it holds .31, the broadcast: no prefix fits at all once one address sits in .0/28's usable part.
    let eni = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: tiny.clone(),
            secondary_ip_count: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    let error = ec2
        .assign_ipv4_prefixes(&eni.network_interface_id, &AddressRequest::Count(1))
        .await
        .unwrap_err();
    assert_eq!(error.kind, Ec2ErrorKind::InsufficientCidrBlocks);
    let error = ec2
        .create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: tiny.clone(),
            secondary_ip_count: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, Ec2ErrorKind::InsufficientFreeAddressesInSubnet);

    for _ in 0..6 {
        ec2.create_network_interface(&CreateNetworkInterfaceRequest {
            subnet_id: handle.created.subnets["big"].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut token = None;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let page = ec2
            .describe_network_interfaces(&DescribeNetworkInterfacesRequest {
                filters: vec![Filter::new("status", "available")],
                max_results: Some(5),
                next_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen += page.network_interfaces.len();
        pages += 1;
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!((seen, pages), (7, 2));
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
