//! The HTTP endpoints: publish for backends, SSE and long-poll fallbacks,
//! health, metrics and static files.

use std::{
    borrow::Cow, collections::VecDeque, convert::Infallible, path::Component, pin::Pin, sync::Arc, time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures_util::stream::{self, Stream};
use herald_protocol::{
    Connected, Event, EventData, EventKind, Payload, ServerMessage, Topic, close, limits::MAX_FRAME_BYTES,
    now_timestamp,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use tokio::time::Sleep;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    App,
    auth::Identity,
    extract::{AllowedOrigin, Body, JsonContent, Params, Refusal, Remote, identify},
    hub::{Connection, Frame, PublishId, subscribed_frame},
    metrics::Metrics,
    quota::Quota,
};

/// `ok`, or 503 while a node of a cluster cannot reach Redis (a load
/// balancer then sends new clients to another node).
pub(crate) async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.healthy() {
        "ok".into_response()
    } else {
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "the cluster bus (Redis) is unreachable").into_response()
    }
}

pub(crate) async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.hub.snapshot().render())
}

#[derive(Deserialize)]
struct PublishBody {
    topic: Topic,
    event: EventKind,
    data: PublishData,
    #[serde(default)]
    trace_id: Option<String>,
    /// Optional idempotency key: a repeat within the dedup window is not broadcast again.
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct PublishData {
    entity_id: String,
    #[serde(default)]
    payload: Payload,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    /// Defaults to now.
    #[serde(default)]
    timestamp: Option<String>,
}

/// `POST /api/publish`: a backend announces a change it saved.
pub(crate) async fn publish(
    State(app): State<Arc<App>>,
    _: AllowedOrigin,
    identity: Identity,
    _: JsonContent,
    Body(body): Body<MAX_FRAME_BYTES>,
) -> Result<Response, Refusal> {
    let body: PublishBody = serde_json::from_slice(&body).map_err(|e| {
        Refusal::new(StatusCode::BAD_REQUEST, format!("body must be {{topic, event, data{{entity_id, payload}}}}: {e}"))
    })?;
    if !identity.may_publish(body.topic.as_str()) {
        let message = format!("the token does not allow publishing to {}", body.topic);
        return Err(Refusal::new(StatusCode::FORBIDDEN, message));
    }
    app.publish_limits.check(&identity)?;
    Metrics::inc(&app.hub.metrics.messages_in);
    let data = body.data;
    // A tenant-bound token publishes only into its tenant; a service token may name any.
    let tenant_id = identity.tenant.as_deref().map(str::to_owned).or(data.tenant_id);
    let data = EventData {
        entity_id: data.entity_id,
        payload: data.payload,
        user_id: Some(identity.publisher(data.user_id)),
        tenant_id,
        timestamp: data.timestamp.unwrap_or_else(now_timestamp),
    };
    let event = Event { topic: body.topic, event: body.event, data, trace_id: body.trace_id, seq: None };
    event.validate().map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let dedup = body.id.as_deref().map(|id| PublishId { tenant: &identity.tenant, user: &identity.user, id });
    match app.publish(event, dedup).await {
        Ok((seq, true)) => Ok(axum::Json(json!({ "seq": seq, "duplicate": true })).into_response()),
        Ok((seq, false)) => Ok(axum::Json(json!({ "seq": seq })).into_response()),
        Err(unavailable) => Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, unavailable.0)),
    }
}

/// The query of `GET /sse` and `GET /api/poll`.
#[derive(Deserialize)]
pub(crate) struct StreamParams {
    /// `a:1,b:*`.
    #[serde(default)]
    topics: String,
    /// The position to resume from (`Last-Event-ID` takes precedence on `/sse`).
    since: Option<String>,
    /// The epoch `since` belongs to.
    epoch: Option<String>,
    /// `frames` on `/sse`: a whole protocol connection (`stream.rs`).
    mode: Option<String>,
    /// Seconds a poll may wait, at most the server's poll timeout.
    timeout: Option<u64>,
    /// For clients that cannot set `Authorization` (EventSource).
    token: Option<String>,
}

/// Topics from `?topics=a:1,b:*`, each allowed by the token.
fn topics(identity: &Identity, list: &str, max: usize) -> Result<Vec<Topic>, Refusal> {
    let mut topics = Vec::new();
    for text in list.split(',').filter(|t| !t.is_empty()) {
        if topics.len() == max {
            let message = format!("too many topics: a stream carries at most {max}");
            return Err(Refusal::new(StatusCode::BAD_REQUEST, message));
        }
        let topic = Topic::new(text).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        if !identity.may_subscribe(topic.as_str()) {
            let message = format!("the token does not allow subscribing to {topic}");
            return Err(Refusal::new(StatusCode::FORBIDDEN, message));
        }
        topics.push(topic);
    }
    if topics.is_empty() {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "no topics: add ?topics=resource:id,other:*"));
    }
    Ok(topics)
}

