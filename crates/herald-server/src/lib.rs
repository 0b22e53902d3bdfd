//! Herald's reference server: real-time pub/sub over WebSockets (protocol v1),
//! with Server-Sent Events and long-poll fallbacks, HTTP publishing for
//! backends, recovery of missed events, presence, and limits that keep one
//! misbehaving client from hurting the others.
//!
//! Run it with `herald serve` (crate `herald-cli`), or start it inside a
//! program or a test:
//!
//! ```no_run
//! # async fn run() -> Result<(), herald_server::ServerError> {
//! use herald_server::{Epoch, Server};
//!
//! // Development mode: any non-empty token is accepted as the user id.
//! let mut server = Server::bind("127.0.0.1:0").await?;
//! println!("connect to {}", server.ws_url());
//!
//! // "The server restarts, history kept": clients recover what they missed.
//! server.restart(Epoch::Same).await?;
//! // "The server restarts, history lost": clients must resync.
//! server.restart(Epoch::New).await?;
//!
//! server.shutdown().await;
//! # Ok(()) }
//! ```
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
//! With [`ServerBuilder::redis`] (`herald serve --redis URL`) nodes sharing
//! a Redis form a cluster: Redis numbers every topic's events and carries
//! them to every node in that order, so a client may reconnect to any node
//! and recover what it missed there. Presence is per node. See
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
mod auth;
mod cluster;
mod config;
mod conn;
mod extract;
mod http;
mod hub;
mod metrics;
mod outbox;
mod presence;
mod quota;
mod rate;
mod stream;
mod ws;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    routing::{get, post},
};
use herald_protocol::{Event, EventData, EventKind, Payload, ProtocolError, Topic, close};
use tokio::{
    net::{TcpListener, TcpSocket, ToSocketAddrs},
    sync::oneshot,
    task::JoinHandle,
    time::timeout,
};
use tracing::{info, warn};

pub use auth::{Claims, mint_token};
pub use config::ServerConfig;
pub use ipnet::IpNet;
pub use metrics::MetricsSnapshot;

use crate::{
    accept::Gate,
    auth::Authenticator,
    cluster::{Cluster, Unavailable},
    hub::{Hub, PublishId},
    quota::Quotas,
    rate::PublishLimits,
};

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
    /// An event given to [`ServerHandle::publish`] is not valid.
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
    /// A node of a cluster could not publish through Redis; the message says
    /// whether the event may have been published.
    #[error("{0}")]
    Unavailable(String),
}

/// What a restart does with the event history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Epoch {
    /// Keep the history and the epoch: reconnecting clients recover what they missed.
    Same,
    /// Drop the history and pick a new epoch: reconnecting clients must resync.
    New,
}

/// Starts servers. See [`Server::bind`] and [`Server::builder`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Server;

impl Server {
    /// Starts a server in development mode (any non-empty token is the user
    /// id) with the default configuration, e.g. on `"127.0.0.1:0"` for tests.
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<ServerHandle, ServerError> {
        Self::builder().dev(true).bind(addr).await
    }

    /// A builder for any configuration.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Configures and starts a server; ends in [`bind`](Self::bind).
///
/// ```no_run
/// # async fn run() -> Result<(), herald_server::ServerError> {
/// use std::time::Duration;
/// let server = herald_server::Server::builder()
///     .secret("a long random secret")
///     .history(100, Duration::from_secs(60))
///     .bind("127.0.0.1:0")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    config: ServerConfig,
}

impl ServerBuilder {
    /// Starts from `config`.
    pub fn new(config: ServerConfig) -> Self {
        Self { config }
    }

    /// Development mode: any non-empty token is accepted as the user id.
    pub fn dev(mut self, dev: bool) -> Self {
        self.config.dev = dev;
        self
    }

