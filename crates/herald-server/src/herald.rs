//! [`Herald`]: the server as a part of your service, and its builder.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use axum::Router;
use herald_protocol::{Event, EventData, EventKind, Payload, Position, ProtocolError, Topic, close};
use tokio::{net::ToSocketAddrs, time::timeout};
use tracing::warn;

use crate::{
    Authenticator, MetricsSnapshot, ServerConfig, ServerError, ServerHandle, TlsFiles, app::App, app::NotPublished,
    auth::Auth, cluster::Cluster, durable::Durable, hub::Hub, hub::PublishId,
};

fn not_published(error: NotPublished) -> ServerError {
    match error {
        NotPublished::Unavailable(unavailable) => ServerError::Unavailable(unavailable.0),
        NotPublished::Conflict(conflict) => ServerError::Conflict { current: conflict.current },
    }
}

/// Herald inside your service: an axum [`Router`] to mount next to your own
/// routes, and the handle to publish in process, read metrics and shut down
/// with your app. Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::get};
/// use herald_server::Herald;
///
/// let herald = Herald::builder().secret("a long random secret").build().await?;
/// let app = Router::new()
///     .route("/api/health", get(|| async { "ok" }))
///     // Clients connect to ws://host/realtime/ws; backends POST /realtime/api/publish.
///     .nest("/realtime", herald.router());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let shutdown = herald.clone();
/// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         // Clients get 1001 and a spread reconnect hint.
///         shutdown.shutdown().await;
///     })
///     .await?;
/// # Ok(()) }
/// ```
///
/// Mounted this way, the limits of Herald's own listener (request head
/// timeout, connections in all, before authentication and per TCP peer) and
/// TLS ([`ServerConfig::tls`] is not used) are the host's to set; every other
/// limit holds. With
/// `into_make_service_with_connect_info::<SocketAddr>()` the limits per
/// client address apply too. [`HeraldBuilder::bind`] runs Herald on its own
/// listener instead, as `herald serve` does.
#[derive(Debug, Clone)]
pub struct Herald {
    pub(crate) app: Arc<App>,
}

/// The publisher [`Herald::publish_once`]'s keys are kept under: publish ids
/// are per publisher, so the process's keys stay apart from its clients'.
const IN_PROCESS: &str = "herald:in-process";

/// A publish [`Herald::publish_once`] took.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The event's position (the first copy's, for a duplicate).
    pub position: Position,
    /// The key was used before: this publish was not broadcast again.
    pub duplicate: bool,
}

impl Herald {
    /// A builder, with development mode off and the default configuration.
    pub fn builder() -> HeraldBuilder {
        HeraldBuilder::default()
    }

    /// Herald's routes (`/ws`, `/sse`, `/api/publish`, `/api/poll`,
    /// `/healthz`, `/metrics`; see the crate docs), with their state, for
    /// [`Router::nest`] or [`Router::merge`].
    pub fn router(&self) -> Router {
        crate::router::router(self.app.clone())
    }

    /// The current epoch (it changes when the history is lost, and on a node
    /// of a cluster when Redis restarts or loses its data). With a
    /// [data directory](ServerConfig::data_dir), the store's, once this
    /// process holds the store.
    pub fn epoch(&self) -> String {
        self.app.hub.epoch().to_string()
    }

