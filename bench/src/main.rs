//! herald-bench: Herald's load benchmark. It starts a real `herald serve` (the sibling binary of
//! the same build) with a fresh data directory, its own fast receiver and its own load client,
//! prints a table and writes BENCHMARKS.md.
//!
//! `cargo build --release --workspace --bins && target/release/herald-bench all` (or
//! `all --smoke` for a seconds-long check that the benchmark still works). Herald runs as a
//! separate process so that its RSS can be read from /proc and the load client's CPU and
//! memory are not counted as Herald's, as in production where the registry is another process.
//!
//! A workspace member of its own, so that `cargo install` of Herald installs Herald alone.
//! `herald.rs` starts and seeds the Herald under test, `load.rs` is the load client,
//! `receiver.rs` the webhook receiver, `scenarios.rs` the measurements and `report.rs` the
//! table and BENCHMARKS.md.

mod brokers;
mod herald;
mod load;
mod receiver;
mod registry;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::herald::{admin_pool, drop_bench_databases, free_port, herald_binary};
use crate::load::blast;
use crate::receiver::trivial_server;
use crate::report::{build_report, write_report};
use crate::scenarios::run_suite;

#[derive(Parser)]
#[command(about = "Load benchmark for Herald; writes BENCHMARKS.md")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
    /// Tiny sizes: checks that the benchmark still works (CI), measures nothing useful.
    #[arg(long, global = true)]
    pub(crate) smoke: bool,
    /// Where to write the report.
    #[arg(long, global = true, default_value = "BENCHMARKS.md")]
    pub(crate) output: PathBuf,
    /// Concurrent keep-alive client connections.
    #[arg(long, global = true, default_value_t = 64)]
    pub(crate) connections: usize,
    /// Events of the end-to-end scenario (default 100,000; smoke 300).
    #[arg(long, global = true)]
    e2e_events: Option<usize>,
    /// Finished deliveries stored before the growth scenario (default 1,000,000; smoke 2,000).
    #[arg(long, global = true)]
    pub(crate) growth_deliveries: Option<usize>,
    /// Events of the recovery scenario, 0 to skip it (default 5,000; smoke 200).
    #[arg(long, global = true)]
    recovery_events: Option<usize>,
    /// Repositories of the reconcile scenario's registry, 10 tags each, 0 to skip it
    /// (default 10,000; smoke 20).
    #[arg(long, global = true)]
    reconcile_repos: Option<usize>,
    /// Events of each destination's burst in scenario 10, 0 to skip it (default 20,000;
    /// smoke 100).
    #[arg(long, global = true)]
    broker_events: Option<usize>,
    /// Seconds of the fixed-rate latency scenario (default 30; smoke 2).
    #[arg(long, global = true)]
    pub(crate) latency_secs: Option<u64>,
    /// A PostgreSQL server to run the scenarios on too; each run creates a fresh database
    /// there and drops it afterwards.
    #[arg(
        long,
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub(crate) postgres: String,
    /// Skip the PostgreSQL runs.
    #[arg(long, global = true)]
    pub(crate) no_postgres: bool,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Every scenario, then the report.
    All,
    /// Internal: a trivial HTTP server that reads the body and answers 200.
    TrivialServer { port: u16 },
}

/// Scenario sizes.
pub(crate) struct Sizes {
    pub(crate) ingest_events: usize,
    e2e_events: usize,
    pub(crate) latency_rate: u64,
    pub(crate) latency_secs: u64,
    pub(crate) fanout_webhooks: usize,
    pub(crate) growth_deliveries: usize,
    pub(crate) recovery_events: usize,
    pub(crate) reconcile_repos: usize,
    pub(crate) reconcile_tags: usize,
    /// Scenario 10: each destination's burst, and its latency run's envelopes (sent at
    /// `latency_rate`).
    pub(crate) broker_events: usize,
    pub(crate) broker_latency_events: u64,
    /// How long to wait for deliveries before giving up on a scenario.
    pub(crate) patience: Duration,
}

