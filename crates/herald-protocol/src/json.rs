//! Writing the JSON of what clients send and what servers fan out, by hand:
//! compact, keys in a fixed order, byte for byte what `serde_json` writes for
//! the same value (a property test holds the two together), and without
//! serde's machinery, which the browser build cannot afford.

use crate::{ClientMessage, Event, EventData, Publish, Subscribe, Topic};

/// A JSON object being written: `{"a":1,"b":"x"}`.
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !std::mem::take(&mut self.empty) {
            self.out.push(',');
        }
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    fn str(&mut self, key: &str, value: &str) -> &mut Self {
        string(self.key(key), value);
        self
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    fn topics(&mut self, key: &str, topics: &[Topic]) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (n, topic) in topics.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            string(out, topic.as_str());
        }
        out.push(']');
        self
    }

    fn end(&mut self) {
        self.out.push('}');
    }
}

/// `value` as a JSON string, escaped as `serde_json` escapes: `"`, `\` and
/// control characters; everything else as it is.
fn string(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    let mut plain = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&value[plain..at]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
        plain = at + 1;
    }
    out.push_str(&value[plain..]);
    out.push('"');
}

fn data(object: &mut Object<'_>, data: &EventData) {
    let out = object.key("data");
    Object::new(out)
        .str("entity_id", &data.entity_id)
        .raw("payload", data.payload.get())
        .opt_str("user_id", data.user_id.as_deref())
        .opt_str("tenant_id", data.tenant_id.as_deref())
        .str("timestamp", &data.timestamp)
        .end();
}

pub(crate) fn event(event: &Event) -> String {
    let mut out = String::with_capacity(128 + event.data.payload.get().len());
    let mut object = Object::new(&mut out);
    object.str("topic", event.topic.as_str()).str("event", event.event.as_str());
    data(&mut object, &event.data);
    object.opt_str("trace_id", event.trace_id.as_deref());
    if let Some(seq) = event.seq {
        object.raw("seq", &seq.to_string());
    }
    if let Some(seq) = event.wildcard_seq {
        object.raw("wildcard_seq", &seq.to_string());
    }
    if event.ephemeral {
        object.raw("ephemeral", "true");
    }
    object.end();
    out
}

pub(crate) fn client_message(message: &ClientMessage) -> String {
    let mut out = String::with_capacity(64);
    let mut object = Object::new(&mut out);
    match message {
        ClientMessage::Subscribe(Subscribe { topics, since, epoch, presence, meta }) => {
            object.str("type", "subscribe").topics("topics", topics);
            if !since.is_empty() {
                let out = object.key("since");
                let mut positions = Object::new(out);
                for (topic, seq) in since {
                    positions.raw(topic.as_str(), &seq.to_string());
                }
                positions.end();
            }
            object.opt_str("epoch", epoch.as_deref());
            if *presence {
                object.raw("presence", "true");
            }
            if let Some(meta) = meta {
                object.raw("meta", meta.get());
            }
        }
        ClientMessage::SetPresence { topic, meta } => {
            object.str("type", "set_presence").str("topic", topic.as_str()).raw("meta", meta.get());
        }
        ClientMessage::Unsubscribe { topics } => {
            object.str("type", "unsubscribe").topics("topics", topics);
        }
        ClientMessage::Ping => {
            object.str("type", "ping");
        }
        ClientMessage::Pong => {
            object.str("type", "pong");
        }
        ClientMessage::Auth { token } => {
            object.str("type", "auth").str("token", &token.0);
        }
        ClientMessage::Refresh { token } => {
            object.str("type", "refresh").str("token", &token.0);
        }
        ClientMessage::Publish(Publish { id, topic, event, data: event_data, trace_id, ephemeral, if_seq }) => {
            object.str("type", "publish").str("id", id).str("topic", topic.as_str()).str("event", event.as_str());
            data(&mut object, event_data);
            object.opt_str("trace_id", trace_id.as_deref());
            if *ephemeral {
                object.raw("ephemeral", "true");
            }
            if let Some(seq) = if_seq {
                object.raw("if_seq", &seq.to_string());
            }
        }
    }
    object.end();
    out
}
