//! MQTT 5: a QoS 1 publish, complete on the broker's PUBACK, with the request's headers
//! as user properties and its content type as the content-type property. A broker that
//! refuses MQTT 5 (a CONNACK "unsupported protocol version", a 3.1.1 CONNACK the v5 parser
//! cannot read, or the connection closed on the v5 CONNECT) is spoken to in MQTT 3.1.1,
//! which has no properties: the body travels, the headers cannot, and the attempt's
//! answer says so.
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
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
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

/// The client of the protocol the broker accepted.
enum Client {
    V5(AsyncClient),
    V311(rumqttc::AsyncClient),
}

/// The event loop of that protocol (boxed: both are large, and of unequal sizes).
enum Driver {
    V5(Box<EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

/// What the event loop saw, in either protocol's terms.
enum Seen {
    Sent(u16),
    Acked(u16, Result<String, Failure>),
    Closed(String),
    Other,
}

impl Driver {
    async fn next(&mut self) -> Seen {
        match self {
            Self::V5(events) => match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(packet))) => Seen::Sent(packet),
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
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
                    Seen::Acked(ack.pkid, result)
                }
                Ok(Event::Incoming(Packet::Disconnect(d))) => {
                    Seen::Closed(format!("the MQTT broker disconnected: {:?}", d.reason_code))
                }
                Ok(_) => Seen::Other,
                Err(e) => Seen::Closed(format!("the connection to the MQTT broker failed: {e}")),
            },
            Self::V311(events) => match events.poll().await {
                Ok(rumqttc::Event::Outgoing(Outgoing::Publish(packet))) => Seen::Sent(packet),
                // 3.1.1's PUBACK has no reason: it is a success.
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack))) => {
                    Seen::Acked(ack.pkid, Ok("success".to_string()))
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) => {
                    Seen::Closed("the MQTT broker disconnected".into())
                }
                Ok(_) => Seen::Other,
                Err(e) => Seen::Closed(format!("the connection to the MQTT broker failed: {e}")),
            },
        }
    }
}

