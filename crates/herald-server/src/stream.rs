//! `GET /sse?mode=frames` and `POST /sse/send?session=..`: a whole protocol
//! v1 connection for networks that block WebSocket. The stream carries, as
//! unnamed Server-Sent Events, exactly the frames a WebSocket would; the
//! client posts its frames (one per line) to `/sse/send`. Everything else —
//! authentication, subscriptions, recovery, heartbeats, publish acks, rate
//! limits — is the same connection code as WebSocket's (`conn.rs`).
//!
//! The first frame is `{"type":"session","id":".."}`: the address for the
//! client's posts (the id is the capability; it is random and never logged).
//! The last one, when the server ends the connection, is
//! `{"type":"close","code":4001,"reason":".."}`, the close frame a WebSocket
//! would have sent.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, request::Parts},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures_util::stream;
use herald_protocol::limits::MAX_FRAME_BYTES;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::{
    app::App,
    conn::{Ending, Gone, Inbound, Link, truncate_reason},
    extract::{AllowedOrigin, Body, Params, Refusal, Remote},
    hub::Frame,
    metrics::Transport,
};

/// Client frames waiting for the connection task; posts beyond it get 429.
const INBOUND_QUEUE: usize = 64;
/// The most frames one post may carry.
const MAX_FRAMES_PER_POST: usize = 64;

/// The open streams, by session id, for routing posts.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inbound: Mutex<HashMap<String, mpsc::Sender<String>>>,
}

impl Sessions {
    fn insert(&self, id: String, tx: mpsc::Sender<String>) {
        self.inbound.lock().expect("no panics while the lock is held").insert(id, tx);
    }

    fn remove(&self, id: &str) {
        self.inbound.lock().expect("no panics while the lock is held").remove(id);
    }

    fn get(&self, id: &str) -> Option<mpsc::Sender<String>> {
        self.inbound.lock().expect("no panics while the lock is held").get(id).cloned()
    }
}

/// Unregisters the session when its connection task ends, however it ends.
struct Registered {
    app: Arc<App>,
    id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.app.sessions.remove(&self.id);
    }
}

struct StreamLink {
    inbound: mpsc::Receiver<String>,
    /// `None` once closed: dropping the sender ends the event stream.
    outbound: Option<PollSender<Frame>>,
}

impl Link for StreamLink {
    const TRANSPORT: Transport = Transport::Frames;

    async fn recv(&mut self) -> Option<Result<Inbound, Ending>> {
        self.inbound.recv().await.map(|text| Ok(Inbound::Text(text.into())))
    }

    // Waits while the stream is full; the connection's write timeout then
    // closes a consumer that fell behind (4009).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        self.outbound.as_mut().ok_or(Gone)?.poll_reserve(cx).map_err(|_| Gone)
    }

    fn start_send(&mut self, frame: Frame) -> Result<(), Gone> {
        self.outbound.as_mut().ok_or(Gone)?.send_item(frame).map_err(|_| Gone)
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }

    async fn close(&mut self, ending: Ending) {
        let Some(outbound) = self.outbound.take() else { return };
        if let (Some(code), Some(sender)) = (ending.code, outbound.get_ref()) {
            let frame = json!({"type": "close", "code": code, "reason": truncate_reason(ending.reason)});
            let _ = sender.try_send(frame.to_string().into());
        }
    }
}

/// `GET /sse?mode=frames[&token=..]`: opens the stream and starts its connection.
pub(crate) fn open(app: Arc<App>, headers: &HeaderMap, token: Option<String>, remote: Remote) -> Response {
    let origin_ok = app.origin_allowed(crate::extract::origin(headers));
    let id = session_id();
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (out_tx, out_rx) = mpsc::channel::<Frame>(app.config.outbound_queue.max(1));
    let hello = json!({"type": "session", "id": id}).to_string();
    out_tx.try_send(hello.into()).expect("a new channel has room");
    app.sessions.insert(id.clone(), in_tx);
    let registered = Registered { app: app.clone(), id };
    let headers = headers.clone();
    let link = StreamLink { inbound: in_rx, outbound: Some(PollSender::new(out_tx)) };
    tokio::spawn(async move {
        let _registered = registered;
        crate::conn::run(link, app, token, headers, origin_ok, remote).await;
    });
    let events = stream::unfold(out_rx, |mut rx| async move {
        let frame = rx.recv().await?;
        Some((Ok::<_, Infallible>(SseEvent::default().data(frame.as_str())), rx))
    });
    // Comments keep idle proxies from cutting the stream between the
    // connection's own pings.
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// The most one post may weigh.
const MAX_POST_BYTES: usize = 4 * MAX_FRAME_BYTES;

/// The inbound queue of the session a post names (`?session=..`), found
/// before its body is read.
pub(crate) struct Session(mpsc::Sender<String>);

#[derive(serde::Deserialize)]
struct SessionParam {
    session: Option<String>,
}

impl FromRequestParts<Arc<App>> for Session {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Refusal> {
        let Params(SessionParam { session }) = Params::from_request_parts(parts, app).await?;
        session.and_then(|id| app.sessions.get(&id)).map(Self).ok_or_else(gone)
    }
}

fn gone() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, "no such session: the stream closed; open a new one")
}

/// `POST /sse/send?session=..`: the client's frames, one per line, in order.
pub(crate) async fn send(
    _: AllowedOrigin,
    Session(tx): Session,
    Body(body): Body<MAX_POST_BYTES>,
) -> Result<StatusCode, Refusal> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the body is not UTF-8; post JSON frames, one per line"))?;
    let frames: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    if frames.len() > MAX_FRAMES_PER_POST {
        let message = format!("post at most {MAX_FRAMES_PER_POST} frames at a time");
        return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, message));
    }
    for frame in frames {
        match tx.try_send(frame.to_owned()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let message = "too many frames in flight; wait for the answers";
                return Err(Refusal::new(StatusCode::TOO_MANY_REQUESTS, message));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(gone()),
        }
    }
    Ok(StatusCode::ACCEPTED)
}

/// 128 random bits from the operating system, as hex: guessing one means
/// speaking for someone else's connection.
fn session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
