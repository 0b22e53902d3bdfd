//! What the server counts, served on `GET /metrics` in the OpenMetrics text
//! format (which Prometheus scrapes) by the `prometheus-client` crate. The
//! series are listed in docs/operations.md.
//!
//! The hot path (fan-out) touches plain atomic counters only; gauges of what
//! the hub holds (topics, history, queued frames) are computed when scraped.

use std::fmt;

use crate::AuthError;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// How a connection reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    WebSocket,
    /// A whole protocol connection over Server-Sent Events (`mode=frames`).
    Frames,
    /// A plain `/sse` stream.
    Sse,
    /// A long poll.
    Poll,
}

impl Transport {
    const ALL: [Self; 4] = [Self::WebSocket, Self::Frames, Self::Sse, Self::Poll];

    fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Frames => "frames",
            Self::Sse => "sse",
            Self::Poll => "poll",
        }
    }
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why a connection or request was turned away before it was served.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    /// At the connection limit ([`ServerConfig::max_connections`](crate::ServerConfig::max_connections)).
    Connections,
    /// Too many connections waiting to authenticate.
    Unauthenticated,
    /// Too many connections from one address.
    PerAddress,
    /// Too many connections of one user.
    PerUser,
    /// Over every limit: closed unanswered.
    Overflow,
    /// `POST /api/publish` over the user's rate.
    PublishRate,
    /// A message over a connection's inbound rate (error 429).
    MessageRate,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::Unauthenticated => "unauthenticated",
            Self::PerAddress => "per_address",
            Self::PerUser => "per_user",
            Self::Overflow => "overflow",
            Self::PublishRate => "publish_rate",
            Self::MessageRate => "message_rate",
        }
    }
}

/// Why a token or an origin was refused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuthFailure {
    /// No token at all, or no `auth` message in time.
    Missing,
    /// A token that does not verify or parse, or that the authenticator refused.
    Invalid,
    Expired,
    /// A token whose `nbf` is in the future.
    NotYetValid,
    /// The authenticator could not answer (a key set out of reach).
    Unavailable,
    /// A refresh for another user or tenant.
    OtherUser,
    /// A browser on an origin outside the allow-list.
    Origin,
}

impl AuthFailure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Unavailable => "unavailable",
            Self::OtherUser => "other_user",
            Self::Origin => "origin",
        }
    }
}

impl From<&AuthError> for AuthFailure {
    fn from(error: &AuthError) -> Self {
        match error {
            AuthError::Missing => Self::Missing,
            AuthError::Expired => Self::Expired,
            AuthError::NotYetValid => Self::NotYetValid,
            AuthError::Unavailable(_) => Self::Unavailable,
            _ => Self::Invalid,
        }
    }
}

/// The gauges and counters of one transport, resolved once.
#[derive(Debug, Default)]
pub(crate) struct PerTransport {
    pub(crate) connections: Gauge,
    pub(crate) subscriptions: Gauge,
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    transports: [PerTransport; 4],
    pub(crate) messages_in: Counter,
    pub(crate) messages_out: Counter,
    pub(crate) events_published: Counter,
    pub(crate) slow_consumers: Counter,
    /// TLS handshakes on Herald's own listener that failed or did not finish in time.
    pub(crate) tls_handshake_failures: Counter,
    closes: Family<CodeLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    /// Publish received to the last subscriber's frame handed to its socket.
    pub(crate) fanout: Histogram,
    /// On a node of a cluster: whether it is on the cluster bus (Redis), and
    /// how long a publish takes there.
    pub(crate) bus: Option<Bus>,
    /// With a store (`ServerConfig::data_dir`): its file's size in bytes,
    /// set by its writer after each commit.
    pub(crate) store_bytes: Option<Gauge>,
    /// Set when scraped.
    held: Held,
}

/// A node's cluster bus.
#[derive(Debug)]
pub(crate) struct Bus {
    pub(crate) up: Gauge,
    pub(crate) publish: Histogram,
}

/// What the hub holds, measured when scraped.
#[derive(Debug, Default)]
struct Held {
    topics: Gauge,
    history_events: Gauge,
    history_bytes: Gauge,
    publish_ids: Gauge,
    queued_frames: Gauge,
    longest_queue: Gauge,
}

/// Seconds from 100 µs to about 1.6 s, doubling.
fn latency() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_1, 2.0, 15))
}

/// The gauges of what the hub holds, for [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub(crate) struct Sizes {
    pub(crate) topics: u64,
    pub(crate) history_events: u64,
    pub(crate) history_bytes: u64,
    pub(crate) publish_ids: u64,
    pub(crate) queued_frames: u64,
    pub(crate) longest_queue: u64,
}