    /// The counters and gauges also served on `/metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.app.hub.snapshot()
    }

    /// Publishes an event as a backend would (its `seq` is assigned here,
    /// or by Redis on a node of a cluster), into the namespace of its
    /// `data.tenant_id`: it reaches only that tenant's connections, or
    /// without one only connections without a tenant. Returns its position.
    /// A node of a cluster that cannot reach Redis returns
    /// [`ServerError::Unavailable`].
    pub async fn publish_event(&self, event: Event) -> Result<Position, ServerError> {
        self.numbered(event, None).await
    }

    /// [`publish_event`](Self::publish_event) at most once per `key`: a
    /// second publish with the same key (and tenant) within
    /// [`ServerConfig::dedup_window`] is not broadcast again, and answers
    /// with the first copy's position and `duplicate: true`. With durable
    /// history or a cluster, the key outlives a restart of this process.
    ///
    /// This is what a transactional outbox's relay needs: it publishes each
    /// row with the row's id as the key, then deletes the row; after a crash
    /// between the two, the row is published again and acked as a duplicate.
    ///
    /// ```no_run
    /// # async fn run(herald: herald_server::Herald, event: herald_protocol::Event) -> Result<(), herald_server::ServerError> {
    /// let published = herald.publish_once(event, "outbox-row-17").await?;
    /// if published.duplicate {
    ///     println!("already announced as {}", published.position);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn publish_once(&self, mut event: Event, key: &str) -> Result<Published, ServerError> {
        event.ephemeral = false;
        event.validate()?;
        let tenant = event.data.tenant_id.as_deref().map(Arc::from);
        let user = Arc::from(IN_PROCESS);
        let dedup = PublishId { tenant: &tenant, user: &user, id: key };
        let published = self.app.publish(event, Some(dedup), None).await.map_err(not_published)?;
        let position = published.position.expect("a numbered event has a position");
        Ok(Published { position, duplicate: published.duplicate })
    }

    /// [`publish_event`](Self::publish_event), accepted only while the
    /// topic is at `if_seq`: otherwise [`ServerError::Conflict`] with its
    /// current `seq`, and nothing is published. Checking and numbering are
    /// one step, on one node as in a cluster (inside Redis), so of two
    /// writers racing from the same `seq` one wins and the other learns it.
    ///
    /// ```no_run
    /// # async fn run(herald: herald_server::Herald, event: herald_protocol::Event) -> Result<(), herald_server::ServerError> {
    /// use herald_server::ServerError;
    /// match herald.publish_if_seq(event, 41).await {
    ///     Ok(position) => println!("saved as {position}"),
    ///     Err(ServerError::Conflict { current }) => println!("someone else wrote first; now at {current}"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn publish_if_seq(&self, event: Event, if_seq: u64) -> Result<Position, ServerError> {
        self.numbered(event, Some(if_seq)).await
    }

    /// Delivers an ephemeral event (a typing indicator, a cursor) to the
    /// subscribers of its topic of the moment: no `seq`, no history, no
    /// recovery. Subscribers see `ephemeral: true` on it.
    pub async fn publish_ephemeral(&self, mut event: Event) -> Result<(), ServerError> {
        event.ephemeral = true;
        event.seq = None;
        event.validate()?;
        self.app.publish(event, None, None).await.map(drop).map_err(not_published)
    }

    async fn numbered(&self, mut event: Event, if_seq: Option<u64>) -> Result<Position, ServerError> {
        event.ephemeral = false;
        event.validate()?;
        let published = self.app.publish(event, None, if_seq).await.map_err(not_published)?;
        Ok(published.position.expect("a numbered event has a position"))
    }

    /// Publishes `kind` on `topic` for `entity_id` with a JSON `payload`,
    /// stamped now, without a tenant (it reaches connections without one).
    /// Returns its position.
    pub async fn publish(
        &self,
        topic: &str,
        kind: &str,
        entity_id: &str,
        payload: &serde_json::Value,
    ) -> Result<Position, ServerError> {
        let topic = Topic::new(topic).map_err(ProtocolError::from)?;
        let payload = Payload::from_value(payload).map_err(|e| ProtocolError::Json(e.into()))?;
        let data = EventData {
            entity_id: entity_id.to_owned(),
            payload,
            user_id: None,
            tenant_id: None,
            timestamp: herald_protocol::now_timestamp(),
        };
        let event = Event {
            topic,
            event: EventKind::from(kind),
            data,
            trace_id: None,
            seq: None,
            wildcard_seq: None,
            ephemeral: false,
        };
        self.publish_event(event).await
    }

    /// Where `topic` stands (without a tenant): the position of its last
    /// event, in the current epoch; on a node of a cluster, as Redis
    /// numbers it. A backend reads it **before** the data it returns, and
    /// returns both: a client that subscribes from that position then gets
    /// every change made after the read, replayed if need be.
    ///
    /// ```no_run
    /// # async fn run(herald: herald_server::Herald) -> Result<(), herald_server::ServerError> {
    /// let position = herald.position("gift-list:family-123").await?; // first
    /// let gifts = vec!["..."]; // then the data, from your database
    /// let body = serde_json::json!({ "gifts": gifts, "position": position });
    /// # Ok(()) }
    /// ```
    pub async fn position(&self, topic: &str) -> Result<Position, ServerError> {
        self.position_in(None, topic).await
    }

    /// [`position`](Self::position) in `tenant`'s namespace.
    pub async fn position_in(&self, tenant: Option<&str>, topic: &str) -> Result<Position, ServerError> {
        let topic = Topic::new(topic).map_err(ProtocolError::from)?;
        if topic.is_wildcard() {
            let problem = format!("{topic} is a wildcard, which has no position; ask for one concrete topic");
            return Err(ProtocolError::Invalid { kind: "position", problem }.into());
        }
        let position = self.app.position(&tenant.map(Into::into), &topic).await;
        position.map_err(|unavailable| ServerError::Unavailable(unavailable.0))
    }

    /// Closes every connection with 1001 and a reconnect hint spread over
    /// [`ServerConfig::shutdown_spread`] (and every one that opens after),
    /// and waits, at most 10 s, for them to finish. With a
    /// [data directory](ServerConfig::data_dir), lets go of the store first
    /// (publishes from then on are refused), so that a replacement process
    /// takes it at once.
    pub async fn shutdown(&self) {
        self.app.hub.close(close::GOING_AWAY);
        if let Some(durable) = &self.app.durable {
            durable.close().await;
        }
        if timeout(Duration::from_secs(10), self.app.hub.all_gone()).await.is_err() {
            warn!("connections still open 10 s after shutdown began");
        }
        if let Some(cluster) = &self.app.cluster {
            cluster.bye().await;
        }
    }
}

