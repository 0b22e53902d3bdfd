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
//! This crate re-exports the native client ([`Client`]), the wire protocol
//! ([`protocol`]) and the sans-IO session core ([`core`]).
#![deny(missing_docs)]

pub use herald_client::*;
pub use herald_core as core;
pub use herald_protocol as protocol;

/// The README's Rust examples, compiled (and the runnable ones run) as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;
