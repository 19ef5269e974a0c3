//! The webhook domain: validated types and how an event becomes a request.

pub mod input;
pub mod payload;
pub mod types;
