//! Herald: real-time pub/sub over WebSockets, for Rust services and CLIs that
//! react to changes — and never silently keep stale data.
//!
//! ```no_run
//! # async fn run() -> Result<(), herald::Error> {
//! use futures::StreamExt;
//! use herald::{Client, Update};
//!
//! let client = Client::builder("ws://127.0.0.1:8080/ws").token("dev-user").connect()?;
//! let mut gifts = client.subscribe("gift-list:family-123").await?;
//! while let Some(update) = gifts.next().await {
//!     match update {
//!         Update::Event(event) => println!("{} {}", event.event, event.data.entity_id),
//!         Update::Resync { topic, .. } => println!("missed events: refetch {topic}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! This crate is the native client ([`Client`]) and every type its API
//! names. To write a driver of your own, use the sans-IO session core and the
//! wire protocol directly: the crates `herald-core` and `herald-protocol`.
//!
//! # Features
//!
//! - `rustls-0_23`: `ClientBuilder::tls_config`, which takes a
//!   `rustls::ClientConfig` of rustls 0.23 (for a private CA or a client
//!   certificate). Without it, `wss://` trusts the Mozilla roots.
//!
//! Other crates' types in this API: `futures::Stream` (0.3) for
//! [`Subscription`] and [`Events`], `tokio::sync::watch` (1) for
//! [`Client::status`], `tracing::Span` (0.1) for [`EventSpan`] and
//! `serde::Serialize` (1) for payloads.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use herald_client::{Ack, Client, ClientBuilder, Error, EventSpan, Events, Result, Subscription, Update};
// The types that the client's methods, statuses and updates name.
pub use herald_core::{
    AuthMode, BackoffConfig, DisconnectReason, PublishFailure, PublishId, PublishOptions, ResyncReason, SessionEvent,
    Status, SubscribeOptions, TokenReason, Transport,
};
pub use herald_protocol::{
    ErrorCode, ErrorMessage, Event, EventData, EventKind, JsonError, Payload, Position, Presence, PresenceDiff,
    ProtocolError, Topic, TopicError, TopicErrorKind, error_code,
};

/// The README's Rust examples, compiled (and the runnable ones run) as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;
