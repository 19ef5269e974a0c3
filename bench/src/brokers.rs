//! Scenario 10: each destination kind in turn (HTTP, then NATS JetStream, RabbitMQ, Redis
//! streams and MQTT on this machine's brokers), one webhook at a time on one Herald: the
//! same burst for deliveries/s and the same fixed rate for latency. Each broker's messages
//! are consumed here with the broker's own client and matched by event id to the ingest
//! answer, as the HTTP receiver does. Every run uses names of its own (stream, exchange and
//! queue, key, topic) and removes them afterwards; a broker that cannot be reached is
//! skipped with a note.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::herald::Herald;
use crate::load::{blast, envelope, latency_run_of, Latency};
use crate::receiver::{start_receiver, Arrivals};
use crate::{Cli, Sizes};

/// The destinations measured, in the report's order.
pub(crate) const DESTINATIONS: [&str; 5] = ["HTTP", "NATS", "RabbitMQ", "Redis", "MQTT"];

/// One destination's figures (None: not measured, see the notes).
#[derive(Default)]
pub(crate) struct DestinationFigures {
    pub(crate) e2e: Option<f64>,
    pub(crate) latency: Option<Latency>,
}

type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where one destination's messages are consumed.
struct Consumer {
    url: String,
    arrivals: Arrivals,
    task: Option<tokio::task::JoinHandle<()>>,
    cleanup: Cleanup,
}

/// How long a burst may make no progress before the scenario gives up on it: a broker
/// that dropped messages would otherwise hold the run for the whole patience.
const STALL: Duration = Duration::from_secs(30);

/// Runs scenario 10 against one backend; one entry per [`DESTINATIONS`], in order.
pub(crate) async fn destinations(
    cli: &Cli,
    sizes: &Sizes,
    pg_admin: Option<&str>,
    run: u32,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<DestinationFigures>> {
    let herald = Herald::start(pg_admin).await?;
    let api = herald.api();
    api.call(
        reqwest::Method::POST,
        "/namespaces",
        serde_json::json!({"name": "acme"}),
    )
    .await?;
    let mut figures = Vec::new();
    for (index, name) in DESTINATIONS.iter().enumerate() {
        let tag = format!("{run}-{index}");
        let consumer = match name_consumer(name, &tag).await {
            Ok(c) => c,
            Err(e) => {
                println!("  {name}: skipped ({e:#})");
                notes.push(format!("{name}: not measured ({e:#})"));
                figures.push(DestinationFigures::default());
                continue;
            }
        };
        let measured = measure(cli, sizes, &herald, name, &consumer, &tag).await;
        if let Some(task) = &consumer.task {
            task.abort();
        }
        consumer.cleanup.await;
        match measured {
            Ok((f, note)) => {
                notes.extend(note.map(|n| format!("{name}: {n}")));
                figures.push(f);
            }
            Err(e) => {
                notes.push(format!("{name}: failed ({e:#})"));
                figures.push(DestinationFigures::default());
            }
        }
    }
    Ok(figures)
}

async fn name_consumer(name: &str, tag: &str) -> anyhow::Result<Consumer> {
    match name {
        "HTTP" => {
            let (addr, arrivals) = start_receiver().await?;
            Ok(Consumer {
                url: format!("http://{addr}/hook"),
                arrivals,
                task: None,
                cleanup: Box::pin(async {}),
            })
        }
        "NATS" => nats(tag).await,
        "RabbitMQ" => amqp(tag).await,
        "Redis" => redis_stream(tag).await,
        _ => mqtt(tag).await,
    }
}

/// A webhook to the destination, the burst, then the fixed rate; the webhook is disabled
/// afterwards so that the next destination has Herald to itself.
async fn measure(
    cli: &Cli,
    sizes: &Sizes,
    herald: &Herald,
    name: &str,
    consumer: &Consumer,
    tag: &str,
) -> anyhow::Result<(DestinationFigures, Option<String>)> {
    use reqwest::Method;
    let api = herald.api();
    let hook = api
        .call(
            Method::POST,
            "/namespaces/acme/webhooks",
            serde_json::json!({"name": format!("to-{}", name.to_lowercase()), "url": consumer.url}),
        )
        .await?;
    let path = format!("/namespaces/acme/webhooks/{}", hook["id"]);
    api.call(Method::PATCH, &path, serde_json::json!({"enabled": true}))
        .await?;
    let arrivals = &consumer.arrivals;
    let mut figures = DestinationFigures::default();
    let mut note = None;
    let n = sizes.broker_events;
    let started = Instant::now();
    blast(&herald.ingest_url(), &format!("b{tag}"), n, cli.connections).await?;
    if wait_progress(arrivals, n as u64, STALL).await {
        figures.e2e = Some(n as f64 / started.elapsed().as_secs_f64());
    } else {
        note = Some(format!(
            "only {} of {n} burst deliveries consumed (none for {} s)",
            arrivals.count.load(Ordering::SeqCst),
            STALL.as_secs()
        ));
    }
    let latency = latency_run_of(
        &herald.ingest_url(),
        &format!("bl{tag}"),
        arrivals,
        sizes.latency_rate,
        sizes.broker_latency_events,
        &|id, _| envelope(id),
    )
    .await?;
    println!(
        "  {name}: {:?} deliveries/s, p50 {:.1} ms, p99 {:.1} ms",
        figures.e2e.map(|x| x.round()),
        latency.p50,
        latency.p99
    );
    figures.latency = Some(latency);
    api.call(Method::PATCH, &path, serde_json::json!({"enabled": false}))
        .await?;
    Ok((figures, note))
}

/// Waits until `target` deliveries arrived; false once none arrived for `stall`.
async fn wait_progress(arrivals: &Arrivals, target: u64, stall: Duration) -> bool {
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let now = arrivals.count.load(Ordering::Relaxed);
        if now >= target {
            return true;
        }
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() > stall {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A file stream of this run's own capturing the subject, read by an ephemeral pull
/// consumer without acks.
async fn nats(tag: &str) -> anyhow::Result<Consumer> {
    use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
    let client = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::connect("nats://127.0.0.1:4222"),
    )
    .await??;
    let js = jetstream::new(client);
    let stream_name = format!("HERALD_BENCH_{}", tag.replace('-', "_"));
    let subject = format!("herald-bench.{tag}");
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            seen.arrived(&m.payload);
        }
    });
    Ok(Consumer {
        url: format!("nats://127.0.0.1:4222/{subject}"),
        arrivals,
        task: Some(task),
        cleanup: Box::pin(async move {
            let _ = js.delete_stream(&stream_name).await;
        }),
    })
}

