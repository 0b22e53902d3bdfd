//! Herald's native client: real-time pub/sub over WebSockets for tokio
//! services and CLIs, that never loses an event silently.
//!
//! ```no_run
//! # async fn run() -> Result<(), herald_client::Error> {
//! use futures::StreamExt;
//! use herald_client::{Client, Update};
//!
//! let client = Client::builder("ws://127.0.0.1:8080/ws").token("dev-user").connect()?;
//! // Resolves once the server confirmed the subscription.
//! let mut gifts = client.subscribe("gift-list:family-123").await?;
//! while let Some(update) = gifts.next().await {
//!     match update {
//!         // Live from here on (again after a reconnect that lost nothing).
//!         Update::Live { position } => println!("live at {position:?}"),
//!         Update::Event(event) => println!("{} {}", event.event, event.data.entity_id),
//!         // Events may have been missed: invalidate everything cached for the topic.
//!         Update::Resync { topic, .. } => println!("resync {topic}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! Every connection rule — reconnect with backoff and jitter, heartbeats,
//! resubscription, recovery by `seq`, acks, the offline queue — lives in the
//! sans-IO [`herald_core::Session`]; this crate is one tokio task that feeds
//! it socket frames, timers and your calls, and carries out what it asks.
//! Streams are bounded: a reader that falls behind gets
//! [`Update::Resync`] (reason `Lagged`) for what it missed, never unbounded
//! memory and never silence.
//!
//! Each event's receipt is logged at `DEBUG` inside its [`EventSpan::span`],
//! the span to enter while handling it: its fields carry the topic, the
//! entity, the `seq` and the publisher's `trace_id`.
//!
//! After the machine slept, the connection is checked at once rather than at
//! the next heartbeat. `Instant` stops while Linux and macOS sleep, so the
//! task also compares it with the wall clock every 2 s and wakes the session
//! when they drift apart by [`herald_core::SLEEP_THRESHOLD`].
//!
//! # Features
//!
//! - `rustls-0_23`: `ClientBuilder::tls_config`, which takes a
//!   `rustls::ClientConfig` of rustls 0.23 (for a private CA or a client
//!   certificate). Without it, `wss://` trusts the Mozilla roots.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(test)]
mod autobahn;
mod builder;
mod client;
mod driver;
mod error;
mod outlet;
mod span;
mod subscription;

pub use builder::ClientBuilder;
pub use client::{Ack, Client};
pub use error::{Error, Result};
pub use herald_core::{
    AuthMode, BackoffConfig, DisconnectReason, PublishId, PublishOptions, ResyncReason, SessionEvent, Status,
    SubscribeOptions, TokenReason,
};
pub use herald_protocol::{Event, EventKind, Position, Topic};
pub use span::EventSpan;
pub use subscription::{Events, Subscription, Update};
