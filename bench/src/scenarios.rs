//! The scenarios, run once per backend: ingest, end-to-end, latency at a fixed rate,
//! fan-out, growth with stored history, memory, recovery, and reading the registry.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::brokers::{destinations, DestinationFigures};
use crate::herald::{memory_mib, AnonPeak, Herald};
use crate::load::{blast, latency_run, Latency};
use crate::receiver::{start_receiver, wait_count, wait_distinct, Arrivals};
use crate::registry::{facts_latency, reconcile_scenario, ReconcileFigures};
use crate::{Cli, Sizes};

/// One backend's figures.
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) ingest: f64,
    pub(crate) e2e: Option<f64>,
    /// During the end-to-end burst: envelopes accepted per second, and deliveries that
    /// arrived per second while it went on.
    pub(crate) burst_ingest: Option<f64>,
    pub(crate) burst_delivered: Option<f64>,
    /// Scenarios 1-2: the share of deliveries born claimed (handed off by ingest), and the
    /// mean claim round (ms), from Herald's own metrics.
    pub(crate) handed_off_share: Option<f64>,
    pub(crate) claim_round_ms: Option<f64>,
    /// The same share during scenario 3.
    pub(crate) latency_handed_off_share: Option<f64>,
    pub(crate) latency: Option<Latency>,
    pub(crate) rss_idle: f64,
    pub(crate) rss_peak: f64,
    pub(crate) rss_anon_peak: f64,
    pub(crate) fanout_ms: Option<f64>,
    pub(crate) growth_ingest: Option<f64>,
    pub(crate) growth_latency: Option<Latency>,
    /// Seconds from the SIGKILL (PostgreSQL) or the restart (SQLite) until every accepted
    /// event had arrived.
    pub(crate) recovery_secs: Option<f64>,
    pub(crate) reconcile: Option<ReconcileFigures>,
    /// Push-to-receiver latency reading the registry: a webhook without a facts filter,
    /// and one with.
    pub(crate) facts_latency: Option<(Latency, Latency)>,
    /// Scenario 10: per destination kind (`brokers::DESTINATIONS`), the same burst and rate.
    pub(crate) destinations: Vec<DestinationFigures>,
    pub(crate) notes: Vec<String>,
}

