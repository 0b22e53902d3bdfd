//! The transports the session asks for: a browser `WebSocket`, or — where a
//! proxy blocks WebSocket — an `EventSource` on Herald's frames stream, with
//! the client's frames posted back by `fetch`, one post at a time so the
//! server reads them in order (see `herald_core::Transport`).
//!
//! Each transport owns its browser object, its handlers and (for a stream)
//! its queue of posts, and knows nothing of the session: what the browser
//! reports goes to a [`Sink`] as a [`Signal`], which the client feeds to the
//! session.

use std::{cell::RefCell, rc::Rc};

use herald_core::{ConnectionId, Transport};
use js_sys::Reflect;
use wasm_bindgen::{JsCast, prelude::*};
use web_sys::{CloseEvent, EventSource, MessageEvent, WebSocket};

use crate::js::{self, Handler};

/// What a transport reports.
pub(crate) enum Signal {
    /// It is open.
    Open,
    /// A text frame arrived.
    Frame(String),
    /// It closed or failed; `code` is `None` without a close frame (1006).
    Closed { code: Option<u16>, reason: String },
}

/// Where transports report, from browser callbacks (never while the client
/// is borrowed): the client's input to the session. A concrete type rather
/// than a boxed closure: the wasm is smaller with static calls.
pub(crate) use crate::client::Feed as Sink;

/// The open (or opening) transports.
pub(crate) struct Transports {
    carriers: Vec<Carrier>,
    sink: Sink,
}

struct Carrier {
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
        posts: Rc<RefCell<Posts>>,
        _on_message: Handler,
        _on_error: Handler,
    },
}

/// An event stream's way back: frames posted one at a time, in order.
#[derive(Default)]
struct Posts {
    /// `/sse/send?session=..`, known once the stream's first message names the session.
    url: Option<String>,
    /// Frames waiting for the post in flight.
    queue: Vec<String>,
    posting: bool,
}

impl Transports {
    pub(crate) fn new(sink: Sink) -> Self {
        Self { carriers: Vec::new(), sink }
    }

    /// Opens what the session asked for; `Err` with why if it could not even start.
    pub(crate) fn open(&mut self, id: ConnectionId, url: &str, transport: Transport) -> Result<(), String> {
        let kind = match transport {
            Transport::ServerSentEvents => self.stream(id, url),
            _ => self.socket(id, url),
        };
        let kind = kind.map_err(|error| format!("cannot open {url}: {}", js::describe(&error)))?;
        self.carriers.push(Carrier { id, kind });
        Ok(())
    }

