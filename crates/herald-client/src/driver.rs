//! The background task: owns the session and the socket, and carries out
//! the session's outputs. All connection rules live in `herald-core`; this
//! file only moves bytes, time and calls between it and tokio.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{FutureExt, SinkExt, StreamExt, stream::FuturesUnordered};
use herald_core::{
    ConnectionId, Instant, Output, PublishId, PublishOptions, Router, SLEEP_THRESHOLD, Session, SessionEvent, Status,
    SubscribeOptions, TokenReason,
};
use herald_protocol::{Event, EventData, EventKind, Payload, Topic, limits::MAX_FRAME_BYTES};
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot, watch},
};
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, connect_async_tls_with_config,
    tungstenite::{
        Message,
        protocol::{CloseFrame, WebSocketConfig},
    },
};
use tracing::{debug, warn};

use crate::{Ack, Error, EventSpan, Result, Update, outlet::Outlet, subscription::Ready};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = (ConnectionId, Result<Box<Ws>, String>)> + Send>>;
/// A subscriber's topic and id, once its `Subscription` is dropped.
type Dropped = Pin<Box<dyn Future<Output = (Topic, u64)> + Send>>;
pub(crate) type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
pub(crate) type TokenProvider = Arc<dyn Fn(TokenReason) -> TokenFuture + Send + Sync>;
pub(crate) type Callback<T> = Arc<dyn Fn(&T) + Send + Sync>;

/// A handle's request to the driver.
pub(crate) enum Command {
    Subscribe {
        topic: Topic,
        options: SubscribeOptions,
        id: u64,
        tx: mpsc::Sender<Update>,
        reply: oneshot::Sender<Result<Ready>>,
    },
    Publish {
        topic: Topic,
        event: EventKind,
        data: EventData,
        options: PublishOptions,
        reply: oneshot::Sender<Result<Ack>>,
    },
    SetPresence {
        topic: String,
        meta: Payload,
        reply: oneshot::Sender<Result<()>>,
    },
    Events {
        tx: mpsc::Sender<SessionEvent>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subscribe { topic, .. } => write!(f, "Subscribe({topic})"),
            Self::Publish { topic, .. } => write!(f, "Publish({topic})"),
            Self::SetPresence { topic, .. } => write!(f, "SetPresence({topic})"),
            Self::Events { .. } => f.write_str("Events"),
            Self::Close { .. } => f.write_str("Close"),
        }
    }
}

/// The application's callbacks, called on the driver task: they must not block.
#[derive(Default, Clone)]
pub(crate) struct Callbacks {
    pub(crate) on_event: Option<Callback<Event>>,
    pub(crate) on_status: Option<Callback<Status>>,
    pub(crate) on_raw: Option<Callback<str>>,
}

pub(crate) struct Driver {
    pub(crate) session: Session,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) token: Option<TokenProvider>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) callbacks: Callbacks,
    socket: Option<(ConnectionId, Box<Ws>)>,
    connecting: Option<Connecting>,
    token_request: Option<TokenFuture>,
    subscribers: Router<Subscriber>,
    events: Vec<Outlet<SessionEvent>>,
    publishes: HashMap<PublishId, oneshot::Sender<Result<Ack>>>,
    closing: Vec<oneshot::Sender<()>>,
    /// Resolves with a subscriber's topic and id when its `Subscription` is dropped.
    dropped: FuturesUnordered<Dropped>,
    /// Some reader fell behind and waits for its resyncs (retried every 20 ms).
    lagging: bool,
}

enum Wake {
    Command(Option<Command>),
    Dropped(Topic, u64),
    Token(Result<String, String>),
    Opened(ConnectionId, Result<Box<Ws>, String>),
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Timer,
    Flush,
    SleepCheck,
}

/// Frames handled in one go when the socket has them ready.
const FRAME_BATCH: usize = 64;

