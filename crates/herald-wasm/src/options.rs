//! Reading the options object given to `new HeraldClient(options)`.

use std::time::Duration;

use herald_core::{
    AuthMode, FallbackConfig, PublishOptions, SessionConfig,
    protocol::{Payload, Position},
};
use js_sys::{Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// Where tokens come from.
pub(crate) enum TokenSource {
    None,
    Static(String),
    /// `getToken(reason)` returning a token or a Promise of one.
    Provider(Function),
}

pub(crate) fn field(options: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(options, &JsValue::from_str(name)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn millis(options: &JsValue, name: &str) -> Result<Option<Duration>, JsValue> {
    match field(options, name) {
        None => Ok(None),
        // `try_from` refuses negative, infinite and too large numbers, which would panic.
        Some(value) => match value.as_f64().and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()) {
            Some(duration) => Ok(Some(duration)),
            None => Err(crate::js::error(&format!("{name} must be a number of milliseconds"))),
        },
    }
}

/// `options[name] === true`; `false` for anything else or no options at all.
pub(crate) fn flag(options: &JsValue, name: &str) -> bool {
    field(options, name).is_some_and(|v| v.as_bool() == Some(true))
}

/// `options.since`: `{epoch, seq}`, a position the application got with its
/// data (e.g. from `GET /api/position`), or nothing.
pub(crate) fn since(options: &JsValue) -> Result<Option<Position>, JsValue> {
    position(options, "since")
        .map_err(|()| crate::js::error("options.since must be a position {epoch: string, seq: number}"))
}

/// `value[name]`: a position `{epoch, seq}`, or nothing; `Err` for anything else.
pub(crate) fn position(value: &JsValue, name: &str) -> Result<Option<Position>, ()> {
    let Some(at) = field(value, name) else { return Ok(None) };
    let epoch = field(&at, "epoch").and_then(|e| e.as_string());
    let seq = field(&at, "seq").and_then(|s| s.as_f64()).filter(|s| *s >= 0.0 && s.fract() == 0.0);
    match (epoch, seq) {
        (Some(epoch), Some(seq)) => Ok(Some(Position::new(epoch, seq as u64))),
        _ => Err(()),
    }
}

/// `options.meta`: presence metadata, any JSON-serializable object (the
/// session checks it is an object, and its size).
pub(crate) fn meta(options: &JsValue) -> Result<Option<Payload>, JsValue> {
    field(options, "meta").map(|meta| payload(&meta)).transpose()
}

/// `value` as JSON.
pub(crate) fn payload(value: &JsValue) -> Result<Payload, JsValue> {
    let json = js_sys::JSON::stringify(value).ok().and_then(|s| s.as_string());
    let json = json.ok_or_else(|| crate::js::failure("invalid", "not JSON-serializable"))?;
    Payload::from_json(json).map_err(|e| crate::js::failure("invalid", &e.to_string()))
}

/// `publish`'s options: `{ephemeral, ifSeq, traceId, id}`.
pub(crate) fn publish(options: &JsValue) -> Result<PublishOptions, JsValue> {
    let if_seq = number(options, "ifSeq")?;
    if if_seq.is_some_and(|n| n < 0.0 || n.fract() != 0.0) {
        return Err(crate::js::failure("invalid", "ifSeq must be a whole number"));
    }
    let text = |name: &str| {
        let value = field(options, name).map(|value| value.as_string());
        value
            .map(|text| text.ok_or_else(|| crate::js::failure("invalid", &format!("{name} must be a string"))))
            .transpose()
    };
    // Not a struct literal: the options are `#[non_exhaustive]`.
    let mut publish = PublishOptions::default();
    publish.trace_id = text("traceId")?;
    publish.id = text("id")?;
    publish.ephemeral = flag(options, "ephemeral");
    publish.if_seq = if_seq.map(|n| n as u64);
    Ok(publish)
}

fn number(options: &JsValue, name: &str) -> Result<Option<f64>, JsValue> {
    field(options, name)
        .map(|v| v.as_f64().ok_or_else(|| crate::js::error(&format!("{name} must be a number"))))
        .transpose()
}

/// What the driver does besides the session's rules.
pub(crate) struct DriverOptions {
    /// `debug(kind, value)`: told every decision of the session (see `client::trace`).
    pub(crate) debug: Option<Function>,
    /// Release the connection after the page has been hidden this long.
    pub(crate) background_timeout: Option<Duration>,
}

/// The session settings, the token source and the driver's own options, or
/// an `Error` that says which option is wrong.
pub(crate) fn parse(options: &JsValue) -> Result<(SessionConfig, TokenSource, DriverOptions), JsValue> {
    let url = field(options, "url")
        .and_then(|v| v.as_string())
        .ok_or_else(|| crate::js::error("options.url is required, e.g. 'wss://example.com/ws'"))?;
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(crate::js::error(&format!("options.url '{url}' must start with ws:// or wss://")));
    }
    let mut config = SessionConfig::new(url);
    let token = match (field(options, "token"), field(options, "getToken")) {
        (_, Some(provider)) => TokenSource::Provider(
            provider.dyn_into().map_err(|_| crate::js::error("options.getToken must be a function"))?,
        ),
        (Some(token), None) => {
            TokenSource::Static(token.as_string().ok_or_else(|| crate::js::error("options.token must be a string"))?)
        }
        (None, None) => TokenSource::None,
    };
    config.auth = match (&token, field(options, "auth").and_then(|v| v.as_string()).as_deref()) {
        (TokenSource::None, _) => AuthMode::None,
        // The token stays out of URLs, where access logs and the console would show it.
        (_, None | Some("message")) => AuthMode::FirstMessage,
        (_, Some("query")) => AuthMode::Query,
        (_, Some(other)) => {
            return Err(crate::js::error(&format!("options.auth '{other}' must be 'query' or 'message'")));
        }
    };
    if let Some(interval) = millis(options, "heartbeatMs")? {
        config.heartbeat.interval = interval;
    }
    if let Some(timeout) = millis(options, "heartbeatTimeoutMs")? {
        config.heartbeat.timeout = timeout;
    }
    if let Some(timeout) = millis(options, "connectTimeoutMs")? {
        config.connect_timeout = timeout;
    }
    if let Some(timeout) = millis(options, "publishTimeoutMs")? {
        config.publish_timeout = timeout;
    }
    if let Some(backoff) = field(options, "backoff") {
        if let Some(initial) = millis(&backoff, "initialMs")? {
            config.backoff.initial = initial;
        }
        if let Some(max) = millis(&backoff, "maxMs")? {
            config.backoff.max = max;
        }
        if let Some(max) = millis(&backoff, "maxAdvisedMs")? {
            config.backoff.max_advised = max;
        }
        if let Some(factor) = number(&backoff, "factor")? {
            config.backoff.factor = factor;
        }
        if let Some(jitter) = number(&backoff, "jitter")? {
            config.backoff.jitter = jitter;
        }
        config.backoff.max_attempts = number(&backoff, "maxAttempts")?.map(|n| n as u32);
    }
    config.fallback = match field(options, "fallback") {
        None => Some(FallbackConfig::default()),
        Some(off) if off.as_bool() == Some(false) => None,
        Some(fallback) => {
            let mut config = FallbackConfig::default();
            if let Some(after) = number(&fallback, "sseAfter")? {
                config.after_failures = after as u32;
            }
            if let Some(every) = millis(&fallback, "upgradeAfterMs")? {
                config.upgrade_after = every;
            }
            config.url = field(&fallback, "url").and_then(|u| u.as_string());
            Some(config)
        }
    };
    config.seed = (js_sys::Math::random() * u64::MAX as f64) as u64;
    let debug = match field(options, "debug") {
        None => None,
        Some(debug) => Some(debug.dyn_into().map_err(|_| crate::js::error("options.debug must be a function"))?),
    };
    let driver = DriverOptions { debug, background_timeout: millis(options, "backgroundTimeoutMs")? };
    Ok((config, token, driver))
}
