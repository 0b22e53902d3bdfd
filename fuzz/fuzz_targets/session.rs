//! The session core, fed a script of frames, timers, closes and calls, keeps
//! its invariants after every step: no panic; the application's
//! subscriptions are never lost (only an unsubscribe or a refusal ends one,
//! and every connection that opens sends them all again); the publish queue
//! stays bounded and every publish ends at most once; status changes are
//! legal; events of topics nobody wants are never delivered, nor a `seq`
//! twice unless the session said to resync or the server started over.
//!
//! The input is a script, one step per line, so a crash reads as a story:
//!
//! ```text
//! !config first-message fallback attempts=3 queue=4
//! !sub gift-list:1 presence      the application subscribes (`!unsub`, `!pub TOPIC`, `!closeapp`, `!wake`, `!suspend`)
//! !open                          the transport asked for opens (`!fail`: it fails or is lost without a close frame)
//! !close 1001 bye; retry_after_ms=500
//! !advance 30000                 the clock moves (milliseconds), firing every timer due
//! !token err                     answers a token request (tokens are answered `ok` at once unless `!token manual`)
//! !ack 0                         the server acks the first publish (`!ack-dup 0`: as a duplicate)
//! !probe-open / !probe-fail      the WebSocket tried from an event stream opens or fails
//! {"type":"connected","epoch":"e1"}   any other line is a frame from the server
//! ```
#![no_main]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use herald_core::{
    AuthMode, ConnectionId, FallbackConfig, Instant, Output, PublishOptions, Session, SessionConfig, SessionEvent,
    Status, SubscribeOptions, Transport,
    protocol::{ClientMessage, EventData, EventKind, Payload, Position, ServerMessage, Topic},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else { return };
    let mut lines = script.lines().peekable();
    let config = lines.next_if(|line| line.starts_with("!config")).map(config).unwrap_or_else(|| config(""));
    let mut run = Run::new(config);
    for line in lines.take(500) {
        run.step(line);
        run.check();
    }
});

fn config(line: &str) -> SessionConfig {
    let mut config = SessionConfig::new("ws://127.0.0.1:9/ws");
    config.seed = 7;
    config.max_pending_publishes = 8;
    for word in line.split_whitespace().skip(1) {
        match word.split_once('=') {
            Some(("attempts", n)) => config.backoff.max_attempts = n.parse().ok(),
            Some(("queue", n)) => config.max_pending_publishes = n.parse().unwrap_or(8).min(64),
            _ if word == "first-message" => config.auth = AuthMode::FirstMessage,
            _ if word == "no-auth" => config.auth = AuthMode::None,
            _ if word == "fallback" => {
                let mut fallback = FallbackConfig::default();
                fallback.after_failures = 2;
                config.fallback = Some(fallback);
            }
            _ => {}
        }
    }
    config
}

/// The session, the transports it asked for, and a model of what the
/// application asked for and was told.
struct Run {
    session: Session,
    max_pending: usize,
    now: Instant,
    /// The transport the session asked for last and has not closed.
    current: Option<ConnectionId>,
    current_open: bool,
    /// A WebSocket tried from an event stream.
    probe: Option<ConnectionId>,
    /// Transports the session closed itself.
    closed: BTreeSet<u64>,
    connects: u64,
    suspended: bool,
    auto_token: bool,
    /// The application's subscriptions: topic and presence.
    intents: BTreeMap<String, bool>,
    published: Vec<String>,
    ended: BTreeSet<String>,
    status: Status,
    stopped: bool,
    /// The last `seq` delivered per topic since the session last had reason
    /// to start over (see `forget`).
    delivered: BTreeMap<String, u64>,
    epoch: Option<String>,
}

impl Run {
    fn new(config: SessionConfig) -> Self {
        let max_pending = config.max_pending_publishes;
        let now = Instant::now();
        let mut run = Self {
            session: Session::new(config, now),
            max_pending,
            now,
            current: None,
            current_open: false,
            probe: None,
            closed: BTreeSet::new(),
            connects: 0,
            suspended: false,
            auto_token: true,
            intents: BTreeMap::new(),
            published: Vec::new(),
            ended: BTreeSet::new(),
            status: Status::Connecting,
            stopped: false,
            delivered: BTreeMap::new(),
            epoch: None,
        };
        // `new` announces Connecting; the model starts there.
        assert!(matches!(run.session.poll_output(), Some(Output::Event(SessionEvent::Status(Status::Connecting)))));
        run.session.handle_timeout(now);
        run.drain(false);
        run
    }

