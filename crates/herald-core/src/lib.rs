//! Herald's client session as a sans-IO state machine.
//!
//! [`Session`] holds every rule of a Herald client connection — reconnect with
//! exponential backoff and jitter, heartbeats, resubscription, recovery of
//! missed events by `seq`, publish acks and a bounded offline queue — and no
//! I/O. The tokio client (`herald-client`) and the browser client
//! (`herald-wasm`) are thin drivers of this one machine, so both behave the
//! same by construction, and the rules are tested once, with a fake clock.
//!
//! ```text
//!            inputs (with `now`)                         outputs
//!  token ──▶ handle_token        ┌─────────┐  NeedToken ──▶ token provider
//!  socket ─▶ handle_open/frame/  │ Session │  Connect ────▶ open a WebSocket (or an event stream)
//!            close               │         │  Send ───────▶ write a text frame
//!  timer ──▶ handle_timeout      │         │  Close ──────▶ close the socket
//!  app ────▶ subscribe/publish/  └─────────┘  Event ──────▶ the application
//!            unsubscribe/close         poll_timeout ─────▶ arm one timer
//! ```
//!
//! The contract: after every input, drain [`Session::poll_output`] until it
//! returns `None`, then arm a timer for [`Session::poll_timeout`]. Time is
//! `web_time::Instant` (`std::time::Instant` on native targets), passed in,
//! never read, and randomness comes from [`SessionConfig::seed`]; the session
//! needs neither `Send` nor a runtime, so it builds for
//! `wasm32-unknown-unknown`.
//!
//! A driver need not notice that the machine slept (a closed laptop lid, a
//! suspended VM): a [`Session::handle_timeout`] that comes
//! [`SLEEP_THRESHOLD`] or more after the deadline it was armed for counts as
//! waking up, as [`Session::wake`] does — a session waiting to reconnect
//! tries at once, an open one pings at once. That needs a clock that keeps
//! counting through a suspend; `std::time::Instant` does on Windows but
//! stops on Linux and macOS, so a driver there also calls `wake` itself when
//! the wall clock shows a sleep (the tokio client does).
//!
//! Browser tabs that share one connection (`shareAcrossTabs` in the npm
//! package) follow the rules of [`Hub`] (the holder's table: the union of
//! the tabs' topics, which tab gets each event, recovery after a handover),
//! [`SharedPresence`] (the holder's presence of each topic: with presence
//! if any tab asked, the metadata the last tab set, the members for a tab
//! that comes later), [`Lease`] (who holds the connection, with fencing
//! terms), [`Held`] (where a tab is) and [`Unacked`] (a tab's publishes, sent
//! again to each new holder until one answers); the browser driver only
//! carries their messages.
#![deny(missing_docs)]

mod backoff;
mod config;
mod event;
mod heartbeat;
mod options;
mod outbox;
mod router;
mod session;
mod shared;
mod subscriptions;
mod transport;

pub use config::{AuthMode, BackoffConfig, HeartbeatConfig, SessionConfig};
pub use event::{
    DisconnectReason, PublishError, PublishFailure, PublishId, ResyncReason, SessionEvent, Status, SubscribeError,
};
pub use herald_protocol as protocol;
pub use options::{PublishOptions, SubscribeOptions};
pub use router::{Router, joined_behind};
pub use session::{ConnectionId, Output, SLEEP_THRESHOLD, Session, TokenReason};
pub use shared::{
    Heard, Held, Hub, Joined, Lease, PresenceChange, PresenceMember, SessionSubscription, SharedPresence, TabId, Term,
    Unacked,
};
pub use transport::{FallbackConfig, Transport};
pub use web_time::Instant;
