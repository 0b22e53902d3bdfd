//! The browser client in headless Chromium against the real reference
//! server (`herald-testbed`, started by `cargo xtask ci`): connect,
//! subscribe, receive (over `wss://` too), restarts with and without
//! history, publish acks, offline publishes, 4001, and the page's signals:
//! `online`, the back/forward cache (`pagehide`/`pageshow`) and
//! `visibilitychange`.

#![cfg(target_arch = "wasm32")]

mod support;

use herald_wasm::HeraldClient;
use support::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn dev_client(user: &str) -> HeraldClient {
    let options = object(&[("url", testbed().ws.into()), ("token", user.into()), ("backoff", fast_backoff())]);
    HeraldClient::new(options)
}

#[wasm_bindgen_test]
async fn events_arrive_as_plain_objects_in_the_seed_shape() {
    let client = dev_client("alice");
    let status = Recorder::new();
    let _stop_status = client.on_status(status.function());
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-shape:1", events.function(), JsValue::UNDEFINED).unwrap();
    let probe = subscribed(&events, "wasm-shape:1").await;

    control("publish?topic=wasm-shape:1&event=ADDED&entity_id=gift-7&trace_id=t-1", r#"{"bought":true}"#).await;
    eventually("the event", 5_000, || events.seqs().contains(&(probe + 1))).await;
    let event = events.all().last().cloned().unwrap();
    assert_eq!(text(&event, "topic"), "wasm-shape:1");
    assert_eq!(text(&event, "event"), "ADDED");
    assert_eq!(text(&event, "data.entity_id"), "gift-7");
    assert_eq!(get(&event, "data.payload.bought"), JsValue::TRUE);
    assert_eq!(text(&event, "trace_id"), "t-1");
    assert!(text(&event, "data.timestamp").ends_with('Z'));
    assert_eq!(&status.states()[..2], ["connecting", "connected"]);
    client.close();
}

#[wasm_bindgen_test]
async fn a_server_with_tls_is_reached_over_wss_and_its_events_arrive() {
    let url = testbed().tls_ws;
    assert!(url.starts_with("wss://"), "{url}");
    let options = object(&[("url", url.into()), ("token", "tls-reader".into()), ("backoff", fast_backoff())]);
    let client = HeraldClient::new(options);
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-tls:1", events.function(), JsValue::UNDEFINED).unwrap();
    let probe = subscribed_on("tls", &events, "wasm-tls:1").await;
    let seq = publish_on("tls", "wasm-tls:1", "gift-7").await;
    eventually("the event over wss://", 5_000, || events.seqs().contains(&seq)).await;
    assert_eq!(seq, probe + 1);
    client.close();
}

#[wasm_bindgen_test]
async fn a_restart_with_history_recovers_every_missed_event_exactly_once() {
    let client = dev_client("bob");
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-recover:1", events.function(), JsValue::UNDEFINED).unwrap();
    let first = subscribed(&events, "wasm-recover:1").await;

    control("pause", "").await;
    let mut missed = Vec::new();
    for n in 0..5 {
        missed.push(publish("wasm-recover:1", &n.to_string()).await);
    }
    control("resume?epoch=same", "").await;
    eventually("the missed events", 10_000, || events.seqs().ends_with(&missed)).await;
    let live = publish("wasm-recover:1", "live").await;
    eventually("a live event after recovery", 5_000, || events.seqs().contains(&live)).await;

    let seqs: Vec<u64> = events.seqs().into_iter().filter(|seq| *seq >= first).collect();
    let expected: Vec<u64> = (first..=live).collect();
    assert_eq!(seqs, expected, "every event once, in order");
    assert!(events.of_type("resync").is_empty(), "nothing was lost, so no resync");
    client.close();
}

#[wasm_bindgen_test]
async fn a_restart_that_lost_the_history_tells_subscribers_to_resync() {
    let client = dev_client("carol");
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-resync:1", events.function(), JsValue::UNDEFINED).unwrap();
    subscribed(&events, "wasm-resync:1").await;

    control("restart?epoch=new", "").await;
    eventually("a resync", 10_000, || !events.of_type("resync").is_empty()).await;
    let resync = events.of_type("resync").remove(0);
    assert_eq!(text(&resync, "topic"), "wasm-resync:1");
    // The subscription itself survived the restart.
    subscribed(&events, "wasm-resync:1").await;
    assert_eq!(events.of_type("resync").len(), 1, "one resync for one restart");
    client.close();
}

/// `live` of what `subscribe` returned, awaited.
async fn live(handle: &js_sys::Function) -> JsValue {
    JsFuture::from(js_sys::Promise::from(get(handle, "live"))).await.expect("the subscription goes live")
}

#[wasm_bindgen_test]
async fn subscribe_resolves_live_with_the_position_and_since_replays_what_came_after_it() {
    let loaded = publish("wasm-live:1", "before").await;
    let client = dev_client("lena");
    let events = Recorder::new();
    let handle = client.subscribe("wasm-live:1", events.function(), JsValue::UNDEFINED).unwrap();
    let position = live(&handle).await;
    assert_eq!(get(&position, "seq").as_f64(), Some(loaded as f64), "live where the topic stood");
    let epoch = text(&position, "epoch");
    assert!(!epoch.is_empty());
    let first = events.all().remove(0);
    assert_eq!(text(&first, "type"), "live", "the callback hears it first");
    assert_eq!(get(&first, "position.seq").as_f64(), Some(loaded as f64));

    // A conditional publish at the topic's seq is accepted; the same one again conflicts.
    let at = |seq: u64| object(&[("ifSeq", (seq as f64).into())]);
    let ack = JsFuture::from(client.publish("wasm-live:1", "UPDATED", "1", JsValue::NULL, at(loaded))).await.unwrap();
    assert_eq!(get(&ack, "position.seq").as_f64(), Some((loaded + 1) as f64));
    assert_eq!(text(&ack, "position.epoch"), epoch);
    let stale = JsFuture::from(client.publish("wasm-live:1", "UPDATED", "1", JsValue::NULL, at(loaded))).await;
    let conflict = stale.expect_err("a stale ifSeq is refused");
    assert_eq!(text(&conflict, "kind"), "conflict");
    assert_eq!(get(&conflict, "currentSeq").as_f64(), Some((loaded + 1) as f64));

    // Another page that loaded its data at `loaded` subscribes from there: the event since is replayed.
    let other = dev_client("mia");
    let replayed = Recorder::new();
    let since = object(&[("epoch", epoch.as_str().into()), ("seq", (loaded as f64).into())]);
    let from = other.subscribe("wasm-live:1", replayed.function(), object(&[("since", since)])).unwrap();
    let position = live(&from).await;
    assert_eq!(get(&position, "seq").as_f64(), Some((loaded + 1) as f64));
    assert_eq!(replayed.seqs(), [loaded + 1], "the event after `since`, before live");

    // The handle still unsubscribes when called, as an effect's cleanup does.
    handle.call0(&JsValue::NULL).unwrap();
    let after = publish("wasm-live:1", "after").await;
    eventually("the other page's event", 5_000, || replayed.seqs().contains(&after)).await;
    assert!(!events.seqs().contains(&after), "no event after unsubscribing");
    client.close();
    other.close();
}

#[wasm_bindgen_test]
async fn publish_resolves_with_the_ack_and_offline_publishes_are_sent_once() {
    let client = dev_client("dave");
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-publish:1", events.function(), JsValue::UNDEFINED).unwrap();
    subscribed(&events, "wasm-publish:1").await;

    let payload = object(&[("title", "socks".into())]);
    let ack =
        JsFuture::from(client.publish("wasm-publish:1", "ADDED", "gift-1", payload, JsValue::UNDEFINED)).await.unwrap();
    let seq = get(&ack, "seq").as_f64().unwrap() as u64;
    eventually("our own event", 5_000, || events.seqs().contains(&seq)).await;
    let echoed = events.all().into_iter().find(|e| get(e, "seq").as_f64() == Some(seq as f64)).unwrap();
    assert_eq!(text(&echoed, "data.payload.title"), "socks");
    assert_eq!(text(&echoed, "data.user_id"), "dave");

    control("pause", "").await;
    eventually("the client to notice", 5_000, || text(&client.status(), "state") == "reconnecting").await;
    let offline = client.publish("wasm-publish:1", "UPDATED", "gift-1", JsValue::NULL, JsValue::UNDEFINED);
    control("resume?epoch=same", "").await;
    let ack = JsFuture::from(offline).await.expect("the offline publish is acked after the reconnect");
    let offline_seq = get(&ack, "seq").as_f64().unwrap() as u64;
    eventually("the offline publish", 10_000, || events.seqs().contains(&offline_seq)).await;
    let copies = events.seqs().iter().filter(|s| **s == offline_seq).count();
    assert_eq!(copies, 1, "delivered exactly once");

    let refused =
        JsFuture::from(client.publish("not a topic", "UPDATED", "1", JsValue::NULL, JsValue::UNDEFINED)).await;
    let message = js_sys::Error::from(refused.unwrap_err()).message();
    assert!(String::from(message).contains("not a topic"), "the error names the bad topic");

    // A payload JSON has no text for is refused as invalid, and nothing else breaks.
    let big = js_sys::BigInt::from(7u64).into();
    let refused = JsFuture::from(client.publish("wasm-publish:1", "UPDATED", "1", big, JsValue::UNDEFINED)).await;
    let refused = refused.expect_err("a BigInt has no JSON");
    assert_eq!(text(&refused, "kind"), "invalid");
    assert!(String::from(js_sys::Error::from(refused).message()).contains("not JSON-serializable"));
    let ack = JsFuture::from(client.publish("wasm-publish:1", "UPDATED", "1", JsValue::TRUE, JsValue::UNDEFINED)).await;
    assert!(ack.is_ok(), "the next publish is acked");
    client.close();
}

/// `getToken` that fetches a real token from the testbed after `bad` wrong answers.
fn token_provider(reasons: &Recorder, bad: usize, query: &'static str) -> JsValue {
    let control = testbed().control;
    let calls = reasons.calls.clone();
    let provider =
        wasm_bindgen::closure::Closure::<dyn FnMut(JsValue) -> js_sys::Promise>::new(move |reason: JsValue| {
            calls.borrow_mut().push(reason);
            let n = calls.borrow().len();
            let control = control.clone();
            wasm_bindgen_futures::future_to_promise(async move {
                if n <= bad {
                    return Ok(JsValue::from_str("not-a-valid-token"));
                }
                let window = web_sys::window().unwrap();
                let init = web_sys::RequestInit::new();
                init.set_method("POST");
                let response: web_sys::Response =
                    JsFuture::from(window.fetch_with_str_and_init(&format!("{control}/token?user=erin{query}"), &init))
                        .await?
                        .unchecked_into();
                let json = JsFuture::from(response.json()?).await?;
                Ok(get(&json, "token"))
            })
        });
    provider.into_js_value()
}

#[wasm_bindgen_test]
async fn a_rejected_token_is_refreshed_once_through_get_token() {
    let reasons = Recorder::new();
    let options = object(&[
        ("url", testbed().secure_ws.into()),
        ("getToken", token_provider(&reasons, 1, "")),
        ("auth", "message".into()),
        ("backoff", fast_backoff()),
    ]);
    let client = HeraldClient::new(options);
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-auth:1", events.function(), JsValue::UNDEFINED).unwrap();
    eventually("a connection with the fresh token", 10_000, || {
        text(&client.status(), "state") == "connected" && reasons.len() == 2
    })
    .await;
    let reasons: Vec<String> = reasons.all().iter().map(|r| r.as_string().unwrap()).collect();
    assert_eq!(reasons, ["connect", "unauthorized"]);
    client.close();
}

#[wasm_bindgen_test]
async fn a_second_rejection_in_a_row_stops_with_unauthorized() {
    let reasons = Recorder::new();
    let options = object(&[
        ("url", testbed().secure_ws.into()),
        ("getToken", token_provider(&reasons, usize::MAX, "")),
        ("backoff", fast_backoff()),
    ]);
    let client = HeraldClient::new(options);
    eventually("the client to stop", 10_000, || text(&client.status(), "state") == "disconnected").await;
    assert_eq!(text(&client.status(), "reason"), "unauthorized");
    assert_eq!(reasons.len(), 2, "one fresh token, no loop");
    sleep(500).await;
    assert_eq!(reasons.len(), 2, "still no loop");
}

#[wasm_bindgen_test]
async fn coming_back_online_reconnects_without_waiting_for_the_backoff() {
    let options = object(&[
        ("url", testbed().ws.into()),
        ("token", "frank".into()),
        // A minute between attempts: only the `online` signal can bring it back quickly.
        ("backoff", object(&[("initialMs", 60_000.into()), ("maxMs", 60_000.into()), ("jitter", 0.into())])),
    ]);
    let client = HeraldClient::new(options);
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-online:1", events.function(), JsValue::UNDEFINED).unwrap();
    subscribed(&events, "wasm-online:1").await;

    control("disconnect?code=1006", "").await;
    eventually("the client to notice", 5_000, || text(&client.status(), "state") == "reconnecting").await;
    let next_in = get(&client.status(), "nextInMs").as_f64().unwrap();
    assert!(next_in >= 60_000.0, "waiting a minute ({next_in} ms)");
    web_sys::window().unwrap().dispatch_event(&web_sys::Event::new("online").unwrap()).unwrap();
    eventually("the reconnect", 5_000, || text(&client.status(), "state") == "connected").await;
    subscribed(&events, "wasm-online:1").await;
    client.close();
}

/// `pagehide`/`pageshow` as the browser fires them around the back/forward
/// cache (`persisted`: the page is kept, frozen, to be shown again).
fn page_transition(kind: &str, persisted: bool) {
    let init = web_sys::PageTransitionEventInit::new();
    init.set_persisted(persisted);
    let event = web_sys::PageTransitionEvent::new_with_event_init_dict(kind, &init).unwrap();
    web_sys::window().unwrap().dispatch_event(&event).unwrap();
}

#[wasm_bindgen_test]
async fn the_back_forward_cache_suspends_the_client_and_restoring_recovers_exactly_the_missed_events() {
    let options = object(&[
        ("url", testbed().gated_ws.into()),
        ("token", "mia".into()),
        // A minute between attempts: only the `pageshow` signal can bring it back quickly.
        ("backoff", object(&[("initialMs", 60_000.into()), ("maxMs", 60_000.into()), ("jitter", 0.into())])),
    ]);
    let client = HeraldClient::new(options);
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-bfcache:1", events.function(), JsValue::UNDEFINED).unwrap();
    let first = subscribed(&events, "wasm-bfcache:1").await;
    let connections = open_connections().await;
    let sockets = gate_accepted().await;

    page_transition("pagehide", true);
    eventually("the socket to close", 5_000, || text(&client.status(), "state") == "reconnecting").await;
    for _ in 0..250 {
        if open_connections().await == connections - 1.0 {
            break;
        }
        sleep(20).await;
    }
    assert_eq!(open_connections().await, connections - 1.0, "the server saw the socket close");
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(publish("wasm-bfcache:1", &n.to_string()).await);
    }
    sleep(500).await;
    assert_eq!(gate_accepted().await, sockets, "no reconnect attempt while in the cache");
    assert!(!events.seqs().iter().any(|seq| missed.contains(seq)), "nothing arrives while suspended");

    page_transition("pageshow", true);
    eventually("the missed events", 5_000, || events.seqs().ends_with(&missed)).await;
    let live = publish("wasm-bfcache:1", "live").await;
    eventually("a live event after the restore", 5_000, || events.seqs().contains(&live)).await;
    let seqs: Vec<u64> = events.seqs().into_iter().filter(|seq| *seq >= first).collect();
    assert_eq!(seqs, (first..=live).collect::<Vec<_>>(), "every event once, in order");
    assert!(events.of_type("resync").is_empty(), "nothing was lost, so no resync");
    assert_eq!(gate_accepted().await, sockets + 1.0, "one new socket, at once");
    client.close();
}

