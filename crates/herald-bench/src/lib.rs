//! Load generators for Herald's reference server and for any server that
//! speaks the same protocol subset (the peers in `shared/peers/`), so that
//! the same load runs against each, side by side.
//!
//! The fan-out and idle clients are deliberately raw — tokio-tungstenite plus a few byte
//! searches per frame, no full JSON parse — so that on a shared 2-core
//! machine the load generator costs as little CPU as possible and the server
//! is what gets measured. The storm uses real clients: it measures how
//! client and server recover together.
//!
//! ```no_run
//! # async fn run() -> Result<(), herald_bench::BenchError> {
//! use std::time::Duration;
//! use herald_bench::fanout::{FanoutOptions, run};
//!
//! let mut options = FanoutOptions::new("ws://127.0.0.1:8080/ws");
//! options.subscribers = 1_000;
//! options.rate = 100;
//! options.duration = Duration::from_secs(5);
//! let report = run(&options).await?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod connect;
pub mod fanout;
mod frame;
pub mod idle;
mod latency;
mod publish;
pub mod storm;

use std::time::Duration;

pub use latency::Latency;
pub use publish::PublishVia;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The URL is not `ws://host:port/path`.
    #[error("bad URL {url:?}: {problem}; use e.g. ws://127.0.0.1:8080/ws")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A connection could not be opened.
    #[error(
        "connection {index} to {url} failed: {message}; is the server up, and the file limit high enough (ulimit -n)?"
    )]
    Connect {
        /// Which connection.
        index: usize,
        /// The URL.
        url: String,
        /// The underlying error.
        message: String,
    },
    /// The server did not confirm a subscription in time.
    #[error("connection {index} got no \"subscribed\" within {} s; does the server answer subscribe?", timeout.as_secs())]
    Subscribe {
        /// Which connection.
        index: usize,
        /// How long it waited.
        timeout: Duration,
    },
    /// A reconnect storm did not go as a storm should.
    #[error("storm: {message}")]
    Storm {
        /// What happened.
        message: String,
    },
    /// Reading process memory failed.
    #[error("cannot read the memory of process {pid}: {message}")]
    Memory {
        /// The process id.
        pid: u32,
        /// The underlying error.
        message: String,
    },
}
