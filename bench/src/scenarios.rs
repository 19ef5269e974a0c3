//! The scenarios, run once per backend: ingest, end-to-end, latency at a fixed rate,
//! fan-out, growth with stored history, and memory.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::herald::{memory_mib, AnonPeak, Herald};
use crate::load::{blast, latency_run, Latency};
use crate::receiver::{start_receiver, wait_count};
use crate::{Cli, Sizes};

/// One backend's figures.
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) ingest: f64,
    pub(crate) e2e: Option<f64>,
    pub(crate) latency: Option<Latency>,
    pub(crate) rss_idle: f64,
    pub(crate) rss_peak: f64,
    pub(crate) rss_anon_peak: f64,
    pub(crate) fanout_ms: Option<f64>,
    pub(crate) growth_ingest: Option<f64>,
    pub(crate) growth_latency: Option<Latency>,
    pub(crate) notes: Vec<String>,
}

/// Scenarios 1-6 against one backend (`database`: None for SQLite).
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
        async move { blast(&url, &prefix, n, c).await }
    });
    let delivered = wait_count(&arrivals, n as u64, sizes.patience).await;
    ingest.await??;
    match delivered {
        Some(_) => r.e2e = Some(n as f64 / started.elapsed().as_secs_f64()),
        None => r.notes.push(format!(
            "end-to-end: only {} of {n} delivered within {} s",
            arrivals.count.load(Ordering::SeqCst),
            sizes.patience.as_secs()
        )),
    }
    println!("  end-to-end: {:?}/s", r.e2e.map(|x| x.round()));
    // Drain whatever is left before measuring latency.
    wait_count(&arrivals, n as u64, sizes.patience).await;

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
    Ok(r)
}
