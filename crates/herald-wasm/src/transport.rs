//! The transports the session asks for: a browser `WebSocket`, or — where a
//! proxy blocks WebSocket — an `EventSource` on Herald's frames stream, with
//! the client's frames posted back by `fetch`, one post at a time so the
//! server reads them in order (see `herald_core::Transport`).
//!
//! Every browser callback feeds the session and pumps; the session decides
//! everything else.

use std::{cell::RefCell, rc::Rc};

use herald_core::{ConnectionId, Instant, Transport};
use js_sys::Reflect;
use wasm_bindgen::{JsCast, prelude::*};
use web_sys::{CloseEvent, EventSource, MessageEvent, WebSocket};

use crate::{
    client::{Inner, pump},
    js::{self, Handler},
};

/// One open (or opening) transport.
pub(crate) struct Carrier {
    id: ConnectionId,
    kind: Kind,
}

enum Kind {
    Socket {
        ws: WebSocket,
        // Kept alive as long as the socket; detached before it is dropped.
        _on_open: Handler,
        _on_message: Handler,
        _on_close: Handler,
    },
    Stream {
        source: EventSource,
        /// `/sse/send?session=..`, known once the stream's first message names the session.
        send_url: Option<String>,
        /// Frames waiting for the post in flight.
        queue: Vec<String>,
        posting: bool,
        _on_message: Handler,
        _on_error: Handler,
    },
}

impl Carrier {
    fn detach(&self) {
        match &self.kind {
            Kind::Socket { ws, .. } => {
                ws.set_onopen(None);
                ws.set_onmessage(None);
                ws.set_onclose(None);
            }
            Kind::Stream { source, .. } => {
                source.set_onmessage(None);
                source.set_onerror(None);
            }
        }
    }
}

/// Feeds one input about transport `id` to the session, then pumps.
fn feed(inner: &std::rc::Weak<RefCell<Inner>>, input: impl FnOnce(&mut Inner)) {
    if let Some(inner) = inner.upgrade() {
        input(&mut inner.borrow_mut());
        pump(&inner);
    }
}

/// Opens what the session asked for; a failure to even start is reported
/// as a failed attempt.
pub(crate) fn open(inner: &Rc<RefCell<Inner>>, id: ConnectionId, url: &str, transport: Transport) {
    let carrier = match transport {
        Transport::ServerSentEvents => open_stream(inner, id, url),
        _ => open_socket(inner, id, url),
    };
    let mut state = inner.borrow_mut();
    match carrier {
        Ok(carrier) => state.transports.push(carrier),
        Err(error) => {
            let message = format!("cannot open {url}: {}", js::describe(&error));
            state.session.handle_close(Instant::now(), id, None, &message);
        }
    }
}

