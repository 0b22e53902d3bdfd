//! Counters for `GET /metrics`, in the Prometheus text format.

use std::{
    fmt::Write,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

/// The server's counters. Relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// On a node of a cluster: whether it is on the cluster bus (Redis).
    pub(crate) bus_up: Option<AtomicBool>,
    pub(crate) connections: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) events_published: AtomicU64,
    pub(crate) drops: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
}

/// A copy of the server's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Open WebSocket connections (and SSE/poll streams).
    pub connections: u64,
    /// Live subscriptions, over all connections.
    pub subscriptions: u64,
    /// Messages received from clients.
    pub messages_in: u64,
    /// Frames queued to clients (events, replies, pings).
    pub messages_out: u64,
    /// Events published (from WebSocket clients and HTTP).
    pub events_published: u64,
    /// Consumers dropped for falling behind (closed with 4009).
    pub drops: u64,
    /// Rejected tokens and origins.
    pub auth_failures: u64,
    /// TLS handshakes on Herald's own listener that failed or did not
    /// finish in time (the client distrusts the certificate, speaks plain
    /// HTTP, or is a scanner).
    pub tls_handshake_failures: u64,
    /// Topics the server holds state for (subscribers, history or a position).
    pub topics: u64,
    /// Events kept in topics' histories for recovery.
    pub history_events: u64,
    /// Client publish ids remembered to drop retransmissions.
    pub publish_ids: u64,
    /// On a node of a cluster, whether it reaches Redis (it serves and
    /// publishes only then); `None` on a single node.
    pub cluster_bus_up: Option<bool>,
}

impl Metrics {
    pub(crate) fn new(clustered: bool) -> Self {
        Self { bus_up: clustered.then(AtomicBool::default), ..Self::default() }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Relaxed);
    }

    /// The counters; the hub fills in the gauges of what it holds.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections: self.connections.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            events_published: self.events_published.load(Relaxed),
            drops: self.drops.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            cluster_bus_up: self.bus_up.as_ref().map(|up| up.load(Relaxed)),
            ..MetricsSnapshot::default()
        }
    }
}

impl MetricsSnapshot {
    /// The Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let s = self;
        let rows: [(&str, &str, &str, u64); 11] = [
            ("herald_connections", "gauge", "Open connections.", s.connections),
            ("herald_subscriptions", "gauge", "Live subscriptions.", s.subscriptions),
            ("herald_messages_in_total", "counter", "Messages received from clients.", s.messages_in),
            ("herald_messages_out_total", "counter", "Frames queued to clients.", s.messages_out),
            ("herald_events_published_total", "counter", "Events published.", s.events_published),
            ("herald_drops_total", "counter", "Slow consumers dropped (close 4009).", s.drops),
            ("herald_auth_failures_total", "counter", "Rejected tokens and origins.", s.auth_failures),
            ("herald_tls_handshake_failures_total", "counter", "Failed TLS handshakes.", s.tls_handshake_failures),
            ("herald_topics", "gauge", "Topics held (subscribers, history or a position).", s.topics),
            ("herald_history_events", "gauge", "Events kept for recovery.", s.history_events),
            ("herald_publish_ids", "gauge", "Publish ids remembered for deduplication.", s.publish_ids),
        ];
        let mut out = String::with_capacity(1024);
        for (name, kind, help, value) in rows {
            // Writing to a String cannot fail.
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        }
        if let Some(up) = s.cluster_bus_up {
            let name = "herald_cluster_bus_up";
            let help = "1 while this node of a cluster reaches Redis, 0 while it does not.";
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n", u8::from(up));
        }
        out
    }
}
