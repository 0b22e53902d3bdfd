//! One client connection speaking protocol v1, whatever carries it: a
//! WebSocket (`ws.rs`), or a Server-Sent Events stream plus HTTP posts
//! (`stream.rs`, for networks that block WebSocket).
//!
//! The connection task owns its link and does everything for the
//! connection: it reads and answers client messages, writes the frames the
//! hub queued for it, and keeps the heartbeat, idle, token-expiry and
//! shutdown deadlines with a single timer. The hub never waits for a
//! connection: it `try_send`s into the bounded queue and asks the task to
//! close (4009) when the queue is full.

use std::{
    collections::VecDeque,
    future::{Future, poll_fn},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use herald_protocol::{
    Ack, ClientMessage, ErrorCode, ErrorMessage, Event, Presence, ProtocolError, Publish, ServerMessage, Subscribe,
    Topic, Unsubscribed, close, error_code,
};
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tracing::{debug, info};

use crate::{
    AuthError, Credentials,
    accept::Slot,
    app::{App, NotPublished, Published, Request},
    auth::Identity,
    extract::Remote,
    hub::{Conflict, Connection, Frame, subscribed_frame},
    metrics::{AuthFailure, Refusal, Transport},
    outbox::Queued,
    presence::Snapshot,
    quota::{OverQuota, Quota},
    rate::Bucket,
};

/// A message from the client, as far as the connection cares.
pub(crate) enum Inbound {
    Text(Frame),
    Binary,
    /// Transport-level traffic (WebSocket ping, pong, close): liveness only.
    Other,
}

/// The link is gone: the client went away or a write failed.
#[derive(Debug)]
pub(crate) struct Gone;

/// What carries a connection's messages.
///
/// Writing is polled, as a `Sink` is, rather than async: a write that
/// waits on the client then keeps its state in the link and the frames not
/// yet taken, not in a future that every idle connection's task would hold
/// room for.
pub(crate) trait Link: Send {
    /// What it is, for the metrics.
    const TRANSPORT: Transport;
    /// The next message from the client; `None` when it is gone.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Inbound, Ending>>> + Send;
    /// Ready when the link can take a frame.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>>;
    /// Queues a frame for the client without flushing; after `poll_ready`.
    fn start_send(&mut self, frame: Frame) -> Result<(), Gone>;
    /// Writes what was queued.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>>;
    /// Ends the link with `ending`'s code and reason (or none).
    fn close(&mut self, ending: Ending) -> impl Future<Output = ()> + Send;
}

/// Writes `frames` to `link`, taking them from the front, with one flush.
fn poll_write<L: Link>(link: &mut L, cx: &mut Context<'_>, frames: &mut VecDeque<Queued>) -> Poll<Result<(), Gone>> {
    while !frames.is_empty() {
        ready!(link.poll_ready(cx))?;
        if let Some(queued) = frames.pop_front() {
            link.start_send(queued.frame)?;
        }
    }
    link.poll_flush(cx)
}

/// Writes one frame and flushes.
async fn write_one<L: Link>(link: &mut L, frame: Frame) -> Result<(), Gone> {
    poll_fn(|cx| link.poll_ready(cx)).await?;
    link.start_send(frame)?;
    poll_fn(|cx| link.poll_flush(cx)).await
}

/// Why and how a connection ends.
pub(crate) struct Ending {
    /// `None` drops the link without a close frame.
    pub(crate) code: Option<u16>,
    pub(crate) reason: String,
}

impl Ending {
    pub(crate) fn close(code: u16, reason: impl Into<String>) -> Self {
        Self { code: Some(code), reason: reason.into() }
    }

    pub(crate) fn silent() -> Self {
        Self { code: None, reason: String::new() }
    }
}

/// Runs a connection to its end: checks the origin and the token, then
/// serves until the client leaves or the connection must close.
/// `headers` are the opening request's, for the authenticator.
/// `remote` stays held while the connection lives: on Herald's own listener
/// it holds the connection's place within the connection limits.
///
/// An idle connection is this future waiting in [`Conn::serve`], stored in
/// its task: what it holds across that wait is what every idle connection
/// costs. So the opening, the closing and the handling of a client message
/// are boxed, their futures taking memory only while they run, and this is
/// not an `async fn`, whose arguments would stay in the future for its
/// whole life, moved out or not.
pub(crate) fn run<L: Link>(
    link: L,
    app: Arc<App>,
    token: Option<String>,
    headers: HeaderMap,
    origin_ok: bool,
    remote: Remote,
) -> impl Future<Output = ()> + Send {
    let opening = Box::pin(open(link, app, token, headers, origin_ok, remote));
    async move {
        let Some(mut conn) = opening.await else { return };
        let ending = conn.serve().await;
        Box::pin(conn.end(ending)).await;
    }
}

/// Checks the origin and the token and registers the connection with the
/// hub; `None` when it was refused (and closed).
async fn open<L: Link>(
    mut link: L,
    app: Arc<App>,
    token: Option<String>,
    headers: HeaderMap,
    origin_ok: bool,
    remote: Remote,
) -> Option<Conn<L>> {
    let metrics = &app.hub.metrics;
    if !origin_ok {
        metrics.auth_failed(AuthFailure::Origin);
        info!("connection refused: origin not allowed");
        close_link(link, &app, Ending::close(close::FORBIDDEN, "origin not allowed")).await;
        return None;
    }
    let identity = match authenticate(&mut link, &app, token, &headers).await {
        Ok(identity) => identity,
        Err((failure, ending)) => {
            metrics.auth_failed(failure);
            debug!(reason = %ending.reason, "connection refused");
            close_link(link, &app, ending).await;
            return None;
        }
    };
    remote.authenticated();
    let quota = match app.quota(&identity, remote.ip) {
        Ok(quota) => quota,
        Err(OverQuota { message, .. }) => {
            debug!(%message, "connection refused");
            close_link(link, &app, Ending::close(close::RATE_LIMITED, message)).await;
            return None;
        }
    };
    let queue = app.config.outbound_queue;
    let connection = app.hub.connect(identity.user.clone(), identity.tenant.clone(), queue, L::TRANSPORT);
    debug!(connection = connection.peer.id, user = %identity.user, "connected");
    let now = Instant::now();
    let conn = Conn {
        expires_at: identity.deadline(now),
        identity,
        headers: PackedHeaders::new(&headers),
        link,
        connection,
        _quota: quota,
        bucket: Bucket::new(app.config.inbound_rate(), now),
        last_inbound: now,
        next_ping: now + app.config.ping_interval,
        app,
        _slot: remote.into_slot(),
        publishes: None,
    };
    Some(conn)
}

/// Ends the link with `ending`, counted by its close code (1006 without one).
async fn close_link<L: Link>(mut link: L, app: &App, ending: Ending) {
    app.hub.metrics.closed(ending.code.unwrap_or(close::ABNORMAL));
    link.close(ending).await;
}

/// Why it was refused, for the metrics, and how the connection ends.
type Refused = (AuthFailure, Ending);

/// The identity from `?token=` (or the request's headers, as the
/// authenticator reads them), or else from a first `auth` message within
/// the deadline.
async fn authenticate<L: Link>(
    link: &mut L,
    app: &App,
    token: Option<String>,
    headers: &HeaderMap,
) -> Result<Identity, Refused> {
    let refuse = |error: AuthError| (AuthFailure::from(&error), Ending::close(close::UNAUTHORIZED, error.to_string()));
    match app.auth.check(Credentials::new(token.as_deref(), headers)).await {
        // Without a token in the URL the client may send one in an `auth` message.
        Err(AuthError::Missing) if token.is_none() => {}
        result => return result.map_err(refuse),
    }
    let deadline = Instant::now() + app.config.auth_timeout;
    loop {
        let message = match timeout(deadline - Instant::now(), link.recv()).await {
            Err(_) => {
                let reason = "no auth message in time; send {\"type\":\"auth\",\"token\":..} first or use ?token=";
                return Err((AuthFailure::Missing, Ending::close(close::UNAUTHORIZED, reason)));
            }
            Ok(None) => return Err((AuthFailure::Missing, Ending::silent())),
            Ok(Some(Err(ending))) => return Err((AuthFailure::Missing, ending)),
            Ok(Some(Ok(message))) => message,
        };
        let Inbound::Text(text) = message else { continue };
        match ClientMessage::decode(text.as_str()) {
            Ok(ClientMessage::Auth { token }) => {
                return app.auth.check(Credentials::new(Some(&token.0), headers)).await.map_err(refuse);
            }
            // Liveness checks may come before authentication.
            Ok(ClientMessage::Ping) => {
                let gone = |_| (AuthFailure::Missing, Ending::silent());
                write_one(link, ServerMessage::Pong.encode().into()).await.map_err(gone)?;
            }
            _ => {
                let reason = "not authenticated; send {\"type\":\"auth\",\"token\":..} first or use ?token=";
                return Err((AuthFailure::Missing, Ending::close(close::UNAUTHORIZED, reason)));
            }
        }
    }
}

/// Close reasons are at most 123 bytes.
pub(crate) fn truncate_reason(mut reason: String) -> String {
    if reason.len() > 123 {
        let mut cut = 123;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

struct Conn<L> {
    link: L,
    app: Arc<App>,
    identity: Identity,
    /// The opening request's, for the authenticator on `refresh`.
    headers: PackedHeaders,
    connection: Connection,
    /// The connection's place within the user's and the address's quotas.
    _quota: Quota,
    /// Its place within the listener's connection limits.
    _slot: Option<Arc<Slot>>,
    bucket: Bucket,
    last_inbound: Instant,
    next_ping: Instant,
    expires_at: Option<Instant>,
    /// Made at the first publish, so that a connection that only listens
    /// carries none of it.
    publishes: Option<Box<Publishes>>,
}

type Step = Result<(), Ending>;

/// Publishes a connection holds at most while they wait for Redis or the
/// store; past it, it reads nothing more until some are answered.
const MAX_PUBLISHES: usize = 64;

/// A connection's publishes: those waiting their turn, in the order they
/// came, and the batch on its way. The connection reads on meanwhile, and
/// sends the next batch (all that came) once this one is answered: one
/// round trip per batch, not per publish, while the order stays the one
/// they came in (batches one at a time, each in order).
#[derive(Default)]
struct Publishes {
    waiting: Vec<Request>,
    sending: Option<Sending>,
}

type Sending = Pin<Box<dyn Future<Output = (Vec<Named>, Vec<Result<Published, NotPublished>>)> + Send>>;

/// What a publish's answer names.
struct Named {
    id: String,
    topic: Topic,
    if_seq: Option<u64>,
}

/// Request headers packed into one allocation, for a connection to keep:
/// a [`HeaderMap`] holds its own tables and, through its values, the whole
/// buffer hyper read the request into (8 KiB), which an idle connection
/// would keep for nothing. The WebSocket handshake's own headers are left
/// out: they say nothing about the client.
struct PackedHeaders(Box<[u8]>);

/// Headers of the handshake itself, not kept.
const HANDSHAKE: [HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

impl PackedHeaders {
    /// `name:value\n` per header, in order. Names hold no `:`, and neither
    /// holds a newline (hyper and `HeaderValue` refuse them).
    fn new(headers: &HeaderMap) -> Self {
        let kept = || headers.iter().filter(|(name, _)| !HANDSHAKE.contains(name));
        let mut packed = Vec::with_capacity(kept().map(|(name, value)| name.as_str().len() + value.len() + 2).sum());
        for (name, value) in kept() {
            packed.extend_from_slice(name.as_str().as_bytes());
            packed.push(b':');
            packed.extend_from_slice(value.as_bytes());
            packed.push(b'\n');
        }
        Self(packed.into_boxed_slice())
    }

    fn unpack(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in self.0.split(|&byte| byte == b'\n') {
            let Some(colon) = line.iter().position(|&byte| byte == b':') else { continue };
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
            else {
                continue;
            };
            headers.append(name, value);
        }
        headers
    }
}

impl<L: Link> Conn<L> {
    /// Unsubscribes, then closes the link with `ending`; the connection's
    /// places within the limits are given back last.
    async fn end(self, ending: Ending) {
        debug!(connection = self.connection.peer.id, code = ?ending.code, reason = %ending.reason, "disconnected");
        let Self { link, connection, app, _quota, _slot, .. } = self;
        // Unsubscribed before the close handshake, which may wait on the client.
        drop(connection);
        close_link(link, &app, ending).await;
    }

    /// Sends `connected`, then serves until the connection must end.
    async fn serve(&mut self) -> Ending {
        // Here, not in `run`: there the result would stay in the future
        // beside this one's wait.
        if let Err(ending) = Box::pin(self.send_connected()).await {
            return ending;
        }
        let timer = sleep_until(self.next_deadline());
        tokio::pin!(timer);
        // One kill future for the connection's life: a fresh one per loop
        // turn registered and removed a waiter for every frame written.
        let killed = self.connection.peer.wait_killed();
        tokio::pin!(killed);
        let mut batch = VecDeque::new();
        loop {
            // In a block: the task would keep a deadline that outlives it.
            {
                let deadline = self.next_deadline();
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
            }
            let step = tokio::select! {
                () = &mut killed => Err(self.kill_ending()),
                inbound = self.link.recv(), if self.publishes.as_ref().is_none_or(|p| p.waiting.len() < MAX_PUBLISHES) => match inbound {
                    None => Err(Ending::silent()),
                    Some(Err(ending)) => Err(ending),
                    // Boxed, as is the timer's work: their futures are
                    // larger than everything else here together (a publish
                    // waits on the store), and an idle connection would
                    // carry them in its task.
                    Some(Ok(message)) => Box::pin(self.on_message(message)).await,
                },
                () = self.connection.peer.outbox.take_all(&mut batch) => self.write_batch(&mut batch, timer.as_mut(), killed.as_mut()).await,
                () = &mut timer => Box::pin(self.on_timer()).await,
                (sent, answers) = answered(&mut self.publishes) => Box::pin(self.on_answered(sent, answers)).await,
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let idle = self.last_inbound + self.app.config.idle_timeout;
        let next = self.next_ping.min(idle);
        self.expires_at.map_or(next, |at| next.min(at))
    }

    fn kill_ending(&self) -> Ending {
        match self.connection.peer.killed() {
            close::GOING_AWAY => {
                let spread = self.app.config.shutdown_spread.as_millis() as u64;
                let delay = if spread == 0 { 0 } else { fastrand::u64(..spread) };
                Ending::close(close::GOING_AWAY, close::with_retry_after("server restart", delay))
            }
            close::TOO_SLOW => {
                Ending::close(close::TOO_SLOW, "too slow: the outbound queue is full; reconnect and recover")
            }
            close::ABNORMAL => Ending::silent(),
            code => Ending::close(code, "closed by the server"),
        }
    }

    async fn on_timer(&mut self) -> Step {
        let now = Instant::now();
        if now >= self.last_inbound + self.app.config.idle_timeout {
            // Not 1001: that says "restart, reconnect at once", and connections
            // that fell silent together (a stalled network) would all come back at once.
            // 1000 sends a live client through its jittered backoff.
            let idle = self.app.config.idle_timeout;
            return Err(Ending::close(close::NORMAL, format!("idle: no message for {idle:?}; answer pings")));
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(Ending::close(close::UNAUTHORIZED, "token expired; send refresh before expires_in"));
        }
        if now >= self.next_ping {
            self.next_ping = now + self.app.config.ping_interval;
            self.send(ServerMessage::Ping.encode().into()).await?;
        }
        Ok(())
    }

    /// Writes `batch` with one flush, leaving it empty, then the presence
    /// that did not fit the outbox. A kill (the outbox overflowed while a
    /// write waited on the client) ends the write at once. The write's
    /// deadline is kept on the connection's `timer` (which `serve` sets
    /// back), not on a timer of its own that every idle task would hold
    /// room for, and only once the socket makes the write wait: setting a
    /// timer earlier takes the runtime's timer lock, which a write per
    /// event at 10,000 subscribers would contend on.
    async fn write_batch(
        &mut self,
        batch: &mut VecDeque<Queued>,
        mut timer: Pin<&mut Sleep>,
        mut killed: Pin<&mut impl Future<Output = ()>>,
    ) -> Step {
        // Frames are moved into the socket, not cloned: every subscriber's
        // copy shares one reference count, which a clone and a drop per
        // frame would make every writer contend on. The fan-out timers
        // (few: events are sampled) are kept until the flush.
        let timers: Vec<_> = batch.iter_mut().filter_map(Queued::take_timer).collect();
        let mut after = Some(self.app.config.write_timeout);
        let link = &mut self.link;
        // The write first: a kill or the deadline ends only a write that waits.
        let written = poll_fn(|cx| {
            if let Poll::Ready(result) = poll_write(link, cx, batch) {
                return Poll::Ready(Written::Done(result));
            }
            if killed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Written::Killed);
            }
            if let Some(after) = after.take() {
                timer.as_mut().reset(Instant::now() + after);
            }
            timer.as_mut().poll(cx).map(|()| Written::Late)
        })
        .await;
        drop(timers);
        match written {
            Written::Done(Ok(())) => {}
            Written::Done(Err(Gone)) => return Err(Ending::silent()),
            Written::Late => {
                self.connection.peer.kill(close::TOO_SLOW);
                return Err(self.kill_ending());
            }
            Written::Killed => return Err(self.kill_ending()),
        }
        let stale = self.connection.peer.take_stale_presence();
        if stale.is_empty() {
            return Ok(());
        }
        // Boxed: rare, and a message being sent is larger than the rest of
        // the write, which every connection's task holds room for.
        Box::pin(self.send_presence(stale)).await
    }

    /// Sends the presence of `topics` whole.
    async fn send_presence(&mut self, topics: Vec<Topic>) -> Step {
        for topic in topics {
            if let Some(Snapshot { members, meta }) = self.app.hub.presence_of(&self.connection.peer, &topic) {
                self.send_message(ServerMessage::Presence(Presence { topic, members, meta })).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, frame: Frame) -> Step {
        self.app.hub.metrics.messages_out.inc();
        match timeout(self.app.config.write_timeout, write_one(&mut self.link, frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::silent()),
            Err(_) => Err(Ending::close(close::TOO_SLOW, "too slow: a write did not complete in time")),
        }
    }

    async fn send_message(&mut self, message: ServerMessage) -> Step {
        self.send(message.encode().into()).await
    }

    async fn send_error(&mut self, code: u32, message: String, id: Option<String>, topic: Option<String>) -> Step {
        let error = ErrorMessage { code: ErrorCode::Number(code), message, id, topic, seq: None };
        self.send_message(ServerMessage::Error(error)).await
    }

    async fn send_connected(&mut self) -> Step {
        let connected = self.app.connected(&self.identity, &self.app.hub.epoch());
        self.send_message(ServerMessage::Connected(connected)).await
    }

    async fn on_message(&mut self, message: Inbound) -> Step {
        let now = Instant::now();
        self.last_inbound = now;
        let text = match message {
            Inbound::Text(text) => text,
            Inbound::Binary => {
                if !self.check_rate(now).await? {
                    return Ok(());
                }
                let problem = "binary frames are not supported; send JSON text frames".to_owned();
                return self.send_error(error_code::BAD_REQUEST, problem, None, None).await;
            }
            // WebSocket pings are answered by the library; a close is answered
            // by it too, after which `recv` ends the loop.
            Inbound::Other => return Ok(()),
        };
        if !self.check_rate(now).await? {
            return Ok(());
        }
        self.app.hub.metrics.messages_in.inc();
        match ClientMessage::decode(text.as_str()) {
            Ok(message) => self.on_client_message(message).await,
            Err(error) => {
                let code = match error {
                    ProtocolError::TooLarge { .. } => error_code::TOO_LARGE,
                    _ => error_code::BAD_REQUEST,
                };
                let topic = match &error {
                    ProtocolError::Topic(e) => Some(e.topic.clone()),
                    _ => bad_topic(text.as_str()),
                };
                self.send_error(code, error.to_string(), publish_id(text.as_str()), topic).await
            }
        }
    }

    /// Spends a token; a client out of tokens gets error 429, and after
    /// `rate_limit_strikes` of those in a row is closed with 4008.
    /// `Ok(false)`: drop this message.
    async fn check_rate(&mut self, now: Instant) -> Result<bool, Ending> {
        if self.bucket.take(self.app.config.inbound_rate(), now) {
            return Ok(true);
        }
        self.app.hub.metrics.refused(Refusal::MessageRate);
        if self.bucket.strikes > self.app.config.rate_limit_strikes {
            return Err(Ending::close(close::RATE_LIMITED, "rate limited: too many messages; back off"));
        }
        let message = format!("rate limited: over {} messages/s; slow down", self.app.config.rate_limit_per_sec);
        self.send_error(error_code::RATE_LIMITED, message, None, None).await?;
        Ok(false)
    }

    async fn on_client_message(&mut self, message: ClientMessage) -> Step {
        match message {
            ClientMessage::Subscribe(subscribe) => self.on_subscribe(subscribe).await,
            ClientMessage::Unsubscribe { topics } => {
                for topic in &topics {
                    self.connection.unsubscribe(topic);
                }
                self.send_message(ServerMessage::Unsubscribed(Unsubscribed { topics })).await
            }
            ClientMessage::Ping => self.send_message(ServerMessage::Pong).await,
            ClientMessage::Pong => Ok(()),
            ClientMessage::Auth { token } | ClientMessage::Refresh { token } => self.on_refresh(&token.0).await,
            ClientMessage::Publish(publish) => self.on_publish(publish).await,
            ClientMessage::SetPresence { topic, meta } => {
                if self.connection.set_presence_meta(&topic, &meta) {
                    return Ok(());
                }
                let message = format!(
                    "not listed in the presence of {topic}: subscribe to it with presence first (and its presence must not be full)"
                );
                self.send_error(error_code::BAD_REQUEST, message, None, Some(topic.into_string())).await
            }
            other => {
                let problem = format!("message {other:?} is not handled by this server");
                self.send_error(error_code::BAD_REQUEST, problem, None, None).await
            }
        }
    }

    async fn on_refresh(&mut self, token: &str) -> Step {
        let headers = self.headers.unpack();
        let identity = self.app.auth.check(Credentials::new(Some(token), &headers)).await.map_err(|error| {
            self.app.hub.metrics.auth_failed(AuthFailure::from(&error));
            Ending::close(close::UNAUTHORIZED, format!("refresh refused: {error}"))
        })?;
        if identity.user != self.identity.user || identity.tenant != self.identity.tenant {
            self.app.hub.metrics.auth_failed(AuthFailure::OtherUser);
            return Err(Ending::close(close::UNAUTHORIZED, "refresh token is for another user or tenant"));
        }
        self.expires_at = identity.deadline(Instant::now());
        self.identity = identity;
        // A new `connected` tells the client the new `expires_in`.
        self.send_connected().await?;
        // A token may allow fewer topics than the one it replaces.
        let refused: Vec<Topic> =
            self.connection.topics().iter().filter(|t| !self.identity.may_subscribe(t.as_str())).cloned().collect();
        for topic in refused {
            self.connection.unsubscribe(&topic);
            let message = format!("the refreshed token no longer allows subscribing to {topic}");
            self.send_error(error_code::FORBIDDEN, message, None, Some(topic.into_string())).await?;
        }
        Ok(())
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) -> Step {
        let Subscribe { topics, since, epoch, presence, meta } = subscribe;
        let epoch_ok = epoch.as_deref() == Some(&*self.app.hub.epoch());
        let (mut plain, mut recovered, mut lost) = (Group::default(), Group::default(), Group::default());
        let mut replay = Vec::new();
        let mut snapshots = Vec::new();
        let mut refused = Vec::new();
        let mut unlisted = Vec::new();
        let cap = self.app.config.max_subscriptions;
        // What a node of a cluster reads from Redis before it registers a
        // topic, for every topic at once: one round trip, not one per topic
        // (the connection to Redis pipelines concurrent commands).
        let (app, identity, since) = (&self.app, &self.identity, &since);
        let reads = topics.iter().map(|topic| async move {
            let since = since.get(topic.as_str()).copied().filter(|_| epoch_ok);
            match topic.is_wildcard() {
                _ if !identity.may_subscribe(topic.as_str()) => (None, None),
                true => (None, app.missed_wildcard(&identity.tenant, topic, since).await),
                false => (app.missed(&identity.tenant, topic, since).await, None),
            }
        });
        let fetched = futures_util::future::join_all(reads).await;
        for (topic, (fetched, fetched_wildcard)) in topics.into_iter().zip(fetched) {
            if !self.identity.may_subscribe(topic.as_str()) {
                let message = format!("the token does not allow subscribing to {topic}");
                refused.push((error_code::FORBIDDEN, message, topic));
                continue;
            }
            if self.connection.topics().len() >= cap && !self.connection.holds(&topic) {
                let message = format!(
                    "subscription limit reached: a connection holds at most {cap} topics (wildcards included); unsubscribe from some first"
                );
                refused.push((error_code::RATE_LIMITED, message, topic));
                continue;
            }
            let position = since.get(topic.as_str()).copied();
            let from = position.filter(|_| epoch_ok);
            let joined = if topic.is_wildcard() {
                self.connection.subscribe_wildcard(&topic, from, fetched_wildcard)
            } else {
                self.connection.subscribe(&topic, presence, meta.as_ref(), from, fetched)
            };
            if let Some(Snapshot { members, meta }) = joined.members {
                snapshots.push(ServerMessage::Presence(Presence { topic: topic.clone(), members, meta }));
            }
            if joined.unlisted {
                let max = self.app.config.max_presence_members;
                unlisted.push(format!(
                    "the presence of {topic} lists at most {max} users: this connection receives it but is not listed"
                ));
            }
            let group = match (position, joined.recovered) {
                (None, _) => &mut plain,
                (Some(_), Some(true)) => {
                    replay.extend(joined.replay);
                    &mut recovered
                }
                (Some(_), _) => &mut lost,
            };
            group.last_seq.extend(joined.last_seq.map(|seq| (topic.clone(), seq)));
            group.topics.push(topic);
        }
        for (code, message, topic) in refused {
            self.send_error(code, message, None, Some(topic.into_string())).await?;
        }
        for frame in replay {
            self.send(frame).await?;
        }
        for (group, flag) in [(recovered, Some(true)), (lost, Some(false)), (plain, None)] {
            if !group.topics.is_empty() {
                self.send(subscribed_frame(group.topics, flag, group.last_seq)).await?;
            }
        }
        for snapshot in snapshots {
            self.send_message(snapshot).await?;
        }
        // No `topic`: the subscription itself stands.
        for message in unlisted {
            self.send_error(error_code::RATE_LIMITED, message, None, None).await?;
        }
        Ok(())
    }

    async fn on_publish(&mut self, publish: Publish) -> Step {
        let Publish { id, topic, event, mut data, trace_id, ephemeral, if_seq } = publish;
        if !self.identity.may_publish(topic.as_str()) {
            let message = format!("the token does not allow publishing to {topic}");
            return self.send_error(error_code::FORBIDDEN, message, Some(id), Some(topic.into_string())).await;
        }
        // The token, not the client, says who (unless it publishes on behalf
        // of users, see `Claims::on_behalf`). A tenant-bound token publishes
        // into its tenant; a token without one (a service) into the tenant
        // the event names, as over HTTP.
        data.user_id = Some(self.identity.publisher(data.user_id.take()));
        if let Some(tenant) = &self.identity.tenant {
            data.tenant_id = Some(tenant.to_string());
        }
        let event = Event { topic, event, data, trace_id, seq: None, wildcard_seq: None, ephemeral };
        if let Err(error) = event.validate() {
            let topic = Some(event.topic.into_string());
            return self.send_error(error_code::BAD_REQUEST, error.to_string(), Some(id), topic).await;
        }
        let publishes = self.publishes.get_or_insert_default();
        publishes.waiting.push(Request { event, id, if_seq });
        if publishes.sending.is_none() {
            self.send_publishes();
        }
        Ok(())
    }

    /// Sends the waiting publishes, as one batch.
    fn send_publishes(&mut self) {
        let Some(publishes) = self.publishes.as_mut() else { return };
        if publishes.waiting.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut publishes.waiting);
        // What each answer names, kept beside the batch the app takes.
        let named = batch
            .iter()
            .map(|request| Named { id: request.id.clone(), topic: request.event.topic.clone(), if_seq: request.if_seq })
            .collect();
        let (app, tenant, user) = (self.app.clone(), self.identity.tenant.clone(), self.identity.user.clone());
        publishes.sending = Some(Box::pin(async move {
            let answers = app.publish_batch(&tenant, &user, batch).await;
            (named, answers)
        }));
    }

    /// Answers a batch, each publish with its ack or why it failed, in
    /// order; then sends the publishes that came meanwhile.
    async fn on_answered(&mut self, sent: Vec<Named>, answers: Vec<Result<Published, NotPublished>>) -> Step {
        for (Named { id, topic, if_seq }, answer) in sent.into_iter().zip(answers) {
            match answer {
                Ok(Published { position, duplicate }) => {
                    let (epoch, seq) = position.map(|p| (p.epoch, p.seq)).unzip();
                    self.send_message(ServerMessage::Ack(Ack { id, seq, epoch, duplicate })).await?;
                }
                Err(NotPublished::Conflict(Conflict { current })) => {
                    let message = format!(
                        "conflict: {topic} is at seq {current}, not {}; apply the newer events, then publish again with if_seq {current}",
                        if_seq.unwrap_or_default()
                    );
                    let code = ErrorCode::Number(error_code::CONFLICT);
                    let topic = Some(topic.into_string());
                    let error = ErrorMessage { code, message, id: Some(id), topic, seq: Some(current) };
                    self.send_message(ServerMessage::Error(error)).await?;
                }
                Err(NotPublished::Unavailable(unavailable)) => {
                    self.send_error(error_code::INTERNAL, unavailable.0, Some(id), None).await?;
                }
            }
        }
        self.send_publishes();
        Ok(())
    }
}

/// The answers of the batch on its way, once they come; never while none is.
async fn answered(publishes: &mut Option<Box<Publishes>>) -> (Vec<Named>, Vec<Result<Published, NotPublished>>) {
    let Some(sending) = publishes.as_mut().and_then(|publishes| publishes.sending.as_mut()) else {
        return std::future::pending().await;
    };
    let answered = sending.await;
    if let Some(publishes) = publishes.as_mut() {
        publishes.sending = None;
    }
    answered
}

/// How a batch's write ended.
enum Written {
    Done(Result<(), Gone>),
    /// Not within the write timeout.
    Late,
    /// The connection was told to close meanwhile.
    Killed,
}

#[derive(Default)]
struct Group {
    topics: Vec<Topic>,
    last_seq: Vec<(Topic, u64)>,
}

/// The `id` of a publish that failed to decode, so the error can name it.
fn publish_id(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<String>,
        id: Option<String>,
    }
    let probe: Probe = serde_json::from_str(text).ok()?;
    if probe.kind.as_deref() == Some("publish") { probe.id } else { None }
}

/// The first invalid topic of a message that failed to decode, so the error
/// can name it (serde reports it only inside its message).
fn bad_topic(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        topics: Vec<serde_json::Value>,
        #[serde(default)]
        topic: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_str(text).ok()?;
    probe
        .topics
        .iter()
        .chain(probe.topic.as_ref())
        .filter_map(serde_json::Value::as_str)
        .find_map(|t| Topic::new(t).err().map(|e| e.topic))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::PackedHeaders;

    #[test]
    fn packed_headers_come_back_as_they_were_less_the_handshake() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        headers.append(header::COOKIE, HeaderValue::from_static("session=a; theme=dark"));
        headers.append(header::COOKIE, HeaderValue::from_static("other=b:c"));
        headers.insert("x-latin-1", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(""));
        let mut request = headers.clone();
        request.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        request.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        request.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        request.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));

        let unpacked = PackedHeaders::new(&request).unpack();

        assert_eq!(unpacked, headers);
        let cookies: Vec<_> = unpacked.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["session=a; theme=dark", "other=b:c"], "repeated headers keep their order");
    }
}
