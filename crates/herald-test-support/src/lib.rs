//! What Herald's tests share: waiting with a deadline (every test ends by
//! itself), protocol v1 and HTTP spoken by hand, real `redis-server`s, a TCP
//! proxy that breaks the network on command, TLS for loopback, temporary
//! directories, child processes (the running CLI) and free ports, and
//! helpers for the native client. Not published.

#![allow(missing_debug_implementations, reason = "helpers hold sockets and processes; nothing prints them")]

pub mod dir;
pub mod http;
pub mod native;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod tls;
pub mod wire;

use std::{future::Future, time::Duration};

pub use dir::TempDir;
pub use herald_server::{Claims, Epoch, Server, ServerHandle, mint_token};
pub use http::*;
pub use redis::{RedisLink, RedisServer};
pub use wire::*;

/// Longest wait for anything a test expects.
pub const WAIT: Duration = Duration::from_secs(10);
/// The secret of the tests' JWT servers.
pub const SECRET: &str = "test-secret-of-reasonable-length";

/// Fails the test instead of hanging it, after [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(WAIT, what, future).await
}

/// Fails the test instead of hanging it, after `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Polls `condition` until it holds, for state that has no event to await (metrics).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// An `UPDATED` event of entity `1` on `topic` with a string payload,
/// stamped now, for the in-process publish calls.
pub fn event(topic: &str, payload: &str) -> herald_protocol::Event {
    let data = herald_protocol::EventData {
        entity_id: "1".into(),
        payload: herald_protocol::Payload::from_value(&payload).expect("a string is JSON"),
        user_id: None,
        tenant_id: None,
        timestamp: herald_protocol::now_timestamp(),
    };
    herald_protocol::Event {
        topic: topic.parse().expect("a valid topic"),
        event: "UPDATED".into(),
        data,
        trace_id: None,
        seq: None,
        wildcard_seq: None,
        ephemeral: false,
    }
}
