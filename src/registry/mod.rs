//! The registry's side: what its notifications and the sources' payloads mean, and the
//! token the registry authenticates with. Parsing only: the ingest endpoints are in http/.

pub mod client;
pub mod envelope;
pub mod facts;
pub mod reader;
pub mod reconcile;
pub mod sources;
pub mod token;
