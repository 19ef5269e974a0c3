//! The way out a delivery takes, picked by its URL's scheme: HTTP(S) through `HttpSender`,
//! a broker through `Brokers`. Both answer `Result<ReceiverResponse, SendError>`, so the
//! worker above them (verdict, retries, log, circuit, fifo) is the same for all.

use std::sync::Arc;
use std::time::Duration;

use crate::delivery::brokers::Brokers;
use crate::delivery::client::{HttpSender, ReceiverResponse, SendError};
use crate::hooks::payload::OutgoingRequest;

#[derive(Clone)]
pub struct Transport {
    http: HttpSender,
    brokers: Arc<Brokers>,
}

impl Transport {
    pub fn new(http: HttpSender, brokers: Brokers) -> Self {
        Self {
            http,
            brokers: Arc::new(brokers),
        }
    }

    pub async fn send(&self, request: &OutgoingRequest) -> Result<ReceiverResponse, SendError> {
        let scheme = request.url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some(s) if crate::domain::destination::is_broker_scheme(s) => {
                self.brokers.send(request).await
            }
            _ => self.http.send(request).await,
        }
    }

    /// The longest a send may take, so callers know how long a claim must last.
    pub fn timeout(&self) -> Duration {
        self.http.timeout()
    }
}
