//! How an event becomes a request: webhook input, payload formats, templates, signatures.

pub mod client_cert;
pub mod formats;
pub mod input;
pub mod payload;
#[cfg(test)]
mod proptests;
pub mod signing;
pub mod templates;