/// A request's subscriptions: a hub connection that ends with the request
/// (including when the client goes away and the response is dropped).
struct Subscribed {
    connection: Connection,
    _quota: Quota,
    replay: Vec<Frame>,
    recovered: Option<bool>,
    last_seq: Vec<(Topic, u64)>,
}

/// A client's position, from `since` (or `Last-Event-ID`) and `epoch`.
#[derive(Clone, Copy)]
enum Since {
    At(u64),
    /// A position in another epoch: nothing can be recovered from it.
    OtherEpoch,
}

/// Subscribes a fresh peer to `topics`; `since` applies to every concrete topic.
fn subscribe(
    app: &Arc<App>,
    identity: &Identity,
    topics: Vec<Topic>,
    since: Option<Since>,
    quota: Quota,
) -> Subscribed {
    let connection = app.hub.connect(identity.user.clone(), identity.tenant.clone(), app.config.outbound_queue);
    let mut out = Subscribed {
        connection,
        _quota: quota,
        replay: Vec::new(),
        recovered: since.map(|_| true),
        last_seq: Vec::new(),
    };
    for topic in topics {
        if topic.is_wildcard() {
            out.connection.subscribe_wildcard(&topic);
            if since.is_some() {
                out.recovered = Some(false);
            }
        } else {
            let position = match since {
                Some(Since::At(seq)) => Some(seq),
                Some(Since::OtherEpoch) => {
                    out.recovered = Some(false);
                    None
                }
                None => None,
            };
            let joined = out.connection.subscribe(&topic, false, position);
            if joined.recovered == Some(false) {
                out.recovered = Some(false);
            }
            out.replay.extend(joined.replay);
            out.last_seq.extend(joined.last_seq.map(|seq| (topic.clone(), seq)));
        }
    }
    if out.recovered == Some(false) {
        out.replay.clear();
    }
    out
}

/// `since` in the history named `epoch`, or in another epoch when the
/// query's `epoch` (`theirs`) differs.
fn position(epoch: &str, theirs: Option<&str>, since: Option<&str>) -> Result<Option<Since>, Refusal> {
    let Some(since) = since else { return Ok(None) };
    let since: u64 = since
        .trim()
        .parse()
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, format!("since {since:?} is not a sequence number")))?;
    match theirs {
        Some(theirs) if theirs != epoch => Ok(Some(Since::OtherEpoch)),
        _ => Ok(Some(Since::At(since))),
    }
}

/// CORS for browsers on other origins (the allow-list, or any origin when
/// it is empty): they read the event streams and post frames and publishes.
/// WebSocket needs none; its origin is checked on upgrade.
pub(crate) fn cors(allowed: &[String]) -> CorsLayer {
    let allowed = allowed.to_vec();
    let origin = AllowOrigin::predicate(move |origin, _| origin.to_str().is_ok_and(|o| crate::origin_in(&allowed, o)));
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("last-event-id")])
        .max_age(Duration::from_secs(600))
}

/// `GET /sse?topics=..`: Server-Sent Events. Each event is named by its kind
/// (`UPDATED`, ...), has `id:` = its `seq` and the event JSON as data. Control
/// messages are named `herald.connected`, `herald.subscribed` and, when the
/// token expires, `herald.close`. A reconnect with `Last-Event-ID` (or
/// `?since=`) resumes a stream of one concrete topic. With `?mode=frames`,
/// a whole protocol connection instead (`stream.rs`).
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
    let identity = identify(&app, &headers, params.token.as_deref())?;
    remote.authenticated();
    let quota = app.quotas.open(&identity, remote.ip)?;
    let topics = topics(&identity, &params.topics, app.config.max_subscriptions)?;
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).or(params.since.as_deref());
    // One id cannot carry positions of several topics.
    let last_id = last_id.filter(|_| topics.len() == 1 && !topics[0].is_wildcard());
    // Read once: the answer must name the epoch its positions were checked against.
    let epoch = app.hub.epoch();
    let since = position(&epoch, params.epoch.as_deref(), last_id)?;
    let subscribed = subscribe(&app, &identity, topics.clone(), since, quota);
    let connected = Connected {
        user_id: Some(identity.user.to_string()),
        tenant_id: identity.tenant.as_deref().map(str::to_owned),
        expires_in: identity.expires_in(),
        epoch: Some(epoch.to_string()),
    };
    let mut pending: VecDeque<SseEvent> = VecDeque::new();
    pending.push_back(SseEvent::default().event("herald.connected").data(ServerMessage::Connected(connected).encode()));
    for frame in &subscribed.replay {
        pending.push_back(event_of(frame));
    }
    let frame = subscribed_frame(topics, subscribed.recovered, subscribed.last_seq.clone());
    pending.push_back(SseEvent::default().event("herald.subscribed").data(frame.as_str()));
    let spread = app.config.shutdown_spread;
    // A plain stream cannot be refreshed: it ends when its token expires.
    let expiry = identity.expires_at(tokio::time::Instant::now()).map(|at| Box::pin(tokio::time::sleep_until(at)));
    let state = SseState { subscribed, pending, frames: VecDeque::new(), spread, expiry, done: false };
    let keep_alive = KeepAlive::new().interval(app.config.ping_interval);
    Ok(Sse::new(sse_stream(state)).keep_alive(keep_alive).into_response())
}

