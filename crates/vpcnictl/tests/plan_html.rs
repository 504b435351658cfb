//! The HTML report in a real headless browser (Debian's chromium): it renders with its script run and no
//! error, and a screenshot of it is not blank. Chromium is required: without it this test fails and
//! says how to install it (scripts/test.sh installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

const CLUSTER: &str = r#"[vpc]
cidrs = ["10.0.0.0/16"]
[[subnets]]
name = "a"
cidr = "10.0.0.0/24"
zone = "us-west-2a"
in_use = ["10.0.0.20"]
[[subnets]]
name = "pd"
cidr = "10.0.1.0/26"
zone = "us-west-2a"
in_use = ["10.0.1.20", "10.0.1.40"]
[[node_groups]]
name = "general"
instance_type = "m5.xlarge"
nodes = 10
subnets = ["a"]
[workload]
pods_per_node = 5
churn_per_hour = 1.0
duration = "2h"
"#;

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs Debian's chromium (apt-get install -y --no-install-recommends chromium); scripts/test.sh installs it"
    );
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

fn report(dir: &Path) -> PathBuf {
    let cluster = dir.join("cluster.toml");
    std::fs::write(&cluster, CLUSTER).unwrap();
    let html = dir.join("plan.html");
    let output = Command::new(env!("CARGO_BIN_EXE_vpcnictl"))
        .arg("plan")
        .arg(&cluster)
        .args(["--compare", "WARM_IP_TARGET=2", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    html
}

#[test]
fn the_report_renders_in_chromium_without_errors_and_is_not_blank() {
    let dir = tempfile::tempdir().unwrap();
    let html = report(dir.path());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing fetched at view time"
    );
    let url = format!("file://{}", html.display());

    let dom = chromium(&dir.path().join("profile-dom"), &["--dump-dom", &url]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(
        dom_text.contains("data-rendered=\"yes\""),
        "the script did not finish: {log}"
    );
    assert!(!dom_text.contains("data-errors"), "script errors: {dom_text}");
    assert!(
        dom_text.contains("data-charts=\"3\""),
        "2 subnets + EC2 = 3 charts"
    );
    for line in log.lines() {
        assert!(
            !(line.contains("Uncaught") || line.contains(":CONSOLE") && line.contains("rror")),
            "console error: {line}"
        );
    }
    assert!(
        dom_text.contains("class=\"mark\""),
        "the exhaustion point is drawn"
    );
    assert!(dom_text.contains("<table>"), "the comparison table is there");

    let png = dir.path().join("shot.png");
    let shot = chromium(
        &dir.path().join("profile-shot"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,1600",
            &url,
        ],
    );
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let mut colours = std::collections::BTreeSet::new();
    for pixel in pixels[..info.buffer_size()].chunks(channels) {
        colours.insert(pixel[..3.min(channels)].to_vec());
    }
    assert!(
        colours.len() >= 8,
        "the screenshot looks blank: {} colours",
        colours.len()
    );
}