#[wasm_bindgen_test]
async fn a_tab_becoming_visible_checks_a_dead_link_at_once_and_recovers_what_it_missed() {
    let document = web_sys::window().unwrap().document().unwrap();
    assert_eq!(document.visibility_state(), web_sys::VisibilityState::Visible, "the test page must be visible");
    let options = object(&[
        ("url", testbed().gated_ws.into()),
        ("token", "noah".into()),
        // A ping only after a minute of silence: on its own, the client would
        // trust the dead link that long.
        ("heartbeatMs", 60_000.into()),
        ("heartbeatTimeoutMs", 500.into()),
        ("connectTimeoutMs", 1_000.into()),
        ("backoff", fast_backoff()),
    ]);
    let client = HeraldClient::new(options);
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-visible:1", events.function(), JsValue::UNDEFINED).unwrap();
    let first = subscribed(&events, "wasm-visible:1").await;

    control("blackhole?on=true", "").await;
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(publish("wasm-visible:1", &n.to_string()).await);
    }
    sleep(1_000).await;
    let unnoticed = text(&client.status(), "state") == "connected";
    document.dispatch_event(&web_sys::Event::new("visibilitychange").unwrap()).unwrap();
    let mut found = false;
    for _ in 0..250 {
        found = text(&client.status(), "state") == "reconnecting";
        if found {
            break;
        }
        sleep(20).await;
    }
    // The gate serves the other tests too: opened again before any assertion.
    control("blackhole?on=false", "").await;
    assert!(unnoticed, "without a signal, the dead link went unnoticed for a second");
    assert!(found, "5 s after the tab became visible, the dead link was still trusted");

    eventually("the missed events", 10_000, || events.seqs().ends_with(&missed)).await;
    let live = publish("wasm-visible:1", "live").await;
    eventually("a live event after the reconnect", 5_000, || events.seqs().contains(&live)).await;
    let seqs: Vec<u64> = events.seqs().into_iter().filter(|seq| *seq >= first).collect();
    assert_eq!(seqs, (first..=live).collect::<Vec<_>>(), "every event once, in order");
    assert!(events.of_type("resync").is_empty(), "nothing was lost, so no resync");
    client.close();
}

