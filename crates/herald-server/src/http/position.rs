//! `GET /api/position`: where a topic stands, for a backend to read before
//! the data it returns with it.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use herald_protocol::{Position, Topic};
use serde::Deserialize;

use crate::{
    app::App,
    auth::Identity,
    extract::{AllowedOrigin, Params, Refusal},
};

/// The query of `GET /api/position`.
#[derive(Deserialize)]
pub(crate) struct PositionParams {
    topic: Topic,
    /// The namespace, for a token without a tenant (a service); a
    /// tenant-bound token reads its own.
    tenant: Option<String>,
}

/// `GET /api/position?topic=doc:1`: `{"epoch":"..","seq":N}`, the position
/// of the topic's last event. Read it before the data: a client that
/// subscribes from it then gets every change made after the read.
pub(crate) async fn position(
    State(app): State<Arc<App>>,
    _: AllowedOrigin,
    identity: Identity,
    Params(params): Params<PositionParams>,
) -> Result<Json<Position>, Refusal> {
    let PositionParams { topic, tenant } = params;
    if topic.is_wildcard() {
        let message = format!("{topic} is a wildcard, which has no position; ask for one concrete topic");
        return Err(Refusal::new(StatusCode::BAD_REQUEST, message));
    }
    if !identity.may_subscribe(topic.as_str()) && !identity.may_publish(topic.as_str()) {
        let message = format!("the token may neither subscribe nor publish to {topic}");
        return Err(Refusal::new(StatusCode::FORBIDDEN, message));
    }
    let tenant = identity.tenant.clone().or_else(|| tenant.map(Into::into));
    let position = app
        .position(&tenant, &topic)
        .await
        .map_err(|unavailable| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, unavailable.0))?;
    Ok(Json(position))
}
