//! The session state machine.

use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

use herald_protocol::{
    ClientMessage, ErrorCode, EventData, EventKind, Payload, Position, ProtocolError, Publish, ServerMessage, Token,
    Topic, close, error_code, feature, limits::MAX_FRAME_BYTES,
};
use web_time::Instant;

use crate::{
    AuthMode, DisconnectReason, PublishError, PublishFailure, PublishId, PublishOptions, SessionConfig, SessionEvent,
    Status, SubscribeError, SubscribeOptions, Transport,
    backoff::Backoff,
    heartbeat::{Beat, Heartbeat},
    outbox::{Kind, Outbox},
    subscriptions::{Delivery, Subscriptions},
};

/// Identifies one transport (one WebSocket). Inputs about a transport the
/// session has already given up on are ignored, so a late `onclose` of an old
/// socket cannot disturb the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why the session asks for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenReason {
    /// For a new connection; a cached token is fine if it is still valid.
    Connect,
    /// The server refused the last token (close 4001): get a fresh one.
    Unauthorized,
    /// The current token expires soon: get a fresh one for a `refresh`.
    Refresh,
}

/// What the driver must do next. Drain with [`Session::poll_output`] after
/// every input.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Output {
    /// Call the token provider, then [`Session::handle_token`].
    NeedToken(TokenReason),
    /// Open a transport to `url`; report it with [`Session::handle_open`],
    /// or its failure with [`Session::handle_close`]. While on Server-Sent
    /// Events the session also tries a WebSocket now and then, so two
    /// transports may be open at once for a moment; inputs name which.
    Connect {
        /// Pass it back with every input about this transport.
        id: ConnectionId,
        /// The URL, with the token when [`AuthMode::Query`].
        url: String,
        /// What to open: a WebSocket, or an event stream when WebSocket is
        /// blocked (only with [`SessionConfig::fallback`]).
        transport: Transport,
    },
    /// Send this text frame on transport `id`.
    Send {
        /// The open transport.
        id: ConnectionId,
        /// The frame.
        text: String,
    },
    /// Close (or abort, if still connecting) transport `id`. Nothing more
    /// needs reporting about it.
    Close {
        /// The transport.
        id: ConnectionId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Tell the application.
    Event(SessionEvent),
}

#[derive(Debug)]
enum State {
    /// Waiting to start the next connection attempt at `at`.
    Waiting {
        at: Instant,
    },
    AwaitingToken {
        deadline: Instant,
    },
    Connecting {
        id: ConnectionId,
        transport: Transport,
        deadline: Instant,
    },
    Open(Open),
    /// No transport, no attempt, until [`Session::wake`].
    Suspended,
    Stopped(DisconnectReason),
}

#[derive(Debug)]
struct Open {
    id: ConnectionId,
    opened_at: Instant,
    heartbeat: Heartbeat,
    refresh_at: Option<Instant>,
    /// On Server-Sent Events: when to try a WebSocket again.
    upgrade_at: Option<Instant>,
    /// On Server-Sent Events: the WebSocket being tried, and when to give up on it.
    probe: Option<(ConnectionId, Instant)>,
    /// What the server said of itself.
    greeting: Greeting,
}

/// What the server of the open connection said of itself.
#[derive(Debug, Clone)]
enum Greeting {
    /// Nothing yet: a Herald server's first frame is `connected`.
    Awaited { until: Instant },
    /// It sent `connected`, announcing these features.
    Connected { recovery: bool, features: Vec<String> },
    /// It never sent `connected` (a plain, seed-style server): it confirms
    /// no subscription and takes no option.
    Plain,
}

impl Greeting {
    fn supports(&self, feature: &str) -> Option<bool> {
        match self {
            Self::Awaited { .. } => None,
            Self::Connected { features, .. } => Some(features.iter().any(|f| f == feature)),
            Self::Plain => Some(false),
        }
    }

    /// Whether the server answers subscriptions (`None` while unknown).
    fn confirms(&self) -> Option<bool> {
        match self {
            Self::Awaited { .. } => None,
            Self::Connected { recovery, .. } => Some(*recovery),
            Self::Plain => Some(false),
        }
    }
}

/// How long a server may take to send `connected` before the session takes
/// it for a plain one, which never will: long enough for a token check
/// that fetches keys, short enough that subscribing to a plain server does
/// not seem to hang.
const GREETING_TIMEOUT: Duration = Duration::from_secs(3);

/// How late a timer must fire to count as the machine having slept: far
/// beyond a busy event loop's delay, well below what a suspend lasts. See
/// [`Session::handle_timeout`].
pub const SLEEP_THRESHOLD: Duration = Duration::from_secs(5);

/// The longest wait a server can set (through a token lifetime, or advice
/// with a `max_advised` raised past it). Far beyond any real wait, and small
/// enough that `now +` it cannot overflow an `Instant`, whose range differs
/// between platforms: server input must not panic the session.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Close code the session uses when it drops a transport itself (heartbeat
/// timeout, connect timeout): a private-use code, never sent by servers.
const CLIENT_GAVE_UP: u16 = 4000;

