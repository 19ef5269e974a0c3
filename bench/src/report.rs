//! The figures as a table on stdout and as BENCHMARKS.md.

use std::path::Path;

use crate::brokers::{DestinationFigures, DESTINATIONS};
use crate::load::Latency;
use crate::registry::ReconcileFigures;
use crate::scenarios::Results;
use crate::{Cli, Sizes};

pub(crate) struct Report {
    pub(crate) rows: Vec<[String; 4]>,
}

impl Report {
    pub(crate) fn add(&mut self, figure: &str, sqlite: String, pg: String, target: &str) {
        println!("{figure:<48} {sqlite:>14} {pg:>14}   {target}");
        self.rows.push([figure.into(), sqlite, pg, target.into()]);
    }
}

pub(crate) fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

pub(crate) fn build_report(
    sizes: &Sizes,
    trivial: f64,
    fsync: Option<(f64, f64)>,
    s: &Results,
    p: Option<&Results>,
) -> Report {
    let mut report = Report { rows: Vec::new() };
    println!(
        "\n{:<48} {:>14} {:>14}   target",
        "figure", "SQLite", "PostgreSQL"
    );
    let both = |f: &dyn Fn(&Results) -> Option<f64>, d: usize| {
        (fmt(f(s), d), p.map(|p| fmt(f(p), d)).unwrap_or("-".into()))
    };
    let (a, b) = both(&|_| Some(trivial), 0);
    report.add("1. trivial HTTP server, same client (req/s)", a, b, "");
    let (a, b) = both(&|r| Some(r.ingest), 0);
    report.add("1. Herald ingest (envelopes/s)", a, b, "");
    let (a, b) = both(&|r| Some(r.ingest / trivial), 2);
    report.add("1. ingest share of trivial", a, b, ">= 0.5; >= 0.2");
    let (a, b) = both(&|r| r.e2e, 0);
    report.add(
        &format!("2. end-to-end deliveries/s ({} events)", sizes.e2e_events),
        a,
        b,
        ">= 10,000; >= 5,000",
    );
    let (a, b) = both(&|r| r.burst_ingest, 0);
    report.add("2. during the burst: accepted envelopes/s", a, b, "");
    let (a, b) = both(&|r| r.burst_delivered, 0);
    report.add("2. during the burst: deliveries/s", a, b, "");
    let (a, b) = both(&|r| Some(r.burst_delivered? / r.burst_ingest?), 2);
    report.add(
        "2. during the burst: delivered share of accepted",
        a,
        b,
        ">= 0.8",
    );
    let (a, b) = both(&|r| r.handed_off_share, 2);
    report.add("1-2. deliveries born claimed (share)", a, b, "");
    let (a, b) = both(&|r| r.claim_round_ms, 1);
    report.add("1-2. mean claim round (ms)", a, b, "");
    let (a, b) = both(&|r| r.latency_handed_off_share, 2);
    report.add("3. deliveries born claimed (share)", a, b, "");
    let lat = |r: &Results, f: fn(&Latency) -> f64| r.latency.as_ref().map(f);
    let (a, b) = both(&|r| lat(r, |l| l.p50), 1);
    report.add(
        &format!("3. latency p50 at {}/s (ms)", sizes.latency_rate),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| lat(r, |l| l.p99), 1);
    report.add(
        &format!("3. latency p99 at {}/s (ms)", sizes.latency_rate),
        a,
        b,
        "<= 10; <= 50",
    );
    let (a, b) = both(&|r| lat(r, |l| l.max), 1);
    report.add(
        &format!("3. latency max at {}/s (ms)", sizes.latency_rate),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| lat(r, |l| l.samples as f64), 0);
    report.add("3. latency samples", a, b, "");
    // SQLite commits on this disk; PostgreSQL's data directory may be on another.
    let (p50, p99) = (fsync.map(|f| f.0), fsync.map(|f| f.1));
    report.add("3. this disk's fsync p50 (ms)", fmt(p50, 2), "-".into(), "");
    report.add("3. this disk's fsync p99 (ms)", fmt(p99, 2), "-".into(), "");
    let (a, b) = both(&|r| lat(r, |l| l.refused as f64), 0);
    report.add(
        &format!("3. envelopes refused (503) at {}/s", sizes.latency_rate),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| r.fanout_ms, 0);
    report.add(
        &format!("4. fan-out to {} webhooks (ms)", sizes.fanout_webhooks),
        a,
        b,
        "<= 100; <= 300",
    );
    let stored = sizes.growth_deliveries;
    let (a, b) = both(&|r| r.growth_ingest, 0);
    report.add(
        &format!("5. ingest with {stored} stored (envelopes/s)"),
        a,
        b,
        "",
    );
    let (a, b) = both(
        &|r| r.growth_ingest.map(|g| (r.ingest / g - 1.0) * 100.0),
        1,
    );
    report.add("5. ingest slowdown from history (%)", a, b, "<= 10");
    let (a, b) = both(&|r| r.growth_latency.as_ref().map(|l| l.p99), 1);
    report.add(
        &format!("5. latency p99 with {stored} stored (ms)"),
        a,
        b,
        "",
    );
    let (a, b) = both(
        &|r| {
            let base = r.latency.as_ref()?.p99;
            r.growth_latency
                .as_ref()
                .map(|l| (l.p99 / base - 1.0) * 100.0)
        },
        1,
    );
    report.add("5. latency p99 slowdown from history (%)", a, b, "<= 10");
    let (a, b) = both(&|r| Some(r.rss_idle), 1);
    report.add("6. Herald RSS at idle (MiB)", a, b, "");
    let (a, b) = both(&|r| Some(r.rss_peak), 1);
    report.add("6. Herald peak RSS during 1-3 (MiB)", a, b, "");
    let (a, b) = both(&|r| Some(r.rss_anon_peak), 1);
    report.add(
        "6. of which anonymous (heap, stacks) at its peak (MiB)",
        a,
        b,
        "<= 50",
    );
    let (a, b) = both(&|r| r.recovery_secs, 1);
    report.add(
        &format!(
            "7. SIGKILL mid-burst ({} events): s until all arrived",
            sizes.recovery_events
        ),
        a,
        b,
        "<= 5; <= 15",
    );
    let rec =
        |r: &Results, f: fn(&ReconcileFigures) -> Option<f64>| r.reconcile.as_ref().and_then(f);
    let catalog = format!("{} x {}", sizes.reconcile_repos, sizes.reconcile_tags);
    let (a, b) = both(&|r| rec(r, |f| f.learn_secs), 1);
    report.add(
        &format!("8. reconcile, first run over {catalog} tags (s)"),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| rec(r, |f| f.learn_rate), 0);
    report.add("8. reconcile: registry requests/s", a, b, "");
    let (a, b) = both(&|r| rec(r, |f| Some(f.anon_peak)), 1);
    report.add("8. reconcile: anonymous memory at its peak (MiB)", a, b, "");
    let (a, b) = both(&|r| rec(r, |f| Some(f.anon_peak_small)), 1);
    report.add(
        "8. the same with a tenth of the catalog (MiB)",
        a,
        b,
        "about the same",
    );
    let (a, b) = both(&|r| rec(r, |f| Some(f.rss_peak)), 1);
    report.add("8. reconcile: peak RSS (MiB)", a, b, "");
    let (a, b) = both(&|r| rec(r, |f| f.second_secs), 1);
    report.add("8. reconcile, second run, 1 % of tags moved (s)", a, b, "");
    let (a, b) = both(&|r| rec(r, |f| Some(f.pushes? - f.arrived?)), 0);
    report.add("8. made-up pushes not delivered", a, b, "0");
    let fl = |r: &Results, with: bool, f: fn(&Latency) -> f64| {
        r.facts_latency
            .as_ref()
            .map(|(w, x)| f(if with { x } else { w }))
    };
    let rate = sizes.latency_rate;
    let (a, b) = both(&|r| fl(r, false, |l| l.p99), 1);
    report.add(
        &format!("9. reading the registry, p99 at {rate}/s, no facts filter (ms)"),
        a,
        b,
        "as 3.",
    );
    let (a, b) = both(&|r| fl(r, true, |l| l.p50), 1);
    report.add(
        &format!("9. reading the registry, p50 at {rate}/s, facts filter (ms)"),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| fl(r, true, |l| l.p99), 1);
    report.add(
        &format!("9. reading the registry, p99 at {rate}/s, facts filter (ms)"),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| fl(r, true, |l| l.samples as f64), 0);
    report.add("9. facts filter: latency samples", a, b, "");
    for (i, name) in DESTINATIONS.iter().enumerate() {
        fn at(r: &Results, i: usize) -> Option<&DestinationFigures> {
            r.destinations.get(i)
        }
        let target = if i == 0 { "" } else { "as fast as HTTP" };
        let (a, b) = both(&|r| at(r, i)?.e2e, 0);
        report.add(
            &format!(
                "10. {name}: end-to-end deliveries/s ({} events)",
                sizes.broker_events
            ),
            a,
            b,
            target,
        );
        let (a, b) = both(&|r| at(r, i)?.latency.as_ref().map(|l| l.p99), 1);
        report.add(
            &format!("10. {name}: latency p99 at {rate}/s (ms)"),
            a,
            b,
            target,
        );
    }
    report
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem:.0} GiB memory, Linux {} {}; data directory on the \
         filesystem of {} (real fsync)",
        kernel.trim(),
        std::env::consts::ARCH,
        std::env::temp_dir().display()
    )
}

