//! Property tests: round-trips, and no input ever panics a decoder.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;

use herald_protocol::{
    Ack, ClientMessage, Event, EventData, EventKind, Payload, Publish, ServerMessage, Subscribe, Subscribed, Topic,
};
use proptest::prelude::*;
use serde_json::json;

fn topic() -> impl Strategy<Value = Topic> {
    ("[a-z0-9_.-]{1,12}", prop_oneof!["[a-zA-Z0-9_.@+=:~-]{1,20}", Just("*".to_owned())])
        .prop_map(|(r, i)| Topic::new(format!("{r}:{i}")).unwrap())
}

fn concrete_topic() -> impl Strategy<Value = Topic> {
    topic().prop_filter("concrete", |t| !t.is_wildcard())
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        Just(EventKind::Added),
        Just(EventKind::Updated),
        Just(EventKind::Deleted),
        Just(EventKind::StatusChanged),
        "[A-Z_]{1,20}".prop_map(EventKind::from),
    ]
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(Into::into),
        any::<i64>().prop_map(Into::into),
        ".{0,12}".prop_map(Into::into),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn data() -> impl Strategy<Value = EventData> {
    (".{1,20}", json(), proptest::option::of(".{0,10}"), proptest::option::of(".{0,10}"), 0i64..4_000_000_000).prop_map(
        |(entity_id, payload, user_id, tenant_id, secs)| EventData {
            entity_id,
            payload: Payload::from_value(&payload).unwrap(),
            user_id,
            tenant_id,
            timestamp: time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        },
    )
}

fn event() -> impl Strategy<Value = Event> {
    let trace_id = proptest::option::of("[a-f0-9]{1,16}");
    let numbered = proptest::option::of((any::<u64>(), proptest::option::of(any::<u64>())));
    (concrete_topic(), kind(), data(), trace_id, numbered, any::<bool>()).prop_map(
        // An ephemeral event has no seq; only a numbered one has a wildcard_seq.
        |(topic, event, data, trace_id, numbered, ephemeral)| Event {
            topic,
            event,
            data,
            trace_id,
            ephemeral: ephemeral && numbered.is_none(),
            seq: numbered.map(|(seq, _)| seq),
            wildcard_seq: numbered.and_then(|(_, wildcard_seq)| wildcard_seq),
        },
    )
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            prop::collection::vec(topic(), 1..5),
            prop::collection::btree_map(concrete_topic(), any::<u64>(), 0..3),
            proptest::option::of("[a-z0-9]{1,8}"),
            any::<bool>(),
            proptest::option::of(text()),
        )
            .prop_map(|(topics, since, epoch, presence, name)| ClientMessage::Subscribe(Subscribe {
                topics,
                since: since.into_iter().collect(),
                epoch,
                presence,
                // Metadata only with presence.
                meta: name.filter(|_| presence).map(|name| Payload::from_value(&json!({ "name": name })).unwrap()),
            })),
        (concrete_topic(), text()).prop_map(|(topic, name)| ClientMessage::SetPresence {
            topic,
            meta: Payload::from_value(&json!({ "name": name })).unwrap(),
        }),
        prop::collection::vec(topic(), 1..5).prop_map(|topics| ClientMessage::Unsubscribe { topics }),
        Just(ClientMessage::Ping),
        Just(ClientMessage::Pong),
        ("[a-zA-Z0-9._-]{1,16}", event(), proptest::option::of(any::<u64>())).prop_map(|(id, e, if_seq)| {
            // A publish is ephemeral or conditional, never both.
            let if_seq = if_seq.filter(|_| !e.ephemeral);
            ClientMessage::Publish(Publish {
                id,
                topic: e.topic,
                event: e.event,
                data: e.data,
                trace_id: e.trace_id,
                ephemeral: e.ephemeral,
                if_seq,
            })
        }),
    ]
}

/// Any string, control characters and quotes included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[\\x00-\\x1f\"\\\\/\\x7f é☃]{0,8}"]
}

/// Strings shaped like timestamps, right and subtly wrong.
fn timestamp_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
        "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(2[0-3]|[01][0-9]):[0-5][0-9]:(60|[0-5][0-9])(\\.[0-9]{1,3})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])",
        "[0-9T:.Z+-]{0,30}",
    ]
}

proptest! {
    #[test]
    fn timestamps_are_rfc_3339_exactly_when_the_time_crate_says_so(text in timestamp_like()) {
        let by_time = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).is_ok();
        prop_assert_eq!(herald_protocol::validate_timestamp(&text).is_ok(), by_time, "{}", text);
    }

    #[test]
    fn hand_written_json_is_what_serde_json_writes(message in client_message(), event in event(), odd in text()) {
        prop_assert_eq!(message.encode(), serde_json::to_string(&message).unwrap());
        prop_assert_eq!(event.encode(), serde_json::to_string(&event).unwrap());
        let token = ClientMessage::Auth { token: herald_protocol::Token(odd) };
        prop_assert_eq!(token.encode(), serde_json::to_string(&token).unwrap());
    }

    #[test]
    fn client_messages_round_trip(message in client_message()) {
        prop_assert_eq!(ClientMessage::decode(&message.encode()).unwrap(), message);
    }

    #[test]
    fn events_round_trip_and_validate(event in event()) {
        event.validate().unwrap();
        let decoded = ServerMessage::decode(&event.encode()).unwrap();
        prop_assert_eq!(decoded, ServerMessage::Event(event));
    }

    #[test]
    fn server_messages_round_trip(
        topics in prop::collection::vec(topic(), 1..4),
        recovered in proptest::option::of(any::<bool>()),
        last_seq in prop::collection::btree_map(concrete_topic(), any::<u64>(), 0..3),
        id in "[a-z0-9]{1,10}",
        seq in proptest::option::of(any::<u64>()),
        epoch in proptest::option::of("[a-z0-9]{1,8}"),
    ) {
        for message in [
            ServerMessage::Subscribed(Subscribed { topics: topics.clone(), recovered, last_seq: last_seq.clone().into_iter().collect() }),
            ServerMessage::Ack(Ack { id: id.clone(), seq, epoch: epoch.clone(), duplicate: recovered.unwrap_or(false) }),
            ServerMessage::Ping,
            ServerMessage::Pong,
        ] {
            prop_assert_eq!(ServerMessage::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn any_text_never_panics_a_decoder(text in ".{0,200}") {
        let _ = ServerMessage::decode(&text);
        let _ = ClientMessage::decode(&text);
        let _ = Topic::new(text);
    }

    #[test]
    fn json_shaped_text_never_panics_a_decoder(
        kind in prop_oneof![
            Just("subscribe".to_owned()), Just("publish".to_owned()), Just("ack".to_owned()),
            Just("subscribed".to_owned()), Just("error".to_owned()), Just("connected".to_owned()), ".{0,8}",
        ],
        fields in prop::collection::btree_map(
            prop_oneof![Just("topics".to_owned()), Just("topic".to_owned()), Just("id".to_owned()), Just("data".to_owned()), Just("event".to_owned()), "[a-z]{1,6}"],
            json(), 0..5),
    ) {
        let mut object: BTreeMap<String, serde_json::Value> = fields;
        object.insert("type".into(), kind.into());
        let text = serde_json::to_string(&object).unwrap();
        let _ = ServerMessage::decode(&text);
        let _ = ClientMessage::decode(&text);
        object.remove("type");
        let text = serde_json::to_string(&object).unwrap();
        let _ = ServerMessage::decode(&text);
    }
}