/// Whether a server error says the token does not allow the request
/// (`4003`, or the name some peers use).
fn is_forbidden(code: &ErrorCode) -> bool {
    match code {
        ErrorCode::Number(code) => *code == error_code::FORBIDDEN,
        ErrorCode::Name(name) => name == "forbidden",
    }
}

/// `value` kept intact through URL parsing: every byte but the unreserved
/// characters (`A-Z a-z 0-9 - _ . ~`) is percent-escaped. Written out: the
/// percent-encoding crate's tables weighed more in the browser build.
fn query_value(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            escaped.push(char::from(byte));
        } else {
            escaped.extend(['%', char::from(HEX[usize::from(byte >> 4)]), char::from(HEX[usize::from(byte & 15)])]);
        }
    }
    escaped
}

/// A Herald client session as a sans-IO state machine.
///
/// It owns every rule of a client connection — reconnect with backoff and
/// jitter, heartbeats, resubscription, recovery by `seq`, publish acks and
/// the offline queue — and does no I/O: it never opens a socket, reads a
/// clock or spawns a task. A driver (the tokio client, the browser client, a
/// test) feeds it inputs and carries out its outputs.
///
/// # Driving it
///
/// * Inputs, each with the current time: [`handle_token`](Self::handle_token),
///   [`handle_open`](Self::handle_open), [`handle_frame`](Self::handle_frame),
///   [`handle_close`](Self::handle_close), [`handle_timeout`](Self::handle_timeout),
///   and the application's calls [`subscribe`](Self::subscribe),
///   [`unsubscribe`](Self::unsubscribe), [`publish`](Self::publish),
///   [`close`](Self::close).
/// * **After every input, drain [`poll_output`](Self::poll_output) until it
///   returns `None`**, then sleep until [`poll_timeout`](Self::poll_timeout)
///   and call `handle_timeout`.
///
/// ```
/// use std::time::Duration;
/// use herald_core::{AuthMode, Output, Session, SessionConfig, SessionEvent, SubscribeOptions};
/// use web_time::Instant;
///
/// let mut config = SessionConfig::new("ws://127.0.0.1:8080/ws");
/// config.auth = AuthMode::None;
/// let start = Instant::now();
/// let mut session = Session::new(config, start);
/// session.subscribe(start, "gift-list:1".parse()?, SubscribeOptions::default())?;
///
/// session.handle_timeout(start);
/// let mut connect = None;
/// while let Some(output) = session.poll_output() {
///     if let Output::Connect { id, url, .. } = output {
///         assert_eq!(url, "ws://127.0.0.1:8080/ws");
///         connect = Some(id);
///     }
/// }
/// // The driver opened the socket:
/// session.handle_open(start, connect.unwrap());
/// let sent: Vec<_> = std::iter::from_fn(|| session.poll_output())
///     .filter_map(|o| match o { Output::Send { text, .. } => Some(text), _ => None })
///     .collect();
/// assert_eq!(sent, [r#"{"type":"subscribe","topics":["gift-list:1"]}"#]);
/// // The server greets, then confirms: the subscription is live at seq 41.
/// session.handle_frame(start, connect.unwrap(), r#"{"type":"connected","epoch":"e1","features":["recovery"]}"#);
/// session.handle_frame(start, connect.unwrap(), r#"{"type":"subscribed","topics":["gift-list:1"],"last_seq":{"gift-list:1":41}}"#);
/// let live = std::iter::from_fn(|| session.poll_output()).find_map(|o| match o {
///     Output::Event(SessionEvent::Live { position, .. }) => position,
///     _ => None,
/// });
/// assert_eq!(live.map(|p| p.seq), Some(41));
/// // Nothing arrives for 30 s: the session pings.
/// assert_eq!(session.poll_timeout(), Some(start + Duration::from_secs(30)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The session is neither `Send`-bound nor clock-bound, so the browser driver
/// can keep it in an `Rc<RefCell<_>>` and feed it `performance.now()` time.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    status: Status,
    subscriptions: Subscriptions,
    outbox: Outbox,
    backoff: Backoff,
    outputs: VecDeque<Output>,
    next_connection: u64,
    token: Option<String>,
    token_reason: TokenReason,
    /// A 4001 was answered with a fresh token, and no connection has since
    /// been accepted (`connected`) or stayed up for `backoff.healthy_after`:
    /// a second 4001 stops the session.
    auth_retry_used: bool,
    epoch: Option<String>,
    ever_opened: bool,
    id_prefix: String,
    next_publish: u64,
    /// WebSocket attempts in a row that never opened: enough of them switch
    /// to Server-Sent Events ([`SessionConfig::fallback`]).
    websocket_failures: u32,
    /// The environment delays timers on purpose (a hidden browser tab), so a
    /// late timer is no sign of sleep.
    timers_may_lag: bool,
}