    fn step(&mut self, line: &str) {
        let now = self.now;
        let Some(command) = line.strip_prefix('!') else {
            if let Some(id) = self.current.filter(|_| self.current_open) {
                self.observe_frame(line);
                self.session.handle_frame(now, id, line);
            }
            return self.drain(false);
        };
        let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
        match verb {
            "open" => {
                if let Some(id) = self.current.filter(|_| !self.current_open) {
                    self.session.handle_open(now, id);
                    return self.drain(true);
                }
            }
            "fail" => {
                if let Some(id) = self.current.take() {
                    self.current_open = false;
                    self.session.handle_close(now, id, None, "connection reset");
                }
            }
            "close" => {
                if let Some(id) = self.current.take() {
                    self.current_open = false;
                    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                    self.session.handle_close(now, id, code.parse().ok(), reason);
                }
            }
            "advance" => return self.advance(Duration::from_millis(rest.parse::<u64>().unwrap_or(0).min(100_000_000))),
            "token" => match rest {
                "manual" => self.auto_token = false,
                "ok" => self.session.handle_token(now, Ok("tok".into())),
                _ => self.session.handle_token(now, Err("no token".into())),
            },
            "sub" => {
                // `sub TOPIC`, `sub TOPIC presence`, or `sub TOPIC EPOCH:SEQ` (a first position from REST).
                let (topic, option) = rest.split_once(' ').unwrap_or((rest, ""));
                let presence = option == "presence";
                let mut options = SubscribeOptions::default();
                if presence {
                    options = options.presence();
                } else if let Some((epoch, seq)) = option.split_once(':')
                    && let Ok(seq) = seq.parse()
                {
                    options = options.from(Position::new(epoch, seq));
                }
                if let Ok(parsed) = topic.parse::<Topic>()
                    && self.session.subscribe(now, parsed, options).is_ok()
                {
                    *self.intents.entry(topic.to_owned()).or_default() |= presence;
                }
            }
            "unsub" => {
                if self.session.unsubscribe(now, rest) {
                    assert!(self.intents.remove(rest).is_some(), "unsubscribed {rest}, which the application never held");
                    self.forget_unwanted();
                }
            }
            "pub" => {
                // `pub TOPIC`, `pub TOPIC ephemeral`, or `pub TOPIC N` (conditional on seq N).
                let (topic, option) = rest.split_once(' ').unwrap_or((rest, ""));
                let mut options = PublishOptions::default();
                if option == "ephemeral" {
                    options = options.ephemeral();
                } else if let Ok(seq) = option.parse() {
                    options = options.if_seq(seq);
                }
                if let Ok(topic) = topic.parse::<Topic>() {
                    let data = EventData {
                        entity_id: "e".into(),
                        payload: Payload::default(),
                        user_id: None,
                        tenant_id: None,
                        timestamp: "2026-11-25T10:00:00Z".into(),
                    };
                    if let Ok(id) = self.session.publish(now, topic, EventKind::Updated, data, options) {
                        assert!(!self.published.contains(&id.0), "publish id {id} given twice");
                        self.published.push(id.0);
                    }
                }
            }
            "ack" | "ack-dup" => {
                let id = rest.parse::<usize>().ok().and_then(|n| self.published.get(n)).cloned();
                if let (Some(transport), Some(id)) = (self.current.filter(|_| self.current_open), id) {
                    let frame = format!(r#"{{"type":"ack","id":"{id}","seq":1,"duplicate":{}}}"#, verb == "ack-dup");
                    self.session.handle_frame(now, transport, &frame);
                }
            }
            "probe-open" => {
                if let Some(id) = self.probe.take() {
                    // The session closes the event stream it leaves.
                    self.current = Some(id);
                    self.session.handle_open(now, id);
                    return self.drain(true);
                }
            }
            "probe-fail" => {
                if let Some(id) = self.probe.take() {
                    self.session.handle_close(now, id, None, "blocked");
                }
            }
            "wake" => {
                self.suspended = false;
                self.session.wake(now);
            }
            "suspend" => {
                self.suspended = !self.stopped;
                self.session.suspend(now);
            }
            "closeapp" => self.session.close(now),
            _ => {}
        }
        self.drain(false)
    }

    /// Moves the clock by `by`, firing each timer at its deadline.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        let mut fired = 0;
        while let Some(at) = self.session.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.session.handle_timeout(self.now);
            self.drain(false);
            fired += 1;
            assert!(fired < 100_000, "timers keep firing without time passing");
        }
        self.now = until;
        self.session.handle_timeout(until);
        self.drain(false)
    }

    /// What the model learns from a frame before the session reads it.
    fn observe_frame(&mut self, line: &str) {
        match ServerMessage::decode(line) {
            Ok(ServerMessage::Connected(connected)) => {
                if connected.epoch.is_some() && self.epoch.is_some() && connected.epoch != self.epoch {
                    self.delivered.clear();
                }
                self.epoch = connected.epoch;
            }
            // The server placed these topics anew: the next `seq` may be below what was seen.
            Ok(ServerMessage::Subscribed(subscribed)) if subscribed.recovered == Some(false) => {
                for topic in subscribed.topics.iter().chain(subscribed.last_seq.keys()) {
                    self.delivered.remove(topic.as_str());
                }
            }
            _ => {}
        }
    }

    /// Carries out every output; `opening` when the step opened a transport.
    fn drain(&mut self, opening: bool) {
        let mut resubscribed = BTreeSet::new();
        let mut connected = false;
        if opening && self.epoch.is_none() {
            // Without an epoch the new connection's numbers need not continue the old ones.
            self.delivered.clear();
        }
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::NeedToken(_) => {
                    assert!(!self.stopped, "a stopped session asked for a token");
                    if self.auto_token {
                        self.session.handle_token(self.now, Ok("tok".into()));
                    }
                }
                Output::Connect { id, transport, .. } => {
                    assert!(!self.stopped, "a stopped session connects");
                    assert_eq!(id.0, self.connects, "connection ids are new and in order");
                    self.connects += 1;
                    if self.current.is_some() {
                        assert!(
                            self.probe.is_none() && self.current_open && transport == Transport::WebSocket,
                            "a second transport that is not a WebSocket tried from an open event stream"
                        );
                        self.probe = Some(id);
                    } else {
                        self.current = Some(id);
                        self.current_open = false;
                    }
                }
                Output::Send { id, text } => {
                    assert!(!self.stopped, "a stopped session sends {text}");
                    assert_eq!(Some(id), self.current, "sent to a transport that is not the current one: {text}");
                    if let Ok(ClientMessage::Subscribe(subscribe)) = ClientMessage::decode(&text) {
                        resubscribed.extend(subscribe.topics.into_iter().map(Topic::into_string));
                    }
                }
                Output::Close { id, .. } => {
                    if self.probe == Some(id) {
                        self.probe = None;
                    } else if self.current == Some(id) {
                        self.current = None;
                        self.current_open = false;
                    }
                    assert!(id.0 < self.connects, "closed transport {id}, which was never asked for");
                    assert!(self.closed.insert(id.0), "transport {id} closed twice");
                }
                Output::Event(event) => {
                    if let SessionEvent::Status(Status::Connected { .. }) = &event {
                        connected = true;
                        self.current_open = true;
                    }
                    self.on_event(event);
                }
                _ => {}
            }
        }
        if connected {
            for topic in self.intents.keys() {
                assert!(resubscribed.contains(topic), "the new connection did not subscribe {topic} again");
            }
        }
    }

    fn on_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Status(status) => {
                assert!(!self.stopped, "status {status:?} after the session stopped");
                assert_ne!(status, self.status, "a status announced twice in a row");
                let legal = match (&self.status, &status) {
                    (_, Status::Disconnected { .. }) => true,
                    (_, Status::Connecting) => false,
                    (Status::Connected { transport: Transport::ServerSentEvents }, Status::Connected { .. }) => true,
                    (Status::Connected { .. }, Status::Connected { .. }) => false,
                    _ => true,
                };
                assert!(legal, "illegal status change {:?} -> {status:?}", self.status);
                self.stopped = matches!(status, Status::Disconnected { .. });
                self.status = status;
            }
            SessionEvent::Event(event) => {
                let topic = event.topic.as_str();
                let wildcard = format!("{}:*", event.topic.resource());
                assert!(
                    self.intents.contains_key(topic) || self.intents.contains_key(&wildcard),
                    "delivered an event of {topic}, which nobody subscribed"
                );
                if let Some(seq) = event.seq {
                    if let Some(last) = self.delivered.insert(topic.to_owned(), seq) {
                        assert!(seq > last, "{topic}: seq {seq} delivered after {last} without a resync");
                    }
                }
            }
            SessionEvent::Resync { topic, .. } => {
                let resource = topic.resource().to_owned();
                let wildcard = topic.is_wildcard();
                self.delivered.retain(|t, _| if wildcard { !t.starts_with(&format!("{resource}:")) } else { *t != topic.as_str() });
            }
            SessionEvent::SubscribeFailed { topic, .. } => {
                assert!(self.intents.remove(&topic).is_some(), "refused {topic}, which the application never held");
                self.forget_unwanted();
            }
            SessionEvent::PublishAcked { id, .. } | SessionEvent::PublishFailed { id, .. } => {
                assert!(self.published.contains(&id.0), "an outcome for {id}, which was never published");
                assert!(self.ended.insert(id.0.clone()), "{id} ended twice");
            }
            _ => {}
        }
    }

    /// Positions of topics no subscription covers are dropped by the session.
    fn forget_unwanted(&mut self) {
        let intents = &self.intents;
        self.delivered.retain(|topic, _| {
            let resource = topic.split(':').next().unwrap_or_default();
            intents.contains_key(topic) || intents.contains_key(&format!("{resource}:*"))
        });
    }

    fn check(&self) {
        let topics: BTreeSet<&str> = self.session.topics().map(Topic::as_str).collect();
        let intents: BTreeSet<&str> = self.intents.keys().map(String::as_str).collect();
        assert_eq!(topics, intents, "the session's subscriptions differ from what the application asked for");
        assert!(self.session.pending_publishes() <= self.max_pending, "the publish queue outgrew its bound");
        assert_eq!(self.session.status(), &self.status, "status() differs from the last status announced");
        assert_eq!(self.session.is_stopped(), self.stopped);
        if self.stopped {
            assert_eq!(self.session.poll_timeout(), None, "a stopped session arms a timer");
            assert_eq!(self.session.pending_publishes(), 0, "a stopped session holds publishes");
        } else if !self.suspended {
            assert!(self.session.poll_timeout().is_some(), "a live session always has a timer");
        }
    }
}