/// How often the driver looks for a sleep the session cannot see: `Instant`
/// stops while Linux and macOS are suspended, so after a long sleep the
/// session's timers do not fire late (they fire as if no time had passed).
const SLEEP_CHECK: Duration = Duration::from_secs(2);

/// Notices the machine slept by the wall clock running ahead of `Instant`.
#[derive(Debug)]
struct SleepWatch {
    instant: Instant,
    wall: SystemTime,
}

impl SleepWatch {
    fn new(instant: Instant, wall: SystemTime) -> Self {
        Self { instant, wall }
    }

    /// Whether, since the last check, the wall clock moved at least
    /// [`SLEEP_THRESHOLD`] further than `Instant`. A wall clock set back is
    /// no sleep; one set forward by hand looks like one, which only costs a
    /// ping.
    fn slept(&mut self, instant: Instant, wall: SystemTime) -> bool {
        let monotonic = instant.saturating_duration_since(self.instant);
        let elapsed = wall.duration_since(self.wall).unwrap_or_default();
        *self = Self::new(instant, wall);
        elapsed.saturating_sub(monotonic) >= SLEEP_THRESHOLD
    }
}

fn now() -> Instant {
    Instant::now()
}

impl Driver {
    pub(crate) fn new(
        session: Session,
        commands: mpsc::Receiver<Command>,
        token: Option<TokenProvider>,
        tls: Option<Arc<rustls::ClientConfig>>,
        status: watch::Sender<Status>,
        callbacks: Callbacks,
    ) -> Self {
        Self {
            session,
            commands,
            token,
            tls,
            status,
            callbacks,
            socket: None,
            connecting: None,
            token_request: None,
            subscribers: Router::default(),
            events: Vec::new(),
            publishes: HashMap::new(),
            closing: Vec::new(),
            dropped: FuturesUnordered::new(),
            lagging: false,
        }
    }

