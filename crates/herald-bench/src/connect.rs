//! Opening many benchmark connections: spread over loopback source addresses,
//! small buffers, a token per connection.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, http::Uri, protocol::WebSocketConfig},
};

use crate::BenchError;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Where to connect, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    addr: SocketAddr,
    /// Spread connections over this many 127.0.0.x source addresses, so that
    /// tens of thousands of connections do not exhaust one address's ports.
    sources: u8,
}

impl Target {
    pub(crate) async fn new(url: &str, connections: usize) -> Result<Self, BenchError> {
        let bad = |problem: &str| BenchError::Url { url: url.to_owned(), problem: problem.to_owned() };
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("ws") {
            return Err(bad("only ws:// is supported: benchmarks run on loopback"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("the host resolves to no address"))?;
        let sources = match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => connections.div_ceil(4_000).clamp(1, 250) as u8,
            _ => 1,
        };
        Ok(Self { url: url.to_owned(), addr, sources })
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens connection `index` with token `bench-<index>` in the query.
    pub(crate) async fn open(&self, index: usize) -> Result<Ws, BenchError> {
        let fail = |message: String| BenchError::Connect { index, url: self.url.clone(), message };
        let socket = TcpSocket::new_v4().map_err(|e| fail(e.to_string()))?;
        if self.sources > 1 {
            let source = Ipv4Addr::new(127, 0, 0, 1 + (index % usize::from(self.sources)) as u8);
            socket.bind(SocketAddr::new(source.into(), 0)).map_err(|e| fail(e.to_string()))?;
        }
        let stream = socket.connect(self.addr).await.map_err(|e| fail(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let request = format!("{}{separator}token=bench-{index}", self.url);
        // Small buffers: ten thousand clients with the 128 KiB default would
        // spend over a gigabyte on read buffers alone.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0);
        let (ws, _) = client_async_with_config(request, stream, Some(config)).await.map_err(|e| fail(e.to_string()))?;
        Ok(ws)
    }

    /// Opens connection `index` and subscribes it to `topic`.
    pub(crate) async fn open_subscribed(&self, index: usize, topic: &str) -> Result<Ws, BenchError> {
        let ws = self.open(index).await?;
        self.subscribe(ws, index, topic).await
    }

    /// Subscribes connection `index` to `topic`, waiting for the server's `subscribed`.
    pub(crate) async fn subscribe(&self, mut ws: Ws, index: usize, topic: &str) -> Result<Ws, BenchError> {
        const TIMEOUT: Duration = Duration::from_secs(30);
        let fail = |message: String| BenchError::Connect { index, url: self.url.clone(), message };
        let subscribe = format!(r#"{{"type":"subscribe","topics":["{topic}"]}}"#);
        ws.send(Message::text(subscribe)).await.map_err(|e| fail(e.to_string()))?;
        let confirmed = async {
            while let Some(message) = ws.next().await {
                match message {
                    Ok(Message::Text(text)) if text.contains(r#""subscribed""#) => return Ok(()),
                    Ok(Message::Close(frame)) => return Err(fail(format!("closed by the server: {frame:?}"))),
                    Ok(_) => {}
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
            Err(fail("closed before subscribed".into()))
        };
        tokio::time::timeout(TIMEOUT, confirmed)
            .await
            .map_err(|_| BenchError::Subscribe { index, timeout: TIMEOUT })??;
        Ok(ws)
    }
}
