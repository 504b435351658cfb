//! Bad cluster files stop with the line and what to fix.

use vpcni_planner::Cluster;

const GOOD: &str = r#"[vpc]
cidrs = ["10.0.0.0/16"]

[[subnets]]
name = "a"
cidr = "10.0.0.0/24"
zone = "us-west-2a"

[[node_groups]]
name = "general"
instance_type = "m5.xlarge"
nodes = 2
subnets = ["a"]

[settings]
WARM_ENI_TARGET = "1"

[workload]
pods_per_node = 5
"#;

fn errors(text: &str) -> Vec<String> {
    Cluster::parse(text)
        .expect_err("should be refused")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_example_is_accepted() {
    let cluster = Cluster::parse(GOOD).unwrap();
    assert_eq!(cluster.node_groups[0].subnets, [0]);
}

#[test]
fn an_unknown_instance_type_names_its_line_and_the_closest_types() {
    let lines = errors(&GOOD.replace("m5.xlarge", "m5.xlargee"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("line 11: "), "{lines:?}");
    assert!(
        lines[0].contains("unknown instance type 'm5.xlargee'"),
        "{lines:?}"
    );
    assert!(lines[0].contains("m5.xlarge"), "{lines:?}");
}

#[test]
fn overlapping_subnets_name_the_second_and_the_first() {
    let text = GOOD.replace(
        "[[node_groups]]",
        "[[subnets]]\nname = \"b\"\ncidr = \"10.0.0.128/25\"\n\n[[node_groups]]",
    );
    let lines = errors(&text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("line 11: "), "{lines:?}");
    assert!(
        lines[0].contains("overlaps subnet \"a\" (10.0.0.0/24)"),
        "{lines:?}"
    );
}

#[test]
fn a_subnet_outside_the_vpc_says_which_vpc() {
    let lines = errors(&GOOD.replace("cidr = \"10.0.0.0/24\"", "cidr = \"10.1.0.0/24\""));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("line 6: "), "{lines:?}");
    assert!(lines[0].contains("outside the VPC (10.0.0.0/16)"), "{lines:?}");
}

#[test]
fn a_node_group_naming_an_unknown_subnet_lists_the_known_ones() {
    let lines = errors(&GOOD.replace("subnets = [\"a\"]", "subnets = [\"b\"]"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("line 13: "), "{lines:?}");
    assert!(
        lines[0].contains("no subnet named \"b\"; the [[subnets]] are: a"),
        "{lines:?}"
    );
}

#[test]
fn a_setting_the_daemon_would_refuse_is_refused_with_its_line() {
    let lines = errors(&GOOD.replace("WARM_ENI_TARGET = \"1\"", "MAX_ENI = \"ten\""));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("line 16: "), "{lines:?}");
    assert!(
        lines[0].contains("MAX_ENI=\"ten\" is not valid: expected a whole number"),
        "{lines:?}"
    );
    let lines = errors(&GOOD.replace(
        "WARM_ENI_TARGET = \"1\"",
        "ENABLE_PREFIX_DELEGATION = \"true\"\nWARM_PREFIX_TARGET = \"0\"",
    ));
    assert!(
        lines[0].starts_with("line 17: [settings] WARM_PREFIX_TARGET=\"0\" is not valid"),
        "{lines:?}"
    );
}

#[test]
fn a_setting_the_daemon_accepts_by_falling_back_is_a_warning() {
    let cluster = Cluster::parse(&GOOD.replace("\"1\"", "\"-1\"")).unwrap();
    assert!(
        cluster
            .warnings
            .iter()
            .any(|w| w.contains("WARM_ENI_TARGET=\"-1\"")),
        "{:?}",
        cluster.warnings
    );
    let cluster = Cluster::parse(&GOOD.replace("WARM_ENI_TARGET", "WARM_ENI_TARGT")).unwrap();
    assert!(
        cluster
            .warnings
            .iter()
            .any(|w| w.contains("did you mean WARM_ENI_TARGET")),
        "{:?}",
        cluster.warnings
    );
}

#[test]
fn toml_syntax_errors_and_unknown_fields_name_the_line() {
    let lines = errors(&GOOD.replace("nodes = 2", "nodes = two"));
    assert!(lines[0].starts_with("line 12: "), "{lines:?}");
    let lines = errors(&GOOD.replace("nodes = 2", "node = 2"));
    assert!(lines[0].starts_with("line 12: "), "{lines:?}");
    assert!(lines[0].contains("unknown field `node`"), "{lines:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("m5.xlarge", "banana")
        .replace("subnets = [\"a\"]", "subnets = [\"zz\"]");
    assert_eq!(errors(&text).len(), 2);
}
