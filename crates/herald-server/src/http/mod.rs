//! The HTTP endpoints: publish for backends, the SSE and long-poll
//! fallbacks, and operations. What the SSE stream and the long poll share,
//! subscribing a request to topics from its query, lives here.

pub(crate) mod ops;
pub(crate) mod poll;
pub(crate) mod position;
pub(crate) mod publish;
pub(crate) mod sse;

use std::sync::Arc;

use axum::http::StatusCode;
use herald_protocol::Topic;
use serde::Deserialize;

use crate::{
    app::App,
    auth::Identity,
    extract::Refusal,
    hub::{Connection, Frame},
    metrics::Transport,
    quota::Quota,
};

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
pub(crate) fn topics(identity: &Identity, list: &str, max: usize) -> Result<Vec<Topic>, Refusal> {
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
pub(crate) struct Subscribed {
    connection: Connection,
    _quota: Quota,
    replay: Vec<Frame>,
    recovered: Option<bool>,
    last_seq: Vec<(Topic, u64)>,
}

/// A client's position, from `since` (or `Last-Event-ID`) and `epoch`.
#[derive(Clone, Copy)]
pub(crate) enum Since {
    At(u64),
    /// A position in another epoch: nothing can be recovered from it.
    OtherEpoch,
}

/// Subscribes a fresh peer to `topics`; `since` applies to every concrete
/// topic, and to a wildcard asked for alone (as its `wildcard_seq`): a
/// wildcard among other topics cannot share their one position.
pub(crate) async fn subscribe(
    app: &Arc<App>,
    identity: &Identity,
    topics: Vec<Topic>,
    since: Option<Since>,
    quota: Quota,
    transport: Transport,
) -> Subscribed {
    let queue = app.config.outbound_queue;
    let connection = app.hub.connect(identity.user.clone(), identity.tenant.clone(), queue, transport);
    let alone = topics.len() == 1;
    let mut out = Subscribed {
        connection,
        _quota: quota,
        replay: Vec::new(),
        recovered: since.map(|_| true),
        last_seq: Vec::new(),
    };
    for topic in topics {
        let position = match since {
            Some(Since::At(seq)) if alone || !topic.is_wildcard() => Some(seq),
            Some(_) => {
                out.recovered = Some(false);
                None
            }
            None => None,
        };
        let joined = if topic.is_wildcard() {
            let fetched = app.missed_wildcard(&identity.tenant, &topic, position).await;
            out.connection.subscribe_wildcard(&topic, position, fetched)
        } else {
            let fetched = app.missed(&identity.tenant, &topic, position).await;
            out.connection.subscribe(&topic, false, None, position, fetched)
        };
        if joined.recovered == Some(false) {
            out.recovered = Some(false);
        }
        out.replay.extend(joined.replay);
        out.last_seq.extend(joined.last_seq.map(|seq| (topic.clone(), seq)));
    }
    if out.recovered == Some(false) {
        out.replay.clear();
    }
    out
}

/// `since` in the history named `epoch`, or in another epoch when the
/// query's `epoch` (`theirs`) differs.
pub(crate) fn position(epoch: &str, theirs: Option<&str>, since: Option<&str>) -> Result<Option<Since>, Refusal> {
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
