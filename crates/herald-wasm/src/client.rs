//! `HeraldClient`: the session, a browser WebSocket, one timer, and the
//! page's lifecycle events.
//!
//! The session lives in an `Rc<RefCell<_>>`. Every browser callback borrows
//! it only to feed an input and collect outputs; JavaScript callbacks are
//! called after the borrow ends, so they may call back into the client.

use std::{cell::RefCell, rc::Rc};

use gloo_timers::callback::Timeout;
use herald_core::{
    ConnectionId, Instant, Output, Router, Session, SessionEvent, SubscribeOptions, TokenReason, Transport,
};
use herald_protocol::{EventData, EventKind, Topic, close};
use js_sys::{Function, Promise};
use wasm_bindgen::{JsCast, prelude::*};

use crate::{
    js,
    options::{self, DriverOptions, TokenSource},
    transport::{Signal, Transports},
};

/// A Herald connection in the browser. It reconnects with backoff and
/// jitter, resubscribes, recovers missed events by `seq`, retransmits
/// unacked publishes, pings a connection as soon as a hidden tab becomes
/// visible, reconnects at once when the browser comes back online, and
/// leaves the back/forward cache cleanly.
#[wasm_bindgen]
pub struct HeraldClient {
    inner: Rc<RefCell<Inner>>,
}

/// A client freed without `close()` (garbage collected, or `free()`d)
/// closes its connection rather than leave a socket without handlers.
impl Drop for HeraldClient {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for HeraldClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeraldClient").field("status", self.inner.borrow().session.status()).finish_non_exhaustive()
    }
}

struct Listener {
    target: web_sys::EventTarget,
    kind: &'static str,
    callback: js::Handler,
}

/// One `subscribe` call: its callback, and its `live` Promise until the
/// topic is live, unconfirmed or refused.
struct Subscriber {
    id: u32,
    callback: Function,
    live: Option<(Function, Function)>,
}

impl Subscriber {
    /// Queues the calls `event` makes for this subscriber: its callback, and
    /// its `live` Promise on the server's answer.
    fn deliver(&mut self, event: SessionEvent, calls: &mut Vec<Call>) {
        let value = match &event {
            SessionEvent::Live { topic, position } => {
                let position = position.as_ref().map_or(JsValue::NULL, js::position);
                self.settle(Ok(position.clone()), calls);
                js::live(topic, &position)
            }
            SessionEvent::Unconfirmed { topic } => {
                self.settle(Ok(JsValue::NULL), calls);
                js::Fields::new().set("type", "unconfirmed").set("topic", topic.as_str()).done()
            }
            SessionEvent::SubscribeFailed { topic, error } => {
                self.settle(Err(js::refusal(topic, error)), calls);
                js::refused(topic, error)
            }
            SessionEvent::Event(event) => js::event(event),
            SessionEvent::Resync { topic, reason } => js::resync(topic, *reason),
            SessionEvent::Presence(presence) => js::presence(presence),
            SessionEvent::PresenceDiff(diff) => js::presence_diff(diff),
            _ => return,
        };
        calls.push((self.callback.clone(), value));
    }

    fn settle(&mut self, outcome: Result<JsValue, JsValue>, calls: &mut Vec<Call>) {
        if let Some((resolve, reject)) = self.live.take() {
            calls.push(match outcome {
                Ok(value) => (resolve, value),
                Err(error) => (reject, error),
            });
        }
    }
}

pub(crate) struct Inner {
    session: Session,
    token: TokenSource,
    transports: Transports,
    timer: Option<Timeout>,
    subscribers: Router<Subscriber>,
    on_status: Vec<(u32, Function)>,
    on_raw: Vec<(u32, Function)>,
    /// Promises of publishes waiting for their ack: `(id, resolve, reject)`.
    publishes: Vec<(String, Function, Function)>,
    listeners: Vec<Listener>,
    next_id: u32,
    driver: DriverOptions,
    /// Releases the connection once the page has stayed hidden `driver.background_timeout`.
    background: Option<Timeout>,
}

