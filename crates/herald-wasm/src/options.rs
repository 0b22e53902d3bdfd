//! Reading the options object given to `new HeraldClient(options)`, and
//! those of `subscribe` and `publish`.
//!
//! The client's own options come from the package's entry (`pkg/index.js`,
//! `normalize`), which checks them where an application's mistake can be
//! reported at once, whether or not the wasm has loaded; they are read here
//! as checked, without a second set of rules and messages.

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

/// `options[name]` in milliseconds, as `index.js` checked it: a number from
/// 0 to `Number.MAX_SAFE_INTEGER`. `try_from` keeps anything else from
/// panicking, which would abort the whole module.
fn millis(options: &JsValue, name: &str) -> Option<Duration> {
    field(options, name)?.as_f64().and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
}

/// `options[name] === true`; `false` for anything else or no options at all.
pub(crate) fn flag(options: &JsValue, name: &str) -> bool {
    field(options, name).is_some_and(|v| v.as_bool() == Some(true))
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
    Payload::from_js(value).ok_or_else(|| crate::js::failure("invalid", "not JSON-serializable"))
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

/// The session settings, the token source and the driver's own options, from
/// options `index.js` checked (`url` absolute, `auth` defaulting to
/// `'message'`, `debug` a function of `(kind, value)`).
pub(crate) fn parse(options: &JsValue) -> (SessionConfig, TokenSource, DriverOptions) {
    let text = |value: &JsValue, name: &str| field(value, name).and_then(|v| v.as_string());
    let float = |value: &JsValue, name: &str| field(value, name).and_then(|v| v.as_f64());
    let mut config = SessionConfig::new(text(options, "url").unwrap_or_default());
    let token = match (text(options, "token"), field(options, "getToken").and_then(|f| f.dyn_into().ok())) {
        (_, Some(provider)) => TokenSource::Provider(provider),
        (Some(token), None) => TokenSource::Static(token),
        (None, None) => TokenSource::None,
    };
    config.auth = match (&token, text(options, "auth").as_deref()) {
        (TokenSource::None, _) => AuthMode::None,
        (_, Some("query")) => AuthMode::Query,
        // The token stays out of URLs, where access logs and the console would show it.
        _ => AuthMode::FirstMessage,
    };
    let set = |to: &mut Duration, value: &JsValue, name: &str| {
        if let Some(duration) = millis(value, name) {
            *to = duration;
        }
    };
    set(&mut config.heartbeat.interval, options, "heartbeatMs");
    set(&mut config.heartbeat.timeout, options, "heartbeatTimeoutMs");
    set(&mut config.connect_timeout, options, "connectTimeoutMs");
    set(&mut config.publish_timeout, options, "publishTimeoutMs");
    if let Some(backoff) = field(options, "backoff") {
        set(&mut config.backoff.initial, &backoff, "initialMs");
        set(&mut config.backoff.max, &backoff, "maxMs");
        set(&mut config.backoff.max_advised, &backoff, "maxAdvisedMs");
        config.backoff.factor = float(&backoff, "factor").unwrap_or(config.backoff.factor);
        config.backoff.jitter = float(&backoff, "jitter").unwrap_or(config.backoff.jitter);
        config.backoff.max_attempts = float(&backoff, "maxAttempts").map(|n| n as u32);
    }
    config.fallback = match field(options, "fallback") {
        None => Some(FallbackConfig::default()),
        Some(off) if off.as_bool() == Some(false) => None,
        Some(fallback) => {
            let mut config = FallbackConfig::default();
            if let Some(after) = float(&fallback, "sseAfter") {
                config.after_failures = after as u32;
            }
            set(&mut config.upgrade_after, &fallback, "upgradeAfterMs");
            config.url = text(&fallback, "url");
            Some(config)
        }
    };
    config.seed = (js_sys::Math::random() * u64::MAX as f64) as u64;
    let debug = field(options, "debug").and_then(|debug| debug.dyn_into().ok());
    let driver = DriverOptions { debug, background_timeout: millis(options, "backgroundTimeoutMs") };
    (config, token, driver)
}
