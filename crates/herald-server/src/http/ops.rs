//! `GET /healthz` and `GET /metrics`.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{app::App, extract::Refusal};

/// `ok`, or 503 while a node of a cluster cannot reach Redis or a process
/// does not hold its store (a load balancer then sends new clients to
/// another node).
pub(crate) async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.unhealthy() {
        None => "ok".into_response(),
        Some(why) => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

pub(crate) async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], app.hub.render_metrics())
}
