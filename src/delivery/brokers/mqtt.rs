//! MQTT 5: a QoS 1 publish, complete on the broker's PUBACK, with the request's headers
//! as user properties and its content type as the content-type property.
//!
//! rumqttc's client hands publishes to an event loop and reports neither their packet id
//! nor their PUBACK to the caller. The event loop takes requests in order and says
//! `Outgoing::Publish(pkid)` for each, so publishes are queued in that same order (under
//! `order`) and matched to their packet id there, then to their PUBACK. A connection
//! error fails every publish waiting on it and ends the connection; the pool makes a new
//! one for the next attempt.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::oneshot;

use super::{Failure, Message};
use crate::domain::destination::Broker;
use crate::hooks::payload::BrokerCredentials;

type Answer = oneshot::Sender<Result<String, Failure>>;

#[derive(Default)]
struct Waiting {
    /// Sent to the event loop, packet id not known yet: in the order sent.
    queued: VecDeque<Answer>,
    /// Out, waiting for their PUBACK.
    by_packet: HashMap<u16, Answer>,
}

struct Inner {
    client: AsyncClient,
    /// Held while a publish is queued and handed to the event loop, so both orders match.
    order: tokio::sync::Mutex<()>,
    waiting: Mutex<Waiting>,
    alive: AtomicBool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
pub(super) struct Conn {
    inner: Arc<Inner>,
}

impl Conn {
    pub(super) async fn connect(
        addr: SocketAddr,
        credentials: Option<&BrokerCredentials>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let id = crate::secrets::random_token("herald-");
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_connection_timeout(connect_timeout.as_secs().max(1));
        if let Some(c) = credentials {
            options.set_credentials(
                c.username.clone().unwrap_or_default(),
                c.password.clone().unwrap_or_default(),
            );
        }
        let (client, mut events) = AsyncClient::new(options, 256);
        // The first poll connects and reads the CONNACK.
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != ConnectReturnCode::Success {
                        return Err(format!("the broker refused the connection: {:?}", ack.code));
                    }
                    break;
                }
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let task = tokio::spawn(async move { run(events, weak).await });
            Inner {
                client,
                order: tokio::sync::Mutex::new(()),
                waiting: Mutex::new(Waiting::default()),
                alive: AtomicBool::new(true),
                task,
            }
        });
        Ok(Self { inner })
    }

    pub(super) fn usable(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }

    pub(super) async fn publish(
        &self,
        broker: &Broker,
        message: &Message<'_>,
    ) -> Result<String, Failure> {
        let Broker::Mqtt { topic } = broker else {
            return Err(Failure::Refused("not an MQTT destination".into()));
        };
        let properties = PublishProperties {
            content_type: message.content_type.map(str::to_string),
            user_properties: message
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let (answer, answered) = oneshot::channel();
        {
            let _order = self.inner.order.lock().await;
            if !self.usable() {
                return Err(Failure::Broken(
                    "the connection to the MQTT broker is closed".into(),
                ));
            }
            lock(&self.inner.waiting).queued.push_back(answer);
            let sent = self
                .inner
                .client
                .publish_with_properties(
                    topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    message.body.to_vec(),
                    properties,
                )
                .await;
            if sent.is_err() {
                lock(&self.inner.waiting).queued.pop_back();
                return Err(Failure::Broken(
                    "the connection to the MQTT broker is closed".into(),
                ));
            }
        }
        match answered.await {
            Ok(result) => result
                .map(|reason| serde_json::json!({ "topic": topic, "puback": reason }).to_string()),
            Err(_) => Err(Failure::Broken(
                "the connection to the MQTT broker closed before its PUBACK".into(),
            )),
        }
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drives the connection: matches packet ids and PUBACKs to their publishes; on an error,
/// fails every publish still waiting and stops (no reconnect: the pool makes a new one).
async fn run(mut events: EventLoop, inner: std::sync::Weak<Inner>) {
    let error = loop {
        let event = events.poll().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match event {
            Ok(Event::Outgoing(Outgoing::Publish(packet))) => {
                let mut waiting = lock(&inner.waiting);
                if let Some(answer) = waiting.queued.pop_front() {
                    waiting.by_packet.insert(packet, answer);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let answer = lock(&inner.waiting).by_packet.remove(&ack.pkid);
                if let Some(answer) = answer {
                    let result = match ack.reason {
                        PubAckReason::Success => Ok("success".to_string()),
                        // Accepted; nobody is subscribed to the topic right now.
                        PubAckReason::NoMatchingSubscribers => {
                            Ok("success, no matching subscribers".to_string())
                        }
                        reason => Err(Failure::Refused(format!(
                            "the MQTT broker refused the message: {reason:?}{}",
                            ack.properties
                                .and_then(|p| p.reason_string)
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        ))),
                    };
                    let _ = answer.send(result);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                break format!("the MQTT broker disconnected: {:?}", d.reason_code)
            }
            Ok(_) => {}
            Err(e) => break format!("the connection to the MQTT broker failed: {e}"),
        }
    };
    let Some(inner) = inner.upgrade() else {
        return;
    };
    inner.alive.store(false, Ordering::SeqCst);
    let mut waiting = lock(&inner.waiting);
    let mut answers: Vec<Answer> = waiting.queued.drain(..).collect();
    answers.extend(waiting.by_packet.drain().map(|(_, a)| a));
    drop(waiting);
    for answer in answers {
        let _ = answer.send(Err(Failure::Broken(error.clone())));
    }
}
