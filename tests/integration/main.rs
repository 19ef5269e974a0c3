//! Herald's integration tests: one binary (link time), the real app on port 0 with a fresh
//! data directory per test, and real HTTP receivers on loopback.

mod cli;
mod deliveries;
mod helpers;
mod ingest;
mod namespaces;
mod registry_e2e;
mod ssrf;
mod webhooks;
