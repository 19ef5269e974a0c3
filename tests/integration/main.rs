//! Herald's integration tests: one binary (link time), the real app on port 0 with a fresh
//! data directory per test, and real HTTP receivers on loopback.

mod authz;
mod axe;
mod brokers;
mod browser;
mod cli;
mod conformance;
mod deliveries;
mod delivery_control;
mod deploy;
mod filters;
mod helpers;
mod ingest;
mod multiprocess;
mod namespaces;
mod opevents;
mod ops;
mod pg;
mod postgres;
mod proxy;
mod recovery;
mod registry_e2e;
mod registry_reads;
mod registry_token;
mod reliability;
mod require;
mod signin_flood;
mod sigtls;
mod sources;
mod ssrf;
mod store_contract;
mod tls;
mod user_code;
mod web;
mod webdriver;
mod webhooks;
