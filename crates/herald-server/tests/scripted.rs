//! Scripted connections (the seam the server's fuzz target drives) run the
//! real protocol handling: authentication, fan-out between connections,
//! refresh and binary frames, with no socket and no async test runtime.

use herald_server::{
    Claims, Herald, mint_token,
    scripted::{Input, Output, Scripted},
};
use serde_json::{Value, json};

const SECRET: &str = "scripted-test-secret";

fn frames(written: &[(usize, Output)], connection: usize) -> Vec<Value> {
    written
        .iter()
        .filter(|(n, _)| *n == connection)
        .filter_map(|(_, output)| match output {
            Output::Frame(text) => Some(serde_json::from_str(text).expect("the server writes JSON")),
            _ => None,
        })
        .collect()
}

fn text(value: Value) -> Input {
    Input::Text(value.to_string())
}

#[test]
fn a_publish_is_acked_to_its_publisher_and_fanned_out_to_a_subscriber_in_one_call() {
    let mut server = Scripted::new(Herald::builder().dev(true)).unwrap();
    let reader = server.connect(Some("reader"));
    let writer = server.connect(Some("writer"));
    assert!(matches!(server.take(reader)[..], [Output::Frame(_)]), "connected");
    server.take(writer);
    assert_eq!(frames(&server.send(reader, text(json!({"type": "subscribe", "topics": ["doc:1"]}))), reader).len(), 1);
    let publish = json!({"type": "publish", "id": "p-1", "topic": "doc:1", "event": "UPDATED",
        "data": {"entity_id": "d", "payload": {}, "timestamp": "2026-11-25T10:00:00Z"}});
    let written = server.send(writer, text(publish));
    let epoch = server.herald().epoch();
    assert_eq!(frames(&written, writer), [json!({"type": "ack", "id": "p-1", "seq": 1, "epoch": epoch})]);
    let events = frames(&written, reader);
    assert_eq!(events.len(), 1, "{written:?}");
    assert_eq!((events[0]["topic"].as_str(), events[0]["seq"].as_u64()), (Some("doc:1"), Some(1)));
    assert_eq!(events[0]["data"]["user_id"], "writer", "the token says who published");
}

#[test]
fn first_message_auth_then_a_narrower_refresh_ends_the_topics_it_no_longer_allows() {
    let mut server = Scripted::new(Herald::builder().secret(SECRET)).unwrap();
    let connection = server.connect(None);
    assert_eq!(server.take(connection), [], "nothing is written before the auth message");
    let wide = mint_token(SECRET, &Claims::new("u-1", 3600)).unwrap();
    let written = server.send(connection, text(json!({"type": "auth", "token": wide})));
    assert_eq!(frames(&written, connection)[0]["type"], "connected");
    server.send(connection, text(json!({"type": "subscribe", "topics": ["doc:1", "admin:1"]})));
    let narrow = mint_token(SECRET, &Claims::new("u-1", 3600).topics(["doc:*"])).unwrap();
    let written = frames(&server.send(connection, text(json!({"type": "refresh", "token": narrow}))), connection);
    assert_eq!(written[0]["type"], "connected");
    assert_eq!((&written[1]["code"], &written[1]["topic"]), (&json!(4003), &json!("admin:1")));
    assert!(!server.is_closed(connection));
    let other = mint_token(SECRET, &Claims::new("u-2", 3600)).unwrap();
    let written = server.send(connection, text(json!({"type": "refresh", "token": other})));
    assert!(
        matches!(&written[..], [(_, Output::Close { code: Some(4001), .. })]),
        "a token of another user closes with 4001: {written:?}"
    );
    assert!(server.is_closed(connection));
    assert_eq!(server.send(connection, text(json!({"type": "ping"}))), [], "an ended connection reads nothing");
}

#[test]
fn a_binary_frame_gets_error_400_and_a_client_that_leaves_ends_without_a_close_frame() {
    let mut server = Scripted::new(Herald::builder().dev(true)).unwrap();
    let connection = server.connect(Some("u-1"));
    server.take(connection);
    let written = frames(&server.send(connection, Input::Binary), connection);
    assert_eq!((&written[0]["type"], &written[0]["code"]), (&json!("error"), &json!(400)));
    let written = server.send(connection, Input::Gone);
    assert!(matches!(&written[..], [(_, Output::Close { code: None, .. })]), "{written:?}");
    assert_eq!(server.herald().metrics().connections, 0, "the hub forgot the connection");
}
