//! Test helpers: a small WebSocket client over tokio-tungstenite and a
//! minimal HTTP/1.1 client, both with timeouts so every test ends by itself.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::{future::Future, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    time::timeout,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

pub use herald_server::{Claims, Epoch, Server, ServerHandle, mint_token};

/// Longest wait for anything a test expects.
pub const WAIT: Duration = Duration::from_secs(10);
pub const SECRET: &str = "test-secret-of-reasonable-length";

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `condition` until it holds, for state that has no event to await (metrics).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

pub fn token(user: &str) -> String {
    mint_token(SECRET, &Claims::new(user, 3600)).expect("signing with a fixed secret works")
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = within("the WebSocket handshake", connect_async(url)).await.expect("handshake succeeds");
        Self { ws }
    }

    pub async fn connect_with_origin(url: &str, origin: &str) -> Self {
        let mut request = url.into_client_request().expect("valid URL");
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).expect("valid header"));
        let (ws, _) = within("the WebSocket handshake", connect_async(request)).await.expect("handshake succeeds");
        Self { ws }
    }

    /// Connects with `?token=user` to a dev server and reads `connected`.
    pub async fn dev(server: &ServerHandle, user: &str) -> Self {
        Self::authed(server, user).await
    }

    pub async fn authed(server: &ServerHandle, token: &str) -> Self {
        let mut client = Self::connect(&format!("{}?token={token}", server.ws_url())).await;
        let connected = client.recv().await;
        assert_eq!(connected["type"], "connected", "{connected}");
        client
    }

    pub async fn send(&mut self, text: &str) {
        within("a send", self.ws.send(Message::text(text))).await.expect("send succeeds");
    }

    pub async fn send_message(&mut self, message: Message) {
        within("a send", self.ws.send(message)).await.expect("send succeeds");
    }

    /// The next text frame as JSON, skipping server pings.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = within("a message", self.ws.next()).await;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("the server sends JSON");
                    if value["type"] == "ping" {
                        continue;
                    }
                    return value;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame as JSON, including pings.
    pub async fn recv_any(&mut self) -> Value {
        match within("a message", self.ws.next()).await {
            Some(Ok(Message::Text(text))) => serde_json::from_str(&text).expect("the server sends JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads until the close frame; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match within("the close frame", self.ws.next()).await {
                Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string()),
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Reads `presence_diff`s of `topic` until one has `user` in `list`
    /// (`joined` or `left`). Diffs state current membership, so one may
    /// also name users this client already knew of.
    pub async fn presence_until(&mut self, topic: &str, list: &str, user: &str) -> Value {
        loop {
            let diff = self.recv().await;
            assert_eq!((diff["type"].as_str(), diff["topic"].as_str()), (Some("presence_diff"), Some(topic)), "{diff}");
            if diff[list].as_array().is_some_and(|users| users.iter().any(|u| u == user)) {
                return diff;
            }
        }
    }

    pub async fn subscribe(&mut self, topics: &[&str]) -> Value {
        self.send(&serde_json::json!({"type":"subscribe","topics":topics}).to_string()).await;
        let subscribed = self.recv().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        subscribed
    }
}

/// `POST /api/publish` with `Authorization: Bearer <token>` and a JSON body;
/// returns status and body.
pub async fn post_publish(server: &ServerHandle, token: &str, body: &str) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    http(server, "POST", "/api/publish", &[("Authorization", &bearer), ("Content-Type", "application/json")], body)
        .await
}

/// A minimal HTTP/1.1 request; returns status and body.
pub async fn http(
    server: &ServerHandle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_with_head(server, method, path, headers, body).await;
    (status, body)
}

/// [`http`], also returning the response's header block, lowercased.
pub async fn http_with_head(
    server: &ServerHandle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    http_at_with_head(server.local_addr(), method, path, headers, body).await
}

/// [`http`] to any address.
pub async fn http_at(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_at_with_head(addr, method, path, headers, body).await;
    (status, body)
}

async fn http_at_with_head(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    within("an HTTP response", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8(response).expect("UTF-8 response");
        let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let head = head.to_ascii_lowercase();
        let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
        (status, head, body)
    })
    .await
}

/// Writes `request` (possibly a head and only part of its body) and reads
/// one response without closing the sending side: status and body.
pub async fn http_partial(server: &ServerHandle, request: &[u8]) -> (u16, String) {
    let stream = within("connect", TcpStream::connect(server.local_addr())).await.expect("connect");
    let mut reader = BufReader::new(stream);
    within("a write", reader.get_mut().write_all(request)).await.expect("write");
    read_response(&mut reader).await
}