/// A JavaScript call to make once the session is no longer borrowed.
type Call = (Function, JsValue);

#[wasm_bindgen]
impl HeraldClient {
    /// `new HeraldClient({ url, token | getToken, auth, heartbeatMs, heartbeatTimeoutMs,
    /// connectTimeoutMs, publishTimeoutMs, backgroundTimeoutMs, debug,
    /// backoff: { initialMs, maxMs, factor, jitter, maxAttempts, maxAdvisedMs },
    /// fallback: false | { sseAfter, upgradeAfterMs, url } })`, as the
    /// package's `index.js` passes them after checking them (`url` absolute,
    /// `auth` defaulting to `'message'`, `debug` a function of `(kind, value)`):
    /// that is where a wrong option throws.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Self {
        let (config, token, driver) = options::parse(&options);
        let now = Instant::now();
        let inner = Rc::new_cyclic(|weak: &std::rc::Weak<RefCell<Inner>>| {
            let sink = Feed(weak.clone());
            RefCell::new(Inner {
                session: Session::new(config, now),
                token,
                transports: Transports::new(sink),
                timer: None,
                subscribers: Router::default(),
                on_status: Vec::new(),
                on_raw: Vec::new(),
                publishes: Vec::new(),
                listeners: Vec::new(),
                next_id: 0,
                driver,
                background: None,
            })
        });
        listen_to_the_page(&inner);
        // The first attempt is due now but starts from the timer, after the
        // current task: a client closed right away (React StrictMode mounts,
        // unmounts and mounts again in one go) never opens a socket.
        pump(&inner);
        Self { inner }
    }

    /// Calls `callback` with every event of `topic` (or `resource:*`) in the
    /// seed's shape (`ephemeral: true` on ephemeral ones); with
    /// `{type: 'live', topic, position}` once the server confirmed the
    /// subscription (and again after a reconnect that recovered what was
    /// missed), `{type: 'unconfirmed', topic}` from a server that never
    /// confirms, `{type: 'resync', topic, reason}` when events may have been
    /// missed (drop what you cached for the topic),
    /// `{type: 'presence' | 'presence_diff', ...}` with `options.presence`
    /// (listed with `options.meta`, an object of at most 512 bytes, as JSON),
    /// and `{type: 'refused', topic, code, message}` if the server does not
    /// allow the topic. `options.since` (`{epoch, seq}`, e.g. from a REST
    /// response) replays what came after it, or says resync.
    ///
    /// Returns a function that unsubscribes, which also has `unsubscribe()`
    /// and `live`: a Promise of the position (or `null`) once the topic is
    /// live or unconfirmed, rejected with the server's `code` and `message`
    /// on a refusal. Throws an `Error` for an invalid topic.
    pub fn subscribe(&self, topic: &str, callback: Function, options: JsValue) -> Result<Function, JsValue> {
        let topic = Topic::new(topic).map_err(|e| js::error(&e.to_string()))?;
        let mut wanted = SubscribeOptions::default();
        wanted.presence = options::flag(&options, "presence");
        wanted.meta = options::meta(&options)?;
        // `since` (`{epoch, seq}`, a position the application got with its
        // data) as `index.js` checked it.
        wanted.from = options::position(&options, "since").unwrap_or_default();
        let options = wanted;
        let mut settle = None;
        let live = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let mut calls = Vec::new();
        let id = {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            let id = inner.next_id();
            let subscriber = Subscriber { id, callback, live: settle };
            let deliver = |s: &mut Subscriber, event| s.deliver(event, &mut calls);
            let subscribed = inner.subscribers.subscribe(
                &mut inner.session,
                Instant::now(),
                topic.clone(),
                subscriber,
                options,
                deliver,
            );
            subscribed.map_err(|(error, _)| js::error(&error.to_string()))?;
            id
        };
        call_all(calls);
        pump(&self.inner);
        let weak = Rc::downgrade(&self.inner);
        let unsubscribe: Function = Closure::once_into_js(move || {
            let Some(inner) = weak.upgrade() else { return };
            {
                let mut state = inner.borrow_mut();
                if state.subscribers.retain(topic.as_str(), |s| s.id != id) {
                    state.session.unsubscribe(Instant::now(), topic.as_str());
                }
            }
            pump(&inner);
        })
        .unchecked_into();
        // Callable as it always was (an effect's cleanup), and a handle too.
        js::Fields::assign(&unsubscribe, "unsubscribe", &unsubscribe);
        js::Fields::assign(&unsubscribe, "live", &live);
        Ok(unsubscribe)
    }

    /// Publishes an event; resolves with `{id, seq, position, duplicate}` on
    /// the ack, rejects with an `Error` whose `kind` says why (see
    /// `js::publish_error`). `options`: `{ephemeral, ifSeq, traceId}`. While
    /// offline it waits in a bounded queue (an ephemeral one is refused).
    pub fn publish(&self, topic: &str, event: &str, entity_id: &str, payload: JsValue, options: JsValue) -> Promise {
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        let (resolve, reject) = settle.expect("the Promise executor runs at once");
        let result = (|| {
            let topic = Topic::new(topic).map_err(|e| js::failure("invalid", &e.to_string()))?;
            let data = EventData {
                entity_id: entity_id.to_owned(),
                payload: options::payload(&payload)?,
                user_id: None,
                tenant_id: None,
                timestamp: String::from(js_sys::Date::new_0().to_iso_string()),
            };
            let options = options::publish(&options)?;
            let mut inner = self.inner.borrow_mut();
            let id = inner
                .session
                .publish(Instant::now(), topic, EventKind::from(event), data, options)
                .map_err(|e| js::publish_refused(&e))?;
            inner.publishes.push((id.0, resolve, reject.clone()));
            Ok::<_, JsValue>(())
        })();
        if let Err(error) = result {
            let _ = reject.call1(&JsValue::NULL, &error);
        }
        pump(&self.inner);
        promise
    }

    /// What the other members of `topic`'s presence see of this user: an
    /// object of at most 512 bytes (a name, a colour), for a topic this
    /// client subscribed with presence. Kept for later connections. Throws
    /// an `Error` that says why otherwise.
    #[wasm_bindgen(js_name = setPresence)]
    pub fn set_presence(&self, topic: &str, meta: JsValue) -> Result<(), JsValue> {
        let meta = options::payload(&meta)?;
        let set = self.inner.borrow_mut().session.set_presence(Instant::now(), topic, meta);
        pump(&self.inner);
        set.map_err(|e| js::error(&e.to_string()))
    }

    /// A new token for the connection: sent at once as a `refresh` while
    /// connected (the session stays, nothing is resubscribed), and used for
    /// every connection after. For clients made with `token`; a `getToken`
    /// client asks its provider.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: String) {
        let mut inner = self.inner.borrow_mut();
        if !matches!(inner.token, TokenSource::Static(_)) {
            return;
        }
        inner.token = TokenSource::Static(token.clone());
        inner.session.handle_token(Instant::now(), Ok(token));
        drop(inner);
        pump(&self.inner);
    }

    /// Calls `callback` with every status change; returns a function that
    /// stops it. The first call happens at once with the current status.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, callback: Function) -> Function {
        let status = js::status(self.inner.borrow().session.status());
        let _ = callback.call1(&JsValue::NULL, &status);
        self.listen(callback, |inner| &mut inner.on_status)
    }

    /// Calls `callback` with every JSON message that is not a Herald message
    /// (from plain broadcast servers), parsed; returns a function that stops it.
    #[wasm_bindgen(js_name = onRaw)]
    pub fn on_raw(&self, callback: Function) -> Function {
        self.listen(callback, |inner| &mut inner.on_raw)
    }

    /// The current status, as `onStatus` reports it.
    pub fn status(&self) -> JsValue {
        js::status(self.inner.borrow().session.status())
    }

    /// Closes the connection (1000) for good and stops listening to the page.
    pub fn close(&self) {
        self.inner.borrow_mut().session.close(Instant::now());
        pump(&self.inner);
        let mut inner = self.inner.borrow_mut();
        for listener in inner.listeners.drain(..) {
            let _ = listener
                .target
                .remove_event_listener_with_callback(listener.kind, listener.callback.as_ref().unchecked_ref());
        }
        inner.timer = None;
        inner.background = None;
    }

    fn listen(&self, callback: Function, list: fn(&mut Inner) -> &mut Vec<(u32, Function)>) -> Function {
        let id = {
            let mut inner = self.inner.borrow_mut();
            let id = inner.next_id();
            list(&mut inner).push((id, callback));
            id
        };
        let weak = Rc::downgrade(&self.inner);
        Closure::once_into_js(move || {
            if let Some(inner) = weak.upgrade() {
                list(&mut inner.borrow_mut()).retain(|(entry, _)| *entry != id);
            }
        })
        .unchecked_into()
    }
}