#[wasm_bindgen_test]
async fn unsubscribe_stops_delivery_and_close_is_final() {
    let client = dev_client("grace");
    let events = Recorder::new();
    let unsubscribe = client.subscribe("wasm-close:1", events.function(), JsValue::UNDEFINED).unwrap();
    subscribed(&events, "wasm-close:1").await;
    unsubscribe.call0(&JsValue::NULL).unwrap();
    sleep(100).await;
    let before = events.len();
    publish("wasm-close:1", "after").await;
    sleep(300).await;
    assert_eq!(events.len(), before, "nothing after unsubscribe");

    client.close();
    assert_eq!(text(&client.status(), "state"), "disconnected");
    assert_eq!(text(&client.status(), "reason"), "closed");
    let refused = client.subscribe("wasm-close:2", events.function(), JsValue::UNDEFINED);
    let message = refused.err().map(|e| String::from(js_sys::Error::from(e).message())).unwrap_or_default();
    assert!(message.contains("closed"), "{message}");
}

// Options are checked by the package's entry (pkg/index.js; its tests name
// each mistake); the wasm client reads them as checked, and must not panic
// (which aborts the whole module) on a value it cannot use.
#[wasm_bindgen_test]
fn options_it_cannot_use_do_not_panic() {
    let huge = object(&[("url", "ws://x".into()), ("backoff", object(&[("maxAdvisedMs", 1e300.into())]))]);
    let client = HeraldClient::new(huge);
    client.close();
    let wrong_types =
        object(&[("url", 7.into()), ("heartbeatMs", "soon".into()), ("getToken", "not a function".into())]);
    HeraldClient::new(wrong_types).close();
}

