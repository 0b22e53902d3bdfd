//! What can go wrong when starting or driving a server.

use std::io;

use herald_protocol::ProtocolError;

/// Why the server could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick another address or port (port 0 picks a free one)")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An event given to [`Herald::publish`](crate::Herald::publish) is not valid.
    #[error("invalid event: {0}")]
    Event(#[from] ProtocolError),
    /// The cluster's Redis could not be used at start.
    #[error(
        "cannot join the cluster through Redis at {url}: {reason}; check that redis-server (6 or later) runs there and that the URL (redis://[:password@]host[:port][/db]) and its password are right"
    )]
    Redis {
        /// The Redis URL, without its password.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The store of [`ServerConfig::data_dir`](crate::ServerConfig::data_dir)
    /// could not be opened (the directory cannot be created or read, the
    /// disk fails). A store that opens but cannot be read is not an error:
    /// it is moved aside and a new epoch starts.
    #[error(
        "cannot open the store in {dir}: {reason}; check that the directory exists or can be created, that this user may read and write it, and that the disk has room"
    )]
    Store {
        /// The data directory.
        dir: String,
        /// What went wrong.
        reason: String,
    },
    /// A node of a cluster could not publish through Redis; the message says
    /// whether the event may have been published.
    #[error("{0}")]
    Unavailable(String),
    /// A [conditional publish](crate::Herald::publish_if_seq) found the
    /// topic at another `seq`.
    #[error(
        "conflict: the topic is at seq {current}; apply the newer events, then publish again with if_seq {current}"
    )]
    Conflict {
        /// The topic's `seq`.
        current: u64,
    },
}