impl Inner {
    fn take_publish(&mut self, id: &str) -> Option<(String, Function, Function)> {
        let at = self.publishes.iter().position(|(p, _, _)| p == id)?;
        Some(self.publishes.swap_remove(at))
    }

    fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Tells `options.debug`, if any, what the session decided: `kind` and a
    /// value the package's logger turns into a line.
    fn trace(&self, kind: &str, value: &JsValue) {
        if let Some(debug) = &self.driver.debug {
            let _ = debug.call2(&JsValue::NULL, &JsValue::from_str(kind), value);
        }
    }
}

#[wasm_bindgen]
extern "C" {
    /// `globalThis.reportError`: the console, `window.onerror`, error trackers.
    #[wasm_bindgen(js_name = reportError)]
    fn report_error(error: &JsValue);
}

/// Feeds what the transports report to the session, then pumps.
#[derive(Clone)]
pub(crate) struct Feed(std::rc::Weak<RefCell<Inner>>);

impl Feed {
    pub(crate) fn signal(&self, id: ConnectionId, signal: Signal) {
        if let Some(inner) = self.0.upgrade() {
            on_signal(&mut inner.borrow_mut(), id, signal);
            pump(&inner);
        }
    }
}

/// What a transport reported, fed to the session.
fn on_signal(inner: &mut Inner, id: ConnectionId, signal: Signal) {
    let now = Instant::now();
    match signal {
        Signal::Open => inner.session.handle_open(now, id),
        Signal::Frame(text) => {
            if inner.driver.debug.is_some() {
                inner.trace("receive", &JsValue::from_str(&text));
            }
            inner.session.handle_frame(now, id, &text);
        }
        Signal::Closed { code, reason } => {
            inner.transports.close(id, close::NORMAL, "");
            inner.session.handle_close(now, id, code, &reason);
        }
    }
}

