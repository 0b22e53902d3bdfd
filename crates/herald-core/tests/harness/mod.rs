//! Drives a `Session` with a fake clock and a scripted server: no sockets,
//! no sleeps.

use std::time::Duration;

use herald_core::{
    ConnectionId, Instant, Output, Session, SessionConfig, SessionEvent, Status, TokenReason, Transport,
};
use serde_json::Value;

pub(crate) struct Harness {
    pub(crate) session: Session,
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    /// The transport frames go to and come from (after Connect, until Close).
    pub(crate) current: Option<ConnectionId>,
    /// A WebSocket being tried while `current` is an event stream.
    pub(crate) probe: Option<ConnectionId>,
    pub(crate) connects: Vec<(Instant, String)>,
    /// The kind of every transport asked for, in order.
    pub(crate) transports: Vec<Transport>,
    kinds: Vec<(ConnectionId, Transport)>,
    pub(crate) closes: Vec<(ConnectionId, u16, String)>,
    pub(crate) sent: Vec<Value>,
    pub(crate) events: Vec<SessionEvent>,
    pub(crate) token_requests: Vec<TokenReason>,
    /// Answers token requests at once when set.
    pub(crate) token: Option<Result<String, String>>,
}

#[allow(dead_code, reason = "each test binary uses a different subset")]
impl Harness {
    pub(crate) fn new(mut config: SessionConfig) -> Self {
        config.seed = 42;
        let start = Instant::now();
        let session = Session::new(config, start);
        let mut h = Self {
            session,
            start,
            now: start,
            current: None,
            probe: None,
            connects: Vec::new(),
            transports: Vec::new(),
            kinds: Vec::new(),
            closes: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            token_requests: Vec::new(),
            token: Some(Ok("tok-1".into())),
        };
        h.session.handle_timeout(start);
        h.drain();
        h
    }

    pub(crate) fn config(url: &str) -> SessionConfig {
        SessionConfig::new(url)
    }

    pub(crate) fn drain(&mut self) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::NeedToken(reason) => {
                    self.token_requests.push(reason);
                    if let Some(answer) = self.token.clone() {
                        self.session.handle_token(self.now, answer);
                    }
                }
                Output::Connect { id, url, transport } => {
                    if let Some(current) = self.current {
                        let on_stream = self.kinds.contains(&(current, Transport::ServerSentEvents));
                        assert!(
                            self.probe.is_none() && transport == Transport::WebSocket && on_stream,
                            "Connect while transport {:?} is held, and not a WebSocket tried from an event stream",
                            self.current
                        );
                        self.probe = Some(id);
                    } else {
                        self.current = Some(id);
                    }
                    self.connects.push((self.now, url));
                    self.transports.push(transport);
                    self.kinds.push((id, transport));
                }
                Output::Send { id, text } => {
                    assert_eq!(Some(id), self.current, "Send to a transport that is not the current one: {text}");
                    self.sent.push(serde_json::from_str(&text).expect("the session sends JSON"));
                }
                Output::Close { id, code, reason } => {
                    if self.probe == Some(id) {
                        self.probe = None;
                    } else if self.current == Some(id) {
                        self.current = None;
                    } else {
                        assert!(self.closes.iter().all(|c| c.0 != id), "Close of {id} twice");
                    }
                    self.closes.push((id, code, reason));
                }
                Output::Event(event) => self.events.push(event),
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    /// Moves the fake clock and fires whatever is due.
    pub(crate) fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.session.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
        self.session.handle_timeout(self.now);
        self.drain();
    }

    /// The machine sleeps through the next timer: the clock jumps `late`
    /// past it, then the timer fires.
    pub(crate) fn oversleep(&mut self, late: Duration) {
        let at = self.session.poll_timeout().expect("a timer is armed");
        self.now = at + late;
        self.session.handle_timeout(self.now);
        self.drain();
    }

    /// Jumps to the next timer and fires it.
    pub(crate) fn fire_next_timer(&mut self) -> Duration {
        let at = self.session.poll_timeout().expect("a timer is armed");
        let waited = at.saturating_duration_since(self.now);
        self.now = self.now.max(at);
        self.session.handle_timeout(self.now);
        self.drain();
        waited
    }

    pub(crate) fn open(&mut self) {
        let id = self.current.expect("a Connect to open");
        self.session.handle_open(self.now, id);
        self.drain();
    }

    /// The WebSocket tried from an event stream opens: it becomes current.
    pub(crate) fn open_probe(&mut self) {
        let id = self.probe.take().expect("a WebSocket being tried");
        let stream = self.current.replace(id).expect("the event stream it was tried from");
        self.session.handle_open(self.now, id);
        self.drain();
        assert!(self.closes.iter().any(|c| c.0 == stream), "the event stream {stream} is closed on the upgrade");
    }

    /// The WebSocket tried from an event stream fails.
    pub(crate) fn fail_probe(&mut self) {
        let id = self.probe.take().expect("a WebSocket being tried");
        self.session.handle_close(self.now, id, None, "blocked");
        self.drain();
    }

    pub(crate) fn recv(&mut self, text: &str) {
        let id = self.current.expect("an open transport");
        self.session.handle_frame(self.now, id, text);
        self.drain();
    }

    pub(crate) fn recv_json(&mut self, value: Value) {
        self.recv(&value.to_string());
    }

    /// The transport closed (or failed to open) with `code`.
    pub(crate) fn server_close(&mut self, code: Option<u16>, reason: &str) {
        let id = self.current.take().expect("a transport to close");
        self.session.handle_close(self.now, id, code, reason);
        self.drain();
    }

    /// Connects: fire timers until a Connect comes, then open it.
    pub(crate) fn connect(&mut self) {
        let mut guard = 0;
        while self.current.is_none() {
            self.fire_next_timer();
            guard += 1;
            assert!(guard < 100, "no Connect after 100 timers");
        }
        self.open();
    }

    pub(crate) fn take_sent(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.sent)
    }

    pub(crate) fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn statuses(&self) -> Vec<Status> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Status(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn last_status(&self) -> Status {
        self.session.status().clone()
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

/// A Herald event frame.
#[allow(dead_code, reason = "each test binary uses a different subset")]
pub(crate) fn event(topic: &str, seq: u64) -> Value {
    serde_json::json!({
        "topic": topic, "event": "UPDATED",
        "data": {"entity_id": "e1", "payload": {"n": seq}, "timestamp": "2026-11-25T10:00:00Z"},
        "seq": seq,
    })
}
