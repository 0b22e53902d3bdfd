//! Decoding server messages in a browser with its own `JSON.parse`, so the
//! wasm build carries neither a JSON parser nor serde's machinery. It
//! accepts and refuses what the serde decoder does, field by field (a
//! corpus test, `tests/corpus/`, runs both against the same expectations),
//! with three differences that come from JavaScript numbers and objects:
//! integers must be below 2^53, `1.0` counts as the integer 1, and of two
//! equal keys the last wins. Its messages say what was expected, not what
//! was found (serde's also quote the value): the code that would describe
//! any JSON value in words stays out of the package. Payloads stay JavaScript values: one parse per
//! frame, and the driver hands them on as they are (`Payload::to_js`).

use std::fmt;

use js_sys::{Array, JSON, Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

use crate::{
    Ack, Connected, ErrorCode, ErrorMessage, Event, EventData, EventKind, JsonError, Payload, Presence, PresenceDiff,
    ProtocolError, ServerMessage, Subscribed, Topic, TopicMap, Unsubscribed,
};

/// JavaScript numbers are exact integers up to here.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub(crate) fn decode_server(text: &str) -> Result<ServerMessage, ProtocolError> {
    let value = JSON::parse(text).map_err(|e| ProtocolError::Json(JsonError::message(describe(&e))))?;
    if !is_object(&value) {
        return Err(ProtocolError::NotAnObject);
    }
    let message = Fields { value: &value, kind: "" };
    let present = |name: &str| message.get(name).is_some_and(|v| !v.is_null());
    // `type` must be a string to be Herald's; anything else is someone else's message.
    let kind = match message.get("type") {
        None => None,
        Some(kind) if kind.is_null() => None,
        Some(kind) => match kind.as_string() {
            Some(kind) => Some(kind),
            None => return Ok(ServerMessage::Raw(text.to_owned())),
        },
    };
    let fields = |kind: &'static str| Fields { value: &value, kind };
    Ok(match kind.as_deref() {
        Some("ping") => ServerMessage::Ping,
        Some("pong") => ServerMessage::Pong,
        Some("connected") => ServerMessage::Connected(fields("connected").connected()?),
        Some("subscribed") => ServerMessage::Subscribed(fields("subscribed").subscribed()?),
        Some("unsubscribed") => {
            ServerMessage::Unsubscribed(Unsubscribed { topics: fields("unsubscribed").topics("topics")? })
        }
        Some("ack") => ServerMessage::Ack(fields("ack").ack()?),
        Some("error") => ServerMessage::Error(fields("error").error()?),
        Some("presence") => ServerMessage::Presence(fields("presence").presence()?),
        Some("presence_diff") => ServerMessage::PresenceDiff(fields("presence_diff").presence_diff()?),
        Some("event") => ServerMessage::Event(fields("event").event()?),
        None if present("topic") && present("event") && present("data") => {
            ServerMessage::Event(fields("event").event()?)
        }
        _ => ServerMessage::Raw(text.to_owned()),
    })
}

/// Validates `json` as JSON with the browser's parser.
pub(crate) fn check_json(json: &str) -> Result<(), JsonError> {
    JSON::parse(json).map(drop).map_err(|e| JsonError::message(describe(&e)))
}

fn is_object(value: &JsValue) -> bool {
    value.is_object() && !Array::is_array(value)
}

fn describe(error: &JsValue) -> String {
    error.dyn_ref::<js_sys::Error>().map_or_else(|| "not JSON".to_owned(), |e| String::from(e.message()))
}

/// The fields of one message object, read the way serde's derives read them.
struct Fields<'a> {
    value: &'a JsValue,
    kind: &'static str,
}