/// Carries out every output of the session, then arms the timer.
fn pump(inner: &Rc<RefCell<Inner>>) {
    loop {
        let outputs: Vec<Output> = {
            let mut state = inner.borrow_mut();
            std::iter::from_fn(|| state.session.poll_output()).collect()
        };
        if outputs.is_empty() {
            break;
        }
        let mut calls: Vec<Call> = Vec::new();
        for output in outputs {
            perform(inner, output, &mut calls);
        }
        call_all(calls);
    }
    arm_timer(inner);
}

/// Calls application code, once the session is no longer borrowed.
fn call_all(calls: Vec<Call>) {
    for (function, argument) in calls {
        // An exception in application code must not break the client, nor
        // go unseen: it is reported as an uncaught one would be.
        if let Err(error) = function.call1(&JsValue::NULL, &argument) {
            report_error(&error);
        }
    }
}

fn perform(inner: &Rc<RefCell<Inner>>, output: Output, calls: &mut Vec<Call>) {
    if inner.borrow().driver.debug.is_some() {
        trace_output(&inner.borrow(), &output);
    }
    match output {
        Output::NeedToken(reason) => request_token(inner, reason),
        Output::Connect { id, url, transport } => {
            let mut state = inner.borrow_mut();
            if let Err(problem) = state.transports.open(id, &url, transport) {
                state.session.handle_close(Instant::now(), id, None, &problem);
            }
        }
        Output::Send { id, text } => {
            let mut state = inner.borrow_mut();
            if state.transports.send(id, text).is_err() {
                state.transports.close(id, close::NORMAL, "");
                state.session.handle_close(Instant::now(), id, None, "send failed");
            }
        }
        Output::Close { id, code, reason } => inner.borrow_mut().transports.close(id, code, &reason),
        Output::Event(event) => dispatch(&mut inner.borrow_mut(), event, calls),
        _ => {}
    }
}

