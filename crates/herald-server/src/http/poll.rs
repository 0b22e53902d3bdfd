//! `GET /api/poll`: long polling, for clients that can hold neither a
//! WebSocket nor a stream.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use serde_json::{json, value::RawValue};

use super::{StreamParams, position, subscribe, topics};
use crate::{
    app::App,
    auth::Identity,
    extract::{AllowedOrigin, Params, Refusal, Remote},
    metrics::Transport,
};

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
    let quota = app.quota(&identity, remote.ip)?;
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
    let mut subscribed = subscribe(&app, &identity, topics, since, quota, Transport::Poll).await;
    let mut events = std::mem::take(&mut subscribed.replay);
    if since.is_some() && subscribed.recovered == Some(true) && events.is_empty() {
        let peer = subscribed.connection.peer.clone();
        let mut frames = VecDeque::new();
        tokio::select! {
            () = peer.wait_killed() => {}
            () = tokio::time::sleep(wait) => {}
            () = peer.outbox.take_all(&mut frames) => events.extend(frames.into_iter().map(|queued| queued.frame)),
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
