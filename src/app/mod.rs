//! Use cases: one function per operation that the REST API and the web UI (and for some,
//! the CLI) offer.
//!
//! Each does the policy check (through `access`), the store call, the audit entry and
//! the dispatcher wake-up exactly once, so the two front ends cannot drift apart: the API
//! turns the result into JSON, the UI into a page.

pub mod access;
pub mod deliveries;
pub mod namespaces;
pub mod sources;
pub mod teams;
pub mod users;
pub mod webhooks;