/// Scenarios 1-10 against one backend (`database`: None for SQLite).
pub(crate) async fn run_suite(
    cli: &Cli,
    sizes: &Sizes,
    pg_admin: Option<&str>,
    trivial_rate: f64,
) -> anyhow::Result<Results> {
    let mut r = Results::default();
    let (rx_addr, arrivals) = start_receiver().await?;
    let receiver_url = format!("http://{rx_addr}/hook");
    let run = rand::random::<u32>();

    // 1. Ingest.
    let herald = Herald::start(pg_admin).await?;
    herald.webhooks(1, &receiver_url).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rss_idle = memory_mib(herald.pid()).1;
    let anon = AnonPeak::start(herald.pid());
    println!("  ingest: {} envelopes", sizes.ingest_events);
    r.ingest = blast(
        &herald.ingest_url(),
        &format!("i{run}"),
        sizes.ingest_events,
        cli.connections,
    )
    .await?;
    println!(
        "  ingest: {:.0}/s ({:.2} of trivial)",
        r.ingest,
        r.ingest / trivial_rate
    );
    if wait_count(&arrivals, sizes.ingest_events as u64, sizes.patience)
        .await
        .is_none()
    {
        r.notes
            .push("the ingest scenario's deliveries did not all arrive in time".into());
    }

    // 2. End-to-end: ingest and delivery at once, until the last delivery arrived.
    arrivals.count.store(0, Ordering::SeqCst);
    let n = sizes.e2e_events;
    println!("  end-to-end: {n} events");
    let started = Instant::now();
    let ingest = tokio::spawn({
        let (url, c, prefix) = (herald.ingest_url(), cli.connections, format!("e{run}"));
        let arrivals = arrivals.clone();
        async move {
            let rate = blast(&url, &prefix, n, c).await?;
            // What had arrived when the last envelope was accepted.
            let arrived = arrivals.count.load(Ordering::SeqCst);
            anyhow::Ok((rate, arrived, started.elapsed()))
        }
    });
    let delivered = wait_count(&arrivals, n as u64, sizes.patience).await;
    let (burst_rate, arrived, burst) = ingest.await??;
    r.burst_ingest = Some(burst_rate);
    r.burst_delivered = Some(arrived as f64 / burst.as_secs_f64());
    match delivered {
        Some(_) => r.e2e = Some(n as f64 / started.elapsed().as_secs_f64()),
        None => r.notes.push(format!(
            "end-to-end: only {} of {n} delivered within {} s",
            arrivals.count.load(Ordering::SeqCst),
            sizes.patience.as_secs()
        )),
    }
    println!(
        "  end-to-end: {:?}/s; during the burst {:.0} accepted/s, {:.0} delivered/s",
        r.e2e.map(|x| x.round()),
        burst_rate,
        r.burst_delivered.unwrap_or_default()
    );
    // Drain whatever is left before measuring latency.
    wait_count(&arrivals, n as u64, sizes.patience).await;
    let mut taken_before = (0.0, 0.0);
    if let Ok(text) = herald.metrics().await {
        let (handed, total) = taken(&text);
        taken_before = (handed, total);
        r.handed_off_share = (total > 0.0).then(|| handed / total);
        let rounds = metric(&text, "herald_claim_round_seconds_count").filter(|n| *n > 0.0);
        r.claim_round_ms = rounds
            .and_then(|n| Some(metric(&text, "herald_claim_round_seconds_sum")? / n * 1000.0));
    }

    // 3. Latency at a fixed rate.
    println!(
        "  latency: {}/s for {} s",
        sizes.latency_rate, sizes.latency_secs
    );
    let latency = latency_run(
        &herald.ingest_url(),
        &format!("l{run}"),
        &arrivals,
        sizes.latency_rate,
        sizes.latency_secs,
    )
    .await?;
    println!(
        "  latency p50 {:.1} ms, p99 {:.1} ms",
        latency.p50, latency.p99
    );
    r.latency = Some(latency);
    if let Ok(text) = herald.metrics().await {
        let (handed, total) = taken(&text);
        let (handed, total) = (handed - taken_before.0, total - taken_before.1);
        r.latency_handed_off_share = (total > 0.0).then(|| handed / total);
    }
    r.rss_peak = memory_mib(herald.pid()).0;
    r.rss_anon_peak = anon.mib();
    drop(herald);

    // 4. Fan-out: one event, `fanout_webhooks` enabled webhooks.
    let herald = Herald::start(pg_admin).await?;
    herald
        .webhooks(sizes.fanout_webhooks, &receiver_url)
        .await?;
    arrivals.count.store(0, Ordering::SeqCst);
    let started = Instant::now();
    blast(&herald.ingest_url(), &format!("f{run}"), 1, 1).await?;
    r.fanout_ms = wait_count(&arrivals, sizes.fanout_webhooks as u64, sizes.patience)
        .await
        .map(|_| started.elapsed().as_secs_f64() * 1000.0);
    println!("  fan-out: {:?} ms", r.fanout_ms.map(|x| x.round()));
    drop(herald);

    // 5. Growth: 1 and 3 again with history stored.
    {
        let mut herald = Herald::start(pg_admin).await?;
        herald.webhooks(1, &receiver_url).await?;
        // The webhook exists; stop Herald to write history into its database directly.
        herald.stop();
        let seeded = sizes.growth_deliveries;
        println!("  growth: seeding {seeded} finished deliveries");
        let seed_started = Instant::now();
        herald.seed_history(seeded, &receiver_url).await?;
        r.notes.push(format!(
            "growth: {seeded} finished deliveries (with their events and attempts) were written \
             into the stopped Herald's database directly, in {:.0} s, then Herald was restarted",
            seed_started.elapsed().as_secs_f64()
        ));
        herald.spawn().await?;
        arrivals.count.store(0, Ordering::SeqCst);
        r.growth_ingest = Some(
            blast(
                &herald.ingest_url(),
                &format!("g{run}"),
                sizes.ingest_events,
                cli.connections,
            )
            .await?,
        );
        wait_count(&arrivals, sizes.ingest_events as u64, sizes.patience).await;
        let latency = latency_run(
            &herald.ingest_url(),
            &format!("gl{run}"),
            &arrivals,
            sizes.latency_rate,
            sizes.latency_secs,
        )
        .await?;
        println!(
            "  growth: ingest {:.0}/s, p99 {:.1} ms",
            r.growth_ingest.unwrap_or_default(),
            latency.p99
        );
        r.growth_latency = Some(latency);
    }

    // 8. Reading the registry: a reconcile of a large catalog, and latency with facts.
    if sizes.reconcile_repos > 0 {
        r.reconcile = Some(reconcile_scenario(sizes, pg_admin, &receiver_url, &arrivals).await?);
    }
    r.facts_latency = Some(facts_latency(sizes, pg_admin, &receiver_url, &arrivals, run).await?);

    // 7. Recovery after a crash.
    if sizes.recovery_events > 0 {
        r.recovery_secs = recovery(
            cli,
            sizes,
            pg_admin,
            &receiver_url,
            &arrivals,
            run,
            &mut r.notes,
        )
        .await?;
        println!("  recovery: {:?} s", r.recovery_secs);
    }

    // 10. Each destination kind: HTTP and the four brokers, the same burst and rate.
    if sizes.broker_events > 0 {
        println!(
            "  destinations: {} events each, then {} at {}/s",
            sizes.broker_events, sizes.broker_latency_events, sizes.latency_rate
        );
        r.destinations = destinations(cli, sizes, pg_admin, run, &mut r.notes).await?;
    }
    Ok(r)
}

