//! Protocol v1 spoken by hand: a small WebSocket client over
//! tokio-tungstenite that reads and writes JSON frames, for tests of what the
//! server sends.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::{SECRET, ServerHandle, within};
use herald_server::{Claims, mint_token};

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

    /// Sends `n` publishes to `topic` back to back, before reading any
    /// answer, then checks that they were acked in the order sent with
    /// consecutive `seq`s, and that `reader` (subscribed to `topic`)
    /// received them in that order.
    pub async fn publishes_keep_their_order(&mut self, reader: &mut Self, topic: &str, n: usize) {
        for i in 0..n {
            let frame = serde_json::json!({"type":"publish","id":format!("p-{i}"),"topic":topic,"event":"UPDATED",
                "data":{"entity_id":"1","payload":i.to_string(),"timestamp":"2026-01-01T00:00:00Z"}});
            self.send(&frame.to_string()).await;
        }
        let mut acked = Vec::new();
        for i in 0..n {
            let ack = self.recv().await;
            assert_eq!(
                (ack["type"].as_str(), ack["id"].as_str()),
                (Some("ack"), Some(format!("p-{i}").as_str())),
                "acked in order: {ack}"
            );
            acked.push(ack["seq"].as_u64().expect("a seq"));
        }
        let first = acked[0];
        assert_eq!(acked, (first..first + n as u64).collect::<Vec<_>>(), "numbered in the order sent");
        for (i, seq) in acked.iter().enumerate() {
            let event = reader.recv().await;
            assert_eq!(
                (event["seq"].as_u64(), event["data"]["payload"].as_str()),
                (Some(*seq), Some(i.to_string().as_str())),
                "delivered in the order sent: {event}"
            );
        }
    }

    pub async fn subscribe(&mut self, topics: &[&str]) -> Value {
        self.send(&serde_json::json!({"type":"subscribe","topics":topics}).to_string()).await;
        let subscribed = self.recv().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        subscribed
    }
}