    pub(crate) async fn run(mut self) {
        self.session.handle_timeout(now());
        // One timer, moved when the session's deadline moves (not one per turn of the loop).
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut sleep_check = tokio::time::interval(SLEEP_CHECK);
        sleep_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sleep_watch = SleepWatch::new(now(), SystemTime::now());
        loop {
            self.drain().await;
            if self.session.is_stopped() {
                break;
            }
            let deadline = self.session.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(at.into());
                }
                armed = deadline;
            }
            let lagging = self.lagging;
            let wake = tokio::select! {
                command = self.commands.recv() => Wake::Command(command),
                Some((topic, id)) = self.dropped.next(), if !self.dropped.is_empty() => Wake::Dropped(topic, id),
                token = async { self.token_request.as_mut().expect("guarded by the branch condition").await },
                    if self.token_request.is_some() => Wake::Token(token),
                (id, result) = async { self.connecting.as_mut().expect("guarded by the branch condition").await },
                    if self.connecting.is_some() => Wake::Opened(id, result),
                frame = async { self.socket.as_mut().expect("guarded by the branch condition").1.next().await },
                    if self.socket.is_some() => Wake::Frame(frame),
                () = &mut timer, if armed.is_some() => Wake::Timer,
                () = tokio::time::sleep(Duration::from_millis(20)), if lagging => Wake::Flush,
                _ = sleep_check.tick() => Wake::SleepCheck,
            };
            match wake {
                Wake::Command(Some(command)) => self.command(command),
                Wake::Dropped(topic, id) => self.remove_subscriber(&topic, id),
                // Every handle and subscription is gone: nobody can read or close anymore.
                Wake::Command(None) => self.session.close(now()),
                Wake::Token(token) => {
                    self.token_request = None;
                    self.session.handle_token(now(), token);
                }
                Wake::Opened(id, Ok(ws)) => {
                    self.connecting = None;
                    self.socket = Some((id, ws));
                    self.session.handle_open(now(), id);
                }
                Wake::Opened(id, Err(error)) => {
                    self.connecting = None;
                    debug!(%error, "connect failed");
                    self.session.handle_close(now(), id, None, &error);
                }
                Wake::Frame(frame) => {
                    self.incoming(frame);
                    // Frames already read are handled before anything else is polled:
                    // readers are woken once per batch, not once per event.
                    for _ in 1..FRAME_BATCH {
                        let Some((_, ws)) = &mut self.socket else { break };
                        let Some(frame) = ws.next().now_or_never() else { break };
                        self.incoming(frame);
                    }
                }
                Wake::Timer => {
                    armed = None;
                    self.session.handle_timeout(now());
                }
                Wake::Flush => self.flush_outlets(),
                Wake::SleepCheck => {
                    if sleep_watch.slept(now(), SystemTime::now()) {
                        debug!("the machine slept: checking the connection now");
                        self.session.wake(now());
                    }
                }
            }
        }
        if let Some((_, ws)) = self.socket.take() {
            close_gracefully(ws, 1000, String::new());
        }
        for reply in self.closing.drain(..) {
            let _ = reply.send(());
        }
        // Dropping the outlets ends every subscription stream.
    }

    fn incoming(&mut self, frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        let Some((id, _)) = &self.socket else { return };
        let id = *id;
        match frame {
            Some(Ok(Message::Text(text))) => self.session.handle_frame(now(), id, text.as_str()),
            Some(Ok(Message::Close(frame))) => {
                if let Some((_, ws)) = self.socket.take() {
                    answer_close(ws);
                }
                let (code, reason) =
                    frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                debug!(?code, %reason, "server closed the connection");
                self.session.handle_close(now(), id, code, &reason);
            }
            // Pings are answered by tungstenite; binary frames are not part of the protocol.
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                self.socket = None;
                debug!(%error, "connection lost");
                self.session.handle_close(now(), id, None, &error.to_string());
            }
            None => {
                self.socket = None;
                self.session.handle_close(now(), id, None, "connection closed");
            }
        }
    }

    /// Carries out every output, then flushes the socket once.
    async fn drain(&mut self) {
        loop {
            let mut wrote = false;
            let mut write_failed = None;
            while let Some(output) = self.session.poll_output() {
                match output {
                    Output::NeedToken(reason) => {
                        self.token_request = Some(match &self.token {
                            Some(provider) => provider(reason),
                            None => Box::pin(std::future::ready(Ok(String::new()))),
                        });
                    }
                    // The native client leaves `SessionConfig::fallback` off, so
                    // every transport asked for is a WebSocket.
                    Output::Connect { id, url, .. } => {
                        self.connecting = Some(Box::pin(open(id, url, self.tls.clone())));
                    }
                    Output::Send { id, text } => {
                        if let Some((current, ws)) = &mut self.socket
                            && *current == id
                            && write_failed.is_none()
                        {
                            match ws.feed(Message::text(text)).await {
                                Ok(()) => wrote = true,
                                Err(error) => write_failed = Some(error.to_string()),
                            }
                        }
                    }
                    Output::Close { id, code, reason } => {
                        if self.socket.as_ref().is_some_and(|(current, _)| *current == id) {
                            let (_, ws) = self.socket.take().expect("checked above");
                            close_gracefully(ws, code, reason);
                        }
                        self.connecting = None;
                    }
                    Output::Event(event) => self.dispatch(event),
                    _ => {}
                }
            }
            if wrote
                && write_failed.is_none()
                && let Some((_, ws)) = &mut self.socket
                && let Err(error) = ws.flush().await
            {
                write_failed = Some(error.to_string());
            }
            match (write_failed, self.socket.take()) {
                (Some(error), Some((id, _))) => {
                    debug!(%error, "write failed");
                    self.session.handle_close(now(), id, None, &error);
                }
                (_, socket) => {
                    self.socket = socket;
                    return;
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe { topic, options, id, tx, reply } => self.subscribe(topic, options, id, tx, reply),
            Command::Publish { topic, event, data, options, reply } => {
                match self.session.publish(now(), topic, event, data, options) {
                    Ok(publish) => {
                        self.publishes.insert(publish, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
            Command::SetPresence { topic, meta, reply } => {
                let _ = reply.send(self.session.set_presence(now(), &topic, meta).map_err(Error::from));
            }
            Command::Events { tx } => self.events.push(Outlet::new(tx)),
            Command::Close { reply } => {
                self.closing.push(reply);
                self.session.close(now());
            }
        }
    }

    /// Adds a subscriber. Its `subscribe` call resolves when the topic is
    /// live (at once if it is already), unconfirmed, or refused.
    fn subscribe(
        &mut self,
        topic: Topic,
        options: SubscribeOptions,
        id: u64,
        tx: mpsc::Sender<Update>,
        reply: oneshot::Sender<Result<Ready>>,
    ) {
        let reader = tx.clone();
        let watched = topic.clone();
        let subscriber = Subscriber { id, outlet: Outlet::new(tx), ready: Some(reply) };
        let subscribed =
            self.subscribers.subscribe(&mut self.session, now(), topic, subscriber, options, Subscriber::deliver);
        if let Err((error, mut subscriber)) = subscribed {
            return subscriber.answer(Err(Error::from(error)));
        }
        self.dropped.push(Box::pin(async move {
            reader.closed().await;
            (watched, id)
        }));
    }

    fn remove_subscriber(&mut self, topic: &Topic, id: u64) {
        if self.subscribers.retain(topic.as_str(), |s| s.id != id) {
            self.session.unsubscribe(now(), topic.as_str());
        }
    }

    fn dispatch(&mut self, event: SessionEvent) {
        if !self.events.is_empty() {
            self.events.retain_mut(|outlet| outlet.deliver(event.clone()));
            self.lagging |= self.events.iter().any(Outlet::is_lagging);
        }
        match event {
            SessionEvent::Status(status) => {
                if let Some(callback) = &self.callbacks.on_status {
                    callback(&status);
                }
                self.status.send_replace(status);
            }
            SessionEvent::Event(event) => {
                if let Some(callback) = &self.callbacks.on_event {
                    callback(&event);
                }
                // The span is built only for a reader of debug logs: it costs an allocation per event.
                if tracing::enabled!(target: "herald", tracing::Level::DEBUG) {
                    event.span().in_scope(|| debug!(target: "herald", "event received"));
                }
                self.route(SessionEvent::Event(event));
            }
            SessionEvent::SubscribeFailed { topic, error } => {
                warn!(%topic, code = %error.code, message = %error.message, "subscription refused");
                self.route(SessionEvent::SubscribeFailed { topic, error });
            }
            event @ (SessionEvent::Resync { .. }
            | SessionEvent::Live { .. }
            | SessionEvent::Unconfirmed { .. }
            | SessionEvent::Presence(_)
            | SessionEvent::PresenceDiff(_)) => {
                debug!(?event, "subscription update");
                self.route(event);
            }
            SessionEvent::PublishAcked { id, seq, position, duplicate } => {
                if let Some(reply) = self.publishes.remove(&id) {
                    let _ = reply.send(Ok(Ack { id, seq, position, duplicate }));
                }
            }
            SessionEvent::PublishFailed { id, error } => {
                if let Some(reply) = self.publishes.remove(&id) {
                    let _ = reply.send(Err(error.into()));
                }
            }
            SessionEvent::Raw(text) => {
                if let Some(callback) = &self.callbacks.on_raw {
                    callback(&text);
                }
            }
            SessionEvent::Malformed(error) => warn!(%error, "malformed frame from the server"),
            SessionEvent::ServerError(error) => warn!(code = %error.code, message = %error.message, "server error"),
            SessionEvent::TokenFailed { message } => warn!(%message, "token provider failed"),
            _ => {}
        }
    }

    fn route(&mut self, event: SessionEvent) {
        let lagging = &mut self.lagging;
        self.subscribers.route(event, |subscriber, event| {
            subscriber.deliver(event);
            *lagging |= subscriber.outlet.is_lagging();
        });
    }

    fn flush_outlets(&mut self) {
        let mut lagging = false;
        for subscriber in self.subscribers.handles_mut() {
            subscriber.outlet.flush();
            lagging |= subscriber.outlet.is_lagging();
        }
        self.events.retain_mut(Outlet::flush);
        self.lagging = lagging || self.events.iter().any(Outlet::is_lagging);
    }
}

/// One `Subscription` (or a `subscribe` call still waiting for its answer).
struct Subscriber {
    id: u64,
    outlet: Outlet<Update>,
    /// The `subscribe` call, until the topic is live, unconfirmed or refused.
    ready: Option<oneshot::Sender<Result<Ready>>>,
}

impl Subscriber {
    fn deliver(&mut self, event: SessionEvent) {
        match &event {
            SessionEvent::Live { position, .. } => {
                self.answer(Ok(Ready { position: position.clone(), confirmed: true }));
            }
            SessionEvent::Unconfirmed { .. } => self.answer(Ok(Ready { position: None, confirmed: false })),
            SessionEvent::SubscribeFailed { topic, error } if self.ready.is_some() => {
                let (topic, code, message) = (topic.clone(), error.code.clone(), error.message.clone());
                // The call fails; no stream is made, so nothing else to deliver.
                return self.answer(Err(Error::SubscribeRejected { topic, code, message }));
            }
            _ => {}
        }
        if let Some(update) = Update::from_session(event) {
            self.outlet.deliver(update);
        }
    }

    fn answer(&mut self, ready: Result<Ready>) {
        if let Some(reply) = self.ready.take() {
            let _ = reply.send(ready);
        }
    }
}

pub(crate) async fn open(
    id: ConnectionId,
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> (ConnectionId, Result<Box<Ws>, String>) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(16 * 1024);
    let connector = tls.map(Connector::Rustls);
    let result = connect_async_tls_with_config(url.as_str(), Some(config), true, connector).await;
    (id, result.map(|(ws, _)| Box::new(ws)).map_err(|e| e.to_string()))
}

/// Sends the close frame without holding up the driver.
fn close_gracefully(mut ws: Box<Ws>, code: u16, reason: String) {
    tokio::spawn(async move {
        let frame = CloseFrame { code: code.into(), reason: reason.into() };
        let _ = tokio::time::timeout(Duration::from_secs(2), WebSocketStream::close(&mut *ws, Some(frame))).await;
    });
}

/// Completes the closing handshake the server started, without holding up
/// the driver: tungstenite queued the reply to its close frame but writes it
/// only when the socket is driven again, and a client waits for the server
/// to end the TCP connection (RFC 6455 §5.5.1 and §7.1.1; the Autobahn cases
/// check both).
pub(crate) fn answer_close(mut ws: Box<Ws>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = WebSocketStream::close(&mut *ws, None).await;
            while ws.next().await.is_some() {}
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_running_ahead_of_instant_is_a_sleep() {
        let (instant, wall) = (Instant::now(), SystemTime::now());
        let mut watch = SleepWatch::new(instant, wall);
        let tick = SLEEP_CHECK;
        assert!(!watch.slept(instant + tick, wall + tick), "both clocks moved together");
        let (instant, wall) = (instant + tick, wall + tick);
        assert!(watch.slept(instant + tick, wall + tick + Duration::from_secs(3600)), "an hour with the lid closed");
        let (instant, wall) = (instant + tick, wall + tick + Duration::from_secs(3600));
        assert!(!watch.slept(instant + tick, wall + tick + SLEEP_THRESHOLD / 2), "a small clock adjustment");
        let (instant, wall) = (instant + tick, wall + tick + SLEEP_THRESHOLD / 2);
        assert!(!watch.slept(instant + tick, wall - Duration::from_secs(3600)), "a wall clock set back");
    }
}