    /// Sends a frame on transport `id`: written to the socket, or queued for
    /// the stream's next post. `Err` if the socket refused it.
    pub(crate) fn send(&mut self, id: ConnectionId, text: String) -> Result<(), ()> {
        match self.carriers.iter().find(|c| c.id == id).map(|c| &c.kind) {
            Some(Kind::Socket { ws, .. }) => ws.send_with_str(&text).map_err(drop),
            Some(Kind::Stream { posts, .. }) => {
                posts.borrow_mut().queue.push(text);
                post_next(posts, id, &self.sink);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Closes transport `id`; nothing more is reported about it.
    pub(crate) fn close(&mut self, id: ConnectionId, code: u16, reason: &str) {
        let Some(at) = self.carriers.iter().position(|c| c.id == id) else { return };
        match self.carriers.swap_remove(at).kind {
            Kind::Socket { ws, .. } => {
                ws.set_onopen(None);
                ws.set_onmessage(None);
                ws.set_onclose(None);
                let _ = ws.close_with_code_and_reason(code, reason);
            }
            Kind::Stream { source, .. } => {
                source.set_onmessage(None);
                source.set_onerror(None);
                source.close();
            }
        }
    }

    fn socket(&self, id: ConnectionId, url: &str) -> Result<Kind, JsValue> {
        let ws = WebSocket::new(url)?;
        let sink = &self.sink;
        let on_open = Handler::new({
            let sink = sink.clone();
            move |_| sink.signal(id, Signal::Open)
        });
        let on_message = Handler::new({
            let sink = sink.clone();
            move |event: web_sys::Event| {
                if let Some(text) = event.unchecked_into::<MessageEvent>().data().as_string() {
                    sink.signal(id, Signal::Frame(text));
                }
            }
        });
        let on_close = Handler::new({
            let sink = sink.clone();
            move |event: web_sys::Event| {
                let event: CloseEvent = event.unchecked_into();
                // 1006 is the browser saying "no close frame", never a server's code.
                let code = Some(event.code()).filter(|code| *code != 1006);
                sink.signal(id, Signal::Closed { code, reason: event.reason() });
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Kind::Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close })
    }

    fn stream(&self, id: ConnectionId, url: &str) -> Result<Kind, JsValue> {
        let source = EventSource::new(url)?;
        let posts = Rc::new(RefCell::new(Posts::default()));
        // `https://host/sse?mode=frames&..` posts to `https://host/sse/send?session=..`.
        let send_base = format!("{}/send?session=", url.split('?').next().unwrap_or(url));
        let on_message = Handler::new({
            let (sink, posts) = (self.sink.clone(), posts.clone());
            move |event: web_sys::Event| {
                let Some(text) = event.unchecked_into::<MessageEvent>().data().as_string() else { return };
                on_stream_message(&sink, &posts, id, &send_base, text);
            }
        });
        let on_error = Handler::new({
            let sink = self.sink.clone();
            // EventSource would reconnect by itself; the session decides instead.
            move |_| sink.signal(id, Signal::Closed { code: None, reason: "the event stream failed".into() })
        });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Kind::Stream { source, posts, _on_message: on_message, _on_error: on_error })
    }
}

/// The stream's messages: its session (the transport is open; frames can be
/// posted), the server's close frame, or a protocol frame for the session.
fn on_stream_message(sink: &Sink, posts: &Rc<RefCell<Posts>>, id: ConnectionId, send_base: &str, text: String) {
    let value = js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL);
    let field = |name: &str| Reflect::get(&value, &JsValue::from_str(name)).ok();
    match field("type").and_then(|t| t.as_string()).as_deref() {
        Some("session") => {
            let session = field("id").and_then(|v| v.as_string()).unwrap_or_default();
            posts.borrow_mut().url = Some(format!("{send_base}{session}"));
            sink.signal(id, Signal::Open);
        }
        Some("close") => {
            let code = field("code").and_then(|c| c.as_f64()).map(|c| c as u16);
            let reason = field("reason").and_then(|r| r.as_string()).unwrap_or_default();
            sink.signal(id, Signal::Closed { code, reason });
        }
        _ => sink.signal(id, Signal::Frame(text)),
    }
}

/// Posts everything queued, unless a post is in flight (its completion posts
/// the rest) or the session is not known yet.
fn post_next(posts: &Rc<RefCell<Posts>>, id: ConnectionId, sink: &Sink) {
    let (url, body) = {
        let mut state = posts.borrow_mut();
        let Some(url) = state.url.clone() else { return };
        if state.posting || state.queue.is_empty() {
            return;
        }
        state.posting = true;
        (url, std::mem::take(&mut state.queue).join("\n"))
    };
    // A string body is sent as `text/plain`, so a cross-origin post needs no preflight.
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body));
    let request: JsValue = match web_sys::window() {
        Some(window) => window.fetch_with_str_and_init(&url, &init).into(),
        None => js_sys::Promise::reject(&js::error("no window to post from")).into(),
    };
    let (weak, sink) = (Rc::downgrade(posts), sink.clone());
    js::settled(
        &request,
        Box::new(move |response| {
            let failure = match response.map(web_sys::Response::unchecked_from_js) {
                Ok(response) if response.ok() => None,
                Ok(response) => Some(format!("posting frames failed with HTTP {}", response.status())),
                Err(error) => Some(format!("posting frames failed: {}", js::describe(&error))),
            };
            // A stream closed meanwhile has dropped its posts: nothing more to do.
            let Some(posts) = weak.upgrade() else { return };
            match failure {
                None => {
                    posts.borrow_mut().posting = false;
                    post_next(&posts, id, &sink);
                }
                Some(reason) => sink.signal(id, Signal::Closed { code: None, reason }),
            }
        }),
    );
}
