//! `POST /api/publish`: a backend announces a change it saved.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use herald_protocol::{Event, EventData, EventKind, Payload, Topic, limits::MAX_FRAME_BYTES, now_timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::{
    app::{App, trace_id_of},
    auth::Identity,
    extract::{AllowedOrigin, Body, JsonContent, Refusal},
    hub::PublishId,
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
    let event = Event { topic: body.topic, event: body.event, data, trace_id, seq: None };
    event.validate().map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let dedup = body.id.as_deref().map(|id| PublishId { tenant: &identity.tenant, user: &identity.user, id });
    match app.publish(event, dedup).await {
        Ok((seq, true)) => Ok(axum::Json(json!({ "seq": seq, "duplicate": true })).into_response()),
        Ok((seq, false)) => Ok(axum::Json(json!({ "seq": seq })).into_response()),
        Err(unavailable) => Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, unavailable.0)),
    }
}
