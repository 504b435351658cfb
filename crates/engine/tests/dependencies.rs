//! The engine is pure logic: the daemon, the lab and the planner all run it, so it must never pull in a
//! runtime, a network stack or the AWS SDK. This test fails the day someone adds one.

#[test]
fn engine_depends_on_nothing_that_does_io() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("manifest");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    for forbidden in [
        "tokio",
        "aws-",
        "netlink",
        "rtnetlink",
        "tonic",
        "hyper",
        "axum",
        "reqwest",
        "nix",
        "vpcni-ec2",
    ] {
        assert!(
            !dependencies
                .lines()
                .any(|line| line.trim_start().starts_with(forbidden)),
            "vpcni-engine must not depend on {forbidden}"
        );
    }
}
