//! `SharedTabs` as `shared.js` drives it, in the browser with no server:
//! what it tells the holder to do with its session, and what it keeps of a
//! tab's publishes, as the plain values the glue reads.

#![cfg(target_arch = "wasm32")]

use herald_wasm::SharedTabs;
use js_sys::JSON;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn value(json: &str) -> JsValue {
    JSON::parse(json).expect("the test's JSON")
}

fn json(value: &JsValue) -> String {
    JSON::stringify(value).expect("a plain value").into()
}

#[wasm_bindgen_test]
fn the_holders_session_gets_presence_when_a_tab_asks_and_a_late_tab_gets_the_members() {
    let mut shares = SharedTabs::new(1, 1500);
    shares.take();
    let none = JsValue::UNDEFINED;
    let joined = shares.want(1, "doc:1", JsValue::NULL, false, none.clone()).unwrap();
    assert_eq!(json(&joined), r#"{"kind":"subscribe","options":{"presence":false}}"#);
    shares.route("doc:1", &value(r#"{"type":"live","topic":"doc:1","position":{"epoch":"e","seq":1}}"#));

    let joined = shares.want(2, "doc:1", JsValue::NULL, true, value(r#"{"name":"b"}"#)).unwrap();
    assert_eq!(
        json(&joined),
        r#"{"kind":"live","position":{"epoch":"e","seq":1},"resync":false,"upgrade":{"presence":true,"meta":{"name":"b"}}}"#,
        "presence is added to the session's subscription, with the tab's metadata; no members listed yet"
    );
    shares.route(
        "doc:1",
        &value(r#"{"type":"presence","topic":"doc:1","members":["u1","u2"],"meta":{"u1":{"name":"b"}}}"#),
    );
    shares
        .route("doc:1", &value(r#"{"type":"presence_diff","topic":"doc:1","joined":["u3"],"left":["u2"],"meta":{}}"#));

    let joined = shares.want(3, "doc:1", JsValue::NULL, true, value(r#"{"name":"c"}"#)).unwrap();
    assert_eq!(
        json(&joined),
        r#"{"kind":"live","position":{"epoch":"e","seq":1},"resync":false,"presence":{"type":"presence","topic":"doc:1","members":["u1","u3"],"meta":{"u1":{"name":"b"}}},"setMeta":true}"#,
        "the late tab gets the members as the server last said; its metadata is the session's now"
    );
    assert!(shares.set_meta("doc:1", value(r#"{"name":"d"}"#)), "the session has presence: set it now");

    assert!(!shares.leave(1, "doc:1") && !shares.leave(2, "doc:1"));
    assert!(shares.leave(3, "doc:1"), "the last tab left: unsubscribe the session");
    let joined = shares.want(1, "doc:1", JsValue::NULL, false, none).unwrap();
    assert_eq!(json(&joined), r#"{"kind":"subscribe","options":{"presence":false}}"#, "its presence started over");
}

#[wasm_bindgen_test]
fn a_tabs_publishes_wait_for_a_holder_and_go_again_to_each_new_one_until_answered() {
    let mut shares = SharedTabs::new(5, 1500);
    let request = value(r#"{"args":["doc:1"]}"#);
    assert_eq!(shares.publish(request.clone()), None, "no holder heard of yet");
    assert_eq!(shares.heard(&value("[1,9]")), "new");
    assert_eq!(json(&shares.resend()), r#"[[1,{"args":["doc:1"]}]]"#);
    assert_eq!(json(&shares.resend()), "[]", "once per holder");
    assert!(!shares.addressed(&value("[1,9]")), "a follower takes no requests");

    assert_eq!(shares.heard(&value("[2,8]")), "new");
    assert_eq!(json(&shares.resend()), r#"[[1,{"args":["doc:1"]}]]"#, "not answered: the new holder gets it");
    assert_eq!(shares.publish(value("{}")), Some(2), "sent at once to the holder heard of");
    assert_eq!(shares.answered(1), request);
    assert!(shares.answered(1).is_undefined(), "a second answer settles nothing");

    let term = shares.take();
    assert!(shares.addressed(&term) && !shares.addressed(&value("[2,8]")) && !shares.addressed(&JsValue::NULL));
    assert_eq!(json(&shares.resend()), r#"[[2,{}]]"#, "this tab took over: it sends what waits itself");
}
