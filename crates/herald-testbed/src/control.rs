//! The control API. Every answer carries `access-control-allow-origin: *`:
//! the callers are test pages served from another loopback port.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use herald_protocol::{Event, EventData, EventKind, Payload, Topic};
use herald_server::{Claims, Epoch, ServerHandle, mint_token};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::gate::Gate;

#[derive(Debug)]
pub(crate) struct Testbed {
    pub(crate) dev: Mutex<ServerHandle>,
    pub(crate) secure: Mutex<ServerHandle>,
    pub(crate) tls: Mutex<ServerHandle>,
    pub(crate) gate: Gate,
    pub(crate) secret: &'static str,
}

type Params = Query<HashMap<String, String>>;
type Shared = State<Arc<Testbed>>;

pub(crate) fn router(testbed: Arc<Testbed>) -> Router {
    Router::new()
        .route("/publish", post(publish))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/restart", post(restart))
        .route("/disconnect", post(disconnect))
        .route("/token", post(token))
        .route("/block", post(block))
        .route("/blackhole", post(black_hole))
        .route("/state", get(state))
        .with_state(testbed)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    answer(StatusCode::OK, body)
}

fn bad(message: impl Into<String>) -> Response {
    answer(StatusCode::BAD_REQUEST, json!({ "error": message.into() }))
}

fn server<'a>(testbed: &'a Testbed, params: &HashMap<String, String>) -> &'a Mutex<ServerHandle> {
    crate::pick(testbed, params.get("server").map(String::as_str))
}

fn epoch(params: &HashMap<String, String>) -> Result<Epoch, String> {
    match params.get("epoch").map(String::as_str) {
        None | Some("same") => Ok(Epoch::Same),
        Some("new") => Ok(Epoch::New),
        Some(other) => Err(format!("epoch {other:?} must be same or new")),
    }
}

async fn publish(State(testbed): Shared, Query(params): Params, body: String) -> Response {
    let event = (|| {
        let topic = Topic::new(params.get("topic").ok_or("topic is required")?).map_err(|e| e.to_string())?;
        let payload = if body.trim().is_empty() {
            Payload::default()
        } else {
            Payload::from_json(body).map_err(|e| format!("the body is not JSON: {e}"))?
        };
        let data = EventData {
            entity_id: params.get("entity_id").cloned().unwrap_or_else(|| "1".into()),
            payload,
            user_id: params.get("user_id").cloned(),
            tenant_id: params.get("tenant_id").cloned(),
            timestamp: herald_protocol::now_timestamp(),
        };
        let kind = EventKind::from(params.get("event").map_or("UPDATED", String::as_str));
        Ok::<_, String>(Event {
            topic,
            event: kind,
            data,
            trace_id: params.get("trace_id").cloned(),
            seq: None,
            wildcard_seq: None,
            ephemeral: false,
        })
    })();
    match event {
        Ok(event) => match server(&testbed, &params).lock().await.publish_event(event).await {
            // As `POST /api/publish` answers: the event's position.
            Ok(position) => ok(json!({ "seq": position.seq, "epoch": position.epoch })),
            Err(error) => bad(error.to_string()),
        },
        Err(message) => bad(message),
    }
}

async fn pause(State(testbed): Shared, Query(params): Params) -> Response {
    server(&testbed, &params).lock().await.pause().await;
    ok(json!({}))
}

async fn resume(State(testbed): Shared, Query(params): Params) -> Response {
    let epoch = match epoch(&params) {
        Ok(epoch) => epoch,
        Err(message) => return bad(message),
    };
    let mut server = server(&testbed, &params).lock().await;
    match server.resume(epoch).await {
        Ok(()) => ok(json!({ "epoch": server.epoch() })),
        Err(error) => answer(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": error.to_string() })),
    }
}

async fn restart(State(testbed): Shared, Query(params): Params) -> Response {
    let epoch = match epoch(&params) {
        Ok(epoch) => epoch,
        Err(message) => return bad(message),
    };
    let mut server = server(&testbed, &params).lock().await;
    match server.restart(epoch).await {
        Ok(()) => ok(json!({ "epoch": server.epoch() })),
        Err(error) => answer(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": error.to_string() })),
    }
}

async fn disconnect(State(testbed): Shared, Query(params): Params) -> Response {
    let Some(code) = params.get("code").and_then(|c| c.parse::<u16>().ok()) else {
        return bad("code must be a close code such as 1006");
    };
    server(&testbed, &params).lock().await.disconnect_all(code);
    ok(json!({}))
}

async fn token(State(testbed): Shared, Query(params): Params) -> Response {
    let Some(user) = params.get("user") else { return bad("user is required") };
    let ttl = params.get("ttl").and_then(|t| t.parse().ok()).unwrap_or(3600);
    let mut claims = Claims::new(user.clone(), ttl);
    claims.topics = params.get("topics").map(|t| t.split(',').map(str::to_owned).collect());
    match mint_token(testbed.secret, &claims) {
        Ok(token) => ok(json!({ "token": token })),
        Err(error) => bad(error.to_string()),
    }
}

async fn block(State(testbed): Shared, Query(params): Params) -> Response {
    let on = params.get("on").is_none_or(|on| on == "true" || on == "1");
    testbed.gate.block(on);
    ok(json!({ "blocking": on }))
}

async fn black_hole(State(testbed): Shared, Query(params): Params) -> Response {
    let on = params.get("on").is_none_or(|on| on == "true" || on == "1");
    testbed.gate.black_hole(on);
    ok(json!({ "black_hole": on }))
}

async fn state(State(testbed): Shared, Query(params): Params) -> Response {
    let server = server(&testbed, &params).lock().await;
    let m = server.metrics();
    ok(json!({
        "connections": m.connections,
        "subscriptions": m.subscriptions,
        "messages_in": m.messages_in,
        "events_published": m.events_published,
        "auth_failures": m.auth_failures,
        "epoch": server.epoch(),
        "gate_accepted": testbed.gate.accepted(),
    }))
}