#[wasm_bindgen_test]
async fn a_forbidden_topic_is_refused_and_the_others_keep_flowing() {
    let reasons = Recorder::new();
    let options = object(&[
        ("url", testbed().secure_ws.into()),
        ("getToken", token_provider(&reasons, 0, "&topics=wasm-allowed:*")),
        ("backoff", fast_backoff()),
    ]);
    let client = HeraldClient::new(options);
    let allowed = Recorder::new();
    let forbidden = Recorder::new();
    let _a = client.subscribe("wasm-allowed:1", allowed.function(), JsValue::UNDEFINED).unwrap();
    let refused_handle = client.subscribe("wasm-secret:1", forbidden.function(), JsValue::UNDEFINED).unwrap();
    eventually("the refusal", 10_000, || !forbidden.of_type("refused").is_empty()).await;
    let refusal = forbidden.of_type("refused").remove(0);
    assert_eq!(text(&refusal, "topic"), "wasm-secret:1");
    assert_eq!(get(&refusal, "code").as_f64(), Some(4003.0));
    assert!(!text(&refusal, "message").is_empty());
    let live = JsFuture::from(js_sys::Promise::from(get(&refused_handle, "live"))).await;
    let error = live.expect_err("the live Promise of a refused subscription rejects");
    assert_eq!(text(&error, "kind"), "refused");
    assert_eq!(get(&error, "code").as_f64(), Some(4003.0), "with the server's code");

    let seq = control("publish?server=secure&topic=wasm-allowed:1", "1").await;
    let seq = get(&seq, "seq").as_f64().unwrap() as u64;
    eventually("the allowed topic's event", 5_000, || allowed.seqs().contains(&seq)).await;
    assert_eq!(text(&client.status(), "state"), "connected");
    client.close();
}

