//! What carries a session: a WebSocket, or — where a proxy blocks WebSocket —
//! Server-Sent Events plus HTTP posts (Herald's server, `GET /sse?mode=frames`).

use std::{fmt, time::Duration};

/// The kind of transport the driver opens for [`Output::Connect`](crate::Output::Connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket to [`SessionConfig::url`](crate::SessionConfig::url).
    WebSocket,
    /// An `EventSource` on the URL given. Its first message is
    /// `{"type":"session","id":..}`: the driver reports the transport open
    /// then, and carries [`Output::Send`](crate::Output::Send) frames as
    /// `POST {sse url}/send?session=<id>` (one frame per line, one post at a
    /// time, in order). A `{"type":"close","code":..,"reason":..}` message is
    /// the server's close frame: report it with
    /// [`Session::handle_close`](crate::Session::handle_close). Every other
    /// message is a frame for [`Session::handle_frame`](crate::Session::handle_frame).
    ServerSentEvents,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WebSocket => "WebSocket",
            Self::ServerSentEvents => "server-sent events",
        })
    }
}

/// Falling back to Server-Sent Events when WebSocket cannot connect, and
/// trying to upgrade back while on them.
///
/// ```
/// use herald_core::{FallbackConfig, SessionConfig};
///
/// let mut config = SessionConfig::new("wss://example.com/ws");
/// config.fallback = Some(FallbackConfig::default());
/// assert_eq!(config.fallback.unwrap().sse_url("wss://example.com/ws").as_deref(), Some("https://example.com/sse"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackConfig {
    /// Switch after this many WebSocket attempts in a row that never opened.
    /// Default 3.
    pub after_failures: u32,
    /// While on Server-Sent Events, try a WebSocket this often; when one
    /// opens, the session moves to it (and recovers what crossed the
    /// switch). Default 60 s.
    pub upgrade_after: Duration,
    /// The event stream's URL. Default `None`: the WebSocket URL with
    /// `http(s)` for `ws(s)` and a last path segment `ws` replaced by `sse`
    /// (`wss://example.com/ws` → `https://example.com/sse`).
    pub url: Option<String>,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self { after_failures: 3, upgrade_after: Duration::from_secs(60), url: None }
    }
}

impl FallbackConfig {
    /// The event stream URL for the WebSocket URL `ws_url`, or `None` when
    /// it is not configured and cannot be derived.
    pub fn sse_url(&self, ws_url: &str) -> Option<String> {
        if let Some(url) = &self.url {
            return Some(url.clone());
        }
        // Prefixes rather than a substring search, whose searcher the browser build would carry for this alone.
        let (scheme, rest) = match ws_url.strip_prefix("ws://") {
            Some(rest) => ("http", rest),
            None => ("https", ws_url.strip_prefix("wss://")?),
        };
        let path = rest.split(['?', '#']).next()?;
        let base = path.strip_suffix("/ws").or_else(|| path.strip_suffix("/ws/"))?;
        Some(format!("{scheme}://{base}/sse"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_url_is_derived_from_the_websocket_url() {
        let fallback = FallbackConfig::default();
        assert_eq!(fallback.sse_url("ws://127.0.0.1:8080/ws").as_deref(), Some("http://127.0.0.1:8080/sse"));
        assert_eq!(fallback.sse_url("wss://h/api/ws?x=1").as_deref(), Some("https://h/api/sse"));
        assert_eq!(fallback.sse_url("wss://h/socket"), None, "no /ws to replace");
        let configured = FallbackConfig { url: Some("https://other/stream".into()), ..FallbackConfig::default() };
        assert_eq!(configured.sse_url("wss://h/socket").as_deref(), Some("https://other/stream"));
    }
}