/// Configures Herald; ends in [`build`](Self::build) (to mount it in your
/// app) or [`bind`](Self::bind) (to run it on its own listener).
///
/// ```no_run
/// # async fn run() -> Result<(), herald_server::ServerError> {
/// use std::time::Duration;
/// let server = herald_server::Herald::builder()
///     .secret("a long random secret")
///     .history(100, Duration::from_secs(60))
///     .bind("127.0.0.1:0")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct HeraldBuilder {
    config: ServerConfig,
    authenticator: Option<Arc<dyn Authenticator>>,
}

impl fmt::Debug for HeraldBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeraldBuilder")
            .field("config", &self.config)
            .field("authenticator", &self.authenticator.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl HeraldBuilder {
    /// Starts from `config`.
    pub fn new(config: ServerConfig) -> Self {
        Self { config, authenticator: None }
    }

    /// Development mode: any non-empty token is accepted as the user id.
    /// A shortcut for an authenticator.
    pub fn dev(mut self, dev: bool) -> Self {
        self.config.dev = dev;
        self
    }

    /// Secret of HS256 tokens: a shortcut for
    /// [`authenticator`](Self::authenticator)`(`[`Jwt::hs256`](crate::auth::Jwt::hs256)`(secret)?)`.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.config.secret = Some(secret.into());
        self
    }

    /// Who checks tokens and sessions, instead of the configuration's
    /// secret, public key or JWKS URL (which must then be unset): one of
    /// [`auth`](crate::auth)'s, or a closure. See [`Authenticator`].
    pub fn authenticator(mut self, authenticator: impl Authenticator + 'static) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Joins the cluster of the nodes sharing the Redis at `url` (e.g.
    /// `redis://127.0.0.1:6379`); see [`ServerConfig::redis`].
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.config.redis = Some(url.into());
        self
    }

    /// The CA that signed a `rediss://` Redis's certificate (PEM), instead of
    /// the system's roots; see [`ServerConfig::redis_ca`].
    pub fn redis_ca(mut self, pem: impl Into<PathBuf>) -> Self {
        self.config.redis_ca = Some(pem.into());
        self
    }

    /// Prefix of the cluster's Redis keys and channel; see [`ServerConfig::redis_prefix`].
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.redis_prefix = prefix.into();
        self
    }

    /// How long the other nodes of the cluster keep listing this node's
    /// presence members after they last heard from it; see
    /// [`ServerConfig::presence_ttl`].
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.config.presence_ttl = ttl;
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
    /// the new one. Unix only; for [`bind`](Self::bind).
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.config.reuse_port = reuse;
        self
    }

    /// Serves HTTPS and `wss://` with the PEM certificate chain at `cert`
    /// and its key at `key`, reloaded when they change; see
    /// [`ServerConfig::tls`]. For [`bind`](Self::bind): a mounted router
    /// leaves TLS to the host app.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.config.tls = Some(TlsFiles::new(cert, key));
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

    /// Checks the configuration and starts Herald's timers on the current
    /// tokio runtime. With [`redis`](Self::redis), joins the cluster first:
    /// an unreachable Redis is [`ServerError::Redis`].
    pub async fn build(self) -> Result<Herald, ServerError> {
        let config = self.config;
        let authenticator = match self.authenticator {
            Some(_) if config.has_auth() => {
                return Err(ServerError::Config(
                    "an authenticator is given, and also a secret, public key, JWKS URL or dev mode: keep one".into(),
                ));
            }
            Some(authenticator) => {
                config.check_limits()?;
                authenticator
            }
            None => config.check()?,
        };
        if config.dev {
            warn!(
                "DEVELOPMENT MODE: any non-empty token is accepted as the user id and may publish anywhere; never use --dev in production"
            );
        }
        let hub = Arc::new(Hub::new(&config));
        let cluster = match &config.redis {
            Some(url) => {
                let (cluster, bus) = Cluster::join(&config, url, hub.clone()).await?;
                Some((cluster.clone(), tokio::spawn(cluster.supervise(bus))))
            }
            None => None,
        };
        let durable = match &config.data_dir {
            Some(dir) => Some(Durable::open(&config, dir, &hub).await?),
            None => None,
        };
        let auth = Auth::new(authenticator, config.auth_timeout);
        Ok(Herald { app: Arc::new(App::new(config, auth, hub, cluster, durable)) })
    }

    /// [`build`](Self::build)s Herald and serves it on `addr`, with the
    /// listener's limits (see [`ServerConfig::header_timeout`] and the
    /// connection limits after it).
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<ServerHandle, ServerError> {
        ServerHandle::listen(self.build().await?, addr).await
    }
}
