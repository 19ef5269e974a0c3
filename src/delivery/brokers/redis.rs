//! A Redis stream: `XADD <stream> [MAXLEN ~ <n>] * body <body> <header> <value> ...`.
//! The entry id Redis answers is the acknowledgement; fields after `body` are the
//! request's headers, their names in lower case.

use std::net::SocketAddr;
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::{Failure, Message};
use crate::domain::destination::Broker;
use crate::hooks::payload::BrokerCredentials;

#[derive(Clone)]
pub(super) struct Conn {
    connection: redis::aio::MultiplexedConnection,
}

impl Conn {
    pub(super) async fn connect(
        addr: SocketAddr,
        db: i64,
        credentials: Option<&BrokerCredentials>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, String> {
        let mut settings = RedisConnectionInfo::default().set_db(db);
        if let Some(c) = credentials {
            if let Some(user) = &c.username {
                settings = settings.set_username(user);
            }
            if let Some(password) = &c.password {
                settings = settings.set_password(password);
            }
        }
        let info = ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
            .into_connection_info()
            .map_err(|e| e.to_string())?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { connection })
    }

    pub(super) async fn publish(
        &self,
        broker: &Broker,
        message: &Message<'_>,
    ) -> Result<String, Failure> {
        let Broker::Redis { stream, maxlen, .. } = broker else {
            return Err(Failure::Refused("not a Redis destination".into()));
        };
        let mut command = redis::cmd("XADD");
        command.arg(stream);
        if let Some(n) = maxlen {
            // Approximate trimming: Redis trims whole macro nodes, which is cheap.
            command.arg("MAXLEN").arg("~").arg(n);
        }
        command.arg("*").arg("body").arg(message.body);
        for (name, value) in &message.headers {
            let name = name.to_ascii_lowercase();
            if name != "body" {
                command.arg(name).arg(*value);
            }
        }
        let mut connection = self.connection.clone();
        let id: String = command.query_async(&mut connection).await.map_err(|e| {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error()
            {
                Failure::Broken(format!("the connection to Redis failed: {e}"))
            } else {
                Failure::Refused(format!("Redis refused the XADD: {e}"))
            }
        })?;
        Ok(serde_json::json!({ "stream": stream, "id": id }).to_string())
    }
}
