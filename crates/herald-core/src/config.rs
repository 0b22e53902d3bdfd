//! Session settings, each with a documented default.

use std::time::Duration;

use crate::FallbackConfig;

/// How the session presents its token to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMode {
    /// No token: the session never asks for one.
    None,
    /// `?token=<token>` on the URL, what seed-style servers expect (default).
    #[default]
    Query,
    /// A first `{"type":"auth","token":..}` message. Recommended with Herald's
    /// server, because URLs end up in logs.
    FirstMessage,
}

/// Reconnect delays: exponential with jitter, a cap and optional max attempts.
///
/// The delay before attempt `n` (1-based) is `initial * factor^(n-1)`, capped at
/// `max`, then multiplied by a random factor in `[1 - jitter, 1 + jitter]`.
///
/// A server may advise a delay instead: a close with 1001 (going away) advises
/// reconnecting at once, and a close reason with `retry_after_ms=N` advises N
/// ms. Advice is cut to `max_advised` and followed as it is once; until a
/// connection then stays up `healthy_after`, further advice waits the longer of
/// the advice and the backoff delay, so a server that closes every connection
/// at once cannot make the session reconnect in a loop.
///
/// ```
/// use std::time::Duration;
/// use herald_core::BackoffConfig;
///
/// let mut backoff = BackoffConfig::default();
/// assert_eq!(backoff.initial, Duration::from_secs(1));
/// backoff.max_attempts = Some(5);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The first delay. Default 1 s.
    pub initial: Duration,
    /// Growth per attempt. Default 2.
    pub factor: f64,
    /// The cap before jitter. Default 30 s.
    pub max: Duration,
    /// Randomization factor in `0.0..=1.0`. Default 0.5.
    pub jitter: f64,
    /// Give up after this many failed attempts in a row. Default `None`
    /// (never: right for services).
    pub max_attempts: Option<u32>,
    /// A connection that stayed up this long counts as healthy: the next
    /// failure starts the backoff over. Default 10 s.
    pub healthy_after: Duration,
    /// The longest server-advised delay honoured; longer advice is cut to it.
    /// Independent of `max`: a client whose own backoff stops at 3 s must
    /// still wait out a server spreading its clients over 5 s, or they all
    /// come back at once. Default 30 s.
    pub max_advised: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.5,
            max_attempts: None,
            healthy_after: Duration::from_secs(10),
            max_advised: Duration::from_secs(30),
        }
    }
}

/// Application-level heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    /// Send `{"type":"ping"}` after this long without any frame from the
    /// server. Default 30 s.
    pub interval: Duration,
    /// No frame this long after a ping marks the connection dead (half-open
    /// sockets do not close by themselves). Default 10 s.
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(30), timeout: Duration::from_secs(10) }
    }
}

/// Everything a [`Session`](crate::Session) needs to know.
///
/// ```
/// use std::time::Duration;
/// use herald_core::{AuthMode, SessionConfig};
///
/// let mut config = SessionConfig::new("ws://127.0.0.1:8080/ws");
/// config.auth = AuthMode::FirstMessage;
/// config.heartbeat.interval = Duration::from_secs(15);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`.
    pub url: String,
    /// How the token is presented. Default [`AuthMode::Query`].
    pub auth: AuthMode,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Heartbeats.
    pub heartbeat: HeartbeatConfig,
    /// Longest wait for a token and an open transport. Default 10 s.
    pub connect_timeout: Duration,
    /// A publish not acked this long after it was made fails. Default 30 s.
    pub publish_timeout: Duration,
    /// Publishes waiting for an ack, online or offline. Default 1024.
    pub max_pending_publishes: usize,
    /// Seeds the jitter and publish ids. Drivers pass a random seed; tests pass
    /// a fixed one to replay exactly.
    pub seed: u64,
    /// Server-Sent Events when WebSocket cannot connect. Default `None`: the
    /// driver must be able to open an event stream (the browser client does,
    /// and turns this on).
    pub fallback: Option<FallbackConfig>,
}

impl SessionConfig {
    /// Defaults for `url`, with seed 0 (drivers replace it with a random one).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: AuthMode::default(),
            backoff: BackoffConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            max_pending_publishes: 1024,
            seed: 0,
            fallback: None,
        }
    }
}
