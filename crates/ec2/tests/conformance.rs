//! The EC2 conformance suite (`vpcni_ec2::conformance`) on the simulator in process: every case, the
//! rule-enforcing tier included.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::executor::block_on;
use vpcni_ec2::Tags;
use vpcni_ec2::conformance::{AVAILABILITY_ZONE, Case, VPC_CIDR, World, subnet_ipv6_block};
use vpcni_ec2::sim::{SimConfig, Simulator, VirtualClock};

fn on_simulator(case: &Case) {
    let sim = Simulator::new(
        SimConfig::default(),
        Arc::new(VirtualClock::new(1_700_000_000_000)),
    );
    let vpc_id = sim
        .create_vpc(VPC_CIDR.parse().expect("VPC CIDR"), Tags::new())
        .expect("CreateVpc");
    let vpc_ipv6 = case.world.ipv6.then(|| {
        sim.associate_vpc_ipv6_cidr(&vpc_id, None)
            .expect("AssociateVpcCidrBlock (Amazon-provided IPv6)")
    });
    let mut subnets = BTreeMap::new();
    for (index, (name, cidr)) in case.world.subnets.iter().enumerate() {
        let cidr = cidr.parse().expect("subnet CIDR");
        let id = match vpc_ipv6 {
            Some(block) => sim.create_subnet_with_ipv6(
                &vpc_id,
                cidr,
                subnet_ipv6_block(block, index),
                AVAILABILITY_ZONE,
                Tags::new(),
            ),
            None => sim.create_subnet(&vpc_id, cidr, AVAILABILITY_ZONE, Tags::new()),
        }
        .expect("CreateSubnet");
        subnets.insert((*name).to_owned(), id);
    }
    let first_subnet = &subnets[case.world.subnets[0].0];
    let instance_id = sim
        .run_instance(case.world.instance_type, first_subnet, None, Tags::new())
        .expect("RunInstances");
    let world = World {
        ec2: Arc::new(sim),
        vpc_id,
        subnets,
        instance_id,
        keep_alive: Box::new(()),
    };
    block_on((case.run)(&world));
}

vpcni_ec2::conformance_tests!(on_simulator, rules);