#[wasm_bindgen_test]
async fn presence_lists_members_and_reports_joins_and_leaves() {
    let presence = object(&[("presence", true.into())]);
    let hana = dev_client("hana");
    let seen = Recorder::new();
    let _h = hana.subscribe("wasm-presence:1", seen.function(), presence.clone()).unwrap();
    eventually("the member list", 5_000, || !seen.of_type("presence").is_empty()).await;
    let members = js_sys::Array::from(&get(&seen.of_type("presence")[0], "members"));
    assert_eq!(members.to_vec(), [JsValue::from_str("hana")]);

    let ivan = dev_client("ivan");
    let _i = ivan.subscribe("wasm-presence:1", Recorder::new().function(), presence).unwrap();
    let joined = |seen: &Recorder, key: &str| {
        seen.of_type("presence_diff").iter().any(|d| js_sys::Array::from(&get(d, key)).includes(&"ivan".into(), 0))
    };
    eventually("ivan's join", 5_000, || joined(&seen, "joined")).await;
    ivan.close();
    eventually("ivan's leave", 5_000, || joined(&seen, "left")).await;
    hana.close();
}

async fn gate_accepted() -> f64 {
    get(&control("state", "").await, "gate_accepted").as_f64().unwrap()
}

fn gated_client(user: &str) -> HeraldClient {
    let options = object(&[("url", testbed().gated_ws.into()), ("token", user.into()), ("backoff", fast_backoff())]);
    HeraldClient::new(options)
}