impl Session {
    /// A session that starts its first connection attempt at `now`.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let id_prefix = format!("{:08x}", rng.u32(..));
        let backoff = Backoff::new(config.backoff.clone(), rng.u64(..));
        let mut session = Self {
            outbox: Outbox::new(config.max_pending_publishes),
            config,
            state: State::Waiting { at: now },
            status: Status::Connecting,
            subscriptions: Subscriptions::default(),
            backoff,
            outputs: VecDeque::new(),
            next_connection: 0,
            token: None,
            token_reason: TokenReason::Connect,
            auth_retry_used: false,
            epoch: None,
            ever_opened: false,
            id_prefix,
            next_publish: 0,
            websocket_failures: 0,
            timers_may_lag: false,
        };
        session.emit(SessionEvent::Status(Status::Connecting));
        session
    }

    /// The current status.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The subscribed topics (the application's intent, connected or not).
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.subscriptions.topics()
    }

    /// The last `seq` received on a concrete topic, or the last
    /// `wildcard_seq` of a `resource:*` subscription.
    pub fn position(&self, topic: &str) -> Option<u64> {
        self.subscriptions.position(topic)
    }

    /// Where a concrete topic stands: the server's epoch and the last `seq`
    /// seen on it. `None` before the server named either.
    pub fn position_of(&self, topic: &str) -> Option<Position> {
        Some(Position::new(self.epoch.clone()?, self.subscriptions.position(topic)?))
    }

    /// Publishes waiting for an ack.
    pub fn pending_publishes(&self) -> usize {
        self.outbox.len()
    }

    /// Whether the session has stopped for good.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped(_))
    }

    /// The next output for the driver, or `None` when all is done.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None`
    /// once stopped.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Waiting { at } => *at,
            State::AwaitingToken { deadline } | State::Connecting { deadline, .. } => *deadline,
            State::Open(open) => {
                let greeting = match open.greeting {
                    Greeting::Awaited { until } => Some(until),
                    _ => None,
                };
                [open.refresh_at, open.upgrade_at, open.probe.map(|(_, deadline)| deadline), greeting]
                    .into_iter()
                    .flatten()
                    .fold(open.heartbeat.deadline(), Instant::min)
            }
            State::Suspended => return self.outbox.next_deadline(),
            State::Stopped(_) => return None,
        };
        Some(self.outbox.next_deadline().map_or(state, |publish| publish.min(state)))
    }

    /// Time passed: start attempts, send pings, expire publishes and give up
    /// on dead or slow transports, as due at `now`.
    ///
    /// A call [`SLEEP_THRESHOLD`] or more after the deadline
    /// [`poll_timeout`](Self::poll_timeout) asked for means the machine slept
    /// (a closed laptop lid, a suspended VM) or the process was frozen: the
    /// session then also does what [`wake`](Self::wake) does, so it reconnects
    /// at once instead of after a backoff delay, and checks an open
    /// connection now instead of trusting it until the next heartbeat. Not
    /// while [`set_timers_may_lag`](Self::set_timers_may_lag) says that timers
    /// are throttled on purpose.
    pub fn handle_timeout(&mut self, now: Instant) {
        let slept = !self.timers_may_lag
            && !matches!(self.state, State::Suspended)
            && self.poll_timeout().is_some_and(|due| now.saturating_duration_since(due) >= SLEEP_THRESHOLD);
        self.fire_timers(now);
        if slept {
            self.wake(now);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        for id in self.outbox.expire(now) {
            let error = PublishFailure::Timeout { after: self.config.publish_timeout };
            self.emit(SessionEvent::PublishFailed { id, error });
        }
        match &mut self.state {
            State::Waiting { at } if now >= *at => self.begin_attempt(now),
            State::AwaitingToken { deadline } if now >= *deadline => {
                self.emit(SessionEvent::TokenFailed { message: "the token provider did not answer in time".into() });
                self.transport_lost(now, None, "");
            }
            State::Connecting { id, deadline, .. } if now >= *deadline => {
                let id = *id;
                self.outputs.push_back(Output::Close { id, code: CLIENT_GAVE_UP, reason: "connect timeout".into() });
                self.transport_lost(now, None, "");
            }
            State::Open(open) => {
                let id = open.id;
                if matches!(open.greeting, Greeting::Awaited { until } if now >= until) {
                    self.greeted(Greeting::Plain);
                }
                let State::Open(open) = &mut self.state else { unreachable!("matched above") };
                if open.refresh_at.is_some_and(|at| now >= at) {
                    open.refresh_at = None;
                    self.outputs.push_back(Output::NeedToken(TokenReason::Refresh));
                }
                self.upgrade_timers(now);
                let State::Open(open) = &mut self.state else { unreachable!("matched above") };
                match open.heartbeat.poll(now) {
                    Beat::Idle => {}
                    Beat::SendPing => self.send(&ClientMessage::Ping),
                    Beat::Dead => {
                        let reason = "heartbeat timeout".to_owned();
                        self.outputs.push_back(Output::Close { id, code: CLIENT_GAVE_UP, reason });
                        self.transport_lost(now, None, "");
                    }
                }
            }
            _ => {}
        }
    }

    /// The token provider answered an [`Output::NeedToken`]. An `Err` counts
    /// as a failed connection attempt (or, for a refresh, is ignored: the
    /// server will close with 4001 and the session reconnects).
    ///
    /// A driver whose application hands it a new token unasked (a client
    /// made with a fixed token) calls this too: while open the token goes
    /// out at once as a `refresh`; between connections it is ignored, and
    /// the driver gives it at the next [`Output::NeedToken`].
    pub fn handle_token(&mut self, now: Instant, token: Result<String, String>) {
        match (&self.state, token) {
            (State::AwaitingToken { .. }, Ok(token)) => {
                self.token = Some(token);
                self.open_transport(now);
            }
            (State::AwaitingToken { .. }, Err(message)) => {
                self.emit(SessionEvent::TokenFailed { message });
                self.transport_lost(now, None, "");
            }
            (State::Open(_), Ok(token)) => {
                self.send(&ClientMessage::Refresh { token: Token(token.clone()) });
                self.token = Some(token);
            }
            (State::Open(_), Err(message)) => self.emit(SessionEvent::TokenFailed { message }),
            _ => {}
        }
    }

    /// Transport `id` is open.
    pub fn handle_open(&mut self, now: Instant, id: ConnectionId) {
        let transport = match &self.state {
            State::Connecting { id: current, transport, .. } if *current == id => *transport,
            State::Open(open) if open.probe.is_some_and(|(probe, _)| probe == id) => {
                // The WebSocket tried while on Server-Sent Events works: move to it.
                let reason = "upgraded to WebSocket".to_owned();
                self.outputs.push_back(Output::Close { id: open.id, code: close::NORMAL, reason });
                Transport::WebSocket
            }
            _ => return,
        };
        if transport == Transport::WebSocket {
            self.websocket_failures = 0;
        }
        let heartbeat = Heartbeat::new(self.config.heartbeat.clone(), now);
        // On the event stream, try a WebSocket at once: the failures that led
        // here may have been a server restart rather than a blocking proxy.
        let upgrade_at = (transport == Transport::ServerSentEvents).then_some(now);
        let greeting = Greeting::Awaited { until: now + GREETING_TIMEOUT };
        let open = Open { id, opened_at: now, heartbeat, refresh_at: None, upgrade_at, probe: None, greeting };
        self.state = State::Open(open);
        if self.config.auth == AuthMode::FirstMessage {
            let token = Token(self.token.clone().unwrap_or_default());
            self.send(&ClientMessage::Auth { token });
        }
        self.set_status(Status::Connected { transport });
        if std::mem::replace(&mut self.ever_opened, true) {
            for (topic, reason) in self.subscriptions.on_reconnect(self.epoch.is_some()) {
                self.emit(SessionEvent::Resync { topic, reason });
            }
        }
        for message in self.subscriptions.subscribe_messages(self.epoch.as_deref()) {
            self.send(&message);
        }
        // Conditional publishes wait until the server says it takes them.
        let frames: Vec<String> = self.outbox.frames(Kind::Plain).map(str::to_owned).collect();
        self.outputs.extend(frames.into_iter().map(|text| Output::Send { id, text }));
    }

    /// The server of the open connection said what it is (or its silence
    /// did): subscriptions it will never answer are unconfirmed, and
    /// conditional publishes are sent or fail.
    fn greeted(&mut self, greeting: Greeting) {
        let State::Open(open) = &mut self.state else { return };
        let first = matches!(open.greeting, Greeting::Awaited { .. });
        open.greeting = greeting;
        let greeting = open.greeting.clone();
        if greeting.confirms() == Some(false) {
            for topic in self.subscriptions.take_unanswered() {
                self.emit(SessionEvent::Unconfirmed { topic });
            }
        }
        if !first {
            return;
        }
        if greeting.supports(feature::CONDITIONAL) == Some(true) {
            let frames: Vec<String> = self.outbox.frames(Kind::Conditional).map(str::to_owned).collect();
            for text in frames {
                self.send_text(text);
            }
        } else {
            let error = PublishFailure::Unsupported { feature: feature::CONDITIONAL };
            for id in self.outbox.take(Kind::Conditional) {
                self.emit(SessionEvent::PublishFailed { id, error: error.clone() });
            }
        }
    }

    /// A text frame arrived on transport `id`.
    pub fn handle_frame(&mut self, now: Instant, id: ConnectionId, text: &str) {
        let State::Open(open) = &mut self.state else { return };
        if open.id != id {
            return;
        }
        open.heartbeat.on_frame(now);
        let message = match ServerMessage::decode(text) {
            Ok(message) => message,
            Err(error) => return self.emit(SessionEvent::Malformed(Arc::new(error))),
        };
        // A Herald server's first frame is `connected`; anything else first
        // comes from a plain server, which never sends it.
        if matches!(open.greeting, Greeting::Awaited { .. }) && !matches!(message, ServerMessage::Connected(_)) {
            self.greeted(Greeting::Plain);
        }
        match message {
            ServerMessage::Event(event) => match self.subscriptions.on_event(&event) {
                Delivery::Deliver => self.emit(SessionEvent::Event(event)),
                Delivery::Gap { expected, got } => {
                    let reason = crate::ResyncReason::Gap { expected, got };
                    self.emit(SessionEvent::Resync { topic: event.topic.clone(), reason });
                    self.emit(SessionEvent::Event(event));
                }
                Delivery::Duplicate | Delivery::Unwanted => {}
            },
            ServerMessage::Ping => self.send(&ClientMessage::Pong),
            ServerMessage::Pong | ServerMessage::Unsubscribed(_) => {}
            ServerMessage::Connected(connected) => {
                self.auth_retry_used = false;
                if connected.epoch.is_some() && self.epoch.is_some() && connected.epoch != self.epoch {
                    self.subscriptions.clear_positions();
                }
                let recovery = connected.supports(feature::RECOVERY);
                let greeting = Greeting::Connected { recovery, features: connected.features };
                self.epoch = connected.epoch;
                if let (Some(seconds), State::Open(open)) = (connected.expires_in, &mut self.state) {
                    // Refresh at 80% of the lifetime, leaving room for a slow token provider.
                    open.refresh_at = Some(now + Duration::from_secs(seconds).mul_f64(0.8).min(LONGEST_WAIT));
                }
                // A refresh answers with `connected` too: only the first greets.
                self.greeted(greeting);
            }
            ServerMessage::Subscribed(subscribed) => {
                for (topic, reason) in self.subscriptions.on_subscribed(&subscribed) {
                    if let Some(reason) = reason {
                        self.emit(SessionEvent::Resync { topic: topic.clone(), reason });
                    }
                    let position = self.position_of(topic.as_str());
                    self.emit(SessionEvent::Live { topic, position });
                }
            }
            ServerMessage::Ack(ack) if self.outbox.remove(&ack.id) => {
                let epoch = ack.epoch.or_else(|| self.epoch.clone());
                let position = ack.seq.zip(epoch).map(|(seq, epoch)| Position::new(epoch, seq));
                let (id, seq, duplicate) = (PublishId(ack.id), ack.seq, ack.duplicate);
                self.emit(SessionEvent::PublishAcked { id, seq, position, duplicate });
            }
            ServerMessage::Error(error) => {
                if let Some(id) = error.id.clone().filter(|id| self.outbox.remove(id)) {
                    let failure = match (&error.code, error.seq) {
                        (ErrorCode::Number(error_code::CONFLICT), Some(current)) => {
                            PublishFailure::Conflict { current }
                        }
                        _ => PublishFailure::Rejected { code: error.code, message: error.message },
                    };
                    self.emit(SessionEvent::PublishFailed { id: PublishId(id), error: failure });
                } else if let Some(topic) = error.topic.clone().filter(|t| self.subscriptions.contains(t))
                    // An error with an id answers a publish (one that already timed out), not a subscribe.
                    && error.id.is_none()
                {
                    self.subscriptions.remove(&topic);
                    let forbidden = is_forbidden(&error.code).then(|| error.message.clone());
                    self.emit(SessionEvent::SubscribeFailed { topic, error });
                    if let Some(reason) = forbidden
                        && self.subscriptions.is_empty()
                    {
                        // Every topic asked for is refused: connected, the session would
                        // receive nothing, and reconnecting would be refused the same way.
                        self.close_transports("every topic forbidden");
                        self.stop(DisconnectReason::Forbidden { reason });
                    }
                } else {
                    self.emit(SessionEvent::ServerError(error));
                }
            }
            ServerMessage::Presence(presence) => self.emit(SessionEvent::Presence(presence)),
            ServerMessage::PresenceDiff(diff) => self.emit(SessionEvent::PresenceDiff(diff)),
            ServerMessage::Raw(text) => self.emit(SessionEvent::Raw(text)),
            _ => {}
        }
    }

    /// Transport `id` closed, or failed to open. `code` is `None` when there
    /// was no close frame (1006, a refused connection, a reset).
    pub fn handle_close(&mut self, now: Instant, id: ConnectionId, code: Option<u16>, reason: &str) {
        let current = match &mut self.state {
            State::Connecting { id, .. } => *id,
            State::Open(open) if open.probe.is_some_and(|(probe, _)| probe == id) => {
                // WebSocket is still blocked: stay on the event stream, try later.
                open.probe = None;
                open.upgrade_at = self.config.fallback.as_ref().map(|f| now + f.upgrade_after);
                return;
            }
            State::Open(open) => open.id,
            _ => return,
        };
        if current == id {
            self.transport_lost(now, code, reason);
        }
    }

    /// Subscribes to `topic` (or a `resource:*` wildcard). The subscription
    /// is the application's intent: it survives reconnects until
    /// [`unsubscribe`](Self::unsubscribe). `presence` asks for presence
    /// messages too, and stays on for the topic until it is unsubscribed.
    /// Subscribing again is a no-op, unless it adds presence or changes
    /// the presence metadata (see [`set_presence`](Self::set_presence)).
    pub fn subscribe(&mut self, now: Instant, topic: Topic, options: SubscribeOptions) -> Result<(), SubscribeError> {
        if let State::Stopped(reason) = &self.state {
            return Err(SubscribeError::Stopped(reason.clone()));
        }
        let SubscribeOptions { presence, meta, from } = options;
        // Metadata is presence metadata.
        let presence = presence || meta.is_some();
        if let Some(meta) = &meta {
            ClientMessage::SetPresence { topic: topic.clone(), meta: meta.clone() }.validate()?;
        }
        let existed = self.subscriptions.contains(topic.as_str());
        let State::Open(open) = &self.state else {
            // Offline: sent, with the rest, when the next connection opens.
            self.subscriptions.insert(topic, presence, meta, from, false);
            return Ok(());
        };
        let confirms = open.greeting.confirms();
        let changed_meta = meta.clone().filter(|_| existed);
        if self.subscriptions.insert(topic.clone(), presence, meta, from, false) {
            if let Some(message) = self.subscriptions.subscribe_message(&topic, self.epoch.as_deref()) {
                self.send(&message);
                if confirms == Some(false) {
                    // The frame is written; this server will say no more.
                    self.subscriptions.take_unanswered();
                    self.emit(SessionEvent::Unconfirmed { topic });
                }
            }
        } else if let Some(meta) = changed_meta {
            // Subscribed as asked already: only its metadata changes.
            return self.set_presence(now, topic.as_str(), meta);
        }
        Ok(())
    }

    /// Changes what the other members of `topic`'s presence see of this
    /// user (a JSON object of at most 512 bytes), on this connection and
    /// every later one. Sent to servers that announce
    /// [`feature::PRESENCE_META`]; others list the user without metadata.
    pub fn set_presence(&mut self, _now: Instant, topic: &str, meta: Payload) -> Result<(), SubscribeError> {
        if let State::Stopped(reason) = &self.state {
            return Err(SubscribeError::Stopped(reason.clone()));
        }
        let topic = Topic::new(topic).map_err(ProtocolError::from)?;
        let message = ClientMessage::SetPresence { topic: topic.clone(), meta: meta.clone() };
        message.validate()?;
        let sent = self.subscriptions.set_meta(topic.as_str(), meta);
        let sent = sent.ok_or_else(|| SubscribeError::NoPresence { topic: topic.to_string() })?;
        if let State::Open(open) = &self.state
            && sent
            && open.greeting.supports(feature::PRESENCE_META) == Some(true)
        {
            self.send(&message);
        }
        Ok(())
    }

    /// Drops the subscription. Offline, only the intent is dropped; online,
    /// the server is told too. Returns whether it was subscribed.
    pub fn unsubscribe(&mut self, _now: Instant, topic: &str) -> bool {
        let Some(topic) = self.subscriptions.topics().find(|t| t.as_str() == topic).cloned() else {
            return false;
        };
        self.subscriptions.remove(topic.as_str());
        if matches!(self.state, State::Open(_)) {
            self.send(&ClientMessage::Unsubscribe { topics: vec![topic] });
        }
        true
    }

    /// Publishes an event. It is sent now if connected, otherwise when the
    /// next connection opens, and again after every reconnect until acked;
    /// the outcome arrives as [`SessionEvent::PublishAcked`] or
    /// [`SessionEvent::PublishFailed`] with the returned id.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: Topic,
        event: EventKind,
        data: EventData,
        options: PublishOptions,
    ) -> Result<PublishId, PublishError> {
        if let State::Stopped(reason) = &self.state {
            return Err(PublishError::Stopped(reason.clone()));
        }
        if self.outbox.is_full() {
            return Err(PublishError::QueueFull { capacity: self.outbox.capacity() });
        }
        let greeting = match &self.state {
            State::Open(open) => Some(&open.greeting),
            _ => None,
        };
        let PublishOptions { trace_id, ephemeral, if_seq, id } = options;
        let kind = match (ephemeral, if_seq) {
            (true, _) => match greeting.and_then(|g| g.supports(feature::EPHEMERAL)) {
                Some(true) => Kind::Ephemeral,
                Some(false) => return Err(PublishError::Unsupported { feature: feature::EPHEMERAL }),
                None => return Err(PublishError::Offline),
            },
            (false, Some(_)) => match greeting.and_then(|g| g.supports(feature::CONDITIONAL)) {
                Some(false) => return Err(PublishError::Unsupported { feature: feature::CONDITIONAL }),
                // Unknown (offline): queued, and sent once a server announces it.
                _ => Kind::Conditional,
            },
            (false, None) => Kind::Plain,
        };
        let sendable =
            kind != Kind::Conditional || greeting.and_then(|g| g.supports(feature::CONDITIONAL)) == Some(true);
        let id = id.unwrap_or_else(|| format!("{}-{}", self.id_prefix, self.next_publish));
        let publish = Publish { id: id.clone(), topic, event, data, trace_id, ephemeral, if_seq };
        publish.validate()?;
        let frame = ClientMessage::Publish(publish).encode();
        if frame.len() > MAX_FRAME_BYTES {
            return Err(
                ProtocolError::TooLarge { what: "publish frame", len: frame.len(), max: MAX_FRAME_BYTES }.into()
            );
        }
        self.next_publish += 1;
        if sendable {
            self.send_text(frame.clone());
        }
        self.outbox.push(PublishId(id.clone()), frame, now + self.config.publish_timeout, kind);
        Ok(PublishId(id))
    }

    /// Closes the session for good: close code 1000, no reconnect, pending
    /// publishes fail with [`PublishFailure::Stopped`].
    pub fn close(&mut self, _now: Instant) {
        if matches!(self.state, State::Stopped(_)) {
            return;
        }
        self.close_transports("client closed");
        self.stop(DisconnectReason::Closed);
    }

    /// The environment says the connection may have changed: the network came
    /// back online, the machine woke from sleep, a hidden browser tab became
    /// visible, or a suspended page was restored. A timer that fires long
    /// after its deadline counts as waking from sleep by itself
    /// ([`handle_timeout`](Self::handle_timeout)). A session waiting to
    /// reconnect (or suspended) tries at once; an open one pings now and
    /// declares the connection dead if nothing answers within the heartbeat
    /// timeout, instead of waiting for the quiet interval.
    pub fn wake(&mut self, now: Instant) {
        match &mut self.state {
            State::Waiting { .. } | State::Suspended => self.begin_attempt(now),
            State::Open(open) => {
                let probed = open.heartbeat.probe(now);
                if probed {
                    self.send(&ClientMessage::Ping);
                }
            }
            _ => {}
        }
    }

    /// Whether the environment may fire timers late on purpose: browsers
    /// throttle the timers of a hidden tab to about once a minute, which is
    /// not the machine waking from sleep. While set, a late
    /// [`handle_timeout`](Self::handle_timeout) only does what is due; the
    /// driver calls [`wake`](Self::wake) when the page becomes visible.
    pub fn set_timers_may_lag(&mut self, may_lag: bool) {
        self.timers_may_lag = may_lag;
    }

    /// Closes the transport without stopping the session, and makes no new
    /// attempt until [`wake`](Self::wake): for a page entering the browser's
    /// back/forward cache, which keeps no open WebSocket. Subscriptions and
    /// queued publishes stay; the next connection recovers what was missed.
    pub fn suspend(&mut self, _now: Instant) {
        if matches!(self.state, State::Stopped(_) | State::Suspended) {
            return;
        }
        self.close_transports("suspended");
        self.state = State::Suspended;
        self.set_status(Status::Reconnecting { attempt: 0, next_in: Duration::ZERO });
    }

    fn begin_attempt(&mut self, now: Instant) {
        if self.config.auth == AuthMode::None {
            return self.open_transport(now);
        }
        self.state = State::AwaitingToken { deadline: now + self.config.connect_timeout };
        let reason = std::mem::replace(&mut self.token_reason, TokenReason::Connect);
        self.outputs.push_back(Output::NeedToken(reason));
    }

    fn open_transport(&mut self, now: Instant) {
        let fallback = self.config.fallback.as_ref().filter(|f| self.websocket_failures >= f.after_failures);
        let (transport, id) = match fallback.and_then(|f| f.sse_url(&self.config.url)) {
            Some(sse) => (Transport::ServerSentEvents, self.connect(Transport::ServerSentEvents, &sse)),
            None => (Transport::WebSocket, self.connect(Transport::WebSocket, &self.config.url.clone())),
        };
        self.state = State::Connecting { id, transport, deadline: now + self.config.connect_timeout };
    }

    /// Asks the driver to open a transport to `base` (with the token, for
    /// [`AuthMode::Query`]); returns its id.
    fn connect(&mut self, transport: Transport, base: &str) -> ConnectionId {
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let mut url = base.to_owned();
        let mut add = |name: &str, value: &str| {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(name);
            url.push('=');
            url.push_str(value);
        };
        if transport == Transport::ServerSentEvents {
            add("mode", "frames");
        }
        if let (Some(token), AuthMode::Query) = (&self.token, self.config.auth) {
            add("token", &query_value(token));
        }
        self.outputs.push_back(Output::Connect { id, url, transport });
        id
    }

    /// On Server-Sent Events: starts a WebSocket attempt when one is due, and
    /// gives up on one that did not open in time.
    fn upgrade_timers(&mut self, now: Instant) {
        let State::Open(open) = &mut self.state else { return };
        if let Some((probe, deadline)) = open.probe
            && now >= deadline
        {
            open.probe = None;
            open.upgrade_at = self.config.fallback.as_ref().map(|f| now + f.upgrade_after);
            self.outputs.push_back(Output::Close { id: probe, code: CLIENT_GAVE_UP, reason: "connect timeout".into() });
        }
        let State::Open(open) = &mut self.state else { return };
        if open.upgrade_at.is_some_and(|at| now >= at) {
            open.upgrade_at = None;
            let url = self.config.url.clone();
            let probe = self.connect(Transport::WebSocket, &url);
            let deadline = now + self.config.connect_timeout;
            if let State::Open(open) = &mut self.state {
                open.probe = Some((probe, deadline));
            }
        }
    }

    /// Asks the driver to close every transport, the one being tried too.
    fn close_transports(&mut self, reason: &str) {
        let ids = match &self.state {
            State::Connecting { id, .. } => vec![*id],
            State::Open(open) => std::iter::once(open.id).chain(open.probe.map(|(probe, _)| probe)).collect(),
            _ => Vec::new(),
        };
        for id in ids {
            self.outputs.push_back(Output::Close { id, code: close::NORMAL, reason: reason.to_owned() });
        }
    }

    /// The transport is gone (closed, failed, timed out or declared dead):
    /// decide between reconnecting and stopping.
    fn transport_lost(&mut self, now: Instant, code: Option<u16>, reason: &str) {
        match &self.state {
            State::Open(open) => {
                if now.saturating_duration_since(open.opened_at) >= self.config.backoff.healthy_after {
                    self.backoff.reset();
                    // The token worked for a while, so a 4001 now is a new expiry (a
                    // seed-style server never sends `connected` to say it accepted it).
                    self.auth_retry_used = false;
                }
                if let Some((probe, _)) = open.probe {
                    self.outputs.push_back(Output::Close { id: probe, code: close::NORMAL, reason: "lost".into() });
                }
                // Nothing ephemeral outlives its connection.
                for id in self.outbox.take(Kind::Ephemeral) {
                    self.emit(SessionEvent::PublishFailed { id, error: PublishFailure::NotSent });
                }
            }
            State::Connecting { transport: Transport::WebSocket, .. } => {
                self.websocket_failures = self.websocket_failures.saturating_add(1);
            }
            _ => {}
        }
        // A 1001 alone advises reconnecting at once. Advice comes from the server,
        // so it gets a ceiling of its own (not the backoff's `max`, which may be
        // below a server's restart spread).
        let advised = close::retry_after_ms(reason)
            .map(|ms| Duration::from_millis(ms).min(self.config.backoff.max_advised))
            .or((code == Some(close::GOING_AWAY)).then_some(Duration::ZERO));
        let delay = match code {
            Some(close::UNAUTHORIZED) if self.auth_retry_used => {
                return self.stop(DisconnectReason::Unauthorized { reason: reason.to_owned() });
            }
            Some(close::UNAUTHORIZED) => {
                self.auth_retry_used = true;
                self.token_reason = TokenReason::Unauthorized;
                // Retrying at once with a fresh token is advice too: a server that
                // sends `connected` (renewing the retry) and then 4001 must not loop.
                self.backoff.advised(advised.unwrap_or_default())
            }
            Some(close::FORBIDDEN) => {
                return self.stop(DisconnectReason::Forbidden { reason: reason.to_owned() });
            }
            _ => match advised {
                Some(advised) => self.backoff.advised(advised),
                None => self.backoff.next_delay(),
            },
        };
        let Some(delay) = delay.map(|delay| delay.min(LONGEST_WAIT)) else {
            let attempts = self.backoff.failures().saturating_sub(1);
            return self.stop(DisconnectReason::RetriesExhausted { attempts });
        };
        self.state = State::Waiting { at: now + delay };
        self.set_status(Status::Reconnecting { attempt: self.backoff.failures(), next_in: delay });
    }

    fn stop(&mut self, reason: DisconnectReason) {
        let failed: Vec<PublishId> = self.outbox.drain().collect();
        for id in failed {
            self.emit(SessionEvent::PublishFailed { id, error: PublishFailure::Stopped(reason.clone()) });
        }
        self.state = State::Stopped(reason.clone());
        self.set_status(Status::Disconnected { reason });
    }

    fn send(&mut self, message: &ClientMessage) {
        self.send_text(message.encode());
    }

    fn send_text(&mut self, text: String) {
        if let State::Open(open) = &self.state {
            self.outputs.push_back(Output::Send { id: open.id, text });
        }
    }

    fn emit(&mut self, event: SessionEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn set_status(&mut self, status: Status) {
        if self.status != status {
            self.status = status.clone();
            self.emit(SessionEvent::Status(status));
        }
    }
}
