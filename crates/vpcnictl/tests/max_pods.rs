//! Runs the real `vpcnictl` binary for `max-pods` and `limits`, as a user would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test or benchmark is its failure report

use std::process::{Command, Output};

fn vpcnictl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .args(args)
        .output()
        .expect("vpcnictl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

fn json(args: &[&str]) -> serde_json::Value {
    let output = vpcnictl(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn text_gives_the_number_first_then_how() {
    let output = vpcnictl(&["max-pods", "--instance-type", "m5.xlarge"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("58"));
    assert_eq!(
        lines.next(),
        Some(
            "m5.xlarge: secondary-ip: 4 ENIs × (15 − 1) IPs + 2 host-network pods = 58 (under the cap of 110)"
        )
    );
}

/// The original's published table (`misc/eni-max-pods.txt` of amazon-vpc-cni-k8s, copied as data with its
/// header), parsed as `TYPE N` lines.
fn published_eni_max_pods() -> Vec<(String, u32)> {
    include_str!("../../limits/data/eni-max-pods.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("TYPE N");
            (name.to_owned(), value.trim().parse().expect("a number"))
        })
        .collect()
}

fn type_lines(args: &[&str]) -> Vec<(String, u32)> {
    let output = vpcnictl(args);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("TYPE N");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn all_with_show_max_allowed_is_the_published_table() {
    let ours = type_lines(&["max-pods", "--all", "--show-max-allowed"]);
    let mut sorted = ours.clone();
    sorted.sort();
    assert_eq!(ours, sorted, "sorted by type");

    let published = published_eni_max_pods();
    assert!(published.len() > 1000, "the published table was read");
    let ours: std::collections::BTreeMap<_, _> = ours.into_iter().collect();
    let theirs: std::collections::BTreeMap<_, _> = published.into_iter().collect();
    // Line by line, for every type both know. No difference is expected: both come from EC2's
    // DescribeInstanceTypes with the default network card's ENI count (see docs/max-pods.md).
    let differences: Vec<String> = theirs
        .iter()
        .filter_map(|(name, expected)| {
            let got = ours.get(name)?;
            (got != expected).then(|| format!("{name}: published {expected}, vpcnictl {got}"))
        })
        .collect();
    assert!(differences.is_empty(), "differences:\n{}", differences.join("\n"));
    // And the same set of types: a type one side lacks is a stale table on that side.
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert!(
        only_theirs.is_empty(),
        "published but unknown to vpcnictl: {only_theirs:?}"
    );
    assert!(
        only_ours.is_empty(),
        "known to vpcnictl but not published: {only_ours:?}"
    );
}

/// With prefix delegation the original has no published table, only the EKS AMI's calculator
/// (`max-pods-calculator.sh --cni-prefix-delegation-enabled --show-max-allowed`): the prefix formula when EC2
/// reports the Nitro hypervisor, else the secondary-IP formula. Bare-metal types report no hypervisor, so the
/// calculator undercounts them although ipamd delegates prefixes there since v1.11: vpcnictl counts prefixes on
/// them, and that is the one deliberate difference.
#[test]
fn prefix_delegation_matches_the_calculator_except_bare_metal() {
    let ours = type_lines(&["max-pods", "--all", "--prefix-delegation", "--show-max-allowed"]);
    let mut deliberate = Vec::new();
    for (name, got) in &ours {
        let limits = vpcni_limits::builtin().get(name).expect("known type");
        let nitro = limits.hypervisor.to_string() == "nitro";
        let calculator = if nitro {
            limits.max_enis * ((limits.ipv4_per_eni - 1) * 16) + 2
        } else {
            limits.max_enis * (limits.ipv4_per_eni - 1) + 2
        };
        if *got == calculator {
            continue;
        }
        assert!(
            limits.bare_metal && !nitro,
            "{name}: calculator {calculator}, vpcnictl {got}, and {name} is not bare metal"
        );
        assert_eq!(
            *got,
            limits.max_enis * ((limits.ipv4_per_eni - 1) * 16) + 2,
            "{name}"
        );
        deliberate.push(name.as_str());
    }
    assert!(deliberate.contains(&"m5.metal"), "{deliberate:?}");
    assert!(!deliberate.contains(&"m5.xlarge"));
}

#[test]
fn all_applies_caps_by_default() {
    let text = stdout(&vpcnictl(&["max-pods", "--all"]));
    assert!(text.lines().any(|l| l == "m5.24xlarge 250"));
    assert!(text.lines().any(|l| l == "m5.4xlarge 110"));
    assert!(text.lines().any(|l| l == "m5.xlarge 58"));
}

#[test]
fn json_has_the_documented_shape() {
    let value = json(&["max-pods", "--instance-type", "m5.24xlarge", "--output", "json"]);
    assert_eq!(value["instance_type"], "m5.24xlarge");
    assert_eq!(value["max_pods"], 250);
    assert_eq!(value["ip_limited_max_pods"], 737);
    assert_eq!(value["cap"], 250);
    assert_eq!(value["mode"], "secondary-ip");
    assert_eq!(value["enis_used"], 15);
    assert_eq!(value["ips_per_eni"], 49);
    assert!(value["notes"].as_array().unwrap().is_empty());

    let uncapped = json(&[
        "max-pods",
        "--instance-type",
        "m5.24xlarge",
        "--output",
        "json",
        "--show-max-allowed",
    ]);
    assert_eq!(uncapped["max_pods"], 737);
    assert!(uncapped["cap"].is_null());
}

#[test]
fn prefix_delegation_counts_bare_metal_and_falls_back_on_xen() {
    let metal = json(&[
        "max-pods",
        "--instance-type",
        "m5.metal",
        "--prefix-delegation",
        "--show-max-allowed",
        "--output",
        "json",
    ]);
    assert_eq!(metal["mode"], "prefix-delegation");
    assert_eq!(metal["max_pods"], 15 * 49 * 16 + 2);
    let xen = json(&[
        "max-pods",
        "--instance-type",
        "m4.xlarge",
        "--prefix-delegation",
        "--output",
        "json",
    ]);
    assert_eq!(xen["mode"], "secondary-ip");
    assert_eq!(xen["max_pods"], 4 * 14 + 2);
    let notes = xen["notes"].to_string();
    assert!(notes.contains("falls back to secondary IPs"), "{notes}");
    // Text says why too.
    let text = stdout(&vpcnictl(&[
        "max-pods",
        "--instance-type",
        "m4.xlarge",
        "--prefix-delegation",
    ]));
    assert!(
        text.contains("note: prefix delegation needs a Nitro or bare-metal type"),
        "{text}"
    );
}

#[test]
fn custom_networking_max_eni_and_trunk_reservation() {
    let custom = json(&[
        "max-pods",
        "--instance-type",
        "m5.xlarge",
        "--custom-networking",
        "--output",
        "json",
    ]);
    assert_eq!(
        (custom["enis_used"].as_u64(), custom["max_pods"].as_u64()),
        (Some(3), Some(44))
    );
    let max_eni = json(&[
        "max-pods",
        "--instance-type",
        "m5.xlarge",
        "--max-eni",
        "2",
        "--output",
        "json",
    ]);
    assert_eq!(max_eni["max_pods"], 30);
    let sgp = json(&[
        "max-pods",
        "--instance-type",
        "m5.xlarge",
        "--security-groups-for-pods",
        "--output",
        "json",
    ]);
    assert_eq!(sgp["max_pods"], 44);
    let sgp_t3 = json(&[
        "max-pods",
        "--instance-type",
        "t3.medium",
        "--security-groups-for-pods",
        "--output",
        "json",
    ]);
    assert_eq!(sgp_t3["max_pods"], 17);
}

#[test]
fn unknown_type_exits_2_with_suggestions() {
    let output = vpcnictl(&["max-pods", "--instance-type", "m5.xlargee"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).starts_with("vpcnictl: unknown instance type 'm5.xlargee'; closest known: m5.xlarge"),
        "{}",
        stderr(&output)
    );
    let output = vpcnictl(&["limits", "show", "nope.huge"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown instance type 'nope.huge'"));
}

#[test]
fn conflicting_or_invalid_flags_are_usage_errors() {
    for args in [
        vec!["max-pods"],
        vec!["max-pods", "--all", "--instance-type", "m5.xlarge"],
        vec!["max-pods", "--instance-type", "m5.xlarge", "--max-eni", "0"],
        vec!["max-pods", "--instance-type", "m5.xlarge", "--max-eni", "-3"],
        vec!["max-pods", "--instance-type", "m5.xlarge", "--output", "yaml"],
        vec!["max-pods", "--instance-type", "m5.xlarge", "--bogus"],
    ] {
        let output = vpcnictl(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains("error:"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn help_explains_every_subcommand() {
    let top = stdout(&vpcnictl(&["--help"]));
    assert!(top.contains("max-pods") && top.contains("limits"), "{top}");
    let help = stdout(&vpcnictl(&["max-pods", "--help"]));
    for flag in [
        "--instance-type",
        "--all",
        "--prefix-delegation",
        "--custom-networking",
        "--max-eni",
        "--security-groups-for-pods",
        "--show-max-allowed",
        "--output",
    ] {
        assert!(help.contains(flag), "max-pods --help lacks {flag}");
    }
    assert!(stdout(&vpcnictl(&["limits", "--help"])).contains("import"));
    assert!(stdout(&vpcnictl(&["limits", "import", "--help"])).contains("describe-instance-types"));
}

#[test]
fn limits_show_is_readable() {
    let text = stdout(&vpcnictl(&["limits", "show", "m5.xlarge"]));
    assert!(text.contains("ENIs (default card):     4"), "{text}");
    assert!(text.contains("18 branch ENIs"));
    let value = json(&["limits", "show", "t2.micro", "--output", "json"]);
    assert_eq!(value["hypervisor"], "xen");
    assert_eq!(value["branch_interfaces"], 0);
}

#[test]
fn limits_import_merges_describe_instance_types_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("types.json");
    std::fs::write(
        &input,
        r#"{"InstanceTypes": [{"InstanceType": "q9.large", "Hypervisor": "nitro", "BareMetal": false,
            "VCpuInfo": {"DefaultVCpus": 2},
            "NetworkInfo": {"MaximumNetworkInterfaces": 3, "Ipv4AddressesPerInterface": 12,
              "DefaultNetworkCardIndex": 0,
              "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 3}]}}]}"#,
    )
    .unwrap();
    let out = dir.path().join("limits.csv");
    let output = vpcnictl(&[
        "limits",
        "import",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("1 added, 0 changed, 0 unchanged, 1392 types in all (new: q9.large)"));
    let table = vpcni_limits::LimitsTable::from_csv(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(table.len(), 1392);
    assert_eq!(table.get("q9.large").unwrap().max_enis, 3);

    // Garbage input: a clear error, nothing written.
    std::fs::write(&input, "not json").unwrap();
    let fresh = dir.path().join("fresh.csv");
    let output = vpcnictl(&[
        "limits",
        "import",
        input.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not DescribeInstanceTypes output"),
        "{}",
        stderr(&output)
    );
    assert!(!fresh.exists());
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    for format in ["text", "json"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
            .args(["max-pods", "--all", "--output", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vpcnictl runs");
        // Read one line, then hang up, as `| head -1` does.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let output = child.wait_with_output().unwrap();
        let errors = stderr(&output);
        assert!(!errors.contains("panicked"), "{format}: {errors}");
        assert!(output.status.success(), "{format}: {errors}");
    }
}

/// Output shorter than a pipe's buffer only fails if the reader is gone before the first write: the pipe is
/// made here and its reading end closed before vpcnictl starts, so every write meets a closed pipe.
#[test]
fn every_command_that_prints_survives_a_reader_gone_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("types.json");
    std::fs::write(
        &types,
        r#"{"InstanceTypes": [{"InstanceType": "q9.large", "Hypervisor": "nitro", "BareMetal": false,
            "NetworkInfo": {"MaximumNetworkInterfaces": 3, "Ipv4AddressesPerInterface": 12,
              "DefaultNetworkCardIndex": 0,
              "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 3}]}}]}"#,
    )
    .unwrap();
    let commands: [&[&str]; 7] = [
        &["limits", "show", "m5.xlarge"],
        &["limits", "show", "m5.xlarge", "--output", "json"],
        &["limits", "import", types.to_str().unwrap()],
        &["max-pods", "--instance-type", "m5.xlarge"],
        &["max-pods", "--instance-type", "m5.xlarge", "--output", "json"],
        &["pool", "--instance-type", "m5.xlarge", "--pods", "20"],
        &[
            "pool",
            "--instance-type",
            "m5.xlarge",
            "--pods",
            "20",
            "--output",
            "json",
        ],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
            .args(args)
            .stdout(writer)
            .output()
            .expect("vpcnictl runs");
        let errors = stderr(&output);
        assert!(!errors.contains("panicked"), "{args:?}: {errors}");
        assert!(output.status.success(), "{args:?}: {:?} {errors}", output.status);
    }
}

/// `--ipv6`: prefix delegation's number under the cap (addresses do not limit an IPv6 node), refused with
/// the reason on a type that cannot hold a /80, and such types left out of `--all`.
#[test]
fn ipv6_nodes_get_prefix_delegations_number_on_nitro_only() {
    let output = vpcnictl(&["max-pods", "--instance-type", "m5.large", "--ipv6"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("110"));
    assert_eq!(
        lines.next(),
        Some(
            "m5.large: ipv6: 3 ENIs × (10 − 1) prefixes × 16 IPs + 2 host-network pods = 434, capped at 110 → 110"
        )
    );
    assert!(text.contains("addresses do not limit density"), "{text}");
    let value = json(&[
        "max-pods",
        "--instance-type",
        "m5.large",
        "--ipv6",
        "--output",
        "json",
    ]);
    assert_eq!(value["mode"], "ipv6");
    assert_eq!(value["max_pods"], 110);

    let refused = vpcnictl(&["max-pods", "--instance-type", "m4.large", "--ipv6"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let why = stderr(&refused);
    assert!(
        why.contains("m4.large") && why.contains("xen") && why.contains("/80"),
        "{why}"
    );

    let all = vpcnictl(&["max-pods", "--all", "--ipv6"]);
    assert!(all.status.success(), "{}", stderr(&all));
    let listed = stdout(&all);
    assert!(listed.lines().any(|l| l == "m5.large 110"), "m5.large is listed");
    assert!(
        !listed.lines().any(|l| l.starts_with("m4.large ")),
        "m4.large is left out"
    );
    assert!(stderr(&all).contains("left out"), "{}", stderr(&all));

    let conflict = vpcnictl(&[
        "max-pods",
        "--instance-type",
        "m5.large",
        "--ipv6",
        "--custom-networking",
    ]);
    assert!(!conflict.status.success());
}
