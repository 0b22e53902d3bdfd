//! What the HTTP handlers take from a request: typed query parameters, the
//! caller's identity, an allowed origin and a bounded body. Extractors run
//! in the order a handler lists them, and the body comes last: a request
//! without a valid token or from a refused origin is answered before a byte
//! of its body is read.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use crate::{App, auth::Identity, metrics::Metrics};

/// A refused request: its status and what to do about it, as `{"error": ..}`.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    /// Seconds to wait, for `Retry-After`.
    retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    /// Adds `Retry-After: secs`.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Query parameters as `T`; a malformed query is a 400 saying which one.
pub(crate) struct Params<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refusal> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(params)| Self(params))
            .map_err(|rejection| Refusal::new(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}

/// `?token=`, for clients that cannot set headers (EventSource, WebSocket).
#[derive(Deserialize)]
pub(crate) struct TokenParam {
    pub(crate) token: Option<String>,
}

/// The caller, from `Authorization: Bearer ..` or `?token=`.
impl FromRequestParts<Arc<App>> for Identity {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Refusal> {
        let Params(TokenParam { token }) = Params::from_request_parts(parts, app).await?;
        identify(app, &parts.headers, token.as_deref())
    }
}

/// The identity of a request: its bearer token, or else `query_token`.
pub(crate) fn identify(app: &App, headers: &HeaderMap, query_token: Option<&str>) -> Result<Identity, Refusal> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let refuse = |message: String| {
        Metrics::inc(&app.hub.metrics.auth_failures);
        Refusal::new(StatusCode::UNAUTHORIZED, message)
    };
    let token = bearer.or(query_token).ok_or_else(|| refuse("no token: send Authorization: Bearer <token>".into()))?;
    app.auth.check(token).map_err(refuse)
}

/// The request's `Origin`, if it has a readable one.
pub(crate) fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// The request comes from no browser (no `Origin`), or from a browser page
/// on an allowed origin; others get 403.
pub(crate) struct AllowedOrigin;

impl AllowedOrigin {
    pub(crate) fn check(app: &App, headers: &HeaderMap) -> Result<Self, Refusal> {
        let origin = origin(headers);
        if app.origin_allowed(origin) {
            return Ok(Self);
        }
        Metrics::inc(&app.hub.metrics.auth_failures);
        let origin = origin.unwrap_or("(unreadable)");
        let message = format!("origin {origin} is not allowed; the server lists the origins it serves");
        Err(Refusal::new(StatusCode::FORBIDDEN, message))
    }
}

impl FromRequestParts<Arc<App>> for AllowedOrigin {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Refusal> {
        Self::check(app, &parts.headers)
    }
}

/// The body is JSON (`application/json`, or `application/*+json`), or 415.
pub(crate) struct JsonContent;

impl<S: Sync> FromRequestParts<S> for JsonContent {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refusal> {
        let mime = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let json = essence == "application/json"
            || essence.strip_prefix("application/").is_some_and(|subtype| subtype.ends_with("+json"));
        if json {
            return Ok(Self);
        }
        let message = format!("the body must be JSON: send Content-Type: application/json (got {mime:?})");
        Err(Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message))
    }
}

/// The whole body, at most `MAX` bytes, read within the server's body
/// timeout. A body announced larger is refused without reading it.
///
/// The deadline covers the whole body: tower-http's body timeout restarts
/// on every chunk, so a client dripping a byte at a time would hold it.
pub(crate) struct Body<const MAX: usize>(pub(crate) Bytes);

impl<const MAX: usize> FromRequest<Arc<App>> for Body<MAX> {
    type Rejection = Refusal;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Refusal> {
        let too_large =
            || Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over the {MAX}-byte limit"));
        let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
        if announced.and_then(|len| len.parse::<u64>().ok()).is_some_and(|len| len > MAX as u64) {
            return Err(too_large());
        }
        let deadline = app.config.body_timeout;
        match tokio::time::timeout(deadline, axum::body::to_bytes(request.into_body(), MAX)).await {
            Ok(Ok(bytes)) => Ok(Self(bytes)),
            Ok(Err(error)) if is_length_limit(&error) => Err(too_large()),
            Ok(Err(_)) => Err(Refusal::new(StatusCode::BAD_REQUEST, "the body could not be read")),
            Err(_) => Err(Refusal::new(StatusCode::REQUEST_TIMEOUT, body_late(deadline))),
        }
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

fn body_late(deadline: Duration) -> String {
    format!("the body did not arrive within {deadline:?}; send it at once")
}
