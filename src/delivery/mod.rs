//! Delivery: claiming queued deliveries, sending them, and deciding what happens next.

pub mod brokers;
pub mod client;
pub mod operational;
pub mod proxy;
pub mod ssrf;
pub mod transport;
pub mod worker;
