//! Herald's reference server: real-time pub/sub over WebSockets (protocol v1),
//! with Server-Sent Events and long-poll fallbacks, HTTP publishing for
//! backends, recovery of missed events, presence, and limits that keep one
//! misbehaving client from hurting the others.
//!
//! Three ways to run it:
//!
//! - mounted in your own axum service, sharing its port, state and
//!   middleware: [`Herald::builder`], then [`Herald::router`] and the
//!   in-process handle ([`Herald::publish`], [`Herald::metrics`],
//!   [`Herald::shutdown`]);
//! - on its own listener, with its connection limits and optionally TLS
//!   ([`ServerConfig::tls`]): [`Server::bind`] (in a program or a test) or
//!   [`HeraldBuilder::bind`];
//! - as a process: `herald serve` (crate `herald-cli`).
//!
//! ```no_run
//! # async fn run() -> Result<(), herald_server::ServerError> {
//! use herald_server::Server;
//!
//! // Development mode: any non-empty token is accepted as the user id.
//! let server = Server::bind("127.0.0.1:0").await?;
//! println!("connect to {}", server.ws_url());
//! server.publish("gift-list:1", "UPDATED", "gift-7", &serde_json::json!({"bought": true})).await?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Tokens are checked by an [`Authenticator`]: HS256 with a secret, RS256 or
//! ES256 with an identity provider's public key or JWKS URL, development
//! mode, or a closure of your own (a session store); see [`auth`].
//!
//! The `testing` feature adds hooks that imitate failures (a restart that
//! keeps or loses the history, dropped connections) for tests and demos,
//! [`scripted`] connections, which run the protocol without sockets (the
//! fuzz target of the server's message handling drives them), and an
//! [`EchoServer`] on the same WebSocket stack, for the Autobahn cases.
//!
//! # Endpoints
//!
//! | endpoint | what |
//! | --- | --- |
//! | `GET /ws` | WebSocket, protocol v1 (`docs/protocol.md`); token by `?token=` or a first `auth` message |
//! | `POST /api/publish` | `Authorization: Bearer ..`, body `{topic,event,data}`; answers `{"seq":N}` |
//! | `GET /sse?topics=a:1,b:*` | Server-Sent Events; `id:` is the `seq`, `Last-Event-ID` resumes a single topic |
//! | `GET /sse?mode=frames`, `POST /sse/send?session=..` | a whole protocol v1 connection over Server-Sent Events plus posts, for networks that block WebSocket |
//! | `GET /api/poll?topics=..&since=N&epoch=..` | long poll; answers `{epoch,recovered,last_seq,events}` |
//! | `GET /healthz` | `ok`; 503 while a node of a cluster cannot reach Redis |
//! | `GET /metrics` | Prometheus text |
//!
//! # Design
//!
//! ```text
//!  publish ──▶ Hub (32 shards: (tenant, topic) → seq, history, subscribers)
//!                │ encode the event once, try_send the shared bytes
//!                ▼
//!  [bounded queue]  [bounded queue]  ...   one per connection; full → close 4009
//!        │                 │
//!  connection task   connection task       reads, answers, writes in batches
//! ```
//!
//! # Several nodes
//!
//! With [`HeraldBuilder::redis`] (`herald serve --redis URL`) nodes sharing
//! a Redis form a cluster: Redis numbers every topic's events and carries
//! them to every node in that order, so a client may reconnect to any node
//! and recover what it missed there, and presence spans the nodes. See
//! [`ServerConfig::redis`] and `docs/protocol.md`.
//!
//! # Logs
//!
//! The server logs with `tracing` and never logs a token or an SSE session
//! id. Its WebSocket library, tungstenite, logs every message at TRACE (via
//! `log`), and `auth` and `refresh` messages carry tokens: keep the
//! `tungstenite` target below TRACE in your subscriber, as `herald serve` does.
#![deny(missing_docs)]

mod accept;
mod app;
pub mod auth;
mod cluster;
mod config;
mod conn;
mod durable;
#[cfg(feature = "testing")]
mod echo;
mod error;
mod extract;
mod herald;
mod http;
mod hub;
mod listen;
mod metrics;
mod outbox;
mod presence;
mod quota;
mod rate;
mod roster;
mod router;
#[cfg(feature = "testing")]
pub mod scripted;
mod store;
mod stream;
#[cfg(feature = "testing")]
mod testing;
mod tls;
mod wildcard;
mod ws;

pub use auth::{AuthError, Authenticator, Claims, Credentials, Identity, mint_token};
pub use config::ServerConfig;
#[cfg(feature = "testing")]
pub use echo::EchoServer;
pub use error::ServerError;
pub use herald::{Herald, HeraldBuilder, Published};
pub use ipnet::IpNet;
pub use listen::{Server, ServerHandle};
pub use metrics::MetricsSnapshot;
#[cfg(feature = "testing")]
pub use testing::Epoch;
pub use tls::TlsFiles;
