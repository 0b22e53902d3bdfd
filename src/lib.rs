//! Herald: real-time pub/sub over WebSockets, for Rust services and CLIs that
//! react to changes.
//!
//! This facade re-exports the wire protocol ([`protocol`]) and the sans-IO
//! session core ([`core`]).
#![deny(missing_docs)]

pub use herald_core as core;
pub use herald_protocol as protocol;
