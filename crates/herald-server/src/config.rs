//! Server configuration.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use ipnet::IpNet;

use crate::{
    ServerError, TlsFiles,
    auth::{Authenticator, Dev, Jwks, Jwt},
    rate::Rate,
};

/// Everything the server can be told. Build it with [`Default`] and change
/// fields, or use [`HeraldBuilder`](crate::HeraldBuilder)'s methods:
///
/// ```
/// use std::time::Duration;
/// use herald_server::ServerConfig;
///
/// let mut config = ServerConfig::default();
/// config.dev = true;
/// config.ping_interval = Duration::from_secs(5);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Secret for HS256 JWTs. One of this, [`jwt_public_key`](Self::jwt_public_key)
    /// and [`jwks_url`](Self::jwks_url) is needed unless [`dev`](Self::dev)
    /// is on (or the [`HeraldBuilder`](crate::HeraldBuilder) is given an
    /// [`authenticator`](crate::HeraldBuilder::authenticator)). Default: none.
    pub secret: Option<String>,
    /// The public key (RSA or EC) of RS256/ES256 JWTs: PEM text
    /// (`-----BEGIN PUBLIC KEY-----..`), or the path of a PEM file. See
    /// [`Jwt::public_key_pem`](crate::auth::Jwt::public_key_pem). Default: none.
    pub jwt_public_key: Option<String>,
    /// The URL of an identity provider's key set (JWKS) that signs the JWTs.
    /// See [`Jwks`](crate::auth::Jwks). Default: none.
    pub jwks_url: Option<String>,
    /// Audiences a JWT's `aud` must name one of. Empty: tokens with an `aud`
    /// are refused. Default: empty.
    pub jwt_audience: Vec<String>,
    /// The issuer a JWT's `iss` must be. Default: none (not checked).
    pub jwt_issuer: Option<String>,
    /// Development mode: any non-empty token is accepted as the user id, and
    /// that user may subscribe and publish anything. Insecure; the server logs
    /// a warning. Default: `false`.
    pub dev: bool,
    /// Browser origins allowed to open WebSockets (e.g. `https://app.example`).
    /// Empty allows every origin. Requests without an `Origin` header (native
    /// clients) are always allowed. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Names the event history; `None` picks a random one at start. Clients can
    /// recover only within one epoch. A cluster keeps its epoch in Redis, so
    /// it cannot be set together with [`redis`](Self::redis). Default: `None`.
    pub epoch: Option<String>,
    /// Joins a cluster: the Redis server (6 or later) its nodes share, as
    /// `redis://[:password@]host[:port][/db]`. Every node serves its own
    /// connections; Redis numbers each topic's events, carries every event
    /// to every node in that order, remembers publish ids and names the
    /// epoch. A node that loses Redis closes its connections (1001 with a
    /// reconnect hint) and refuses publishes until it is back. Presence
    /// spans the nodes (see [`presence_ttl`](Self::presence_ttl)). One Redis
    /// server (not Redis Cluster); `rediss://` for TLS, verified against the
    /// system's roots or [`redis_ca`](Self::redis_ca). Default: none (a
    /// single node).
    pub redis: Option<String>,
    /// Prefix of the cluster's Redis keys and channel, so that several
    /// clusters can share one Redis. Default: `herald`.
    pub redis_prefix: String,
    /// With a `rediss://` URL: the PEM file of the certificate authority
    /// that signed the Redis server's certificate, trusted instead of the
    /// system's roots (a Redis of your own with a private CA). Default: the
    /// system's roots (managed Redis services).
    pub redis_ca: Option<PathBuf>,
    /// On a node of a cluster: how long the other nodes keep listing this
    /// node's presence members after they last heard from it. A node that
    /// dies has its users leave the other nodes' presence within it; a live
    /// node is heard from every third of it. Default: 15 s.
    pub presence_ttl: Duration,
    /// Keeps the epoch, every topic's position and history, and the
    /// publish ids in a store in this directory (file `herald.redb`,
    /// created if missing), so that a restart, a deploy or a crash keeps
    /// them: reconnecting clients recover what they missed instead of
    /// resyncing. A publish is acked, and its event delivered, only once it
    /// is on disk (fsync), so no `seq` is ever handed out twice.
    ///
    /// One process holds the store at a time: another one started on the
    /// same directory (a `--reuse-port` deploy) waits for it, and so do the
    /// connections it accepts meanwhile (10 s at most, then 503); the
    /// holder lets go of it when it shuts down. A store that cannot be read
    /// is moved aside (`herald.redb.unreadable-<time>`) and a new epoch
    /// starts. Not with [`redis`](Self::redis) (a cluster keeps its history
    /// in Redis) nor [`epoch`](Self::epoch) (the store keeps its own).
    /// Default: none (the history lives in memory and a restart starts a
    /// new epoch).
    pub data_dir: Option<PathBuf>,
    /// Events kept per topic for recovery. Default: 1,000.
    pub history_len: usize,
    /// Longest time an event stays in a topic's history. Default: 5 minutes.
    pub history_max_age: Duration,
    /// Bytes of history one topic keeps at most: its oldest events go
    /// first. Default: 1 MiB.
    pub history_max_bytes: usize,
    /// Bytes of history all topics keep together at most: past it, the
    /// histories that start earliest are dropped whole, down to 90 % of it
    /// (clients that needed them resync). Default: 256 MiB.
    pub history_total_bytes: usize,
    /// How long a client publish id is remembered to drop retransmissions.
    /// Default: 5 minutes.
    pub dedup_window: Duration,
    /// Client publish ids remembered at most (the oldest are forgotten
    /// first, even within the window; a retransmission of one of those is
    /// broadcast again). A cluster remembers ids in Redis, by time only.
    /// Default: 100,000.
    pub max_publish_ids: usize,
    /// Interval of the server's `{"type":"ping"}`. Default: 25 s.
    pub ping_interval: Duration,
    /// A connection that sends nothing for this long is closed with 1000 (a
    /// half-open socket never tells; a live client reconnects with backoff).
    /// Default: 60 s.
    pub idle_timeout: Duration,
    /// Deadline for the first `{"type":"auth"}` message when the URL carries
    /// no `?token=`, and for one check of credentials by the authenticator
    /// (e.g. fetching an identity provider's keys). Default: 10 s.
    pub auth_timeout: Duration,
    /// Frames queued per connection before the server gives up on a consumer
    /// that reads too slowly (close 4009). Default: 1,024.
    pub outbound_queue: usize,
    /// Longest time one write to a socket may take before the connection
    /// counts as too slow (close 4009). Default: 10 s.
    pub write_timeout: Duration,
    /// Inbound messages per second a connection may send on average (token
    /// bucket refill rate). `0` turns rate limiting off. Default: 1,000.
    pub rate_limit_per_sec: u32,
    /// Inbound messages a connection may send in a burst. Default: 2,000.
    pub rate_limit_burst: u32,
    /// Rate-limited messages in a row (each answered with error 429) after
    /// which the connection is closed with 4008. Default: 20.
    pub rate_limit_strikes: u32,
    /// `POST /api/publish` requests a user (of a tenant) may make per
    /// second on average, over all its connections; beyond it the answer is
    /// 429 with `Retry-After`. `0` turns the limit off. Default: 1,000.
    pub http_publish_rate: u32,
    /// `POST /api/publish` requests a user may make in a burst. Default: 2,000.
    pub http_publish_burst: u32,
    /// Longest time an HTTP request body may take to arrive, whole; a
    /// slower one gets 408. Default: 10 s.
    pub body_timeout: Duration,
    /// On graceful shutdown every client is told to wait a random delay in
    /// `0..shutdown_spread` before reconnecting, so a restart does not bring
    /// every client back at once. Default: 5 s.
    pub shutdown_spread: Duration,
    /// Listen with `SO_REUSEPORT`, so that a replacement server can take
    /// the port before this one shuts down and a restart refuses no
    /// connection (Unix only). Every server sharing the port must set it.
    /// Default: off.
    pub reuse_port: bool,
    /// Size of each read from a connection's socket, in bytes; also the read
    /// buffer every idle connection holds (or the largest frame it read,
    /// if larger). Clients send little (subscribe, ping, an occasional
    /// publish), so a small chunk costs nothing in throughput and keeps idle
    /// connections small: at 10,000 connections 128 bytes measured
    /// 3.46–3.55 KiB per connection against 3.90–4.23 with 512 in the same
    /// run (see BENCHMARKS.md, "Idle connections"). Larger frames still
    /// arrive whole, in several reads. Default: 128 bytes.
    pub read_buffer_size: usize,
    /// Bytes buffered before a write goes to the socket; the server flushes
    /// after each batch anyway. Default: 16 KiB.
    pub write_buffer_size: usize,
    /// Users listed in one topic's presence at most; a subscriber with
    /// presence beyond it receives presence but is not listed, and is told
    /// so with error 429. Default: 1,000.
    pub max_presence_members: usize,
    /// Presence changes of a topic are announced together, at most once per
    /// this interval, as one `presence_diff` per subscriber. Default: 100 ms.
    pub presence_interval: Duration,
    /// Longest wait for a request's head (its request line and headers),
    /// including the WebSocket handshake's and the next request's on an idle
    /// keep-alive connection; a connection that sends none in time is
    /// closed. With [`tls`](Self::tls), the TLS handshake must also finish
    /// within it, before the wait for the head begins. Applies to Herald's
    /// own listener. Default: 10 s.
    pub header_timeout: Duration,
    /// Connections the server holds at most; one over it is answered 503
    /// (`/healthz` is still answered) and closed. `None`: what the process's
    /// file descriptor limit (`ulimit -n`) leaves after a reserve of 192, so
    /// that the server never runs out of them. Applies to Herald's own
    /// listener. Default: `None`.
    pub max_connections: Option<usize>,
    /// Connections that have not authenticated yet (no valid token on any
    /// request, or a WebSocket still before its `auth`): over it, a new
    /// connection is answered 503 and closed. With [`header_timeout`](Self::header_timeout)
    /// and [`auth_timeout`](Self::auth_timeout) this bounds what clients
    /// without a token can hold. Applies to Herald's own listener.
    /// Default: 1,000.
    pub max_unauthenticated: usize,
    /// Connections one client address may hold: TCP connections on Herald's
    /// own listener, and WebSocket and SSE connections and long polls
    /// everywhere. Behind a load balancer, list it in
    /// [`trusted_proxies`](Self::trusted_proxies) so that each client's own
    /// address counts. Over it: HTTP 429, or close 4008 on a WebSocket. `0`:
    /// no limit. Default: 1,000.
    pub max_connections_per_ip: usize,
    /// WebSocket and SSE connections and long polls one user (of a tenant)
    /// may hold at once. Over it: HTTP 429, or close 4008 on a WebSocket.
    /// `0`: no limit. Default: 100.
    pub max_connections_per_user: usize,
    /// Proxies and load balancers whose `Forwarded` / `X-Forwarded-For`
    /// headers name the client (e.g. `10.0.0.0/8`): a connection from one
    /// of them counts against the address they name, not theirs. Headers
    /// from any other peer are ignored. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// Topics one connection may be subscribed to at once, wildcards
    /// included (and topics one SSE stream or long poll may name). A
    /// subscribe beyond it gets error 429 for each topic over. Default: 1,000.
    pub max_subscriptions: usize,
    /// Longest wait of a `GET /api/poll` without events. Default: 25 s.
    pub poll_timeout: Duration,
    /// Directory of a built web app served from `/`. Default: none.
    pub static_dir: Option<PathBuf>,
    /// Serve HTTPS and `wss://` (TLS 1.2 and 1.3, rustls) with this
    /// certificate and key. Both files are read at start, where a bad one
    /// is an error naming it, and again whenever they change (checked every
    /// 2 s), on [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls)
    /// and, after [`ServerHandle::reload_tls_on_hangup`](crate::ServerHandle::reload_tls_on_hangup),
    /// on SIGHUP: new connections get the new certificate, open ones keep
    /// theirs, and a reload that fails keeps the previous one and logs
    /// what to fix. Applies to Herald's own listener only: mounted with
    /// [`Herald::router`](crate::Herald::router), TLS is the host app's
    /// (or its proxy's). Default: none (plain HTTP and `ws://`).
    pub tls: Option<TlsFiles>,
}

