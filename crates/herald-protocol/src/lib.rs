//! Herald wire protocol v1: the JSON messages a Herald client and server
//! exchange over a WebSocket, with validation that says what is wrong.
//!
//! Events have the shape the seed documents use, so Herald clients work with
//! servers written the common way and Herald's server works with their clients:
//!
//! ```json
//! {"topic":"gift-list:family-123","event":"UPDATED",
//!  "data":{"entity_id":"gift-7","payload":{"bought":true},"user_id":"u1",
//!          "timestamp":"2026-11-25T10:00:00Z"},
//!  "trace_id":"t-1","seq":42}
//! ```
//!
//! Everything else is a `{"type": ..}` message: [`ClientMessage`] from client to
//! server, [`ServerMessage`] from server to client. The full specification,
//! with close codes and recovery, is `docs/protocol.md` in the repository.
//!
//! ```
//! use herald_protocol::{ClientMessage, ServerMessage, Topic};
//!
//! let frame = ClientMessage::subscribe(vec![Topic::new("gift-list:family-123")?]).encode();
//! assert_eq!(frame, r#"{"type":"subscribe","topics":["gift-list:family-123"]}"#);
//!
//! let incoming = ServerMessage::decode(
//!     r#"{"topic":"gift-list:family-123","event":"ADDED",
//!         "data":{"entity_id":"7","payload":null,"timestamp":"2026-11-25T10:00:00Z"}}"#,
//! )?;
//! let ServerMessage::Event(event) = incoming else { unreachable!() };
//! assert_eq!(event.data.entity_id, "7");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

#[cfg(wasm_browser)]
mod browser;
mod client;
pub mod close;
mod error;
mod event;
mod json;
pub mod limits;
mod position;
mod server;
mod timestamp;
mod topic;
mod topic_map;

pub use client::{ClientMessage, Publish, Subscribe, Token};
pub use error::{JsonError, ProtocolError};
#[cfg(not(wasm_browser))]
pub use event::now_timestamp;
pub use event::{Event, EventData, EventKind, Payload};
pub use position::Position;
pub use server::{
    Ack, Connected, ErrorCode, ErrorMessage, Presence, PresenceDiff, PresenceMeta, ServerMessage, Subscribed,
    Unsubscribed, error_code, feature,
};
pub use timestamp::validate_timestamp;
pub use topic::{Topic, TopicError, TopicErrorKind};
pub use topic_map::TopicMap;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
