//! NATS JetStream: a publish that waits for the stream's PubAck. `Nats-Msg-Id` is the
//! delivery's `webhook-id`, so JetStream's duplicate window drops a resend of a delivery
//! whose ack was lost; a subject no stream captures gets "no responders" at once.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};

use super::{Failure, Message};
use crate::domain::destination::Broker;
use crate::hooks::payload::BrokerCredentials;

#[derive(Clone)]
pub(super) struct Conn {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl Conn {
    pub(super) async fn connect(
        addr: SocketAddr,
        credentials: Option<&BrokerCredentials>,
        connect_timeout: Duration,
        ack_timeout: Duration,
    ) -> Result<Self, String> {
        // The vetted address only: servers the cluster advertises were not vetted.
        let mut options = async_nats::ConnectOptions::new()
            .name("herald")
            .connection_timeout(connect_timeout)
            .ignore_discovered_servers();
        if let Some(c) = credentials {
            options = match (&c.username, &c.password) {
                (Some(user), password) => {
                    options.user_and_password(user.clone(), password.clone().unwrap_or_default())
                }
                // A password alone is NATS's token authentication.
                (None, Some(token)) => options.token(token.clone()),
                (None, None) => options,
            };
        }
        let client = options
            .connect(format!("nats://{addr}"))
            .await
            .map_err(|e| e.to_string())?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(ack_timeout)
            .build(client.clone());
        Ok(Self { client, jetstream })
    }

    /// async-nats reconnects by itself; a client that lost its server is replaced rather
    /// than waited for, so the attempt fails fast and the retry schedule takes over.
    pub(super) fn usable(&self) -> bool {
        self.client.connection_state() != async_nats::connection::State::Disconnected
    }

    pub(super) async fn publish(
        &self,
        broker: &Broker,
        message: &Message<'_>,
    ) -> Result<String, Failure> {
        let Broker::Nats { subject } = broker else {
            return Err(Failure::Refused("not a NATS destination".into()));
        };
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &message.headers {
            headers.insert(*name, *value);
        }
        let mut publish = PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(message.body))
            .headers(headers);
        if !message.id.is_empty() {
            publish = publish.message_id(message.id);
        }
        let pending = self
            .jetstream
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| classify(subject, e))?;
        let ack = pending.await.map_err(|e| classify(subject, e))?;
        Ok(serde_json::json!({
            "stream": ack.stream,
            "seq": ack.sequence,
            "duplicate": ack.duplicate,
        })
        .to_string())
    }
}

fn classify(subject: &str, e: jetstream::context::PublishError) -> Failure {
    match e.kind() {
        PublishErrorKind::StreamNotFound => Failure::Refused(format!(
            "no JetStream stream captures the subject '{subject}' (NATS answered: no \
             responders); add the subject to a stream"
        )),
        PublishErrorKind::BrokenPipe => {
            Failure::Broken(format!("the connection to NATS broke: {e}"))
        }
        PublishErrorKind::TimedOut => Failure::Broken(format!(
            "JetStream did not acknowledge the message in time: {e}"
        )),
        _ => Failure::Refused(format!("JetStream refused the message: {e}")),
    }
}