impl Fields<'_> {
    fn fail(&self, problem: impl Into<String>) -> ProtocolError {
        ProtocolError::Fields { kind: self.kind.to_owned(), source: JsonError::message(problem.into()) }
    }

    fn get(&self, name: &str) -> Option<JsValue> {
        Reflect::get(self.value, &JsValue::from_str(name)).ok().filter(|v| !v.is_undefined())
    }

    fn required(&self, name: &str) -> Result<JsValue, ProtocolError> {
        self.get(name).ok_or_else(|| self.fail(format!("missing field `{name}`")))
    }

    fn string_of(&self, value: JsValue) -> Result<String, ProtocolError> {
        value.as_string().ok_or_else(|| self.fail("invalid type, expected a string"))
    }

    fn string(&self, name: &str) -> Result<String, ProtocolError> {
        self.string_of(self.required(name)?)
    }

    /// `Option<String>` with `#[serde(default)]`: missing and `null` are `None`.
    fn opt_string(&self, name: &str) -> Result<Option<String>, ProtocolError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => self.string_of(v).map(Some),
        }
    }

    fn integer_of(&self, value: &JsValue) -> Result<u64, ProtocolError> {
        match value.as_f64() {
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE_INTEGER => Ok(n as u64),
            _ => Err(self.fail("invalid value, expected an integer from 0 to 2^53")),
        }
    }

    fn opt_integer(&self, name: &str) -> Result<Option<u64>, ProtocolError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => self.integer_of(&v).map(Some),
        }
    }

    /// A boolean, strictly: `null` is no boolean (as serde reads a `bool` field).
    fn bool_of(&self, value: &JsValue) -> Result<bool, ProtocolError> {
        value.as_bool().ok_or_else(|| self.fail("invalid type, expected a boolean"))
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, ProtocolError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.fail("invalid type, expected a boolean")),
        }
    }

    fn topic_of(&self, value: JsValue) -> Result<Topic, ProtocolError> {
        Topic::new(self.string_of(value)?).map_err(|e| self.fail(e.to_string()))
    }

    fn array(&self, value: JsValue) -> Result<Array, ProtocolError> {
        if Array::is_array(&value) {
            Ok(value.unchecked_into())
        } else {
            Err(self.fail("invalid type, expected a sequence"))
        }
    }

    /// Each item of an array, read by `item`. A loop rather than collecting
    /// `Result`s: one small function instead of an iterator adapter per type.
    fn items<T>(
        &self,
        value: JsValue,
        item: fn(&Self, JsValue) -> Result<T, ProtocolError>,
    ) -> Result<Vec<T>, ProtocolError> {
        let array = self.array(value)?;
        let mut items = Vec::with_capacity(array.length() as usize);
        for value in array.iter() {
            items.push(item(self, value)?);
        }
        Ok(items)
    }

    fn topics(&self, name: &str) -> Result<Vec<Topic>, ProtocolError> {
        self.items(self.required(name)?, Self::topic_of)
    }

    fn strings_of(&self, value: JsValue) -> Result<Vec<String>, ProtocolError> {
        self.items(value, Self::string_of)
    }

    /// `Vec<String>` with `#[serde(default)]`.
    fn default_strings(&self, name: &str) -> Result<Vec<String>, ProtocolError> {
        self.get(name).map_or(Ok(Vec::new()), |v| self.strings_of(v))
    }

    fn connected(&self) -> Result<Connected, ProtocolError> {
        let user_id = match self.opt_string("user_id")? {
            Some(user) => Some(user),
            None => self.opt_string("userId")?,
        };
        Ok(Connected {
            user_id,
            tenant_id: self.opt_string("tenant_id")?,
            expires_in: self.opt_integer("expires_in")?,
            epoch: self.opt_string("epoch")?,
            version: self.opt_integer("version")?.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            features: self.default_strings("features")?,
        })
    }

    fn subscribed(&self) -> Result<Subscribed, ProtocolError> {
        let mut last_seq = TopicMap::new();
        if let Some(positions) = self.get("last_seq") {
            if !is_object(&positions) {
                return Err(self.fail("invalid type, expected a map"));
            }
            for key in Object::keys(positions.unchecked_ref::<Object>()).iter() {
                let seq = Reflect::get(&positions, &key).unwrap_or(JsValue::UNDEFINED);
                last_seq.insert(self.topic_of(key)?, self.integer_of(&seq)?);
            }
        }
        Ok(Subscribed { topics: self.topics("topics")?, recovered: self.opt_bool("recovered")?, last_seq })
    }

    fn ack(&self) -> Result<Ack, ProtocolError> {
        let duplicate = self.get("duplicate").map(|v| self.bool_of(&v)).transpose()?.unwrap_or(false);
        Ok(Ack { id: self.string("id")?, seq: self.opt_integer("seq")?, epoch: self.opt_string("epoch")?, duplicate })
    }

    fn error(&self) -> Result<ErrorMessage, ProtocolError> {
        let code = self.required("code")?;
        let code = match (code.as_f64(), code.as_string()) {
            (Some(n), _) if n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => ErrorCode::Number(n as u32),
            (_, Some(name)) => ErrorCode::Name(name),
            _ => return Err(self.fail("data did not match any variant of untagged enum ErrorCode")),
        };
        Ok(ErrorMessage {
            code,
            message: self.string("message")?,
            id: self.opt_string("id")?,
            topic: self.opt_string("topic")?,
            seq: self.opt_integer("seq")?,
        })
    }

    fn presence(&self) -> Result<Presence, ProtocolError> {
        Ok(Presence {
            topic: self.topic_of(self.required("topic")?)?,
            members: self.strings_of(self.required("members")?)?,
            meta: self.meta()?,
        })
    }

    /// `meta`: metadata by user id, kept as `JSON.parse` made it (a
    /// JavaScript object's keys are strings and its values JSON already).
    fn meta(&self) -> Result<PresenceMeta, ProtocolError> {
        let Some(meta) = self.get("meta").filter(|meta| !meta.is_null()) else { return Ok(PresenceMeta(None)) };
        if !is_object(&meta) {
            return Err(self.fail("invalid type, expected a map"));
        }
        Ok(PresenceMeta(Some(Payload::from_browser(meta))))
    }

    fn presence_diff(&self) -> Result<PresenceDiff, ProtocolError> {
        Ok(PresenceDiff {
            topic: self.topic_of(self.required("topic")?)?,
            joined: self.default_strings("joined")?,
            left: self.default_strings("left")?,
            meta: self.meta()?,
        })
    }

    fn event(&self) -> Result<Event, ProtocolError> {
        let data = self.required("data")?;
        if !is_object(&data) {
            return Err(self.fail("invalid type, expected struct EventData"));
        }
        let fields = Fields { value: &data, kind: self.kind };
        let data = EventData {
            entity_id: fields.string("entity_id")?,
            // Kept as `JSON.parse` made it: JavaScript gets it without another round trip.
            payload: Payload::from_browser(fields.required("payload")?),
            user_id: fields.opt_string("user_id")?,
            tenant_id: fields.opt_string("tenant_id")?,
            timestamp: fields.string("timestamp")?,
        };
        Ok(Event {
            topic: self.topic_of(self.required("topic")?)?,
            event: EventKind::from(self.string("event")?),
            data,
            trace_id: self.opt_string("trace_id")?,
            seq: self.opt_integer("seq")?,
            wildcard_seq: self.opt_integer("wildcard_seq")?,
            ephemeral: self.get("ephemeral").map(|v| self.bool_of(&v)).transpose()?.unwrap_or(false),
        })
    }
}

/// The metadata of presence members that set some, by user id: in a
/// browser, the object `JSON.parse` made of a message's `meta`, as it is.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PresenceMeta(Option<Payload>);

impl PresenceMeta {
    /// Whether no member has metadata.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|meta| Object::keys(meta.to_js().unchecked_ref::<Object>()).length() == 0)
    }

    /// The metadata as a JavaScript object, by user id.
    pub fn to_js(&self) -> JsValue {
        self.0.as_ref().map_or_else(|| Object::new().into(), Payload::to_js)
    }
}

/// As the native build's map prints: by user id, in order.
impl fmt::Debug for PresenceMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<(String, Payload)> = Vec::new();
        if let Some(meta) = &self.0 {
            for entry in Object::entries(meta.to_js().unchecked_ref()).iter() {
                let entry: Array = entry.unchecked_into();
                entries.push((entry.get(0).as_string().unwrap_or_default(), Payload::from_browser(entry.get(1))));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        f.debug_map().entries(entries.iter().map(|(user, meta)| (user, meta))).finish()
    }
}