/// Written out to keep the secret, and the password in a Redis URL, out of
/// logs and `--check-config`.
#[warn(clippy::missing_fields_in_debug)]
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwks_url", &self.jwks_url)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("dev", &self.dev)
            .field("allowed_origins", &self.allowed_origins)
            .field("epoch", &self.epoch)
            .field("redis", &self.redis.as_deref().map(crate::cluster::redact))
            .field("redis_prefix", &self.redis_prefix)
            .field("presence_ttl", &self.presence_ttl)
            .field("redis_ca", &self.redis_ca)
            .field("data_dir", &self.data_dir)
            .field("history_len", &self.history_len)
            .field("history_max_age", &self.history_max_age)
            .field("history_max_bytes", &self.history_max_bytes)
            .field("history_total_bytes", &self.history_total_bytes)
            .field("dedup_window", &self.dedup_window)
            .field("max_publish_ids", &self.max_publish_ids)
            .field("ping_interval", &self.ping_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("auth_timeout", &self.auth_timeout)
            .field("outbound_queue", &self.outbound_queue)
            .field("write_timeout", &self.write_timeout)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("rate_limit_strikes", &self.rate_limit_strikes)
            .field("http_publish_rate", &self.http_publish_rate)
            .field("http_publish_burst", &self.http_publish_burst)
            .field("body_timeout", &self.body_timeout)
            .field("shutdown_spread", &self.shutdown_spread)
            .field("reuse_port", &self.reuse_port)
            .field("read_buffer_size", &self.read_buffer_size)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("max_presence_members", &self.max_presence_members)
            .field("presence_interval", &self.presence_interval)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_unauthenticated", &self.max_unauthenticated)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("max_subscriptions", &self.max_subscriptions)
            .field("poll_timeout", &self.poll_timeout)
            .field("static_dir", &self.static_dir)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ServerConfig {
    /// Checks that the configuration can work, without starting anything
    /// (`herald serve --check-config`).
    pub fn validate(&self) -> Result<(), ServerError> {
        self.check().map(drop)
    }

    /// [`validate`](Self::validate), returning the authenticator the
    /// configuration names (reading [`jwt_public_key`](Self::jwt_public_key)'s
    /// file, fetching nothing).
    pub(crate) fn check(&self) -> Result<Arc<dyn Authenticator>, ServerError> {
        self.check_limits()?;
        self.authenticator()
    }

    /// Whether the configuration names a way to authenticate.
    pub(crate) fn has_auth(&self) -> bool {
        self.dev || self.secret.is_some() || self.jwt_public_key.is_some() || self.jwks_url.is_some()
    }

    /// Checks everything but authentication.
    pub(crate) fn check_limits(&self) -> Result<(), ServerError> {
        let invalid = |problem: &str| Err(ServerError::Config(problem.to_owned()));
        if self.ping_interval.is_zero() || self.idle_timeout.is_zero() {
            return invalid("ping interval and idle timeout must be above zero");
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() || self.auth_timeout.is_zero() {
            return invalid("the header, body and auth timeouts must be above zero");
        }
        if self.outbound_queue == 0 || self.max_subscriptions == 0 {
            return invalid("the outbound queue and the subscriptions per connection must be above zero");
        }
        if self.redis.is_some() && self.epoch.is_some() {
            return invalid(
                "a cluster keeps its epoch in Redis: drop the epoch setting (--epoch, HERALD_EPOCH) when using Redis",
            );
        }
        if self.data_dir.is_some() && self.redis.is_some() {
            return invalid(
                "a cluster keeps its history in Redis: drop the data directory (--data-dir, HERALD_DATA_DIR) when using Redis",
            );
        }
        if self.data_dir.is_some() && self.epoch.is_some() {
            return invalid(
                "the data directory keeps the epoch: drop the epoch setting (--epoch, HERALD_EPOCH) when using --data-dir",
            );
        }
        if self.redis_prefix.is_empty() {
            return invalid("the Redis key prefix must not be empty");
        }
        if self.redis_ca.is_some() && !self.redis.as_deref().is_some_and(|url| url.starts_with("rediss://")) {
            return invalid("a Redis CA (--redis-ca) is for a TLS connection: give a rediss:// URL");
        }
        if self.presence_ttl < Duration::from_millis(300) {
            return invalid("the presence TTL must be at least 300 ms (a node is heard from every third of it)");
        }
        if let Some(files) = &self.tls {
            crate::tls::check(files).map_err(|error| ServerError::Config(error.to_string()))?;
        }
        Ok(())
    }

    fn authenticator(&self) -> Result<Arc<dyn Authenticator>, ServerError> {
        let invalid = |problem: &str| Err(ServerError::Config(problem.to_owned()));
        if self.dev {
            return Ok(Arc::new(Dev::new()));
        }
        let rules = |jwt: Jwt| {
            let jwt = self.jwt_audience.iter().fold(jwt, |jwt, audience| jwt.audience(audience));
            self.jwt_issuer.iter().fold(jwt, |jwt, issuer| jwt.issuer(issuer))
        };
        match (&self.secret, &self.jwt_public_key, &self.jwks_url) {
            (Some(secret), None, None) if secret.is_empty() => {
                invalid("the token secret is empty: pass a long random one (openssl rand -hex 32)")
            }
            (Some(secret), None, None) => Ok(Arc::new(rules(Jwt::hs256(secret)?))),
            (None, Some(key), None) => Ok(Arc::new(rules(Jwt::public_key_pem(&read_pem(key)?)?))),
            (None, None, Some(url)) => {
                let jwks = self.jwt_audience.iter().fold(Jwks::new(url)?, |jwks, audience| jwks.audience(audience));
                Ok(Arc::new(self.jwt_issuer.iter().fold(jwks, |jwks, issuer| jwks.issuer(issuer))))
            }
            (None, None, None) => invalid(
                "no way to check tokens: pass --secret (HS256), --jwt-public-key or --jwks-url (or --dev for development)",
            ),
            _ => invalid("more than one token key: keep one of --secret, --jwt-public-key and --jwks-url"),
        }
    }

    pub(crate) fn inbound_rate(&self) -> Rate {
        Rate { per_sec: self.rate_limit_per_sec, burst: self.rate_limit_burst }
    }

    pub(crate) fn http_publish_rate(&self) -> Rate {
        Rate { per_sec: self.http_publish_rate, burst: self.http_publish_burst }
    }
}

/// The PEM text of `key`: itself, or the file it names.
fn read_pem(key: &str) -> Result<Vec<u8>, ServerError> {
    if key.trim_start().starts_with("-----BEGIN") {
        return Ok(key.as_bytes().to_vec());
    }
    std::fs::read(key).map_err(|e| ServerError::Config(format!("cannot read the JWT public key file {key:?}: {e}")))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            secret: None,
            jwt_public_key: None,
            jwks_url: None,
            jwt_audience: Vec::new(),
            jwt_issuer: None,
            dev: false,
            allowed_origins: Vec::new(),
            epoch: None,
            redis: None,
            redis_prefix: "herald".into(),
            presence_ttl: Duration::from_secs(15),
            redis_ca: None,
            data_dir: None,
            history_len: 1_000,
            history_max_age: Duration::from_secs(300),
            history_max_bytes: 1 << 20,
            history_total_bytes: 256 << 20,
            dedup_window: Duration::from_secs(300),
            max_publish_ids: 100_000,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            outbound_queue: 1_024,
            write_timeout: Duration::from_secs(10),
            rate_limit_per_sec: 1_000,
            rate_limit_burst: 2_000,
            rate_limit_strikes: 20,
            http_publish_rate: 1_000,
            http_publish_burst: 2_000,
            body_timeout: Duration::from_secs(10),
            shutdown_spread: Duration::from_secs(5),
            reuse_port: false,
            read_buffer_size: 128,
            write_buffer_size: 16 * 1024,
            max_presence_members: 1_000,
            presence_interval: Duration::from_millis(100),
            header_timeout: Duration::from_secs(10),
            max_connections: None,
            max_unauthenticated: 1_000,
            max_connections_per_ip: 1_000,
            max_connections_per_user: 100,
            trusted_proxies: Vec::new(),
            max_subscriptions: 1_000,
            poll_timeout: Duration::from_secs(25),
            static_dir: None,
            tls: None,
        }
    }
}
