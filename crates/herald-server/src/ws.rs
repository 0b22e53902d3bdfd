//! `GET /ws`: the WebSocket link of a connection (`conn.rs` speaks the protocol).
//!
//! The upgrade is answered here rather than by axum's `WebSocketUpgrade`,
//! whose task keeps its handshake's state (the callback, the socket's
//! configuration, the negotiated protocol) next to the connection for the
//! connection's whole life: an idle connection is its task, so those bytes
//! were a tenth of what each cost. The requests it accepts and refuses, and
//! the answers, are axum's.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{FromRequestParts, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header, request::Parts},
    response::{IntoResponse, Response},
};
use futures_util::{FutureExt, Sink, SinkExt, StreamExt, future::Either};
use herald_protocol::{close, limits::MAX_FRAME_BYTES};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;
use tungstenite::{
    Message,
    handshake::derive_accept_key,
    protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode},
};

use crate::{
    ServerConfig,
    app::App,
    conn::{Ending, Gone, Inbound, Link, truncate_reason},
    extract::{Params, Remote, TokenParam, origin},
    hub::Frame,
    metrics::Transport,
};

/// How long a closing connection may take to send its close frame: behind
/// what is already in the socket's buffers, which a slow consumer dropped
/// with 4009 reads first. The connection still holds its place within the
/// connection limits meanwhile.
const CLOSE_SEND: Duration = Duration::from_secs(10);
/// How long it then waits for the client's close frame.
const CLOSE_REPLY: Duration = Duration::from_secs(2);

/// A connection's WebSocket, on the connection hyper handed over.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    upgrade: Upgrade,
    headers: HeaderMap,
    Params(TokenParam { token }): Params<TokenParam>,
    remote: Remote,
) -> Response {
    let origin_ok = app.origin_allowed(origin(&headers));
    let config = settings(&app.config);
    // Boxed: the task keeps the callback for the connection's life.
    let start = Box::new((app, token, headers, remote));
    upgrade.on_upgrade(config, move |socket| {
        let (app, token, headers, remote) = *start;
        crate::conn::run(socket, app, token, headers, origin_ok, remote)
    })
}

/// The WebSocket settings of every connection; the echo endpoint of the
/// `testing` feature, which the Autobahn cases check, uses them too.
pub(crate) fn settings(config: &ServerConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// A WebSocket opening handshake over HTTP/1.1, checked as axum's
/// `WebSocketUpgrade` checks it.
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is no WebSocket handshake: answered with this status and text.
pub(crate) struct NotUpgrade(StatusCode, &'static str);

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotUpgrade> {
        let refuse = |status, message| Err(NotUpgrade(status, message));
        if parts.version > Version::HTTP_11 {
            return refuse(StatusCode::HTTP_VERSION_NOT_SUPPORTED, "WebSocket connections use HTTP/1.1");
        }
        if parts.method != Method::GET {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "Request method must be `GET`");
        }
        let headers = &parts.headers;
        let connection = headers.get(header::CONNECTION).and_then(|value| value.to_str().ok());
        if !connection.is_some_and(|value| value.to_ascii_lowercase().contains("upgrade")) {
            return refuse(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'");
        }
        let is = |name, expected: &str| {
            headers
                .get(name)
                .is_some_and(|value: &HeaderValue| value.as_bytes().eq_ignore_ascii_case(expected.as_bytes()))
        };
        if !is(header::UPGRADE, "websocket") {
            return refuse(StatusCode::BAD_REQUEST, "`Upgrade` header did not include 'websocket'");
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` header missing");
        };
        if !is(header::SEC_WEBSOCKET_VERSION, "13") {
            return refuse(StatusCode::BAD_REQUEST, "`Sec-WebSocket-Version` header did not include '13'");
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return refuse(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            );
        };
        Ok(Self { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers the handshake and, once hyper hands the connection over,
    /// runs `serve` on its WebSocket in a task of its own. The task holds
    /// `serve` and its future, and a pointer to the handshake's: nothing
    /// else of the request.
    pub(crate) fn on_upgrade<F>(
        self,
        config: WebSocketConfig,
        serve: impl FnOnce(Socket) -> F + Send + 'static,
    ) -> Response
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self { key, on_upgrade } = self;
        let socket = Box::pin(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await)
                }
                Err(error) => {
                    debug!(%error, "WebSocket upgrade failed");
                    None
                }
            }
        });
        // Chained, not awaited in an `async` block: that would keep the
        // socket it hands on in the task beside the future holding it.
        tokio::spawn(socket.then(|socket| match socket {
            Some(socket) => Either::Left(serve(socket)),
            None => Either::Right(std::future::ready(())),
        }));
        let accept = derive_accept_key(key.as_bytes());
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

impl Link for Socket {
    const TRANSPORT: Transport = Transport::WebSocket;

    async fn recv(&mut self) -> Option<Result<Inbound, Ending>> {
        Some(match self.next().await? {
            Ok(Message::Text(text)) => Ok(Inbound::Text(text)),
            Ok(Message::Binary(_)) => Ok(Inbound::Binary),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => Ok(Inbound::Other),
            Err(error) => Err(read_error(error)),
        })
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Sink::<Message>::poll_ready(Pin::new(self), cx).map_err(|_| Gone)
    }

    fn start_send(&mut self, frame: Frame) -> Result<(), Gone> {
        Pin::new(self).start_send(Message::Text(frame)).map_err(|_| Gone)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Sink::<Message>::poll_flush(Pin::new(self), cx).map_err(|_| Gone)
    }

    /// Sends a close frame (or none), then waits briefly for the client's
    /// close so the TCP connection ends cleanly instead of with a reset that
    /// could discard the close frame before the client reads it.
    async fn close(&mut self, ending: Ending) {
        let Some(code) = ending.code else { return };
        let reason = truncate_reason(ending.reason);
        let frame = Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }));
        if timeout(CLOSE_SEND, self.send(frame)).await.is_err() {
            return;
        }
        let _ = timeout(CLOSE_REPLY, async {
            while let Some(Ok(message)) = self.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The close a read error calls for.
pub(crate) fn read_error(error: tungstenite::Error) -> Ending {
    use tungstenite::error::{CapacityError, Error};
    match error {
        Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Ending::close(close::TOO_BIG, format!("frame of {size} bytes is over the {max_size}-byte limit"))
        }
        Error::Capacity(_) => Ending::close(close::TOO_BIG, "frame too large"),
        Error::Utf8(_) => Ending::close(1007, "text frame is not valid UTF-8"),
        Error::Protocol(problem) => Ending::close(1002, format!("WebSocket protocol error: {problem}")),
        _ => Ending::silent(),
    }
}