/// A direct exchange and a durable queue of this run's own, consumed without acks.
async fn amqp(tag: &str) -> anyhow::Result<Consumer> {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let connection = tokio::time::timeout(
        Duration::from_secs(3),
        lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default(),
        ),
    )
    .await??;
    let channel = connection.create_channel().await?;
    let name = format!("herald-bench-{tag}");
    channel
        .exchange_declare(
            name.as_str().into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            "bench".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut deliveries = channel
        .basic_consume(
            name.as_str().into(),
            "herald-bench".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(d)) = deliveries.next().await {
            seen.arrived(&d.data);
        }
    });
    Ok(Consumer {
        url: format!("amqp://guest:guest@127.0.0.1:5672/%2f?exchange={name}&routing_key=bench"),
        arrivals,
        task: Some(task),
        cleanup: Box::pin(async move {
            let _ = channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await;
            let _ = connection.close(200, "done".into()).await;
        }),
    })
}

/// A stream key of this run's own, read with a blocking `XREAD` from where it left off.
async fn redis_stream(tag: &str) -> anyhow::Result<Consumer> {
    let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
    let mut reader = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await??;
    let mut admin = client.get_multiplexed_async_connection().await?;
    let key = format!("herald-bench:{tag}");
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let read = key.clone();
    let task = tokio::spawn(async move {
        type Entries = Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>;
        let mut last = "0".to_string();
        loop {
            // Short blocks: well inside any response timeout of the connection.
            let got: Result<Option<Entries>, _> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&read)
                .arg(&last)
                .query_async(&mut reader)
                .await;
            let Ok(got) = got else { return };
            for (_, entries) in got.unwrap_or_default() {
                for (id, fields) in entries {
                    if let Some(pair) = fields.chunks(2).find(|p| p[0] == b"body") {
                        if let Some(body) = pair.get(1) {
                            seen.arrived(body);
                        }
                    }
                    last = id;
                }
            }
        }
    });
    Ok(Consumer {
        url: format!("redis://127.0.0.1:6379/0?stream={key}"),
        arrivals,
        task: Some(task),
        cleanup: Box::pin(async move {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut admin).await;
        }),
    })
}

/// A QoS 1 MQTT 5 subscription to a topic of this run's own.
async fn mqtt(tag: &str) -> anyhow::Result<Consumer> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let topic = format!("herald-bench/{tag}");
    let mut options = MqttOptions::new(format!("herald-bench-{tag}"), "127.0.0.1", 1883);
    options.set_connection_timeout(3);
    let (client, mut events) = AsyncClient::new(options, 1024);
    client.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
    // The subscription is in place once its SUBACK came back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.poll()).await {
            Err(_) => anyhow::bail!("no SUBACK from the MQTT broker within 5 s"),
            Ok(Err(e)) => anyhow::bail!("MQTT broker on 127.0.0.1:1883: {e}"),
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
        }
    }
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let task = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                seen.arrived(&p.payload);
            }
        }
    });
    Ok(Consumer {
        url: format!("mqtt://127.0.0.1:1883/{topic}"),
        arrivals,
        task: Some(task),
        cleanup: Box::pin(async move {
            let _ = client.disconnect().await;
        }),
    })
}