fn trace_output(inner: &Inner, output: &Output) {
    match output {
        Output::Connect { url, transport, .. } => {
            let transport = if *transport == Transport::ServerSentEvents { "sse" } else { "websocket" };
            inner.trace("connect", &js::Fields::new().set("url", url.as_str()).set("transport", transport).done());
        }
        Output::Send { text, .. } => inner.trace("send", &JsValue::from_str(text)),
        Output::Close { code, reason, .. } => {
            inner.trace("close", &js::Fields::new().set("code", *code).set("reason", reason.as_str()).done());
        }
        Output::Event(SessionEvent::Status(status)) => inner.trace("status", &js::status(status)),
        Output::Event(SessionEvent::Resync { topic, reason }) => inner.trace("resync", &js::resync(topic, *reason)),
        _ => {}
    }
}

fn request_token(inner: &Rc<RefCell<Inner>>, reason: TokenReason) {
    // Decided under a short borrow: answering needs a mutable one.
    let source = match &inner.borrow().token {
        TokenSource::Provider(provider) => Ok(provider.clone()),
        TokenSource::Static(token) => Err(token.clone()),
        TokenSource::None => Err(String::new()),
    };
    let provider = match source {
        Ok(provider) => provider,
        Err(token) => return inner.borrow_mut().session.handle_token(Instant::now(), Ok(token)),
    };
    let reason = match reason {
        TokenReason::Unauthorized => "unauthorized",
        TokenReason::Refresh => "refresh",
        _ => "connect",
    };
    let weak = Rc::downgrade(inner);
    let answer =
        provider.call1(&JsValue::NULL, &JsValue::from_str(reason)).unwrap_or_else(|e| Promise::reject(&e).into());
    js::settled(
        &answer,
        Box::new(move |answer| {
            let token = match answer {
                Ok(token) => token.as_string().ok_or_else(|| "getToken must return a string".to_owned()),
                Err(error) => Err(js::describe(&error)),
            };
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().session.handle_token(Instant::now(), token);
                pump(&inner);
            }
        }),
    );
}

fn dispatch(inner: &mut Inner, event: SessionEvent, calls: &mut Vec<Call>) {
    match event {
        SessionEvent::Status(status) => {
            let value = js::status(&status);
            calls.extend(inner.on_status.iter().map(|(_, f)| (f.clone(), value.clone())));
        }
        SessionEvent::PublishAcked { id, seq, position, duplicate } => {
            if let Some((_, resolve, _)) = inner.take_publish(&id.0) {
                calls.push((resolve, js::ack(&id, seq, position.as_ref(), duplicate)));
            }
        }
        SessionEvent::PublishFailed { id, error } => {
            if let Some((_, _, reject)) = inner.take_publish(&id.0) {
                calls.push((reject, js::publish_failed(&error)));
            }
        }
        SessionEvent::Raw(text) => {
            let value = js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL);
            calls.extend(inner.on_raw.iter().map(|(_, f)| (f.clone(), value.clone())));
        }
        // Which subscriber gets what is the core's rule; here it is only delivered.
        event => inner.subscribers.route(event, |subscriber, event| subscriber.deliver(event, calls)),
    }
}

