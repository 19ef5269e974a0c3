//! The webhook page's 24-hour chart, drawn on the server as SVG: no chart library, no
//! JavaScript, and it prints and scales like text.

use std::fmt::Write;

use chrono::{DateTime, Timelike, Utc};

use serde::Serialize;

use crate::domain::model::HourStats;

// In viewBox units: the chart scales with the page, so labels are sized to stay readable
// when 720 units shrink to a phone's 350 pixels.
const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 84.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 34.0;

/// The 24 hours of the window, in order; hours outside it are ignored.
fn by_hour(stats: &[HourStats]) -> Vec<HourStats> {
    let mut hours = vec![HourStats::default(); 24];
    for s in stats {
        if let Some(slot) = usize::try_from(s.hour).ok().and_then(|h| hours.get_mut(h)) {
            *slot = s.clone();
        }
    }
    hours
}

/// One hour of the chart as a row of its table: what the bars show, in numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The hour's start, "14:00" (UTC).
    pub hour: String,
    pub succeeded: i64,
    pub failed: i64,
    pub waiting: i64,
    pub mean_ms: Option<i64>,
}

/// The chart's figures as table rows, for reading without the picture: the hours that
/// had deliveries or attempts, oldest first.
pub fn rows(stats: &[HourStats], since: DateTime<Utc>) -> Vec<Row> {
    by_hour(stats)
        .iter()
        .enumerate()
        .filter(|(_, h)| h.succeeded + h.failed + h.waiting > 0 || h.mean_ms.is_some())
        .map(|(i, h)| Row {
            hour: format!(
                "{:02}:00",
                (since + chrono::Duration::hours(i as i64)).hour()
            ),
            succeeded: h.succeeded,
            failed: h.failed,
            waiting: h.waiting,
            mean_ms: h.mean_ms.map(|ms| ms.round() as i64),
        })
        .collect()
}

