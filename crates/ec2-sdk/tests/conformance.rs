//! The EC2 conformance suite (`vpcni_ec2::conformance`) on the SDK backend, over the wire:
//! - `sim_endpoint`: against the simulator's EC2 endpoint on loopback, every case (it enforces EC2's rules);
//! - `moto`: against moto_server, the wire tier only (moto enforces none of EC2's rules, models no prefixes).
//!
//! moto_server comes from `VPCNI_MOTO_SERVER`, which scripts/test.sh sets after installing it in a venv; a
//! missing moto fails the moto tests rather than skipping them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::time::Duration;

use vpcni_ec2::conformance::{Case, World, subnet_ipv6_block};
use vpcni_ec2_sdk::{BudgetConfig, SdkEc2, SdkEc2Options};

/// A client with one attempt per call (a retry would hide an error the case expects) and a budget that
/// never makes a case wait.
async fn client(url: String) -> SdkEc2 {
    SdkEc2::new(SdkEc2Options {
        endpoint: Some(url),
        region: Some("us-west-2".into()),
        static_credentials: Some(("testing".into(), "testing".into())),
        max_attempts: 1,
        attempt_timeout: Duration::from_secs(30),
        budget: BudgetConfig {
            describe_capacity: 10_000.0,
            describe_per_second: 10_000.0,
            mutate_capacity: 10_000.0,
            mutate_per_second: 10_000.0,
        },
        ..SdkEc2Options::default()
    })
    .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

mod sim_endpoint {
    use std::sync::Arc;

    use vpcni_ec2::conformance::{AVAILABILITY_ZONE, VPC_CIDR};
    use vpcni_ec2::sim::VirtualClock;
    use vpcni_ec2_endpoint::topology::{InstanceSpec, SubnetSpec, VpcSpec};
    use vpcni_ec2_endpoint::{EndpointConfig, Topology};

    use super::*;

    fn on_sim_endpoint(case: &Case) {
        runtime().block_on(async {
            let topology = Topology {
                vpc: VpcSpec {
                    cidr: VPC_CIDR.parse().unwrap(),
                    secondary_cidrs: Vec::new(),
                    amazon_ipv6: case.world.ipv6,
                    ipv6_cidr: None,
                    tags: Default::default(),
                },
                subnets: case
                    .world
                    .subnets
                    .iter()
                    .enumerate()
                    .map(|(index, (name, cidr))| SubnetSpec {
                        name: (*name).to_owned(),
                        cidr: cidr.parse().unwrap(),
                        az: Some(AVAILABILITY_ZONE.to_owned()),
                        tags: Default::default(),
                        prefix_reservations: Vec::new(),
                        ipv6_cidr: None,
                        ipv6_index: case.world.ipv6.then_some(index as u8),
                    })
                    .collect(),
                instances: vec![InstanceSpec {
                    name: "node".into(),
                    instance_type: case.world.instance_type.to_owned(),
                    subnet: case.world.subnets[0].0.to_owned(),
                    primary_ip: None,
                    default: true,
                }],
                sim: Default::default(),
            };
            // A virtual clock nobody moves: nothing in a case depends on time passing.
            let handle = vpcni_ec2_endpoint::serve_with_clock(
                EndpointConfig {
                    ec2_listen: "127.0.0.1:0".parse().unwrap(),
                    imds_listen: "127.0.0.1:0".parse().unwrap(),
                    topology: Some(topology),
                    sim: Default::default(),
                    state_dir: None,
                },
                Arc::new(VirtualClock::new(1_700_000_000_000)),
            )
            .await
            .unwrap();
            let world = World {
                ec2: Arc::new(client(handle.ec2_url()).await),
                vpc_id: handle.created.vpc_id.clone(),
                subnets: handle.created.subnets.clone(),
                instance_id: handle.created.instances[0].1.clone(),
                keep_alive: Box::new(handle),
            };
            (case.run)(&world).await;
        });
    }

    vpcni_ec2::conformance_tests!(on_sim_endpoint, rules);
}

mod moto {
    use std::collections::BTreeMap;
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::Instant;

    use aws_sdk_ec2::types::InstanceType;
    use vpcni_ec2::conformance::{AVAILABILITY_ZONE, VPC_CIDR};

    use super::*;

    struct Moto {
        child: Child,
        url: String,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            // The process may have exited already; either way it is gone afterwards.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn start_moto() -> Moto {
        let binary = std::env::var("VPCNI_MOTO_SERVER").expect(
            "VPCNI_MOTO_SERVER is not set: run scripts/test.sh, which installs moto_server in a venv and sets it",
        );
        // The port is free when asked for, but another process may take it before moto binds it: then moto
        // exits at once, and another port is tried.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("moto_server ({binary}) does not start: {e}"));
            let mut moto = Moto {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut exited = false;
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if moto.child.try_wait().unwrap().is_some() {
                    exited = true;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server did not listen within 60 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            if !exited {
                return moto;
            }
        }
        panic!("moto_server ({binary}) exited before listening, three times");
    }

    fn on_moto(case: &Case) {
        let moto = start_moto();
        runtime().block_on(async {
            let ec2 = client(moto.url.clone()).await;
            let sdk = ec2.client();
            let vpc_id = sdk
                .create_vpc()
                .cidr_block(VPC_CIDR)
                .send()
                .await
                .unwrap()
                .vpc
                .unwrap()
                .vpc_id
                .unwrap();
            // moto picks the /56 at random: the subnets' /64s are read from its answer.
            let vpc_ipv6: Option<ipnet::Ipv6Net> = if case.world.ipv6 {
                let association = sdk
                    .associate_vpc_cidr_block()
                    .vpc_id(&vpc_id)
                    .amazon_provided_ipv6_cidr_block(true)
                    .send()
                    .await
                    .unwrap();
                let block = association
                    .ipv6_cidr_block_association()
                    .and_then(|a| a.ipv6_cidr_block())
                    .expect("moto answers with the IPv6 block");
                Some(block.parse().unwrap())
            } else {
                None
            };
            let mut subnets = BTreeMap::new();
            for (index, (name, cidr)) in case.world.subnets.iter().enumerate() {
                let id = sdk
                    .create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(*cidr)
                    .set_ipv6_cidr_block(vpc_ipv6.map(|block| subnet_ipv6_block(block, index).to_string()))
                    .availability_zone(AVAILABILITY_ZONE)
                    .send()
                    .await
                    .unwrap()
                    .subnet
                    .unwrap()
                    .subnet_id
                    .unwrap();
                subnets.insert((*name).to_owned(), id);
            }
            let run = sdk
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::from(case.world.instance_type))
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnets[case.world.subnets[0].0])
                .send()
                .await
                .unwrap();
            let instance_id = run.instances()[0].instance_id().unwrap().to_owned();
            let world = World {
                ec2: Arc::new(ec2),
                vpc_id,
                subnets,
                instance_id,
                keep_alive: Box::new(moto),
            };
            (case.run)(&world).await;
        });
    }

    vpcni_ec2::conformance_tests!(on_moto, wire);
}
