//! The webhook domain: validated types and how an event becomes a request.

pub mod filters;
pub mod formats;
pub mod input;
pub mod payload;
#[cfg(test)]
mod proptests;
pub mod signing;
pub mod templates;
pub mod types;