    /// Secret of HS256 tokens.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.config.secret = Some(secret.into());
        self
    }

    /// Joins the cluster of the nodes sharing the Redis at `url` (e.g.
    /// `redis://127.0.0.1:6379`); see [`ServerConfig::redis`].
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.config.redis = Some(url.into());
        self
    }

    /// Prefix of the cluster's Redis keys and channel; see [`ServerConfig::redis_prefix`].
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.redis_prefix = prefix.into();
        self
    }

    /// Names the history; see [`ServerConfig::epoch`].
    pub fn epoch(mut self, epoch: impl Into<String>) -> Self {
        self.config.epoch = Some(epoch.into());
        self
    }

    /// Events kept per topic, and for how long.
    pub fn history(mut self, len: usize, max_age: Duration) -> Self {
        self.config.history_len = len;
        self.config.history_max_age = max_age;
        self
    }

    /// Server ping interval and the silence after which a connection is dropped.
    pub fn heartbeat(mut self, ping_interval: Duration, idle_timeout: Duration) -> Self {
        self.config.ping_interval = ping_interval;
        self.config.idle_timeout = idle_timeout;
        self
    }

    /// Deadline for a first `auth` message.
    pub fn auth_timeout(mut self, deadline: Duration) -> Self {
        self.config.auth_timeout = deadline;
        self
    }

    /// Per-connection outbound queue length and write timeout (slow consumers are closed with 4009).
    pub fn outbound(mut self, queue: usize, write_timeout: Duration) -> Self {
        self.config.outbound_queue = queue;
        self.config.write_timeout = write_timeout;
        self
    }

    /// Inbound rate limit: messages per second, burst, and 429s in a row before close 4008.
    /// `per_sec == 0` turns it off.
    pub fn rate_limit(mut self, per_sec: u32, burst: u32, strikes: u32) -> Self {
        self.config.rate_limit_per_sec = per_sec;
        self.config.rate_limit_burst = burst;
        self.config.rate_limit_strikes = strikes;
        self
    }

    /// Window over which graceful-shutdown reconnect hints are spread.
    pub fn shutdown_spread(mut self, spread: Duration) -> Self {
        self.config.shutdown_spread = spread;
        self
    }

    /// Lets a replacement server listen on the same port while this one still
    /// runs (`SO_REUSEPORT`), for restarts that refuse no connection: start
    /// the new server, then shut the old one down; its clients reconnect to
    /// the new one. Unix only.
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.config.reuse_port = reuse;
        self
    }

    /// Allows a browser origin (repeat for more); without any, every origin is allowed.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.config.allowed_origins.push(origin.into());
        self
    }

    /// The whole configuration, for fields without a method.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// Binds `addr` and starts serving in the background (on the current
    /// tokio runtime). With [`redis`](Self::redis), joins the cluster first:
    /// an unreachable Redis is [`ServerError::Redis`].
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<ServerHandle, ServerError> {
        let config = self.config;
        let secret = match (&config.secret, config.dev) {
            (_, true) => {
                warn!(
                    "DEVELOPMENT MODE: any non-empty token is accepted as the user id and may publish anywhere; never use --dev in production"
                );
                None
            }
            (Some(secret), false) if !secret.is_empty() => Some(secret.clone()),
            _ => {
                return Err(ServerError::Config(
                    "no token secret: pass --secret or set HERALD_SECRET (or --dev for development)".into(),
                ));
            }
        };
        if config.ping_interval.is_zero() || config.idle_timeout.is_zero() {
            return Err(ServerError::Config("ping interval and idle timeout must be above zero".into()));
        }
        let hub = Arc::new(Hub::new(&config));
        let joined = match &config.redis {
            Some(url) => Some(Cluster::join(&config, url, hub.clone()).await?),
            None => None,
        };
        let cluster = joined.as_ref().map(|(cluster, _)| cluster.clone());
        let auth = Authenticator::new(secret.as_deref());
        let app = Arc::new(App::new(config, auth, hub, cluster));
        let listener = listen(addr, app.config.reuse_port).await?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: "?".into(), source })?;
        let bus = joined.map(|(cluster, bus)| tokio::spawn(cluster.supervise(bus)));
        info!(%addr, epoch = %app.hub.epoch(), "herald listening");
        let running = Some(start(app.clone(), listener));
        Ok(ServerHandle { addr, app, running, bus })
    }
}

/// Shared by every handler.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) auth: Authenticator,
    pub(crate) hub: Arc<Hub>,
    /// Set on a node of a cluster.
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) sessions: stream::Sessions,
    pub(crate) publish_limits: PublishLimits,
    /// What users and addresses hold open.
    pub(crate) quotas: Arc<Quotas>,
    /// The connection limits of Herald's own listener.
    pub(crate) gate: Arc<Gate>,
}

impl App {
    fn new(config: ServerConfig, auth: Authenticator, hub: Arc<Hub>, cluster: Option<Arc<Cluster>>) -> Self {
        let publish_limits = PublishLimits::new(config.http_publish_rate());
        let quotas = Quotas::new(config.max_connections_per_user, config.max_connections_per_ip);
        let gate = Gate::new(&config);
        Self { config, auth, hub, cluster, sessions: Default::default(), publish_limits, quotas, gate }
    }

