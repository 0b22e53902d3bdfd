//! What the HTTP handlers take from a request: typed query parameters, the
//! caller's identity, an allowed origin and a bounded body. Extractors run
//! in the order a handler lists them, and the body comes last: a request
//! without a valid token or from a refused origin is answered before a byte
//! of its body is read.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use ipnet::IpNet;

use crate::{AuthError, Credentials, Identity, accept::Slot, app::App, metrics::AuthFailure};

/// A refused request: its status and what to do about it, as `{"error": ..}`.
#[derive(Debug, Clone)]
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

/// The caller, from `Authorization: Bearer ..` or `?token=` (or the
/// request's headers, as the authenticator reads them).
impl FromRequestParts<Arc<App>> for Identity {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Refusal> {
        let Params(TokenParam { token }) = Params::from_request_parts(parts, app).await?;
        let identity = identify(app, &parts.headers, token.as_deref()).await?;
        if let Some(slot) = parts.extensions.get::<Arc<Slot>>() {
            slot.authenticated();
        }
        Ok(identity)
    }
}

/// The identity of a request: its bearer token, or else `query_token`,
/// and its headers. A refusal is 401, or 503 when the authenticator cannot
/// answer now.
pub(crate) async fn identify(app: &App, headers: &HeaderMap, query_token: Option<&str>) -> Result<Identity, Refusal> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let credentials = Credentials::new(bearer.or(query_token), headers);
    app.auth.check(credentials).await.map_err(|error| {
        app.hub.metrics.auth_failed(AuthFailure::from(&error));
        match error {
            AuthError::Unavailable(_) => {
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()).retry_after(5)
            }
            _ => Refusal::new(StatusCode::UNAUTHORIZED, error.to_string()),
        }
    })
}

/// Where a request comes from: the client's address, and on Herald's own
/// listener the connection's [`Slot`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Remote {
    /// The peer's address, or the client's as the trusted proxies in front
    /// say; `None` on a listener that records no peer address.
    pub(crate) ip: Option<IpAddr>,
    slot: Option<Arc<Slot>>,
}

impl Remote {
    /// The connection authenticated (see [`Slot::authenticated`]).
    pub(crate) fn authenticated(&self) {
        if let Some(slot) = &self.slot {
            slot.authenticated();
        }
    }

    /// The connection's place within the listener's limits, for it to hold.
    pub(crate) fn into_slot(self) -> Option<Arc<Slot>> {
        self.slot
    }
}

impl FromRequestParts<Arc<App>> for Remote {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let ip = peer.map(|peer| client_ip(peer, &parts.headers, &app.config.trusted_proxies));
        Ok(Self { ip, slot: parts.extensions.get::<Arc<Slot>>().cloned() })
    }
}

/// The client's address: `peer`, or when `peer` is a trusted proxy, the
/// last address before the trusted ones in `Forwarded` (or else
/// `X-Forwarded-For`). Proxies append what they saw, so everything left of
/// the first untrusted hop is the client's to invent and is not read; a hop
/// that does not parse ends the walk at the last trusted address.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers.get_all(header::FORWARDED).iter().filter_map(|v| v.to_str().ok()).collect();
    let hops: Vec<&str> = if forwarded.is_empty() {
        let xff = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        xff.flat_map(|v| v.split(',')).map(str::trim).collect()
    } else {
        let elements = forwarded.into_iter().flat_map(|v| v.split(','));
        elements
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for").then(|| value.trim_matches('"'))
                })
            })
            .collect()
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|ip| ip.parse().ok())
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
        app.hub.metrics.auth_failed(AuthFailure::Origin);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (header::HeaderName::from_static(name), value.parse().unwrap())).collect()
    }

    #[test]
    fn the_client_address_comes_through_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();

        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.9")]);
        assert_eq!(client_ip(proxy, &xff, &trusted), ip("203.0.113.9"), "the hop before the trusted ones");
        assert_eq!(client_ip(stranger, &xff, &trusted), stranger, "an untrusted peer's headers are not read");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);

        let forwarded = headers(&[("forwarded", r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.1.1.1"#)]);
        assert_eq!(client_ip(proxy, &forwarded, &trusted), ip("2001:db8::1"), "Forwarded first");
        let garbage = headers(&[("x-forwarded-for", "6.6.6.6, not-an-address, 10.0.0.9")]);
        assert_eq!(client_ip(proxy, &garbage, &trusted), ip("10.0.0.9"), "no further than a hop that does not parse");
    }
}
