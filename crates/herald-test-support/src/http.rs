//! HTTP/1.1 written by hand: requests (whole, or a head and part of a
//! body) and Server-Sent Events streams, for tests of the HTTP endpoints.

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::{ServerHandle, within};

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
