//! Every example message of the seed documents decodes, as what it is.

use herald_protocol::{ClientMessage, ErrorCode, EventKind, ServerMessage};

#[test]
fn seed_000_event_decodes_with_every_field() {
    let text = r#"{"topic":"gift-list:family-123","event":"STATUS_CHANGED",
        "data":{"entity_id":"gift-1","payload":{"status":"bought"},"user_id":"u-1",
                "tenant_id":"t-1","timestamp":"2026-11-25T10:00:00.123Z"},
        "trace_id":"abc"}"#;
    let ServerMessage::Event(event) = ServerMessage::decode(text).unwrap() else { panic!("not an event") };
    assert_eq!(event.topic, "gift-list:family-123");
    assert_eq!(event.event, EventKind::StatusChanged);
    assert_eq!(event.data.user_id.as_deref(), Some("u-1"));
    assert_eq!(event.data.tenant_id.as_deref(), Some("t-1"));
    assert_eq!(event.trace_id.as_deref(), Some("abc"));
    assert_eq!(event.seq, None);
    event.validate().unwrap();
}

#[test]
fn seed_000_custom_event_names_and_minimal_data_decode() {
    let text = r#"{"topic":"user:456","event":"CUSTOM","data":{"entity_id":"456","payload":null,"timestamp":"2026-01-01T00:00:00+01:00"}}"#;
    let ServerMessage::Event(event) = ServerMessage::decode(text).unwrap() else { panic!("not an event") };
    assert_eq!(event.event, EventKind::Custom("CUSTOM".into()));
}

#[test]
fn python_isoformat_timestamps_decode_but_do_not_validate() {
    // datetime.utcnow().isoformat() has no offset: not RFC 3339, but common.
    let text = r#"{"topic":"a:1","event":"ADDED","data":{"entity_id":"1","payload":{},"timestamp":"2024-01-01T12:00:00.123456"}}"#;
    let ServerMessage::Event(event) = ServerMessage::decode(text).unwrap() else { panic!("not an event") };
    let err = event.validate().unwrap_err().to_string();
    assert!(err.contains("data.timestamp \"2024-01-01T12:00:00.123456\" is not RFC 3339"), "{err}");
}

#[test]
fn seed_client_messages_decode() {
    for text in [
        r#"{"type":"subscribe","topics":["gift-list:123","user:456"]}"#,
        r#"{"type":"unsubscribe","topics":["gift-list:123"]}"#,
        r#"{"type":"ping"}"#,
        r#"{ "type": "pong" }"#,
    ] {
        let message = ClientMessage::decode(text).unwrap();
        assert_eq!(ClientMessage::decode(&message.encode()).unwrap(), message);
    }
}

#[test]
fn seed_004_connected_with_user_id_in_camel_case() {
    let ServerMessage::Connected(c) = ServerMessage::decode(r#"{"type":"connected","userId":"u-9"}"#).unwrap() else {
        panic!("not connected")
    };
    assert_eq!(c.user_id.as_deref(), Some("u-9"));
    let ServerMessage::Connected(c) = ServerMessage::decode(r#"{"type":"connected","user_id":"u-9"}"#).unwrap() else {
        panic!("not connected")
    };
    assert_eq!(c.user_id.as_deref(), Some("u-9"));
}