struct Inner {
    client: Client,
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
        let (client, events) = match connect_v5(addr, credentials, connect_timeout).await {
            Ok((client, events)) => (Client::V5(client), Driver::V5(Box::new(events))),
            Err(e) if refuses_v5(&e) => {
                match connect_v311(addr, credentials, connect_timeout).await {
                    Ok((client, events)) => (Client::V311(client), Driver::V311(Box::new(events))),
                    Err(fallback) => {
                        return Err(format!(
                        "the MQTT broker refused MQTT 5 ({e}), and MQTT 3.1.1 failed: {fallback}"
                    ))
                    }
                }
            }
            Err(e) => return Err(refused_or(e)),
        };
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
        let (answer, answered) = oneshot::channel();
        {
            let _order = self.inner.order.lock().await;
            if !self.usable() {
                return Err(Failure::Broken(
                    "the connection to the MQTT broker is closed".into(),
                ));
            }
            lock(&self.inner.waiting).queued.push_back(answer);
            let sent = match &self.inner.client {
                Client::V5(client) => {
                    let properties = PublishProperties {
                        content_type: message.content_type.map(str::to_string),
                        user_properties: message
                            .headers
                            .iter()
                            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                            .collect(),
                        ..Default::default()
                    };
                    client
                        .publish_with_properties(
                            topic.clone(),
                            QoS::AtLeastOnce,
                            false,
                            message.body.to_vec(),
                            properties,
                        )
                        .await
                        .is_ok()
                }
                Client::V311(client) => client
                    .publish(
                        topic.clone(),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        message.body.to_vec(),
                    )
                    .await
                    .is_ok(),
            };
            if !sent {
                lock(&self.inner.waiting).queued.pop_back();
                return Err(Failure::Broken(
                    "the connection to the MQTT broker is closed".into(),
                ));
            }
        }
        let v311 = matches!(self.inner.client, Client::V311(_));
        match answered.await {
            Ok(result) => result.map(|reason| {
                if v311 {
                    serde_json::json!({
                        "topic": topic,
                        "puback": reason,
                        "protocol": "MQTT 3.1.1",
                        "headers": "not sent: the broker refused MQTT 5, and MQTT 3.1.1 has no user properties",
                    })
                } else {
                    serde_json::json!({ "topic": topic, "puback": reason })
                }
                .to_string()
            }),
            Err(_) => Err(Failure::Broken(
                "the connection to the MQTT broker closed before its PUBACK".into(),
            )),
        }
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects in MQTT 5 and reads the CONNACK.
async fn connect_v5(
    addr: SocketAddr,
    credentials: Option<&BrokerCredentials>,
    connect_timeout: Duration,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
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
    // The first poll connects and reads the CONNACK (a refusal is an error).
    loop {
        if let Event::Incoming(Packet::ConnAck(ack)) = events.poll().await? {
            if ack.code != ConnectReturnCode::Success {
                return Err(ConnectionError::ConnectionRefused(ack.code));
            }
            return Ok((client, events));
        }
    }
}

/// Connects in MQTT 3.1.1, for a broker that refused 5.
async fn connect_v311(
    addr: SocketAddr,
    credentials: Option<&BrokerCredentials>,
    connect_timeout: Duration,
) -> Result<(rumqttc::AsyncClient, rumqttc::EventLoop), String> {
    let id = crate::secrets::random_token("herald-");
    let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    if let Some(c) = credentials {
        options.set_credentials(
            c.username.clone().unwrap_or_default(),
            c.password.clone().unwrap_or_default(),
        );
    }
    let (client, mut events) = rumqttc::AsyncClient::new(options, 256);
    let mut network = events.network_options();
    network.set_connection_timeout(connect_timeout.as_secs().max(1));
    events.set_network_options(network);
    loop {
        match events.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                if ack.code != rumqttc::ConnectReturnCode::Success {
                    return Err(format!("the broker refused the connection: {:?}", ack.code));
                }
                return Ok((client, events));
            }
            Ok(_) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether a failed MQTT 5 connect means the broker does not speak 5: it said so
/// (0x84), answered with a CONNACK that is not a v5 one (a 3.1.1 broker's "unacceptable
/// protocol version"), or closed the connection on the CONNECT. A broker that cannot be
/// reached at all, or that refused for another reason, is not tried again in 3.1.1.
fn refuses_v5(e: &ConnectionError) -> bool {
    use rumqttc::v5::StateError;
    use std::io::ErrorKind;
    let closed = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        )
    };
    match e {
        ConnectionError::ConnectionRefused(code) => {
            *code == ConnectReturnCode::UnsupportedProtocolVersion
        }
        ConnectionError::MqttState(StateError::Deserialization(_))
        | ConnectionError::MqttState(StateError::ConnectionAborted) => true,
        ConnectionError::MqttState(StateError::Io(e)) => closed(e),
        _ => false,
    }
}

/// A failed connect's reason, as the attempt shows it.
fn refused_or(e: ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        e => e.to_string(),
    }
}

/// Drives the connection: matches packet ids and PUBACKs to their publishes; on an error,
/// fails every publish still waiting and stops (no reconnect: the pool makes a new one).
async fn run(mut events: Driver, inner: std::sync::Weak<Inner>) {
    let error = loop {
        let seen = events.next().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match seen {
            Seen::Sent(packet) => {
                let mut waiting = lock(&inner.waiting);
                if let Some(answer) = waiting.queued.pop_front() {
                    waiting.by_packet.insert(packet, answer);
                }
            }
            Seen::Acked(packet, result) => {
                let answer = lock(&inner.waiting).by_packet.remove(&packet);
                if let Some(answer) = answer {
                    let _ = answer.send(result);
                }
            }
            Seen::Closed(error) => break error,
            Seen::Other => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::StateError;
    use std::io::{Error, ErrorKind};

    #[test]
    fn only_a_refusal_of_mqtt_5_itself_falls_back_to_3_1_1() {
        let falls_back = [
            ConnectionError::ConnectionRefused(ConnectReturnCode::UnsupportedProtocolVersion),
            ConnectionError::MqttState(StateError::ConnectionAborted),
            ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::v5::mqttbytes::Error::InvalidConnectReturnCode(1),
            )),
            ConnectionError::MqttState(StateError::Io(Error::from(ErrorKind::ConnectionReset))),
        ];
        for e in &falls_back {
            assert!(refuses_v5(e), "{e}");
        }
        let stays = [
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized),
            ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword),
            // Nothing listens: 3.1.1 would not fare better.
            ConnectionError::Io(Error::from(ErrorKind::ConnectionRefused)),
        ];
        for e in &stays {
            assert!(!refuses_v5(e), "{e}");
        }
    }
}
