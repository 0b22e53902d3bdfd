//! The fan-out's publisher: over the WebSocket protocol, or over
//! `POST /api/publish` the way a backend announces a change.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt, stream::SplitSink};
use http_body_util::{BodyExt, Full};
use hyper::{
    Request,
    body::Bytes,
    client::conn::http1::{self, SendRequest},
    header,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, task::JoinHandle};
use tokio_tungstenite::tungstenite::Message;

use crate::{BenchError, connect::Ws};

/// How the fan-out's events are published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishVia {
    /// `{"type":"publish"}` frames on a WebSocket, acked by the server.
    #[default]
    WebSocket,
    /// `POST /api/publish` on one keep-alive HTTP/1.1 connection, one request at a time.
    Http,
}

pub(crate) enum Publisher {
    WebSocket { sink: SplitSink<Ws, Message>, acks: JoinHandle<u64> },
    Http { send: SendRequest<Full<Bytes>>, authority: String, acked: u64, connection: JoinHandle<()> },
}

impl Publisher {
    pub(crate) fn websocket(ws: Ws) -> Self {
        let (sink, mut stream) = ws.split();
        let acks = tokio::spawn(async move {
            let mut acked = 0u64;
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message
                    && text.contains(r#""ack""#)
                {
                    acked += 1;
                }
            }
            acked
        });
        Self::WebSocket { sink, acks }
    }

    pub(crate) async fn http(addr: SocketAddr, url: &str) -> Result<Self, BenchError> {
        let fail = |message: String| BenchError::Connect { index: usize::MAX, url: url.to_owned(), message };
        let stream = TcpStream::connect(addr).await.map_err(|e| fail(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
        let (send, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail(e.to_string()))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self::Http { send, authority: addr.to_string(), acked: 0, connection })
    }

    /// Sends one event; `id` is unique per run, `body` is the event's
    /// `topic`, `event` and `data` members without the surrounding braces.
    /// `Err` when the connection failed.
    pub(crate) async fn feed(&mut self, id: &str, body: &str) -> Result<(), String> {
        match self {
            Self::WebSocket { sink, .. } => {
                let frame = format!(r#"{{"type":"publish","id":"{id}",{body}}}"#);
                sink.feed(Message::text(frame)).await.map_err(|e| e.to_string())
            }
            Self::Http { send, authority, acked, .. } => {
                let request = Request::post("/api/publish")
                    .header(header::HOST, authority.as_str())
                    .header(header::AUTHORIZATION, "Bearer bench-publisher")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(format!("{{{body}}}"))))
                    .map_err(|e| e.to_string())?;
                // The connection takes the next request once the last response was read.
                send.ready().await.map_err(|e| e.to_string())?;
                let response = send.send_request(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                // Read the body to the end: the connection is reused.
                let text = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
                if !status.is_success() {
                    return Err(format!("POST /api/publish: {status} {}", String::from_utf8_lossy(&text)));
                }
                *acked += 1;
                Ok(())
            }
        }
    }

    /// Writes what [`feed`](Self::feed) queued.
    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        match self {
            Self::WebSocket { sink, .. } => sink.flush().await.map_err(|e| e.to_string()),
            Self::Http { .. } => Ok(()),
        }
    }

    /// Closes the publisher; returns how many publishes the server confirmed.
    pub(crate) async fn finish(self) -> u64 {
        match self {
            Self::WebSocket { mut sink, acks } => {
                let _ = sink.close().await;
                let acked = tokio::time::timeout(std::time::Duration::from_secs(2), acks).await;
                acked.ok().and_then(Result::ok).unwrap_or(0)
            }
            Self::Http { acked, connection, .. } => {
                connection.abort();
                acked
            }
        }
    }
}