    /// Publishes a validated event: through Redis on a node of a cluster,
    /// in this process otherwise. With `dedup` (tenant, user, publish id), a
    /// repeat within the dedup window is not broadcast again. Returns the
    /// `seq` and whether it was a repeat.
    pub(crate) async fn publish(&self, event: Event, dedup: Option<PublishId<'_>>) -> Result<(u64, bool), Unavailable> {
        match (&self.cluster, dedup) {
            (Some(cluster), dedup) => cluster.publish(&event, dedup).await,
            (None, Some(dedup)) => Ok(self.hub.publish_once(&dedup, event)),
            (None, None) => Ok((self.hub.publish(event), false)),
        }
    }

    /// Whether the node can serve: always on a single node; on a node of a
    /// cluster while it reaches Redis.
    pub(crate) fn healthy(&self) -> bool {
        self.cluster.as_ref().is_none_or(|cluster| cluster.online())
    }

    pub(crate) fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            // Native clients send no Origin; cross-site hijacking needs a browser, which always does.
            None => true,
            Some(origin) => origin_in(&self.config.allowed_origins, origin),
        }
    }
}

/// Whether `origin` is on the allow-list; an empty list allows every origin.
pub(crate) fn origin_in(allowed: &[String], origin: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|allowed| allowed.trim_end_matches('/') == origin)
}

async fn listen(addr: impl ToSocketAddrs, reuse_port: bool) -> Result<TcpListener, ServerError> {
    let mut last = None;
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ServerError::Bind { addr: "the given address".into(), source })?;
    for addr in addrs {
        match bind_one(addr, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(source) => last = Some(ServerError::Bind { addr: addr.to_string(), source }),
        }
    }
    Err(last.unwrap_or_else(|| ServerError::Config("the address resolved to nothing".into())))
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restart binds the same port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(reuse_port)?;
    #[cfg(not(unix))]
    if reuse_port {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "reuse_port needs a Unix system"));
    }
    socket.bind(addr)?;
    socket.listen(4096)
}

fn router(app: Arc<App>) -> Router {
    let router = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/api/publish", post(http::publish))
        .route("/sse", get(http::sse))
        .route("/sse/send", post(stream::send))
        .route("/api/poll", get(http::poll))
        .route("/healthz", get(http::healthz))
        .route("/metrics", get(http::metrics));
    let router = if app.config.static_dir.is_some() { router.fallback(http::static_file) } else { router };
    let cors = http::cors(&app.config.allowed_origins);
    router.layer(cors).with_state(app)
}

#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// The hub's timers; aborted when the server stops.
    maintenance: JoinHandle<()>,
}

fn start(app: Arc<App>, listener: TcpListener) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    app.hub.reopen();
    let router = router(app.clone());
    let maintenance = tokio::spawn(hub::maintain(app.hub.clone(), app.config.presence_interval));
    let task = tokio::spawn(accept::serve(listener, app, router, stopped));
    Running { stop, task, maintenance }
}