#[wasm_bindgen_test]
async fn a_client_closed_in_the_same_task_never_opens_a_socket() {
    let before = gate_accepted().await;
    // What React StrictMode does to a client made in an effect: create, clean up, create again.
    let discarded = gated_client("strict");
    discarded.close();
    sleep(300).await;
    assert_eq!(gate_accepted().await, before, "the discarded client never connected");
    let kept = gated_client("strict");
    let events = Recorder::new();
    let _unsubscribe = kept.subscribe("wasm-strict:1", events.function(), JsValue::UNDEFINED).unwrap();
    subscribed(&events, "wasm-strict:1").await;
    assert_eq!(gate_accepted().await, before + 1.0, "one socket for the kept client");
    kept.close();
}

fn transport(client: &HeraldClient) -> String {
    let status = client.status();
    if text(&status, "state") == "connected" { text(&status, "transport") } else { String::new() }
}

#[wasm_bindgen_test]
async fn where_websocket_is_blocked_events_flow_over_the_stream_and_the_client_upgrades_when_it_can() {
    control("block?on=true", "").await;
    let options = object(&[
        ("url", testbed().gated_ws.into()),
        ("token", "judy".into()),
        ("backoff", fast_backoff()),
        ("fallback", object(&[("sseAfter", 2.into()), ("upgradeAfterMs", 300.into())])),
    ]);
    let client = HeraldClient::new(options);
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-fallback:1", events.function(), JsValue::UNDEFINED).unwrap();
    eventually("the event stream", 10_000, || transport(&client) == "sse").await;
    let first = subscribed(&events, "wasm-fallback:1").await;
    let ack = JsFuture::from(client.publish("wasm-fallback:1", "ADDED", "1", JsValue::NULL, JsValue::UNDEFINED)).await;
    let ack = ack.expect("publishing works over the stream (posted frames, acked on the stream)");
    assert!(get(&ack, "seq").as_f64().is_some());
    sleep(700).await;
    assert_eq!(transport(&client), "sse", "still blocked: the upgrade attempts fail and the stream stays");

    control("block?on=false", "").await;
    let mut published = Vec::new();
    while transport(&client) != "websocket" {
        assert!(published.len() < 200, "no upgrade to WebSocket after the proxy stopped blocking");
        published.push(publish("wasm-fallback:1", "during").await);
        sleep(20).await;
    }
    let last = publish("wasm-fallback:1", "after").await;
    eventually("every event", 10_000, || events.seqs().contains(&last)).await;
    let seqs: Vec<u64> = events.seqs().into_iter().filter(|seq| *seq >= first).collect();
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>(), "nothing lost or doubled across the switch");
    assert!(events.of_type("resync").is_empty());
    client.close();
}