/// A burst of events, and as its last envelope is accepted (deliveries claimed and in
/// flight) a Herald is SIGKILLed: on SQLite the only one, restarted at once; on PostgreSQL
/// one of three sharing the database, the one the load goes to staying up. The seconds
/// from the restart (SQLite) or the kill (PostgreSQL) until every event has arrived,
/// each counted once.
async fn recovery(
    cli: &Cli,
    sizes: &Sizes,
    pg_admin: Option<&str>,
    receiver_url: &str,
    arrivals: &Arrivals,
    run: u32,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<f64>> {
    let mut herald = Herald::start(pg_admin).await?;
    herald.webhooks(1, receiver_url).await?;
    let mut others = Vec::new();
    if pg_admin.is_some() {
        for _ in 0..2 {
            others.push(herald.spawn_another().await?);
        }
    }
    let n = sizes.recovery_events;
    println!("  recovery: {n} events, then SIGKILL");
    arrivals.count_distinct();
    // Every envelope answered 2xx is committed: all n must arrive.
    blast(&herald.ingest_url(), &format!("r{run}"), n, cli.connections).await?;
    let at_kill = arrivals.distinct();
    let clock = match others.first_mut() {
        None => {
            herald.stop();
            let clock = Instant::now();
            herald.spawn().await?;
            clock
        }
        Some(victim) => {
            victim.kill()?;
            victim.wait()?;
            Instant::now()
        }
    };
    let all = wait_distinct(arrivals, n, sizes.patience).await;
    let secs = clock.elapsed().as_secs_f64();
    for mut other in others.into_iter().skip(1) {
        let _ = other.kill();
        let _ = other.wait();
    }
    notes.push(format!(
        "recovery: {n} events, {at_kill} of them delivered when a Herald was SIGKILLed{}",
        if pg_admin.is_some() {
            " (one of three processes; the load went to another)"
        } else {
            ", restarted at once"
        }
    ));
    if !all {
        notes.push(format!(
            "recovery: only {} of {n} arrived within {} s",
            arrivals.distinct(),
            sizes.patience.as_secs()
        ));
    }
    Ok(all.then_some(secs))
}

/// The value of the sample named exactly `name` (with its labels) in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Deliveries started by hand-off, and in all, from `/metrics`.
fn taken(metrics: &str) -> (f64, f64) {
    let handed = metric(metrics, "herald_deliveries_taken_total{by=\"hand_off\"}");
    let claimed = metric(metrics, "herald_deliveries_taken_total{by=\"claim\"}");
    let handed = handed.unwrap_or(0.0);
    (handed, handed + claimed.unwrap_or(0.0))
}
