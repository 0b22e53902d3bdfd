//! `GET /sse?topics=..`: Server-Sent Events, for clients that only read.

use std::{borrow::Cow, collections::VecDeque, convert::Infallible, pin::Pin, sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures_util::stream::{self, Stream};
use herald_protocol::{ServerMessage, close};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Sleep;

use super::{StreamParams, Subscribed, position, subscribe, topics};
use crate::{
    app::App,
    extract::{AllowedOrigin, Params, Refusal, Remote, identify},
    hub::{Frame, subscribed_frame},
    metrics::Transport,
    outbox::Queued,
};

/// `GET /sse?topics=..`: Server-Sent Events. Each event is named by its kind
/// (`UPDATED`, ...), has `id:` = its `seq` (its `wildcard_seq` in a stream
/// of one wildcard) and the event JSON as data. Control messages are named
/// `herald.connected`, `herald.subscribed` and, when the token expires,
/// `herald.close`. A reconnect with `Last-Event-ID` (or `?since=`) resumes a
/// stream of one topic, concrete or wildcard. With `?mode=frames`, a whole
/// protocol connection instead (`stream.rs`).
pub(crate) async fn sse(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Params(params): Params<StreamParams>,
    remote: Remote,
) -> Result<Response, Refusal> {
    if params.mode.as_deref() == Some("frames") {
        // The connection checks the origin and the token itself, and
        // answers like a WebSocket would: with a close frame.
        return Ok(crate::stream::open(app, &headers, params.token, remote));
    }
    AllowedOrigin::check(&app, &headers)?;
    let identity = identify(&app, &headers, params.token.as_deref()).await?;
    remote.authenticated();
    let quota = app.quota(&identity, remote.ip)?;
    let topics = topics(&identity, &params.topics, app.config.max_subscriptions)?;
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).or(params.since.as_deref());
    // One id cannot carry positions of several topics.
    let last_id = last_id.filter(|_| topics.len() == 1);
    let wildcard = topics.len() == 1 && topics[0].is_wildcard();
    // Read once: the answer must name the epoch its positions were checked against.
    let epoch = app.hub.epoch();
    let since = position(&epoch, params.epoch.as_deref(), last_id)?;
    let subscribed = subscribe(&app, &identity, topics.clone(), since, quota, Transport::Sse).await;
    let connected = app.connected(&identity, &epoch);
    let mut pending: VecDeque<SseEvent> = VecDeque::new();
    pending.push_back(SseEvent::default().event("herald.connected").data(ServerMessage::Connected(connected).encode()));
    for frame in &subscribed.replay {
        pending.push_back(event_of(frame, wildcard));
    }
    let frame = subscribed_frame(topics, subscribed.recovered, subscribed.last_seq.clone());
    pending.push_back(SseEvent::default().event("herald.subscribed").data(frame.as_str()));
    let spread = app.config.shutdown_spread;
    // A plain stream cannot be refreshed: it ends when its token expires.
    let expiry = identity.deadline(tokio::time::Instant::now()).map(|at| Box::pin(tokio::time::sleep_until(at)));
    let state = SseState { subscribed, wildcard, pending, frames: VecDeque::new(), spread, expiry, done: false };
    let keep_alive = KeepAlive::new().interval(app.config.ping_interval);
    Ok(Sse::new(sse_stream(state)).keep_alive(keep_alive).into_response())
}

struct SseState {
    subscribed: Subscribed,
    /// A stream of one wildcard: event ids are `wildcard_seq`s.
    wildcard: bool,
    pending: VecDeque<SseEvent>,
    /// Frames taken from the outbox, turned into `pending` events at once.
    frames: VecDeque<Queued>,
    spread: Duration,
    /// When the token expires.
    expiry: Option<Pin<Box<Sleep>>>,
    done: bool,
}

fn sse_stream(state: SseState) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(state, |mut state| async move {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if state.done {
            return None;
        }
        let peer = state.subscribed.connection.peer.clone();
        let expired = async {
            match &mut state.expiry {
                Some(expiry) => expiry.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = expired => {
                state.done = true;
                state.subscribed.connection.closed(close::UNAUTHORIZED);
                let reason = "token expired; reconnect with a fresh token";
                let close = json!({"type": "close", "code": close::UNAUTHORIZED, "reason": reason});
                Some((Ok(SseEvent::default().event("herald.close").data(close.to_string())), state))
            }
            () = peer.wait_killed() => {
                state.done = true;
                state.subscribed.connection.closed(peer.killed());
                let event = if peer.killed() == close::GOING_AWAY {
                    // EventSource reconnects after `retry:`; spread like WebSocket hints.
                    let spread = state.spread.as_millis() as u64;
                    let delay = if spread == 0 { 0 } else { fastrand::u64(..spread) };
                    SseEvent::default().retry(Duration::from_millis(delay)).comment("server restart")
                } else {
                    SseEvent::default().comment("closed by the server")
                };
                Some((Ok(event), state))
            }
            () = peer.outbox.take_all(&mut state.frames) => {
                let wildcard = state.wildcard;
                state.pending.extend(state.frames.drain(..).map(|queued| event_of(&queued.frame, wildcard)));
                let event = state.pending.pop_front()?;
                Some((Ok(event), state))
            }
        }
    })
}

/// An SSE event for an encoded event frame: named by kind, `id:` = seq
/// (`wildcard_seq` for a stream of one `wildcard`).
fn event_of(frame: &Frame, wildcard: bool) -> SseEvent {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        event: Option<Cow<'a, str>>,
        seq: Option<u64>,
        wildcard_seq: Option<u64>,
    }
    let head: Option<Head<'_>> = serde_json::from_str(frame.as_str()).ok();
    let mut event = SseEvent::default().data(frame.as_str());
    if let Some(head) = head {
        if let Some(name) = head.event {
            event = event.event(name.as_ref());
        }
        if let Some(id) = if wildcard { head.wildcard_seq } else { head.seq } {
            event = event.id(id.to_string());
        }
    }
    event
}
