//! The server's message handling — authentication, refresh, subscribe with
//! recovery, publish, fan-out, limits — driven through scripted connections
//! (`herald_server::scripted`: the WebSocket connection's own code, without a
//! socket). After every step: no panic; every frame written is protocol v1
//! that a client accepts (valid, at most 64 KiB); nothing but `pong` before
//! `connected`; nothing after a close, and only documented close codes;
//! events only of topics the connection subscribed, and of its own tenant;
//! no `seq` given to two different events; a duplicate publish acked with
//! its first `seq`.
//!
//! The input is a script, one step per line:
//!
//! ```text
//! !config dev                    development tokens (default: HS256 with the fuzz secret)
//! !connect $T{"sub":"u-1","exp":4102444800,"tenant":"acme"}$
//! !connect                       a connection that must send `auth` first
//! 1>{"type":"subscribe","topics":["doc:1"]}   a text frame on connection 1 (`>` alone: connection 0)
//! !binary 1 / !gone 1            a binary frame; the client leaves
//! ```
//!
//! `$T{..}$` anywhere is replaced by an HS256 token of exactly those claim
//! bytes, signed with the secret the server checks, so that valid tokens of
//! any claims reach auth and refresh.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use herald_protocol::{ClientMessage, ErrorCode, ServerMessage, limits::MAX_FRAME_BYTES};
use herald_server::{
    Herald,
    scripted::{Input, Output, Scripted},
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "herald-fuzz-secret";
const CONNECTIONS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else { return };
    let mut lines = script.lines().peekable();
    let dev = lines.next_if(|line| line.starts_with("!config")).is_some_and(|line| line.contains("dev"));
    let mut builder = Herald::builder();
    builder = if dev { builder.dev(true) } else { builder.secret(SECRET) };
    // Small limits, so that short scripts reach them.
    let config = builder.config_mut();
    config.max_subscriptions = 4;
    config.max_presence_members = 2;
    config.history_len = 4;
    config.rate_limit_per_sec = 20;
    config.rate_limit_burst = 12;
    config.rate_limit_strikes = 3;
    config.outbound_queue = 8;
    let mut run = Run { server: Some(Scripted::new(builder).expect("the server builds")), ..Run::default() };
    for line in lines.take(300) {
        run.step(&expand_tokens(line));
    }
});

/// Replaces every `$T<claims>$` with a token signed over exactly `<claims>`.
fn expand_tokens(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("$T") {
        let Some(len) = rest[start + 2..].find('$') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&sign(&rest[start + 2..start + 2 + len]));
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    out
}

fn sign(claims: &str) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(claims));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signature = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[derive(Default)]
struct Run {
    server: Option<Scripted>,
    connections: Vec<Model>,
    /// Every event seen by `(tenant, topic, seq)`: one `seq`, one event.
    events: BTreeMap<(Option<String>, String, u64), String>,
    /// The `seq` of each publish id acked, by tenant and user.
    acks: BTreeMap<(Option<String>, String, String), u64>,
    /// The event each `wildcard_seq` was given to.
    wildcard_seqs: BTreeMap<u64, (Option<String>, String, u64)>,
    /// The last `seq` acked per `(tenant, topic)`.
    positions: BTreeMap<(Option<String>, String), u64>,
}

/// What one connection was told and asked.
#[derive(Default)]
struct Model {
    user: Option<String>,
    tenant: Option<String>,
    closed: bool,
    /// Topics asked for and not refused or left: events may come for these.
    topics: BTreeSet<String>,
    /// Publish ids sent, with the topic and tenant their event goes to.
    publishes: BTreeMap<String, (Option<String>, String)>,
}

impl Run {
    fn server(&mut self) -> &mut Scripted {
        self.server.as_mut().expect("set at start")
    }

    fn step(&mut self, line: &str) {
        let (connection, input) = match line.strip_prefix('!') {
            Some(command) => {
                let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
                match verb {
                    "connect" if self.connections.len() < CONNECTIONS => {
                        let token = Some(rest).filter(|t| !t.is_empty());
                        let n = self.server().connect(token);
                        self.connections.push(Model::default());
                        let written = self.server().take(n);
                        return written.into_iter().for_each(|output| self.check(n, output));
                    }
                    "binary" => (rest.parse().unwrap_or(0), Input::Binary),
                    "gone" => (rest.parse().unwrap_or(0), Input::Gone),
                    _ => return,
                }
            }
            None => match line.split_once('>') {
                Some((n, text)) if n.len() <= 1 => (n.parse().unwrap_or(0), Input::Text(text.to_owned())),
                _ => (0, Input::Text(line.to_owned())),
            },
        };
        if connection >= self.connections.len() {
            return;
        }
        if let Input::Text(text) = &input {
            self.observe_client(connection, text);
        }
        for (n, output) in self.server().send(connection, input) {
            self.check(n, output);
        }
    }

