//! The self-contained HTML report (`--html FILE`): one file, inline CSS, inline SVG and a little inline
//! JavaScript, nothing fetched when it is opened. It shows every subnet's /28s, the addresses used
//! against the usable ones over time with the exhaustion point, the daemons' EC2 calls against the
//! throttling budget, and the comparison table when there is one.
//!
//! The script marks `<body data-rendered="yes">` once it has wired the charts, and records any error
//! in `data-errors`, so a headless browser test can tell a rendered report from a broken one.

use std::fmt::Write as _;

use crate::report::{BlockState, Comparison, Report, SubnetReport};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #fbfbfd; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccd; }
.summary { background: #fff; border: 1px solid #dde; padding: 12px; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; border: 1px solid #889; }
table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #ccd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.exhausted { color: #b00020; font-weight: 600; }
.readout { font-family: ui-monospace, monospace; font-size: 12px; min-height: 1.4em; }
svg { background: #fff; border: 1px solid #dde; }
"#;

const SCRIPT: &str = r#"
window.addEventListener('error', function (e) {
  var b = document.body; b.dataset.errors = (b.dataset.errors || '') + (e.message || 'error') + ';';
});
document.addEventListener('DOMContentLoaded', function () {
  var charts = document.querySelectorAll('svg.series');
  charts.forEach(function (svg) {
    var out = document.getElementById(svg.dataset.readout);
    var points = JSON.parse(svg.dataset.points);
    svg.addEventListener('mousemove', function (ev) {
      var box = svg.getBoundingClientRect();
      var x = (ev.clientX - box.left) / box.width;
      var i = Math.max(0, Math.min(points.length - 1, Math.round(x * (points.length - 1))));
      var p = points[i];
      out.textContent = 't=' + (p[0] / 3600).toFixed(2) + ' h: ' + svg.dataset.labels.split(',').map(function (l, k) { return l + ' ' + p[k + 1]; }).join(', ');
    });
  });
  document.body.dataset.charts = String(charts.length);
  document.body.dataset.rendered = 'yes';
});
"#;

fn color(state: BlockState) -> &'static str {
    match state {
        BlockState::Free => "#e8f5e9",
        BlockState::Partial => "#ffcc80",
        BlockState::Used => "#e57373",
        BlockState::Prefix => "#7986cb",
        BlockState::Reserved => "#b0bec5",
    }
}

fn subnet_map(subnet: &SubnetReport) -> String {
    let blocks = &subnet.map.blocks;
    let per_row = 64usize;
    let cell = if blocks.len() > 1024 { 6 } else { 12 };
    let rows = blocks.len().div_ceil(per_row).max(1);
    let width = per_row.min(blocks.len().max(1)) * cell + 2;
    let height = rows * cell + 2;
    let mut svg = format!(
        r#"<svg class="map" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="/28 map of {}">"#,
        escape(&subnet.name)
    );
    for (index, state) in blocks.iter().enumerate() {
        let x = 1 + (index % per_row) * cell;
        let y = 1 + (index / per_row) * cell;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" width="{w}" height="{w}" fill="{}"><title>/28 #{index}: {state:?}</title></rect>"#,
            color(*state),
            w = cell - 1
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A line chart: series of (label, colour, values) over the sample times, with optional marks.
fn chart(
    id: &str,
    times_s: &[f64],
    series: &[(&str, &str, Vec<f64>)],
    mark_s: Option<(f64, &str)>,
    dashed_last: bool,
) -> String {
    let (w, h, pad) = (720.0, 220.0, 36.0);
    let t_max = times_s.last().copied().unwrap_or(1.0).max(1.0);
    let y_max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.1;
    let x = |t: f64| pad + (w - 2.0 * pad) * t / t_max;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / y_max;
    let points: Vec<String> = times_s
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let values: Vec<String> = series.iter().map(|(_, _, v)| format!("{}", v[i])).collect();
            format!("[{t},{}]", values.join(","))
        })
        .collect();
    let labels: Vec<&str> = series.iter().map(|(l, _, _)| *l).collect();
    let mut svg = format!(
        r#"<svg class="series" id="{id}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" data-readout="{id}-readout" data-labels="{}" data-points="[{}]">"#,
        escape(&labels.join(",")),
        points.join(",")
    );
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#889"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#889"/>"##,
        b = h - pad,
        r = w - pad
    );
    let _ = write!(
        svg,
        r##"<text x="4" y="{}" font-size="11">{:.0}</text><text x="4" y="{}" font-size="11">0</text><text x="{}" y="{}" font-size="11" text-anchor="end">{:.1} h</text>"##,
        pad,
        y_max / 1.1,
        h - pad,
        w - pad,
        h - 8.0,
        t_max / 3600.0
    );
    for (index, (label, colour, values)) in series.iter().enumerate() {
        let path: Vec<String> = times_s
            .iter()
            .zip(values)
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let dash = if dashed_last && index == series.len() - 1 {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            escape(label)
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" fill="{colour}">{}</text>"#,
            pad + 8.0 + 130.0 * index as f64,
            pad - 8.0,
            escape(label)
        );
    }
    if let Some((at, text)) = mark_s {
        let _ = write!(
            svg,
            r##"<line class="mark" x1="{0:.1}" y1="{pad}" x2="{0:.1}" y2="{1}" stroke="#b00020" stroke-width="2"/><text x="{2:.1}" y="{3}" font-size="11" fill="#b00020">{4}</text>"##,
            x(at),
            h - pad,
            x(at) + 4.0,
            pad + 14.0,
            escape(text)
        );
    }
    svg.push_str("</svg>");
    let _ = write!(svg, r#"<div class="readout" id="{id}-readout"></div>"#);
    svg
}

/// A comparison row: its label and how to read it from a report.
type Row = (&'static str, fn(&Report) -> String);

/// The report as one HTML page.
pub fn render(report: &Report, comparison: Option<&Comparison>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>vpcni capacity plan</h1><div class=\"summary\">{}</div>",
        escape(&report.text())
    );
    body.push_str("<h2>Subnets, /28 by /28, at the end</h2><p class=\"legend\">");
    for state in [
        BlockState::Free,
        BlockState::Partial,
        BlockState::Used,
        BlockState::Prefix,
        BlockState::Reserved,
    ] {
        let label = match state {
            BlockState::Free => "free",
            BlockState::Partial => "partly used",
            BlockState::Used => "used (single addresses)",
            BlockState::Prefix => "used (a delegated /28 prefix)",
            BlockState::Reserved => "reserved for prefixes, free",
        };
        let _ = write!(
            body,
            r#"<span><i style="background:{}"></i>{label}</span>"#,
            color(state)
        );
    }
    body.push_str("</p>");
    let times: Vec<f64> = report.series.iter().map(|s| s.at_ms as f64 / 1000.0).collect();
    for (index, subnet) in report.subnets.iter().enumerate() {
        let _ = write!(
            body,
            "<h3>{} {} ({})</h3>",
            escape(&subnet.name),
            escape(&subnet.cidr),
            escape(&subnet.zone)
        );
        if let (Some(at), Some(cause)) = (subnet.exhausted_at_s, &subnet.cause) {
            let _ = write!(
                body,
                r#"<p class="exhausted">exhausted at {:.0} s — {}: {}</p>"#,
                at,
                escape(&cause.code),
                escape(&cause.message)
            );
        }
        body.push_str(&subnet_map(subnet));
        let used: Vec<f64> = report.series.iter().map(|s| s.used[index] as f64).collect();
        let idle: Vec<f64> = report.series.iter().map(|s| s.idle[index] as f64).collect();
        let usable = vec![subnet.usable as f64; times.len()];
        body.push_str("<p>addresses used and idle against the usable ones</p>");
        body.push_str(&chart(
            &format!("subnet-{index}"),
            &times,
            &[
                ("used", "#1565c0", used),
                ("idle (no pod)", "#ef6c00", idle),
                ("usable", "#607d8b", usable),
            ],
            subnet.exhausted_at_s.map(|at| (at, "exhausted")),
            true,
        ));
    }
    body.push_str("<h2>EC2 calls by the daemons, against the throttling budget</h2>");
    let per_sample_budget = 5.0 * report.sample_every_s;
    let calls: Vec<f64> = report.series.iter().map(|s| s.ec2_calls as f64).collect();
    let throttled: Vec<f64> = report.series.iter().map(|s| s.ec2_throttled as f64).collect();
    let budget = vec![per_sample_budget; times.len()];
    let first_throttle = report
        .series
        .iter()
        .find(|s| s.ec2_throttled > 0)
        .map(|s| (s.at_ms as f64 / 1000.0, "first throttled call"));
    let _ = write!(
        body,
        "<p>calls per {:.0} s; the budget line is one mutating action's refill (5 per second: EC2 refills each action's bucket on its own, Describe* at 20 per second)</p>",
        report.sample_every_s
    );
    body.push_str(&chart(
        "ec2",
        &times,
        &[
            ("calls", "#2e7d32", calls),
            ("throttled", "#b00020", throttled),
            ("budget (one mutating action)", "#607d8b", budget),
        ],
        first_throttle,
        true,
    ));
    if let Some(comparison) = comparison {
        body.push_str("<h2>Comparison</h2><table><tr><th></th>");
        for variant in &comparison.variants {
            let _ = write!(body, "<th>{}</th>", escape(&variant.name));
        }
        body.push_str("</tr>");
        let rows: [Row; 6] = [
            ("pods pending at the end", |r| r.pods.pending_end.to_string()),
            ("p99 wait for an address (s)", |r| {
                format!("{:.1}", r.pods.wait_p99_s)
            }),
            ("addresses used, peak", |r| {
                r.subnets.iter().map(|s| s.used_peak).sum::<u64>().to_string()
            }),
            ("idle (no pod), peak", |r| {
                r.subnets.iter().map(|s| s.idle_peak).sum::<u64>().to_string()
            }),
            ("EC2 calls", |r| r.ec2.calls.to_string()),
            ("EC2 calls throttled", |r| r.ec2.throttled.to_string()),
        ];
        for (label, value) in rows {
            let _ = write!(body, "<tr><td>{label}</td>");
            for variant in &comparison.variants {
                let _ = write!(body, "<td>{}</td>", value(&variant.report));
            }
            body.push_str("</tr>");
        }
        let _ = write!(
            body,
            "</table><p><b>recommendation:</b> {}</p>",
            escape(&comparison.recommendation)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>vpcni capacity plan</title>\
         <style>{STYLE}</style><script>{SCRIPT}</script></head><body>{body}</body></html>\n"
    )
}
