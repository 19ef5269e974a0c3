//! Broker destinations: a delivery published to NATS JetStream, RabbitMQ, a Redis stream
//! or an MQTT broker, succeeding only on the broker's acknowledgement. Each answers the
//! same `Result<ReceiverResponse, SendError>` as the HTTP client, so retries, the log, the
//! circuit and fifo order hold as they are.
//!
//! Connections are pooled per broker (scheme, address, vhost or database, credentials)
//! and made on first use. The broker's host is resolved here and every address vetted by
//! the SSRF guard; the client is handed the vetted address, never the name, so a name
//! cannot resolve elsewhere when the client connects. A connection that breaks is dropped
//! from the pool; the attempt fails (retryable) and the next one connects again, so a
//! broker's restart costs a retry, never a delivery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::delivery::client::{ReceiverResponse, SendError};
use crate::delivery::ssrf::SsrfGuard;
use crate::domain::destination::{broker_target, Broker, BrokerTarget};
use crate::hooks::payload::{BrokerCredentials, OutgoingRequest};

mod amqp;
mod mqtt;
mod nats;
mod redis;

/// What a broker publish carries: the body and the request's headers, as the protocol's
/// headers (NATS headers, AMQP properties, stream fields, MQTT 5 user properties).
pub(crate) struct Message<'a> {
    /// The delivery's `webhook-id` (its Standard Webhooks id), or `X-Herald-Delivery`:
    /// NATS's `Nats-Msg-Id`, AMQP's `message_id`.
    pub id: &'a str,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
}

/// Why a publish got no acknowledgement.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection is gone or unusable: it leaves the pool and the next attempt
    /// connects again.
    Broken(String),
    /// The broker answered, and said no (no stream for the subject, unroutable, a refused
    /// command): the connection stays.
    Refused(String),
}

/// A pooled connection to one broker.
#[derive(Clone)]
enum Connection {
    /// Boxed: the NATS client and its JetStream context are large.
    Nats(Box<nats::Conn>),
    Amqp(amqp::Conn),
    Redis(redis::Conn),
    Mqtt(mqtt::Conn),
}

/// The pool's key: everything that makes two connections different. Credentials enter
/// as a digest, so the key holds no secret.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    scheme: &'static str,
    host: String,
    port: u16,
    /// The AMQP vhost or the Redis database: a connection is bound to one.
    scope: String,
    credentials: [u8; 32],
}

/// One broker's slot: the connection and its generation, so a failure drops only the
/// connection it happened on, not one made since.
type Slot = Arc<tokio::sync::Mutex<Option<(u64, Connection)>>>;

/// The most brokers kept connected at once; past it, all are dropped and reconnect.
const MAX_POOLED: usize = 1024;

pub struct Brokers {
    guard: SsrfGuard,
    connect_timeout: Duration,
    total_timeout: Duration,
    pool: Mutex<HashMap<PoolKey, Slot>>,
    generation: AtomicU64,
}

impl Brokers {
    pub fn new(guard: SsrfGuard, connect_timeout: Duration, total_timeout: Duration) -> Self {
        Self {
            guard,
            connect_timeout,
            total_timeout,
            pool: Mutex::default(),
            generation: AtomicU64::new(1),
        }
    }

