//! The EC2 conformance suite (`vpcni_ec2::conformance`) on the simulator in process: every case, the
//! rule-enforcing tier included.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::executor::block_on;
use vpcni_ec2::Tags;
use vpcni_ec2::conformance::{AVAILABILITY_ZONE, Case, VPC_CIDR, World};
use vpcni_ec2::sim::{SimConfig, Simulator, VirtualClock};

fn on_simulator(case: &Case) {
    let sim = Simulator::new(
        SimConfig::default(),
        Arc::new(VirtualClock::new(1_700_000_000_000)),
    );
    let vpc_id = sim
        .create_vpc(VPC_CIDR.parse().expect("VPC CIDR"), Tags::new())
        .expect("CreateVpc");
    let mut subnets = BTreeMap::new();
    for (name, cidr) in case.world.subnets {
        let id = sim
            .create_subnet(
                &vpc_id,
                cidr.parse().expect("subnet CIDR"),
                AVAILABILITY_ZONE,
                Tags::new(),
            )
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