fn arm_timer(inner: &Rc<RefCell<Inner>>) {
    let mut state = inner.borrow_mut();
    // Dropping the old Timeout cancels it (wasm-bindgen defers freeing one that is running).
    state.timer = None;
    let Some(at) = state.session.poll_timeout() else { return };
    // setTimeout reads its delay as a signed 32-bit number and fires at once
    // past it (24.8 days): wait that long at most, then the next arm waits on.
    let millis = at.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as u32;
    let weak = Rc::downgrade(inner);
    state.timer = Some(Timeout::new(millis, move || {
        if let Some(inner) = weak.upgrade() {
            inner.borrow_mut().session.handle_timeout(Instant::now());
            pump(&inner);
        }
    }));
}

/// Reconnect at once when the browser is back online; check the connection
/// when a hidden tab becomes visible (its timers were throttled); close for
/// the back/forward cache and come back when the page is restored.
fn listen_to_the_page(inner: &Rc<RefCell<Inner>>) {
    let Some(window) = web_sys::window() else { return };
    let document = window.document();
    let signal = |kind: &'static str, target: web_sys::EventTarget, act: fn(&mut Session, &web_sys::Event)| {
        let weak = Rc::downgrade(inner);
        let callback = js::Handler::new(move |event: web_sys::Event| {
            if let Some(inner) = weak.upgrade() {
                act(&mut inner.borrow_mut().session, &event);
                pump(&inner);
            }
        });
        let _ = target.add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref());
        Listener { target, kind, callback }
    };
    let mut listeners = vec![
        signal("online", window.clone().into(), |session, _| session.wake(Instant::now())),
        signal("pageshow", window.clone().into(), |session, event| {
            if event.dyn_ref::<web_sys::PageTransitionEvent>().is_some_and(|e| e.persisted()) {
                session.wake(Instant::now());
            }
        }),
        signal("pagehide", window.clone().into(), |session, _| session.suspend(Instant::now())),
    ];
    if let Some(document) = document {
        let weak = Rc::downgrade(inner);
        let callback = js::Handler::new(move |_| {
            if let Some(inner) = weak.upgrade() {
                on_visibility(&inner, true);
                pump(&inner);
            }
        });
        let target: web_sys::EventTarget = document.into();
        let _ = target.add_event_listener_with_callback("visibilitychange", callback.as_ref().unchecked_ref());
        listeners.push(Listener { target, kind: "visibilitychange", callback });
    }
    inner.borrow_mut().listeners = listeners;
    on_visibility(inner, false);
}

fn page_hidden() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Hidden)
}

/// A hidden tab's timers are throttled, which the session must not read as
/// sleep; after `backgroundTimeoutMs` hidden, the connection is released.
/// Visible again: the session checks the link (or reconnects, recovering by
/// position what was missed meanwhile). `changed`: false when the client
/// starts, which must not start its first attempt before the timer does.
fn on_visibility(inner: &Rc<RefCell<Inner>>, changed: bool) {
    let hidden = page_hidden();
    let mut state = inner.borrow_mut();
    state.session.set_timers_may_lag(hidden);
    state.background = None;
    if !hidden && changed {
        state.session.wake(Instant::now());
    } else if let Some(after) = state.driver.background_timeout.filter(|_| hidden) {
        let weak = Rc::downgrade(inner);
        let millis = after.as_millis().min(i32::MAX as u128) as u32;
        state.background = Some(Timeout::new(millis, move || {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().session.suspend(Instant::now());
                pump(&inner);
            }
        }));
    }
}
