//! The domain: Herald's model and its pure rules, with no I/O. Everything else (the
//! registry side, the store, delivery, the API and UI) speaks these types.

pub mod artifact;
pub mod control;
pub mod delivery;
pub mod deploy;
pub mod destination;
pub mod events;
pub mod filters;
pub mod format;
pub mod model;
pub mod names;
pub mod operational;
pub mod registry;
pub mod retry;
pub mod signature;
pub mod verdict;