    /// What the model learns from a client's frame before the server reads it.
    fn observe_client(&mut self, connection: usize, text: &str) {
        let model = &mut self.connections[connection];
        match ClientMessage::decode(text) {
            Ok(ClientMessage::Subscribe(subscribe)) => {
                model.topics.extend(subscribe.topics.into_iter().map(|t| t.into_string()));
            }
            Ok(ClientMessage::Publish(publish)) => {
                let tenant = model.tenant.clone().or(publish.data.tenant_id);
                model.publishes.insert(publish.id, (tenant, publish.topic.into_string()));
            }
            _ => {}
        }
    }

    fn check(&mut self, connection: usize, output: Output) {
        let model = &mut self.connections[connection];
        assert!(!model.closed, "connection {connection} wrote after its close: {output:?}");
        let frame = match output {
            Output::Frame(frame) => frame,
            Output::Close { code, reason } => {
                model.closed = true;
                assert!(reason.len() <= 123, "a close reason longer than a close frame holds");
                let documented = [1000, 1001, 1002, 1007, 1009, 4001, 4003, 4008, 4009];
                assert!(code.is_none_or(|c| documented.contains(&c)), "undocumented close code {code:?}: {reason}");
                return;
            }
            _ => return,
        };
        assert!(frame.len() <= MAX_FRAME_BYTES, "a frame of {} bytes, which clients refuse", frame.len());
        let message = ServerMessage::decode(&frame).unwrap_or_else(|e| panic!("the server wrote {frame}: {e}"));
        if model.user.is_none() {
            assert!(
                matches!(message, ServerMessage::Pong | ServerMessage::Connected(_)),
                "before `connected` the server wrote {frame}"
            );
        }
        match message {
            ServerMessage::Connected(connected) => {
                let user = connected.user_id.expect("Herald's server names the user");
                if let Some(before) = &model.user {
                    assert_eq!(before, &user, "a refresh changed the user");
                    assert_eq!(model.tenant, connected.tenant_id, "a refresh changed the tenant");
                }
                model.user = Some(user);
                model.tenant = connected.tenant_id;
            }
            ServerMessage::Event(event) => {
                let topic = event.topic.as_str();
                let wildcard = format!("{}:*", event.topic.resource());
                assert!(
                    model.topics.contains(topic) || model.topics.contains(&wildcard),
                    "connection {connection} got an event of {topic}, which it did not subscribe"
                );
                assert_eq!(event.data.tenant_id, model.tenant, "an event of another tenant: {frame}");
                let seq = event.seq.expect("Herald's server numbers events");
                let key = (model.tenant.clone(), topic.to_owned(), seq);
                let body = serde_json::to_string(&event.data).expect("event data encodes");
                if let Some(wildcard_seq) = event.wildcard_seq {
                    let named = self.wildcard_seqs.entry(wildcard_seq).or_insert_with(|| key.clone());
                    assert_eq!(*named, key, "wildcard_seq {wildcard_seq} given to two events");
                }
                let first = self.events.entry(key).or_insert_with(|| body.clone());
                assert_eq!(*first, body, "seq {seq} of {topic} given to two events");
            }
            ServerMessage::Error(error) => {
                assert!(
                    matches!(error.code, ErrorCode::Number(400 | 413 | 429 | 4001 | 4003 | 500)),
                    "undocumented error code: {frame}"
                );
                if let Some(topic) = error.topic.filter(|_| error.id.is_none()) {
                    model.topics.remove(&topic);
                }
            }
            ServerMessage::Unsubscribed(unsubscribed) => {
                for topic in unsubscribed.topics {
                    model.topics.remove(topic.as_str());
                }
            }
            ServerMessage::Ack(ack) => {
                let (tenant, topic) =
                    model.publishes.get(&ack.id).cloned().unwrap_or_else(|| panic!("ack of unknown publish {}", ack.id));
                let seq = ack.seq.expect("Herald's server acks with the seq");
                let user = model.user.clone().expect("authenticated");
                let first = *self.acks.entry((model.tenant.clone(), user, ack.id.clone())).or_insert(seq);
                if ack.duplicate {
                    assert_eq!(first, seq, "a duplicate of {} acked with another seq", ack.id);
                } else {
                    assert_eq!(first, seq, "publish id {} acked as new twice", ack.id);
                    let last = self.positions.insert((tenant, topic.clone()), seq);
                    assert!(last.is_none_or(|last| seq > last), "{topic}: seq {seq} acked after {last:?}");
                }
            }
            ServerMessage::Raw(_) => panic!("the server wrote a message clients do not know: {frame}"),
            _ => {}
        }
    }
}
