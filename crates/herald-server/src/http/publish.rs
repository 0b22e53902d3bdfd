//! `POST /api/publish`: a backend announces a change it saved.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use herald_protocol::{Event, EventData, EventKind, Payload, Position, Topic, limits::MAX_FRAME_BYTES, now_timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::{
    app::{App, NotPublished, Published, trace_id_of},
    auth::Identity,
    extract::{AllowedOrigin, Body, JsonContent, Refusal},
    hub::{Conflict, PublishId},
    metrics,
};

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
    /// To the subscribers of the moment only: no `seq`, no history.
    #[serde(default)]
    ephemeral: bool,
    /// Accepted only while the topic is at this `seq`; otherwise 409 with the current one.
    #[serde(default)]
    if_seq: Option<u64>,
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
    headers: HeaderMap,
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
    app.publish_limits.check(&identity).inspect_err(|_| app.hub.metrics.refused(metrics::Refusal::PublishRate))?;
    app.hub.metrics.messages_in.inc();
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
    // The body's trace id, or the one of the request's W3C `traceparent`.
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(trace_id_of);
    let trace_id = body.trace_id.or(traceparent);
    if body.ephemeral && body.if_seq.is_some() {
        let message = "an ephemeral event has no seq, so it cannot be conditional: drop if_seq or ephemeral";
        return Err(Refusal::new(StatusCode::BAD_REQUEST, message));
    }
    let event = Event {
        topic: body.topic,
        event: body.event,
        data,
        trace_id,
        seq: None,
        wildcard_seq: None,
        ephemeral: body.ephemeral,
    };
    event.validate().map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let topic = event.topic.clone();
    let dedup = body.id.as_deref().map(|id| PublishId { tenant: &identity.tenant, user: &identity.user, id });
    match app.publish(event, dedup, body.if_seq).await {
        Ok(Published { position: Some(Position { epoch, seq }), duplicate }) => {
            let mut answer = json!({ "seq": seq, "epoch": epoch });
            if duplicate {
                answer["duplicate"] = json!(true);
            }
            Ok(axum::Json(answer).into_response())
        }
        Ok(Published { position: None, .. }) => Ok(axum::Json(json!({ "ephemeral": true })).into_response()),
        Err(NotPublished::Conflict(Conflict { current })) => {
            let error = format!(
                "conflict: {topic} is at seq {current}, not {}; apply the newer events, then publish again with if_seq {current}",
                body.if_seq.unwrap_or_default()
            );
            Ok((StatusCode::CONFLICT, axum::Json(json!({ "error": error, "seq": current }))).into_response())
        }
        Err(NotPublished::Unavailable(unavailable)) => {
            Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, unavailable.0))
        }
    }
}