impl Sizes {
    pub(crate) fn new(cli: &Cli) -> Self {
        let base = if cli.smoke {
            Self {
                ingest_events: 300,
                e2e_events: 300,
                latency_rate: 100,
                latency_secs: 2,
                fanout_webhooks: 20,
                growth_deliveries: 2_000,
                recovery_events: 200,
                reconcile_repos: 20,
                reconcile_tags: 10,
                broker_events: 100,
                // A fifth of a second at 100/s: the smoke run stays quick.
                broker_latency_events: 20,
                patience: Duration::from_secs(30),
            }
        } else {
            Self {
                ingest_events: 20_000,
                e2e_events: 100_000,
                latency_rate: 1_000,
                latency_secs: 30,
                fanout_webhooks: 1_000,
                growth_deliveries: 1_000_000,
                recovery_events: 5_000,
                reconcile_repos: 10_000,
                reconcile_tags: 10,
                broker_events: 20_000,
                broker_latency_events: 0,
                patience: Duration::from_secs(600),
            }
        };
        Self {
            e2e_events: cli.e2e_events.unwrap_or(base.e2e_events),
            growth_deliveries: cli.growth_deliveries.unwrap_or(base.growth_deliveries),
            latency_secs: cli.latency_secs.unwrap_or(base.latency_secs),
            recovery_events: cli.recovery_events.unwrap_or(base.recovery_events),
            reconcile_repos: cli.reconcile_repos.unwrap_or(base.reconcile_repos),
            broker_events: cli.broker_events.unwrap_or(base.broker_events),
            // Full size: as long as scenario 3's run.
            broker_latency_events: if cli.smoke {
                base.broker_latency_events
            } else {
                base.latency_rate * cli.latency_secs.unwrap_or(base.latency_secs)
            },
            ..base
        }
    }
}

pub(crate) async fn run_all(cli: &Cli) -> anyhow::Result<()> {
    herald_binary()?;
    let sizes = Sizes::new(cli);
    // 1. The trivial server: the same client against a server that does nothing, in its own
    // process like Herald, gives what this machine's loopback and client allow.
    let port = free_port()?;
    let mut trivial = Command::new(std::env::current_exe()?)
        .args(["trivial-server", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trivial_rate = blast(
        &format!("http://127.0.0.1:{port}/v2/webhooks/events"),
        "t",
        sizes.ingest_events,
        cli.connections,
    )
    .await;
    let _ = trivial.kill();
    let _ = trivial.wait();
    let trivial_rate = trivial_rate?;
    println!("trivial server: {trivial_rate:.0} req/s");

    println!("SQLite:");
    let sqlite = run_suite(cli, &sizes, None, trivial_rate).await?;
    let mut notes: Vec<String> = sqlite
        .notes
        .iter()
        .map(|n| format!("SQLite: {n}"))
        .collect();
    let pg = if cli.no_postgres {
        notes.push("PostgreSQL: not run (--no-postgres)".into());
        None
    } else {
        match admin_pool(&cli.postgres).await {
            Err(e) => {
                println!("PostgreSQL: skipped ({e})");
                notes.push(format!("PostgreSQL: not run ({e})"));
                None
            }
            Ok(pool) => {
                pool.close().await;
                println!("PostgreSQL:");
                let result = run_suite(cli, &sizes, Some(&cli.postgres), trivial_rate).await;
                drop_bench_databases(&cli.postgres)
                    .await
                    .context("dropping the bench databases")?;
                let result = result?;
                notes.extend(result.notes.iter().map(|n| format!("PostgreSQL: {n}")));
                notes.push(
                    "PostgreSQL: the server runs on the same 2 cores as Herald and the load client"
                        .into(),
                );
                Some(result)
            }
        }
    };
    let fsync = fsync_latency().ok();
    let report = build_report(&sizes, trivial_rate, fsync, &sqlite, pg.as_ref());
    write_report(&cli.output, cli, &report, &notes)?;
    println!("wrote {}", cli.output.display());
    Ok(())
}

/// The p50 and p99 (ms) of 200 appends of 4 KiB, each made durable with `fdatasync`, in the
/// directory Herald's SQLite databases live in: what one commit costs at least on this disk,
/// so that SQLite's fixed-rate figures can be read against it.
fn fsync_latency() -> anyhow::Result<(f64, f64)> {
    use std::io::Write;
    let mut file = tempfile::tempfile_in(std::env::temp_dir())?;
    let block = [0u8; 4096];
    let mut took = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    Ok((took[took.len() / 2], took[took.len() * 99 / 100]))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match &cli.command {
        Cmd::TrivialServer { port } => runtime.block_on(trivial_server(*port)),
        Cmd::All => runtime.block_on(run_all(&cli)),
    }
}