impl Metrics {
    pub(crate) fn new(clustered: bool, durable: bool) -> Self {
        let mut registry = Registry::with_prefix("herald");
        let connections = Family::<TransportLabels, Gauge>::default();
        let subscriptions = Family::<TransportLabels, Gauge>::default();
        let transports = Transport::ALL.map(|transport| {
            let labels = TransportLabels { transport };
            PerTransport {
                connections: connections.get_or_create_owned(&labels),
                subscriptions: subscriptions.get_or_create_owned(&labels),
            }
        });
        registry.register("connections", "Open connections, by transport", connections);
        registry.register("subscriptions", "Live subscriptions, by transport", subscriptions);
        let metrics = Self {
            transports,
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            events_published: Counter::default(),
            slow_consumers: Counter::default(),
            tls_handshake_failures: Counter::default(),
            closes: Family::default(),
            refusals: Family::default(),
            auth_failures: Family::default(),
            fanout: latency(),
            bus: clustered.then(|| Bus { up: Gauge::default(), publish: latency() }),
            store_bytes: durable.then(Gauge::default),
            held: Held::default(),
            registry,
        };
        metrics.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register("messages_in", "Messages received from clients", self.messages_in.clone());
        r.register("messages_out", "Frames queued to clients (events, replies, pings)", self.messages_out.clone());
        r.register("events_published", "Events published", self.events_published.clone());
        let slow = self.slow_consumers.clone();
        r.register("slow_consumer_closes", "Consumers closed for falling behind (close 4009)", slow);
        let tls = "TLS handshakes that failed or did not finish in time (a client distrusting the certificate, plain HTTP, a scanner)";
        r.register("tls_handshake_failures", tls, self.tls_handshake_failures.clone());
        r.register(
            "closes",
            "Connections the server closed, by close code (1006: without a close frame)",
            self.closes.clone(),
        );
        r.register("refusals", "Connections and requests turned away, by reason", self.refusals.clone());
        r.register("auth_failures", "Refused tokens and origins, by reason", self.auth_failures.clone());
        let fanout = "Publish received to the last subscriber's frame handed to its socket";
        r.register_with_unit("fanout", fanout, Unit::Seconds, self.fanout.clone());
        let held = &self.held;
        r.register("topics", "Topics held (subscribers, history or a position)", held.topics.clone());
        r.register("history_events", "Events kept for recovery", held.history_events.clone());
        let bytes = "Bytes of the frames kept for recovery";
        r.register_with_unit("history", bytes, Unit::Bytes, held.history_bytes.clone());
        r.register("publish_ids", "Publish ids remembered for deduplication", held.publish_ids.clone());
        r.register("queued_frames", "Frames waiting in connections' outbound queues", held.queued_frames.clone());
        r.register("longest_queue", "Frames waiting in the longest outbound queue", held.longest_queue.clone());
        if let Some(bus) = &self.bus {
            r.register("cluster_bus_up", "1 while this node of a cluster reaches Redis, 0 while not", bus.up.clone());
            let publish = "Publishing through Redis: numbering, dedup and fan-out to every node";
            r.register_with_unit("cluster_publish", publish, Unit::Seconds, bus.publish.clone());
        }
        if let Some(bytes) = &self.store_bytes {
            r.register_with_unit("store", "Size of the store's file (--data-dir)", Unit::Bytes, bytes.clone());
        }
        self
    }

    pub(crate) fn transport(&self, transport: Transport) -> &PerTransport {
        &self.transports[transport as usize]
    }

    pub(crate) fn closed(&self, code: u16) {
        self.closes.get_or_create(&CodeLabels { code }).inc();
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        self.refusals.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }

    pub(crate) fn auth_failed(&self, reason: AuthFailure) {
        self.auth_failures.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }

    /// The counters, with `sizes` (measured by the hub).
    pub(crate) fn snapshot(&self, sizes: &Sizes) -> MetricsSnapshot {
        let sum = |gauge: fn(&PerTransport) -> &Gauge| {
            self.transports.iter().map(|t| gauge(t).get()).sum::<i64>().max(0) as u64
        };
        let sum_family = |family: &Family<ReasonLabels, Counter>, reasons: &[&'static str]| {
            reasons.iter().filter_map(|&reason| family.get(&ReasonLabels { reason }).map(|c| c.get())).sum()
        };
        MetricsSnapshot {
            connections: sum(|t| &t.connections),
            subscriptions: sum(|t| &t.subscriptions),
            messages_in: self.messages_in.get(),
            messages_out: self.messages_out.get(),
            events_published: self.events_published.get(),
            drops: self.slow_consumers.get(),
            auth_failures: sum_family(&self.auth_failures, &AUTH_REASONS),
            refusals: sum_family(&self.refusals, &REFUSAL_REASONS),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            topics: sizes.topics,
            history_events: sizes.history_events,
            history_bytes: sizes.history_bytes,
            publish_ids: sizes.publish_ids,
            cluster_bus_up: self.bus.as_ref().map(|bus| bus.up.get() == 1),
        }
    }

    /// The OpenMetrics text, with `sizes` (measured by the hub).
    pub(crate) fn render(&self, sizes: &Sizes) -> String {
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.held.topics.set(as_gauge(sizes.topics));
        self.held.history_events.set(as_gauge(sizes.history_events));
        self.held.history_bytes.set(as_gauge(sizes.history_bytes));
        self.held.publish_ids.set(as_gauge(sizes.publish_ids));
        self.held.queued_frames.set(as_gauge(sizes.queued_frames));
        self.held.longest_queue.set(as_gauge(sizes.longest_queue));
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

const AUTH_REASONS: [&str; 7] =
    ["missing", "invalid", "expired", "not_yet_valid", "unavailable", "other_user", "origin"];
const REFUSAL_REASONS: [&str; 7] =
    ["connections", "unauthenticated", "per_address", "per_user", "overflow", "publish_rate", "message_rate"];

/// A copy of the server's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Open connections (WebSocket, SSE streams, long polls).
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
    /// Refused tokens and origins.
    pub auth_failures: u64,
    /// Connections and requests turned away by a limit.
    pub refusals: u64,
    /// TLS handshakes on Herald's own listener that failed or did not
    /// finish in time (the client distrusts the certificate, speaks plain
    /// HTTP, or is a scanner).
    pub tls_handshake_failures: u64,
    /// Topics the server holds state for (subscribers, history or a position).
    pub topics: u64,
    /// Events kept in topics' histories for recovery.
    pub history_events: u64,
    /// Bytes of the frames kept in topics' histories.
    pub history_bytes: u64,
    /// Client publish ids remembered to drop retransmissions.
    pub publish_ids: u64,
    /// On a node of a cluster, whether it reaches Redis (it serves and
    /// publishes only then); `None` on a single node.
    pub cluster_bus_up: Option<bool>,
}
