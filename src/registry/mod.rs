//! The registry's side: the notification envelope, the ingest endpoint, and the token the
//! registry authenticates with.

pub mod envelope;
pub mod ingest;
pub mod sources;
pub mod token;