fn open_socket(inner: &Rc<RefCell<Inner>>, id: ConnectionId, url: &str) -> Result<Carrier, JsValue> {
    let ws = WebSocket::new(url)?;
    let weak = Rc::downgrade(inner);
    let on_open = Handler::new({
        let weak = weak.clone();
        move |_| feed(&weak, |inner| inner.session.handle_open(Instant::now(), id))
    });
    let on_message = Handler::new({
        let weak = weak.clone();
        move |event: web_sys::Event| {
            if let Some(text) = event.unchecked_into::<MessageEvent>().data().as_string() {
                feed(&weak, |inner| {
                    inner.trace_frame(&text);
                    inner.session.handle_frame(Instant::now(), id, &text);
                });
            }
        }
    });
    let on_close = Handler::new(move |event: web_sys::Event| {
        let event: CloseEvent = event.unchecked_into();
        // 1006 is the browser saying "no close frame", never a server's code.
        let code = Some(event.code()).filter(|code| *code != 1006);
        let reason = event.reason();
        feed(&weak, |inner| {
            inner.forget(id);
            inner.session.handle_close(Instant::now(), id, code, &reason);
        });
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    Ok(Carrier { id, kind: Kind::Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close } })
}

fn open_stream(inner: &Rc<RefCell<Inner>>, id: ConnectionId, url: &str) -> Result<Carrier, JsValue> {
    let source = EventSource::new(url)?;
    // `https://host/sse?mode=frames&..` posts to `https://host/sse/send?session=..`.
    let send_base = format!("{}/send?session=", url.split('?').next().unwrap_or(url));
    let weak = Rc::downgrade(inner);
    let on_message = Handler::new({
        let weak = weak.clone();
        move |event: web_sys::Event| {
            let Some(text) = event.unchecked_into::<MessageEvent>().data().as_string() else { return };
            feed(&weak, |inner| on_stream_message(inner, id, &send_base, &text));
        }
    });
    let on_error = Handler::new(move |_| {
        // EventSource would reconnect by itself; the session decides instead.
        feed(&weak, |inner| {
            inner.close_carrier(id);
            inner.session.handle_close(Instant::now(), id, None, "the event stream failed");
        });
    });
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let kind = Kind::Stream {
        source,
        send_url: None,
        queue: Vec::new(),
        posting: false,
        _on_message: on_message,
        _on_error: on_error,
    };
    Ok(Carrier { id, kind })
}

/// The stream's messages: its session (the transport is open), the
/// server's close frame, or a protocol frame for the session.
fn on_stream_message(inner: &mut Inner, id: ConnectionId, send_base: &str, text: &str) {
    let now = Instant::now();
    let value = js_sys::JSON::parse(text).unwrap_or(JsValue::NULL);
    let field = |name: &str| Reflect::get(&value, &JsValue::from_str(name)).ok();
    match field("type").and_then(|t| t.as_string()).as_deref() {
        Some("session") => {
            let session = field("id").and_then(|v| v.as_string()).unwrap_or_default();
            if let Some(Kind::Stream { send_url, .. }) = inner.carrier(id).map(|c| &mut c.kind) {
                *send_url = Some(format!("{send_base}{session}"));
            }
            inner.session.handle_open(now, id);
        }
        Some("close") => {
            let code = field("code").and_then(|c| c.as_f64()).map(|c| c as u16);
            let reason = field("reason").and_then(|r| r.as_string()).unwrap_or_default();
            inner.close_carrier(id);
            inner.session.handle_close(now, id, code, &reason);
        }
        _ => {
            inner.trace_frame(text);
            inner.session.handle_frame(now, id, text);
        }
    }
}

/// Sends a frame on transport `id`: written to the socket, or queued for
/// the next post of a stream.
pub(crate) fn send(inner: &Rc<RefCell<Inner>>, id: ConnectionId, text: String) {
    let mut state = inner.borrow_mut();
    let failed = match state.carrier(id).map(|c| &mut c.kind) {
        Some(Kind::Socket { ws, .. }) => ws.send_with_str(&text).is_err(),
        Some(Kind::Stream { queue, .. }) => {
            queue.push(text);
            false
        }
        None => false,
    };
    if failed {
        state.close_carrier(id);
        state.session.handle_close(Instant::now(), id, None, "send failed");
        return;
    }
    drop(state);
    post_next(inner, id);
}

/// Posts everything queued for stream `id`, unless a post is in flight
/// (its completion posts the rest).
fn post_next(inner: &Rc<RefCell<Inner>>, id: ConnectionId) {
    let (url, body) = {
        let mut state = inner.borrow_mut();
        let Some(Kind::Stream { send_url: Some(url), queue, posting, .. }) = state.carrier(id).map(|c| &mut c.kind)
        else {
            return;
        };
        if *posting || queue.is_empty() {
            return;
        }
        *posting = true;
        (url.clone(), std::mem::take(queue).join("\n"))
    };
    // A string body is sent as `text/plain`, so a cross-origin post needs no preflight.
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body));
    let request: JsValue = match web_sys::window() {
        Some(window) => window.fetch_with_str_and_init(&url, &init).into(),
        None => js_sys::Promise::reject(&js::error("no window to post from")).into(),
    };
    let weak = Rc::downgrade(inner);
    js::settled(
        &request,
        Box::new(move |response| {
            let Some(inner) = weak.upgrade() else { return };
            let outcome = match response.map(web_sys::Response::unchecked_from_js) {
                Ok(response) if response.ok() => Ok(()),
                Ok(response) => Err(format!("posting frames failed with HTTP {}", response.status())),
                Err(error) => Err(format!("posting frames failed: {}", js::describe(&error))),
            };
            {
                let mut state = inner.borrow_mut();
                match outcome {
                    Ok(()) => {
                        if let Some(Kind::Stream { posting, .. }) = state.carrier(id).map(|c| &mut c.kind) {
                            *posting = false;
                        }
                    }
                    Err(problem) => {
                        state.close_carrier(id);
                        state.session.handle_close(Instant::now(), id, None, &problem);
                    }
                }
            }
            post_next(&inner, id);
            pump(&inner);
        }),
    );
}

/// Closes transport `id` as the session asked; nothing more is reported about it.
pub(crate) fn close(inner: &mut Inner, id: ConnectionId, code: u16, reason: &str) {
    let Some(carrier) = inner.take(id) else { return };
    carrier.detach();
    match &carrier.kind {
        Kind::Socket { ws, .. } => {
            let _ = ws.close_with_code_and_reason(code, reason);
        }
        Kind::Stream { source, .. } => source.close(),
    }
}

impl Inner {
    fn carrier(&mut self, id: ConnectionId) -> Option<&mut Carrier> {
        self.transports.iter_mut().find(|c| c.id == id)
    }

    fn take(&mut self, id: ConnectionId) -> Option<Carrier> {
        let at = self.transports.iter().position(|c| c.id == id)?;
        Some(self.transports.swap_remove(at))
    }

    /// The browser closed transport `id`: drop what is left of it.
    fn forget(&mut self, id: ConnectionId) {
        if let Some(carrier) = self.take(id) {
            carrier.detach();
        }
    }

    /// Transport `id` failed: close it without waiting for the browser.
    fn close_carrier(&mut self, id: ConnectionId) {
        close(self, id, 1000, "");
    }
}
