//! Assign + unassign throughput of the engine on an m5.24xlarge-sized pool (15 ENIs × 49 addresses).
//!
//! `cargo bench -p vpcni-engine --bench assign`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test or benchmark is its failure report

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vpcni_engine::{Eni, EniFlags, NodeLimits, PodInfo, PodKey, Pool, PoolConfig};

fn full_pool(enis: u32, per_eni: u32) -> Pool {
    let limits = NodeLimits {
        max_enis: enis,
        max_eni_configured: false,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
        slots_per_eni: per_eni,
        max_pods: enis * per_eni + 2,
    };
    let config = PoolConfig {
        ip_cooldown_ms: 0,
        ..PoolConfig::default()
    };
    let mut pool = Pool::new(config, limits);
    for device in 0..enis {
        let flags = EniFlags {
            primary: device == 0,
            ..EniFlags::default()
        };
        let base = 10 << 24 | device << 8;
        let eni = Eni::new(
            format!("eni-{device}"),
            device,
            flags,
            "10.0.0.0/8".parse().unwrap(),
            base.into(),
            0,
        );
        pool.add_eni(eni).unwrap();
        let nets: Vec<_> = (1..=per_eni)
            .map(|i| ipnet::Ipv4Net::new((base + i).into(), 32).unwrap())
            .collect();
        pool.add_cidrs(&format!("eni-{device}"), &nets).unwrap();
    }
    pool
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    for (name, enis, per_eni, resident) in [
        ("m5.xlarge-half-full", 4, 14, 28),
        ("m5.24xlarge-half-full", 15, 49, 360),
    ] {
        let mut pool = full_pool(enis, per_eni);
        let pod = PodInfo {
            namespace: "default".into(),
            name: "p".into(),
        };
        for i in 0..resident {
            pool.assign(&PodKey::new("vpcni", format!("resident{i}"), "eth0"), &pod, 1)
                .unwrap();
        }
        let key = PodKey::new("vpcni", "churn", "eth0");
        let mut now = 1_000;
        group.bench_function(format!("assign+unassign/{name}"), |b| {
            b.iter(|| {
                now += 1;
                let assignment = pool.assign(black_box(&key), &pod, now).unwrap();
                black_box(assignment);
                black_box(pool.unassign(&key, now));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