/// Marks where the hand-written analysis starts; a new run keeps it.
pub(crate) const ANALYSIS_MARK: &str = "## What is in the way";

pub(crate) fn write_report(
    path: &Path,
    cli: &Cli,
    report: &Report,
    notes: &[String],
) -> anyhow::Result<()> {
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find(ANALYSIS_MARK).map(|i| old[i..].to_string()));
    let mut md = String::from("# Herald benchmarks\n\n");
    md.push_str(&format!(
        "Written by `herald-bench all{}` on {} UTC.\n\nMachine: {}.\n\nHerald runs as its own \
         process (`herald serve`, release build, default settings: SQLite in WAL mode with \
         synchronous=FULL, i.e. an fsync per commit); the load client ({} keep-alive \
         connections) and the receiver share the benchmark process; all traffic is on loopback. \
         Each event is a one-event envelope (a tagged manifest push) with a unique id. \
         Latencies run from the envelope's send to the receiver's arrival.\n\n",
        if cli.smoke { " --smoke" } else { "" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        machine(),
        cli.connections,
    ));
    if cli.smoke {
        md.push_str("**Smoke run: sizes are tiny, the figures mean nothing.**\n\n");
    }
    md.push_str(
        "| figure | SQLite | PostgreSQL | target (SQLite; PostgreSQL if other) |\n\
         |---|---:|---:|---|\n",
    );
    for [figure, s, p, target] in &report.rows {
        md.push_str(&format!("| {figure} | {s} | {p} | {target} |\n"));
    }
    if !notes.is_empty() {
        md.push('\n');
        for n in notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    md.push('\n');
    if let Some(kept) = kept {
        md.push_str(&kept);
    }
    std::fs::write(path, md)?;
    Ok(())
}