/// A running server. Dropping it stops the server without waiting; call
/// [`shutdown`](Self::shutdown) to stop gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    app: Arc<App>,
    running: Option<Running>,
    /// The task keeping a node of a cluster on the bus; aborted on drop.
    bus: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://<addr>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `http://<addr>`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The current epoch (changes on [`restart`](Self::restart) with
    /// [`Epoch::New`], and on a node of a cluster when Redis restarts or
    /// loses its data).
    pub fn epoch(&self) -> String {
        self.app.hub.epoch().to_string()
    }

    /// The counters also served on `/metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.app.hub.snapshot()
    }

    /// Publishes an event as a backend would (its `seq` is assigned here,
    /// or by Redis on a node of a cluster), into the namespace of its
    /// `data.tenant_id`: it reaches only that tenant's connections, or
    /// without one only connections without a tenant. Returns the `seq`.
    /// A node of a cluster that cannot reach Redis returns
    /// [`ServerError::Unavailable`].
    pub async fn publish_event(&self, event: Event) -> Result<u64, ServerError> {
        event.validate()?;
        let (seq, _) = self.app.publish(event, None).await.map_err(|e| ServerError::Unavailable(e.0))?;
        Ok(seq)
    }

    /// Publishes `kind` on `topic` for `entity_id` with a JSON `payload`,
    /// stamped now, without a tenant (it reaches connections without one).
    /// Returns the `seq`.
    pub async fn publish(
        &self,
        topic: &str,
        kind: &str,
        entity_id: &str,
        payload: &serde_json::Value,
    ) -> Result<u64, ServerError> {
        let topic = Topic::new(topic).map_err(ProtocolError::from)?;
        let payload = Payload::from_value(payload).map_err(|e| ProtocolError::Json(e.into()))?;
        let data = EventData {
            entity_id: entity_id.to_owned(),
            payload,
            user_id: None,
            tenant_id: None,
            timestamp: herald_protocol::now_timestamp(),
        };
        self.publish_event(Event { topic, event: EventKind::from(kind), data, trace_id: None, seq: None }).await
    }

    /// Closes every open connection with `code` while the server keeps
    /// running, to test clients: [`close::ABNORMAL`] (1006) drops sockets
    /// without a close frame, [`close::GOING_AWAY`] adds a reconnect hint,
    /// [`close::TOO_SLOW`] imitates a slow-consumer drop.
    pub fn disconnect_all(&self, code: u16) {
        self.app.hub.kill_all(code);
    }

    /// Stops gracefully: stops accepting, closes every connection with 1001
    /// and a reconnect hint spread over [`ServerConfig::shutdown_spread`], and
    /// waits (at most 10 s) for connections to finish.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Waits for SIGINT or SIGTERM (Ctrl-C on other systems), then shuts down
    /// gracefully. On Unix the signals are caught from this call on, before
    /// the future first runs, so a program may announce that it is ready
    /// right after calling it: a signal sent at once still shuts down
    /// gracefully instead of killing the process. Call it on a tokio runtime.
    pub fn shutdown_on_signal(self) -> impl Future<Output = ()> + Send {
        let signal = signal_received();
        async move {
            signal.await;
            info!("signal received, shutting down");
            self.shutdown().await;
        }
    }

    /// Shuts down gracefully and starts again on the same address, keeping or
    /// dropping the history: [`pause`](Self::pause) then [`resume`](Self::resume).
    /// A node of a cluster keeps the cluster's history: [`Epoch::New`] is a
    /// [`ServerError::Config`] there.
    pub async fn restart(&mut self, epoch: Epoch) -> Result<(), ServerError> {
        self.pause().await;
        self.resume(epoch).await
    }

    /// Takes the server down as a graceful shutdown would (clients get 1001
    /// and a reconnect hint, the port stops listening) but keeps its state,
    /// so a test can publish during the outage and then [`resume`](Self::resume).
    /// Does nothing if already paused.
    pub async fn pause(&mut self) {
        self.stop().await;
    }

    /// Listens again on the same address after [`pause`](Self::pause),
    /// keeping or dropping the history. Does nothing if running.
    pub async fn resume(&mut self, epoch: Epoch) -> Result<(), ServerError> {
        if self.running.is_some() {
            return Ok(());
        }
        if epoch == Epoch::New && self.app.cluster.is_some() {
            return Err(ServerError::Config(
                "a node of a cluster cannot drop the history alone: it belongs to the cluster and changes when Redis restarts".into(),
            ));
        }
        if epoch == Epoch::New {
            let mut config = self.app.config.clone();
            // Even a configured epoch must change: the history is gone.
            config.epoch = None;
            let hub = Arc::new(Hub::new(&config));
            let (config, auth) = (self.app.config.clone(), self.app.auth.clone());
            self.app = Arc::new(App::new(config, auth, hub, None));
        }
        // The old listener is closed; retry briefly in case the OS is slow to release the port.
        let mut attempt = 0;
        let listener = loop {
            match bind_one(self.addr, self.app.config.reuse_port) {
                Ok(listener) => break listener,
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => return Err(ServerError::Bind { addr: self.addr.to_string(), source }),
            }
        };
        info!(addr = %self.addr, epoch = %self.app.hub.epoch(), "herald restarted");
        self.running = Some(start(self.app.clone(), listener));
        Ok(())
    }

    async fn stop(&mut self) {
        let Some(running) = self.running.take() else { return };
        running.maintenance.abort();
        let _ = running.stop.send(());
        self.app.hub.close(close::GOING_AWAY);
        if timeout(Duration::from_secs(10), self.app.hub.all_gone()).await.is_err() {
            warn!("connections still open 10 s after shutdown began");
        }
        let _ = timeout(Duration::from_secs(5), running.task).await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.maintenance.abort();
            let _ = running.stop.send(());
            self.app.hub.close(close::GOING_AWAY);
        }
        if let Some(bus) = self.bus.take() {
            bus.abort();
        }
    }
}

/// Registers for SIGINT and SIGTERM now; resolves when one arrives.
#[cfg(unix)]
fn signal_received() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            // The handlers could not be installed; Ctrl-C is still worth waiting for.
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn signal_received() -> impl Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
