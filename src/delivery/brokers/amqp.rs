//! RabbitMQ (AMQP 0.9.1): a persistent message published with the mandatory flag on a
//! channel in confirm mode. The delivery succeeds on the broker's confirm; a message no
//! queue is bound for comes back (basic.return) and fails the attempt with that reason,
//! instead of vanishing.

use std::net::SocketAddr;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Confirmation, ConnectionProperties};

use super::{Failure, Message};
use crate::domain::destination::Broker;
use crate::hooks::payload::BrokerCredentials;

/// AMQP's persistent delivery mode: the broker writes the message to disk (on a durable
/// queue) before it confirms.
const PERSISTENT: u8 = 2;

#[derive(Clone)]
pub(super) struct Conn {
    connection: std::sync::Arc<lapin::Connection>,
    channel: lapin::Channel,
}

impl Conn {
    pub(super) async fn connect(
        addr: SocketAddr,
        vhost: &str,
        credentials: Option<&BrokerCredentials>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let userinfo = match credentials {
            // Without credentials, RabbitMQ's default user (guest, which RabbitMQ lets in
            // from loopback only).
            None => AMQPUserInfo::default(),
            Some(c) => AMQPUserInfo {
                username: c.username.clone().unwrap_or_default(),
                password: c.password.clone().unwrap_or_default(),
            },
        };
        let uri = AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo,
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            vhost: vhost.to_string(),
            query: AMQPQueryString {
                connection_timeout: Some(connect_timeout.as_millis() as u64),
                heartbeat: Some(30),
                ..Default::default()
            },
        };
        let properties = ConnectionProperties::default().with_connection_name("herald".into());
        let connection = lapin::Connection::connect_uri(uri, properties)
            .await
            .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            connection: std::sync::Arc::new(connection),
            channel,
        })
    }

    pub(super) fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    pub(super) async fn publish(
        &self,
        broker: &Broker,
        message: &Message<'_>,
    ) -> Result<String, Failure> {
        let Broker::Amqp {
            exchange,
            routing_key,
            ..
        } = broker
        else {
            return Err(Failure::Refused("not an AMQP destination".into()));
        };
        let mut headers = FieldTable::default();
        for (name, value) in &message.headers {
            headers.insert(
                ShortString::from(name.to_ascii_lowercase()),
                AMQPValue::LongString((*value).into()),
            );
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_headers(headers);
        if !message.id.is_empty() {
            properties = properties.with_message_id(message.id.into());
        }
        if let Some(ct) = message.content_type {
            properties = properties.with_content_type(ct.into());
        }
        let confirm = self
            .channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                message.body,
                properties,
            )
            .await
            .map_err(|e| broken(exchange, e))?;
        let confirmation = confirm.await.map_err(|e| broken(exchange, e))?;
        let shown_exchange = if exchange.is_empty() {
            "(default)"
        } else {
            exchange
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(serde_json::json!({
                "confirmed": true,
                "exchange": exchange,
                "routing_key": routing_key,
            })
            .to_string()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Failure::Refused(format!(
                    "RabbitMQ returned the message as unroutable: {} {} (no queue is bound to \
                     the exchange '{shown_exchange}' for the routing key '{routing_key}')",
                    returned.reply_code, returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(Failure::Refused(
                "RabbitMQ refused the message (basic.nack): it could not store it".into(),
            )),
            // Never on a channel in confirm mode.
            Confirmation::NotRequested => {
                Err(Failure::Broken("the channel is not in confirm mode".into()))
            }
        }
    }
}

/// An error of the channel or the connection: either way this one is done (a refused
/// publish, such as to an exchange that does not exist, closes the channel).
fn broken(exchange: &str, e: lapin::Error) -> Failure {
    let text = e.to_string();
    if text.contains("NOT_FOUND") {
        // The broker closed the channel for it; the next attempt opens a new one.
        return Failure::Broken(format!(
            "RabbitMQ refused the publish: {text} (declare the exchange '{exchange}' first)"
        ));
    }
    Failure::Broken(format!("the connection to RabbitMQ failed: {text}"))
}