/// Deliveries per hour by outcome (stacked bars) and mean attempt latency (line). The
/// outcomes differ in shape as well as colour: succeeded bars are solid, failed ones
/// hatched (a pattern), waiting ones hollow with a dashed outline; a gap in the card's
/// colour separates stacked parts. The legend draws each mark the same way, once.
pub fn render_svg(stats: &[HourStats], since: DateTime<Utc>) -> String {
    let hours = by_hour(stats);
    let max_count = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.waiting)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_ms = hours
        .iter()
        .filter_map(|h| h.mean_ms)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / 24.0;
    let total: i64 = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.waiting)
        .sum();
    let failed: i64 = hours.iter().map(|h| h.failed).sum();
    let waiting: i64 = hours.iter().map(|h| h.waiting).sum();

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="Last 24 hours: {total} deliveries, {failed} failed, {waiting} waiting; the numbers hour by hour follow the chart" xmlns="http://www.w3.org/2000/svg">"#
    );
    let _ = write!(
        svg,
        "<title>Deliveries per hour by outcome, and mean latency, over the last 24 hours</title>"
    );
    // The failed bars' hatching.
    let _ = write!(
        svg,
        r#"<defs><pattern id="chart-hatch" width="7" height="7" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="7" height="7" class="hatch-fill"/><line x1="3.5" y1="0" x2="3.5" y2="7" class="hatch-line"/></pattern></defs>"#
    );
    // The legend: each mark as the bars draw it.
    let mut x = LEFT;
    for (class, name) in [
        ("ok", "succeeded"),
        ("failed", "failed"),
        ("waiting", "waiting"),
    ] {
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="6" width="18" height="18" class="bar {class}"/><text x="{tx}" y="22" class="label">{name}</text>"#,
            tx = x + 24.0
        );
        x += 24.0 + name.len() as f64 * 11.0 + 24.0;
    }
    let _ = write!(
        svg,
        r#"<line x1="{x}" y1="15" x2="{x2}" y2="15" class="latency"/><circle cx="{cx}" cy="15" r="3" class="latency-dot"/><text x="{tx}" y="22" class="label">mean latency</text>"#,
        x2 = x + 20.0,
        cx = x + 10.0,
        tx = x + 26.0
    );
    // Axes and scale labels.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y}" x2="{x2}" y2="{y}" class="axis"/>"##,
        y = TOP + plot_h,
        x2 = W - RIGHT
    );
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" class="label" text-anchor="end">{max}/h</text>"#,
        x = LEFT - 6.0,
        y = TOP + 16.0,
        max = max_count as i64
    );
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" class="label latency-label">{ms:.0} ms</text>"#,
        x = W - RIGHT + 6.0,
        y = TOP + 16.0,
        ms = max_ms
    );
    for (i, h) in hours.iter().enumerate() {
        let x = LEFT + i as f64 * slot + 2.0;
        let bar_w = slot - 4.0;
        let mut y = TOP + plot_h;
        for (count, class) in [
            (h.succeeded, "ok"),
            (h.failed, "failed"),
            (h.waiting, "waiting"),
        ] {
            if count == 0 {
                continue;
            }
            let height = count as f64 / max_count * plot_h;
            y -= height;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{height:.1}" class="bar {class}"><title>{count} {name}</title></rect>"#,
                name = if class == "ok" { "succeeded" } else { class }
            );
        }
        if i % 6 == 0 {
            let hour = (since + chrono::Duration::hours(i as i64)).hour();
            let zone = if i == 0 { " UTC" } else { "" };
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{y}" class="label">{hour:02}:00{zone}</text>"#,
                y = H - 8.0
            );
        }
    }
    // Latency line through the hours that had attempts.
    let points: Vec<String> = hours
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let ms = h.mean_ms?;
            let x = LEFT + (i as f64 + 0.5) * slot;
            let y = TOP + plot_h - ms / max_ms * plot_h;
            Some(format!("{x:.1},{y:.1}"))
        })
        .collect();
    if !points.is_empty() {
        let _ = write!(
            svg,
            r#"<polyline points="{}" class="latency"/>"#,
            points.join(" ")
        );
        // Dots too, so that a single hour with attempts still shows its latency.
        for p in &points {
            if let Some((x, y)) = p.split_once(',') {
                let _ = write!(
                    svg,
                    r#"<circle cx="{x}" cy="{y}" r="3" class="latency-dot"/>"#
                );
            }
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" class="label" text-anchor="end">now</text>"#,
        x = W - RIGHT,
        y = H - 8.0
    );
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_bars_per_outcome_and_a_latency_line() {
        let stats = vec![
            HourStats {
                hour: 0,
                succeeded: 3,
                failed: 1,
                waiting: 0,
                mean_ms: Some(12.0),
            },
            HourStats {
                hour: 23,
                succeeded: 0,
                failed: 2,
                waiting: 1,
                mean_ms: Some(40.0),
            },
            HourStats {
                hour: 99,
                succeeded: 9,
                ..Default::default()
            },
        ];
        let svg = render_svg(&stats, Utc::now());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // One bar each, plus the legend's swatch (the one legend).
        assert_eq!(svg.matches(r#"class="bar ok""#).count(), 2);
        assert_eq!(svg.matches(r#"class="bar failed""#).count(), 3);
        assert_eq!(svg.matches(r#"class="bar waiting""#).count(), 2);
        assert_eq!(svg.matches(">mean latency<").count(), 1);
        assert!(svg.contains(r#"<pattern id="chart-hatch""#));
        for label in ["succeeded", "mean latency", " UTC", ">now<", "4/h"] {
            assert!(svg.contains(label), "no {label}");
        }
        assert!(
            svg.contains("7 deliveries, 3 failed"),
            "out-of-window hours are ignored"
        );
        assert_eq!(svg.matches("<polyline").count(), 1);
    }

    #[test]
    fn the_table_has_the_hours_with_deliveries() {
        let since = DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let stats = vec![HourStats {
            hour: 2,
            succeeded: 3,
            failed: 1,
            waiting: 2,
            mean_ms: Some(12.4),
        }];
        assert_eq!(
            rows(&stats, since),
            vec![Row {
                hour: "10:00".into(),
                succeeded: 3,
                failed: 1,
                waiting: 2,
                mean_ms: Some(12),
            }]
        );
        assert!(rows(&[], since).is_empty());
    }

    #[test]
    fn an_empty_day_still_draws() {
        let svg = render_svg(&[], Utc::now());
        assert!(svg.contains("0 deliveries"));
        assert!(!svg.contains("<polyline"));
    }
}