struct SseState {
    subscribed: Subscribed,
    pending: VecDeque<SseEvent>,
    /// Frames taken from the outbox, turned into `pending` events at once.
    frames: VecDeque<Frame>,
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
                let reason = "token expired; reconnect with a fresh token";
                let close = json!({"type": "close", "code": close::UNAUTHORIZED, "reason": reason});
                Some((Ok(SseEvent::default().event("herald.close").data(close.to_string())), state))
            }
            () = peer.wait_killed() => {
                state.done = true;
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
                state.pending.extend(state.frames.drain(..).map(|frame| event_of(&frame)));
                let event = state.pending.pop_front()?;
                Some((Ok(event), state))
            }
        }
    })
}

/// An SSE event for an encoded event frame: named by kind, `id:` = seq.
fn event_of(frame: &Frame) -> SseEvent {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        event: Option<Cow<'a, str>>,
        seq: Option<u64>,
    }
    let head: Option<Head<'_>> = serde_json::from_str(frame.as_str()).ok();
    let mut event = SseEvent::default().data(frame.as_str());
    if let Some(head) = head {
        if let Some(name) = head.event {
            event = event.event(name.as_ref());
        }
        if let Some(seq) = head.seq {
            event = event.id(seq.to_string());
        }
    }
    event
}

/// `GET /api/poll?topics=..&since=N&epoch=..`: answers at once with the events
/// after `since` (or, without `since`, just the positions), otherwise waits up
/// to the poll timeout for the next event.
pub(crate) async fn poll(
    State(app): State<Arc<App>>,
    _: AllowedOrigin,
    identity: Identity,
    remote: Remote,
    Params(params): Params<StreamParams>,
) -> Result<Response, Refusal> {
    let quota = app.quotas.open(&identity, remote.ip)?;
    let topics = topics(&identity, &params.topics, app.config.max_subscriptions)?;
    // Read once: the answer must name the epoch its positions were checked against.
    let epoch = app.hub.epoch();
    let since = position(&epoch, params.epoch.as_deref(), params.since.as_deref())?;
    let wait = params
        .timeout
        .map_or(app.config.poll_timeout, Duration::from_secs)
        .min(app.config.poll_timeout)
        // A poll answers no later than its token expires.
        .min(Duration::from_secs(identity.expires_in().unwrap_or(u64::MAX)));
    let mut subscribed = subscribe(&app, &identity, topics, since, quota);
    let mut events = std::mem::take(&mut subscribed.replay);
    if since.is_some() && subscribed.recovered == Some(true) && events.is_empty() {
        let peer = subscribed.connection.peer.clone();
        let mut frames = VecDeque::new();
        tokio::select! {
            () = peer.wait_killed() => {}
            () = tokio::time::sleep(wait) => {}
            () = peer.outbox.take_all(&mut frames) => events.extend(frames),
        }
    }
    let events: Vec<Box<RawValue>> =
        events.iter().filter_map(|frame| RawValue::from_string(frame.as_str().to_owned()).ok()).collect();
    let last_seq: serde_json::Map<String, serde_json::Value> =
        subscribed.last_seq.iter().map(|(topic, seq)| (topic.to_string(), json!(seq))).collect();
    Ok(axum::Json(json!({
        "epoch": &*epoch,
        "recovered": subscribed.recovered,
        "last_seq": last_seq,
        "events": events,
    }))
    .into_response())
}

/// Files of `--static DIR`; unknown paths without an extension get
/// `index.html` so a single-page app can route them.
pub(crate) async fn static_file(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let Some(root) = &app.config.static_dir else { return StatusCode::NOT_FOUND.into_response() };
    let relative = uri.path().trim_start_matches('/');
    let relative = if relative.is_empty() { "index.html" } else { relative };
    let path = std::path::Path::new(relative);
    // Only plain names: no `..`, no absolute paths, nothing outside the directory.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut file = root.join(path);
    if path.extension().is_none() && !file.is_file() {
        file = root.join("index.html");
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&file))], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript",
        "css" => "text/css",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