    /// Publishes `request` to the broker its URL names; `Ok` only on the broker's ack.
    pub async fn send(&self, request: &OutgoingRequest) -> Result<ReceiverResponse, SendError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| SendError::Failed(format!("the broker URL does not parse: {e}")))?;
        let target = broker_target(&url)
            .map_err(|e| SendError::Failed(e.message))?
            .ok_or_else(|| SendError::Failed("not a broker URL".into()))?;
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str())
        };
        let message = Message {
            id: header("webhook-id")
                .or_else(|| header("x-herald-delivery"))
                .unwrap_or_default(),
            body: request.body.as_bytes(),
            content_type: header("content-type"),
            headers: request
                .headers
                .iter()
                // Credentials authenticate the connection; they never travel.
                .filter(|h| !h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect(),
        };
        let started = Instant::now();
        let work = async {
            let (key, generation, connection) = self
                .connection(&target, request.broker_credentials.as_ref())
                .await?;
            let published = match &connection {
                Connection::Nats(c) => c.publish(&target.broker, &message).await,
                Connection::Amqp(c) => c.publish(&target.broker, &message).await,
                Connection::Redis(c) => c.publish(&target.broker, &message).await,
                Connection::Mqtt(c) => c.publish(&target.broker, &message).await,
            };
            match published {
                Ok(answer) => Ok(answer),
                Err(Failure::Refused(why)) => Err(SendError::Failed(why)),
                Err(Failure::Broken(why)) => {
                    self.forget(&key, generation).await;
                    Err(SendError::Connect(why))
                }
            }
        };
        match tokio::time::timeout(self.total_timeout, work).await {
            Ok(Ok(body)) => Ok(ReceiverResponse {
                // What the broker acknowledged, as a receiver's 2xx would be.
                status: 200,
                headers: Vec::new(),
                body,
                truncated: false,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // A connection that cannot ack in time is suspect: the next attempt
                // starts on a new one.
                if let Ok(key) = self.key(&target, request.broker_credentials.as_ref()) {
                    let slot = self.pool.lock().ok().and_then(|p| p.get(&key).cloned());
                    if let Some(slot) = slot {
                        if let Ok(mut held) = slot.try_lock() {
                            *held = None;
                        }
                    }
                }
                tracing::debug!(took = ?started.elapsed(), "broker publish timed out");
                Err(SendError::Timeout(self.total_timeout))
            }
        }
    }

    fn key(
        &self,
        target: &BrokerTarget,
        credentials: Option<&BrokerCredentials>,
    ) -> Result<PoolKey, SendError> {
        let scope = match &target.broker {
            Broker::Amqp { vhost, .. } => vhost.clone(),
            Broker::Redis { db, .. } => db.to_string(),
            Broker::Nats { .. } | Broker::Mqtt { .. } => String::new(),
        };
        let mut digest = Sha256::new();
        if let Some(c) = credentials {
            digest.update(b"u");
            digest.update(c.username.as_deref().unwrap_or_default());
            digest.update(b"\0p");
            digest.update(c.password.as_deref().unwrap_or_default());
        }
        Ok(PoolKey {
            scheme: target.broker.scheme(),
            host: target.host.to_ascii_lowercase(),
            port: target.port,
            scope,
            credentials: digest.finalize().into(),
        })
    }

    /// The pooled connection to `target`'s broker, made now when there is none.
    async fn connection(
        &self,
        target: &BrokerTarget,
        credentials: Option<&BrokerCredentials>,
    ) -> Result<(PoolKey, u64, Connection), SendError> {
        let key = self.key(target, credentials)?;
        let slot = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() >= MAX_POOLED && !pool.contains_key(&key) {
                pool.clear();
            }
            pool.entry(key.clone()).or_default().clone()
        };
        // Held while connecting: one connect per broker, the others wait for it.
        let mut held = slot.lock().await;
        if let Some((generation, connection)) = held.as_ref() {
            if connection.usable() {
                return Ok((key, *generation, connection.clone()));
            }
        }
        *held = None;
        let addr = self.vetted_address(target).await?;
        let connected = tokio::time::timeout(
            self.connect_timeout,
            self.connect(addr, target, credentials),
        )
        .await
        .map_err(|_| {
            SendError::Connect(format!(
                "could not connect to the {} broker at {addr}: no answer within {}",
                target.broker.scheme(),
                humantime::format_duration(self.connect_timeout)
            ))
        })?
        .map_err(|why| {
            SendError::Connect(format!(
                "could not connect to the {} broker at {addr}: {why}",
                target.broker.scheme()
            ))
        })?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        *held = Some((generation, connected.clone()));
        tracing::debug!(scheme = target.broker.scheme(), %addr, "connected to a broker");
        Ok((key, generation, connected))
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        target: &BrokerTarget,
        credentials: Option<&BrokerCredentials>,
    ) -> Result<Connection, String> {
        Ok(match &target.broker {
            Broker::Nats { .. } => Connection::Nats(Box::new(
                nats::Conn::connect(addr, credentials, self.connect_timeout, self.total_timeout)
                    .await?,
            )),
            Broker::Amqp { vhost, .. } => Connection::Amqp(
                amqp::Conn::connect(addr, vhost, credentials, self.connect_timeout).await?,
            ),
            Broker::Redis { db, .. } => Connection::Redis(
                redis::Conn::connect(
                    addr,
                    *db,
                    credentials,
                    self.connect_timeout,
                    self.total_timeout,
                )
                .await?,
            ),
            Broker::Mqtt { .. } => Connection::Mqtt(
                mqtt::Conn::connect(addr, credentials, self.connect_timeout).await?,
            ),
        })
    }

    /// Drops the connection of `key` if it is still the one of `generation`.
    async fn forget(&self, key: &PoolKey, generation: u64) {
        let slot = self
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(slot) = slot {
            let mut held = slot.lock().await;
            if held.as_ref().is_some_and(|(g, _)| *g == generation) {
                *held = None;
            }
        }
    }

    /// The broker's address, resolved here and vetted by the SSRF guard.
    async fn vetted_address(&self, target: &BrokerTarget) -> Result<SocketAddr, SendError> {
        let host = target.host.as_str();
        let found: Vec<SocketAddr> = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((host, target.port)),
        )
        .await
        {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(e)) => return Err(SendError::Connect(format!("could not resolve {host}: {e}"))),
            Err(_) => {
                return Err(SendError::Connect(format!(
                    "could not resolve {host}: no answer within {}",
                    humantime::format_duration(self.connect_timeout)
                )))
            }
        };
        let permitted = self
            .guard
            .vet_resolved(host, found)
            .map_err(|blocked| SendError::Blocked(blocked.to_string()))?;
        permitted
            .into_iter()
            .next()
            .ok_or_else(|| SendError::Connect(format!("{host} has no addresses")))
    }
}

impl Connection {
    /// Whether a pooled connection can still be used, as far as can be told without I/O.
    fn usable(&self) -> bool {
        match self {
            Self::Nats(c) => c.usable(),
            Self::Amqp(c) => c.usable(),
            Self::Redis(_) => true,
            Self::Mqtt(c) => c.usable(),
        }
    }
}
