//! `GET /ws`: the WebSocket link of a connection (`conn.rs` speaks the protocol).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::HeaderMap,
    response::Response,
};
use futures_util::SinkExt;
use herald_protocol::{close, limits::MAX_FRAME_BYTES};
use tokio::time::timeout;

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

pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Params(TokenParam { token }): Params<TokenParam>,
    remote: Remote,
) -> Response {
    let origin_ok = app.origin_allowed(origin(&headers));
    let ws = settings(ws, &app.config);
    // Boxed: axum's task keeps the callback for the connection's life.
    let start = Box::new((app, token, headers, remote));
    ws.on_upgrade(move |socket| {
        let (app, token, headers, remote) = *start;
        crate::conn::run(socket, app, token, headers, origin_ok, remote)
    })
}

/// The WebSocket settings of every connection; the echo endpoint of the
/// `testing` feature, which the Autobahn cases check, uses them too.
pub(crate) fn settings(ws: WebSocketUpgrade, config: &ServerConfig) -> WebSocketUpgrade {
    ws.read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
}

impl Link for WebSocket {
    const TRANSPORT: Transport = Transport::WebSocket;

    async fn recv(&mut self) -> Option<Result<Inbound, Ending>> {
        Some(match Self::recv(self).await? {
            Ok(Message::Text(text)) => Ok(Inbound::Text(text)),
            Ok(Message::Binary(_)) => Ok(Inbound::Binary),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => Ok(Inbound::Other),
            Err(error) => Err(read_error(error)),
        })
    }

    async fn feed(&mut self, frame: Frame) -> Result<(), Gone> {
        SinkExt::feed(self, Message::Text(frame)).await.map_err(|_| Gone)
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        SinkExt::flush(self).await.map_err(|_| Gone)
    }

    /// Sends a close frame (or none), then waits briefly for the client's
    /// close so the TCP connection ends cleanly instead of with a reset that
    /// could discard the close frame before the client reads it.
    async fn close(&mut self, ending: Ending) {
        let Some(code) = ending.code else { return };
        let reason = truncate_reason(ending.reason);
        let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        if timeout(CLOSE_SEND, self.send(frame)).await.is_err() {
            return;
        }
        let _ = timeout(CLOSE_REPLY, async {
            while let Some(Ok(message)) = Self::recv(self).await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The close a read error calls for.
pub(crate) fn read_error(error: axum::Error) -> Ending {
    use tungstenite::error::{CapacityError, Error};
    match error.into_inner().downcast::<Error>().map(|e| *e) {
        Ok(Error::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
            Ending::close(close::TOO_BIG, format!("frame of {size} bytes is over the {max_size}-byte limit"))
        }
        Ok(Error::Capacity(_)) => Ending::close(close::TOO_BIG, "frame too large"),
        Ok(Error::Utf8(_)) => Ending::close(1007, "text frame is not valid UTF-8"),
        Ok(Error::Protocol(problem)) => Ending::close(1002, format!("WebSocket protocol error: {problem}")),
        _ => Ending::silent(),
    }
}