#[wasm_bindgen_test]
async fn with_the_fallback_off_a_blocked_websocket_is_only_retried() {
    control("block?on=true", "").await;
    let options = object(&[
        ("url", testbed().gated_ws.into()),
        ("token", "kim".into()),
        ("backoff", fast_backoff()),
        ("fallback", false.into()),
    ]);
    let client = HeraldClient::new(options);
    let statuses = Recorder::new();
    let _stop = client.on_status(statuses.function());
    eventually("a few failed attempts", 10_000, || get(&client.status(), "attempt").as_f64() >= Some(4.0)).await;
    assert!(!statuses.states().contains(&"connected".to_owned()));
    client.close();
    control("block?on=false", "").await;
}

async fn open_connections() -> f64 {
    get(&control("state", "").await, "connections").as_f64().unwrap()
}

#[wasm_bindgen_test]
async fn a_client_freed_without_close_closes_its_connection() {
    // Earlier tests' connections may still be closing.
    for _ in 0..250 {
        if open_connections().await == 0.0 {
            break;
        }
        sleep(20).await;
    }
    let before = open_connections().await;
    let client = dev_client("lena");
    let events = Recorder::new();
    let _unsubscribe = client.subscribe("wasm-free:1", events.function(), JsValue::UNDEFINED).unwrap();
    subscribed(&events, "wasm-free:1").await;
    assert_eq!(open_connections().await, before + 1.0);
    drop(client);
    for _ in 0..250 {
        if open_connections().await == before {
            return;
        }
        sleep(20).await;
    }
    panic!("the freed client's connection is still open");
}