#[test]
fn seed_002_error_and_pong_decode() {
    let ServerMessage::Error(e) = ServerMessage::decode(r#"{"type":"error","code":500,"message":"boom"}"#).unwrap()
    else {
        panic!("not an error")
    };
    assert_eq!(e.code, ErrorCode::Number(500));
    assert_eq!(ServerMessage::decode(r#"{"type":"pong"}"#).unwrap(), ServerMessage::Pong);
    let ServerMessage::Error(e) =
        ServerMessage::decode(r#"{"type":"error","code":"bad_request","message":"no","id":"p1"}"#).unwrap()
    else {
        panic!("not an error")
    };
    assert_eq!(e.code, ErrorCode::Name("bad_request".into()));
    assert_eq!(e.id.as_deref(), Some("p1"));
}

#[test]
fn other_json_objects_of_the_seeds_are_raw_messages() {
    for text in [
        r#"{"type":"state_update","data":{"x":1}}"#,
        r#"{"type":"notification","message":"hello"}"#,
        r#"{"type":"user_joined","userId":"u1","room":"general"}"#,
        r#"{"type":"message","from":"u1","content":"hi","timestamp":1732528800000}"#,
        r#"{"userId":"u1","status":"online","timestamp":1732528800000}"#,
        r#"{"client_id":"c1","message":"hi","timestamp":1732528800.5}"#,
        r#"{"event":"user_left","client_id":"c1"}"#,
        r#"{"type":7}"#,
    ] {
        assert_eq!(ServerMessage::decode(text).unwrap(), ServerMessage::Raw(text.to_owned()), "{text}");
    }
}

#[test]
fn peer_events_with_seq_decode() {
    let text = r#"{"topic":"bench:1","event":"UPDATED","data":{"entity_id":"1","payload":{"t":1},"timestamp":"2026-11-25T10:00:00Z"},"seq":3}"#;
    let ServerMessage::Event(event) = ServerMessage::decode(text).unwrap() else { panic!("not an event") };
    assert_eq!(event.seq, Some(3));
    assert_eq!(event.encode(), text);
    let ServerMessage::Subscribed(s) = ServerMessage::decode(r#"{"type":"subscribed","topics":["bench:1"]}"#).unwrap()
    else {
        panic!("not subscribed")
    };
    assert_eq!(s.recovered, None);
    let ServerMessage::Ack(a) = ServerMessage::decode(r#"{"type":"ack","id":"abc"}"#).unwrap() else {
        panic!("not ack")
    };
    assert_eq!(a.id, "abc");
}

#[test]
fn broken_herald_messages_say_which_field() {
    let cases = [
        (r#"{"type":"ack"}"#, r#""ack" message: missing field `id`"#),
        (r#"{"topic":"a:1","event":"ADDED","data":{"payload":1,"timestamp":"x"}}"#, "missing field `entity_id`"),
        (r#"{"topic":"a b:1","event":"ADDED","data":{}}"#, r#"topic "a b:1": space not allowed at byte 1"#),
        ("[1,2]", "not an object"),
        ("{\"type\":", "not valid JSON"),
    ];
    for (text, want) in cases {
        let err = ServerMessage::decode(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn client_message_errors_say_what_is_wrong() {
    let cases = [
        (r#"{"type":"dance"}"#, r#"unknown message type "dance"; expected one of subscribe"#),
        (r#"{"topics":[]}"#, r#"unknown message type """#),
        (r#"{"type":"subscribe","topics":[]}"#, "topics is empty"),
        (r#"{"type":"subscribe","topics":"a:1"}"#, r#""subscribe" message: invalid type"#),
        (r#"{"type":"subscribe","topics":["gift list:1"]}"#, r#"topic "gift list:1": space not allowed at byte 4"#),
        (r#"{"type":"auth","token":""}"#, "token is empty"),
        (
            r#"{"type":"publish","id":"1","topic":"a:*","event":"ADDED","data":{"entity_id":"1","payload":1,"timestamp":"2026-11-25T10:00:00Z"}}"#,
            "is a wildcard",
        ),
        (
            r#"{"type":"publish","id":"1","topic":"a:1","event":"NOT OK","data":{"entity_id":"1","payload":1,"timestamp":"2026-11-25T10:00:00Z"}}"#,
            r#"event name "NOT OK" has ' ' at byte 3"#,
        ),
        ("\"ping\"", "not an object"),
    ];
    for (text, want) in cases {
        let err = ClientMessage::decode(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(herald_protocol::limits::MAX_FRAME_BYTES));
    assert!(ClientMessage::decode(&huge).unwrap_err().to_string().contains("over the 65536-byte limit"));
}

#[test]
fn tokens_never_appear_in_debug_output() {
    let message = ClientMessage::decode(r#"{"type":"auth","token":"s3cret"}"#).unwrap();
    assert!(!format!("{message:?}").contains("s3cret"));
}
