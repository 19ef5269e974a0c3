//! The NATS door of ingest: a source of kind `zot` or `distribution` may read its events
//! from a NATS subject (zot's NATS sink) instead of receiving them over HTTP. Each source
//! reads as a durable JetStream pull consumer, and each message goes the HTTP route's way
//! (the source's reader, then one commit) and is acknowledged only after that commit: a
//! process that dies before it leaves the message to be redelivered, and the event id
//! deduplicates a message committed but not acknowledged. A message that is not a payload
//! of the source's kind, which HTTP would refuse with 400, is terminated (never
//! redelivered) with a warning; one that could not be stored is redelivered later.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;

use crate::domain::model::{NatsIntake, Source};
use crate::AppState;

/// How often the sources' NATS settings are read again, so a change made through the API
/// or the command line starts, moves or stops a consumer without a restart.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// The pause before a consumer that lost its server (or could not start) tries again.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// A message that could not be stored comes back after this long.
const NAK_DELAY: Duration = Duration::from_secs(5);
/// How long JetStream waits for an acknowledgement before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Checks every source's NATS settings once, at start: a server that cannot be reached or
/// a stream that does not exist stops `herald serve` with the reason, rather than leaving
/// events unread.
pub async fn check_all(state: &AppState) -> anyhow::Result<()> {
    for (source, intake) in state.store.nats_intakes().await? {
        let check = async {
            let js = connect(state, &intake).await?;
            consumer(&js, &intake).await.map(|_| ())
        };
        tokio::time::timeout(Duration::from_secs(10), check)
            .await
            .map_err(|_| "no answer within 10s".to_string())
            .and_then(|r| r)
            .map_err(|why| {
                anyhow::anyhow!(
                    "source '{}' reads its events from NATS at {} (stream {}, subject {}), \
                     which does not work: {why}",
                    source.name,
                    intake.url,
                    intake.stream,
                    intake.subject
                )
            })?;
        tracing::info!(source = %source.name, nats = %intake.url, stream = %intake.stream, subject = %intake.subject, "source reads its events from NATS");
    }
    Ok(())
}

/// Runs one consumer per source that reads from NATS, following changes to the settings.
pub async fn run(state: AppState) {
    let mut running: HashMap<String, (NatsIntake, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        match state.store.nats_intakes().await {
            Ok(wanted) => {
                let names: Vec<String> = wanted.iter().map(|(s, _)| s.name.clone()).collect();
                running.retain(|name, (_, task)| {
                    let keep = names.contains(name);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for (source, intake) in wanted {
                    let changed = running
                        .get(&source.name)
                        .is_none_or(|(now, task)| *now != intake || task.is_finished());
                    if changed {
                        if let Some((_, task)) = running.remove(&source.name) {
                            task.abort();
                        }
                        let task = tokio::spawn(keep_consuming(
                            state.clone(),
                            source.clone(),
                            intake.clone(),
                        ));
                        running.insert(source.name.clone(), (intake, task));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the sources' NATS settings"),
        }
        tokio::time::sleep(RELOAD_EVERY).await;
    }
}

async fn keep_consuming(state: AppState, source: Source, intake: NatsIntake) {
    loop {
        if let Err(why) = consume(&state, &source, &intake).await {
            tracing::warn!(source = %source.name, nats = %intake.url, error = %why, "reading events from NATS failed; trying again");
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

async fn connect(state: &AppState, intake: &NatsIntake) -> Result<jetstream::Context, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name("herald-source")
        .connection_timeout(Duration::from_secs(5));
    let password = intake
        .password
        .as_ref()
        .map(|p| state.cipher.open(p))
        .transpose()
        .map_err(|e| format!("cannot open the sealed NATS password: {e}"))?;
    options = match (&intake.username, password) {
        (Some(user), password) => {
            options.user_and_password(user.clone(), password.unwrap_or_default())
        }
        (None, Some(token)) => options.token(token),
        (None, None) => options,
    };
    let client = options
        .connect(intake.url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    Ok(jetstream::new(client))
}

async fn consumer(
    js: &jetstream::Context,
    intake: &NatsIntake,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    let stream = js
        .get_stream(&intake.stream)
        .await
        .map_err(|e| format!("the stream '{}': {e}", intake.stream))?;
    stream
        .get_or_create_consumer(
            &intake.consumer,
            pull::Config {
                durable_name: Some(intake.consumer.clone()),
                filter_subject: intake.subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("the consumer '{}': {e}", intake.consumer))
}

/// Reads messages until the connection or the consumer fails.
async fn consume(state: &AppState, source: &Source, intake: &NatsIntake) -> Result<(), String> {
    let js = connect(state, intake).await?;
    let consumer = consumer(&js, intake).await?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let readable = source.registry_url.is_some();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let mut headers = axum::http::HeaderMap::new();
        if let Some(h) = &message.headers {
            for (name, values) in h.iter() {
                let Ok(name) = axum::http::HeaderName::from_bytes(
                    name.to_string().to_ascii_lowercase().as_bytes(),
                ) else {
                    continue;
                };
                for value in values {
                    if let Ok(value) = axum::http::HeaderValue::from_str(value.as_str()) {
                        headers.append(name.clone(), value);
                    }
                }
            }
        }
        let payload = &message.payload;
        let translated = if payload.len() > state.config.ingest_max_bytes {
            Err(format!(
                "the message is larger than the limit of {} bytes (--ingest-max-bytes)",
                state.config.ingest_max_bytes
            ))
        } else {
            crate::registry::sources::translate(source.kind, &source.name, &headers, payload)
                .map_err(|e| e.0)
        };
        let mut events = match translated {
            Ok(events) => events,
            Err(why) => {
                // What HTTP refuses with 400: sending it again changes nothing.
                tracing::warn!(source = %source.name, subject = %message.subject, error = %why, "a NATS message is not a payload of this source; dropped");
                message
                    .ack_with(AckKind::Term)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
        };
        match crate::http::ingest::store_events(state, &mut events, &source.name, readable).await {
            Ok(_) => {
                // After the commit, and confirmed by the server: a lost ack means a
                // redelivery, which the event id deduplicates.
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(source = %source.name, error = %e, "a committed NATS message could not be acknowledged; it comes again and is deduplicated");
                }
            }
            Err(e) => {
                tracing::warn!(source = %source.name, error = ?e, "a NATS message could not be stored; it comes again");
                message
                    .ack_with(AckKind::Nak(Some(NAK_DELAY)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Err("the message stream ended".into())
}
