//! Test helpers: the testbed's control API, JS option objects, callbacks
//! that record what they are called with, and waiting with a deadline (every
//! test stops by itself).

#![allow(dead_code, reason = "not every test uses every helper")]

use std::{cell::RefCell, rc::Rc};

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, prelude::*};
use wasm_bindgen_futures::JsFuture;

/// The testbed's addresses, compiled in by `cargo xtask ci` (the browser
/// cannot read the environment).
pub(crate) struct Testbed {
    pub(crate) control: String,
    pub(crate) ws: String,
    pub(crate) secure_ws: String,
    pub(crate) gated_ws: String,
    /// A dev server on `wss://`, whose key the browser is told to trust.
    pub(crate) tls_ws: String,
}

pub(crate) fn testbed() -> Testbed {
    let Some(json) = option_env!("HERALD_TESTBED") else {
        panic!("HERALD_TESTBED is not set: run the browser tests with `cargo xtask ci`, which starts herald-testbed");
    };
    let value: serde_json::Value = serde_json::from_str(json).expect("HERALD_TESTBED is herald-testbed's JSON line");
    let field = |name: &str| value[name].as_str().unwrap_or_else(|| panic!("HERALD_TESTBED lacks {name}")).to_owned();
    Testbed {
        control: field("control"),
        ws: field("ws"),
        secure_ws: field("secure_ws"),
        gated_ws: field("gated_ws"),
        tls_ws: field("tls_ws"),
    }
}

/// Calls the control API (`POST` unless the path is `state`) and returns its JSON answer.
pub(crate) async fn control(path: &str, body: &str) -> JsValue {
    let url = format!("{}/{path}", testbed().control);
    let init = web_sys::RequestInit::new();
    init.set_method(if path.starts_with("state") { "GET" } else { "POST" });
    if !body.is_empty() {
        init.set_body(&JsValue::from_str(body));
    }
    let window = web_sys::window().expect("a browser window");
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(&url, &init))
        .await
        .expect("the testbed answers")
        .unchecked_into();
    let json = JsFuture::from(response.json().expect("a JSON body")).await.expect("JSON from the testbed");
    assert!(response.ok(), "{url}: {}", js_sys::JSON::stringify(&json).unwrap());
    json
}

/// Publishes on the dev server; returns the `seq`.
pub(crate) async fn publish(topic: &str, entity_id: &str) -> u64 {
    publish_on("dev", topic, entity_id).await
}

/// Publishes on the testbed's `server` (`dev`, `secure` or `tls`); returns the `seq`.
pub(crate) async fn publish_on(server: &str, topic: &str, entity_id: &str) -> u64 {
    let answer = control(&format!("publish?server={server}&topic={topic}&entity_id={entity_id}"), r#"{"n":1}"#).await;
    get(&answer, "seq").as_f64().expect("a seq") as u64
}

/// `{key: value, ...}` as a JS object.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in fields {
        Reflect::set(&object, &JsValue::from_str(key), value).unwrap();
    }
    object.into()
}

/// Quick reconnects, so faults heal within test time.
pub(crate) fn fast_backoff() -> JsValue {
    object(&[("initialMs", 50.into()), ("maxMs", 400.into())])
}

/// `value.a.b`, or `undefined`.
pub(crate) fn get(value: &JsValue, path: &str) -> JsValue {
    path.split('.')
        .fold(value.clone(), |value, key| Reflect::get(&value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED))
}

pub(crate) fn text(value: &JsValue, path: &str) -> String {
    get(value, path).as_string().unwrap_or_default()
}

/// A JS function that records its first argument each time it is called,
/// and answers with `reply(argument)`.
pub(crate) struct Recorder {
    pub(crate) calls: Rc<RefCell<Vec<JsValue>>>,
    closure: Closure<dyn FnMut(JsValue) -> JsValue>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self::replying(|_| JsValue::UNDEFINED)
    }

    pub(crate) fn replying(mut reply: impl FnMut(&JsValue) -> JsValue + 'static) -> Self {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let log = calls.clone();
        let closure = Closure::new(move |argument: JsValue| {
            let answer = reply(&argument);
            log.borrow_mut().push(argument);
            answer
        });
        Self { calls, closure }
    }

    pub(crate) fn function(&self) -> Function {
        self.closure.as_ref().unchecked_ref::<Function>().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.borrow().len()
    }

    pub(crate) fn all(&self) -> Vec<JsValue> {
        self.calls.borrow().clone()
    }

    /// The `seq` of every event recorded, in order.
    pub(crate) fn seqs(&self) -> Vec<u64> {
        self.all().iter().filter_map(|m| get(m, "seq").as_f64()).map(|s| s as u64).collect()
    }

    /// The recorded values whose `type` is `kind` (e.g. `resync`).
    pub(crate) fn of_type(&self, kind: &str) -> Vec<JsValue> {
        self.all().into_iter().filter(|m| text(m, "type") == kind).collect()
    }

    /// The `state` of every status recorded.
    pub(crate) fn states(&self) -> Vec<String> {
        self.all().iter().map(|s| text(s, "state")).collect()
    }
}

pub(crate) async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Waits until `done()` holds, checking every 20 ms; fails the test after `limit_ms`.
pub(crate) async fn eventually(what: &str, limit_ms: u32, mut done: impl FnMut() -> bool) {
    let mut waited = 0;
    while !done() {
        assert!(waited < limit_ms, "timed out after {limit_ms} ms waiting for {what}");
        sleep(20).await;
        waited += 20;
    }
}

/// Waits until the server delivers to `recorder` on `topic`: publishes
/// probes until one arrives. Returns the probe's `seq`.
pub(crate) async fn subscribed(recorder: &Recorder, topic: &str) -> u64 {
    subscribed_on("dev", recorder, topic).await
}

/// [`subscribed`] on the testbed's `server`.
pub(crate) async fn subscribed_on(server: &str, recorder: &Recorder, topic: &str) -> u64 {
    for _ in 0..50 {
        let seq = publish_on(server, topic, "probe").await;
        for _ in 0..10 {
            if recorder.seqs().contains(&seq) {
                return seq;
            }
            sleep(20).await;
        }
    }
    panic!("the subscription to {topic} never took effect");
}