/// Reads one response with a `Content-Length` body: status and body.
pub async fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    within("an HTTP response", async {
        let (mut status, mut length) = (0, 0);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("read");
            let lower = line.to_ascii_lowercase();
            if status == 0 {
                status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
            } else if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().expect("a length");
            } else if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.expect("the body");
        (status, String::from_utf8(body).expect("UTF-8"))
    })
    .await
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// An open Server-Sent Events stream.
pub struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    pub async fn open(server: &ServerHandle, path: &str, headers: &[(&str, &str)]) -> (u16, Self) {
        let mut stream = within("connect", TcpStream::connect(server.local_addr())).await.expect("connect");
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(stream);
        let mut status = 0;
        loop {
            let mut line = String::new();
            within("headers", reader.read_line(&mut line)).await.expect("read");
            if status == 0 {
                status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        (status, Self { reader })
    }

    /// The next event's fields (`event`, `id`, `data`, `retry`), skipping comments.
    pub async fn next(&mut self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        loop {
            let mut line = String::new();
            let n = within("an SSE line", self.reader.read_line(&mut line)).await.expect("read");
            assert!(n > 0, "the SSE stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            // Chunk-size lines of the chunked encoding are hex digits only.
            if !line.is_empty() && line.chars().all(|c| c.is_ascii_hexdigit()) && !line.contains(':') {
                continue;
            }
            if line.is_empty() {
                if !fields.is_empty() {
                    return fields;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.to_owned(), value.trim_start().to_owned()));
            } else {
                fields.push((line.to_owned(), String::new()));
            }
        }
    }
}

impl Sse {
    /// Whether the stream ends (its last chunk, or the connection closing)
    /// before any other event arrives.
    pub async fn ended(&mut self) -> bool {
        loop {
            let mut line = String::new();
            let n = within("the SSE stream to end", self.reader.read_line(&mut line)).await.unwrap_or(0);
            let line = line.trim_end_matches(['\r', '\n']);
            if n == 0 || line == "0" {
                return true;
            }
            if line.starts_with("data:") || line.starts_with("event:") {
                return false;
            }
        }
    }
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A real `redis-server` on a free loopback port, without persistence
/// unless asked, killed on drop.
pub struct RedisServer {
    port: u16,
    /// Where a server that keeps its data writes it.
    dir: Option<std::path::PathBuf>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts an empty server that keeps nothing on disk.
    pub async fn start() -> Self {
        Self::start_in(None).await
    }

    /// Starts an empty server that saves its data in a directory of its own
    /// on [`save`](Self::save), and loads it on [`restart`](Self::restart).
    pub async fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(format!("herald-redis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self::start_in(Some(dir)).await
    }

    async fn start_in(dir: Option<std::path::PathBuf>) -> Self {
        // Another test may take the free port first: try a few.
        for _ in 0..5 {
            let mut server = Self { port: free_port(), dir: dir.clone(), child: None };
            if server.spawn().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it answers; `false` if it exited.
    async fn spawn(&mut self) -> bool {
        let mut command = std::process::Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(dir) = &self.dir {
            command.arg("--dir").arg(dir);
        }
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let child = command.spawn().unwrap_or_else(|error| {
            panic!("cannot run redis-server ({error}); `cargo xtask install` installs it (Debian package redis-server)")
        });
        let child = self.child.insert(child);
        within("redis-server to answer", async {
            loop {
                if child.try_wait().expect("the child's status").is_some() {
                    return false;
                }
                if ping(self.port).await {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Writes the data to disk (a server started with [`start_persistent`](Self::start_persistent)).
    pub async fn save(&self) {
        assert_eq!(command(self.port, "SAVE").await, "+OK\r\n");
    }

    /// Drops every key while the server and its connections stay up.
    pub async fn flush_all(&self) {
        assert_eq!(command(self.port, "FLUSHALL").await, "+OK\r\n");
    }

    /// Kills the server without saving: what it held in memory is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty or with what it saved.
    pub async fn restart(&mut self) {
        assert!(self.spawn().await, "redis-server restarts on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A TCP relay to a Redis server that can be cut (every connection dropped,
/// new ones refused) and restored, as a network failure between a node and
/// Redis would: Redis keeps running and keeps its data.
pub struct RedisLink {
    port: u16,
    target: String,
    relay: Option<tokio::task::JoinHandle<()>>,
}

impl RedisLink {
    pub async fn to(redis: &RedisServer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("a bound address").port();
        let target = format!("127.0.0.1:{}", redis.port);
        let relay = Some(tokio::spawn(relay(listener, target.clone())));
        Self { port, target, relay }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cut(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }

    pub async fn restore(&mut self) {
        let listener = within("the relay's port to be free again", async {
            loop {
                match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                    Ok(listener) => return listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        self.relay = Some(tokio::spawn(relay(listener, self.target.clone())));
    }
}

impl Drop for RedisLink {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Relays every accepted connection to `target`; aborting it drops them all.
async fn relay(listener: tokio::net::TcpListener, target: String) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

async fn ping(port: u16) -> bool {
    command(port, "PING").await == "+PONG\r\n"
}

/// One inline Redis command and the first line of its answer.
async fn command(port: u16, command: &str) -> String {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else { return String::new() };
    let mut stream = BufReader::new(stream);
    if stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.is_err() {
        return String::new();
    }
    let mut line = String::new();
    let _ = stream.read_line(&mut line).await;
    line
}
