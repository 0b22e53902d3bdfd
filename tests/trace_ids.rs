//! Trace ids reach the logs written while handling an event: the client
//! logs each receipt in the event's span, and applications enter the same
//! span while they handle it.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use herald::{EventSpan, Update};
use herald_test_support::{
    native::{server, subscribed},
    within_for as within,
};

/// Everything the fmt subscriber writes, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }
}

// One thread: the client's task runs where the thread-local subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn the_event_span_carries_topic_event_entity_seq_and_the_publishers_trace_id() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let server = server().await;
    let client = herald_test_support::native::client(&server.ws_url(), "u1");
    let mut gifts = client.subscribe("gift-list:9").await.unwrap();
    subscribed(&server, &mut gifts, "gift-list:9").await;
    let publisher = herald_test_support::native::client(&server.ws_url(), "backend");
    let ack = publisher
        .publish_traced("gift-list:9", "UPDATED", "gift-7", &serde_json::json!({"bought": true}), Some("req-42".into()))
        .await
        .unwrap();
    let event = within(Duration::from_secs(10), "the traced event", async {
        loop {
            if let Some(Update::Event(event)) = gifts.next().await
                && event.trace_id.is_some()
            {
                return event;
            }
        }
    })
    .await;
    event.span().in_scope(|| tracing::info!("cache entry invalidated"));

    let seq = ack.seq.unwrap();
    let span = format!("herald.event{{topic=gift-list:9 event=UPDATED entity_id=gift-7 seq={seq} trace_id=req-42}}");
    let lines = captured.lines();
    let logged = |message: &str| lines.iter().any(|line| line.contains(&span) && line.ends_with(message));
    assert!(logged("event received"), "the client logs the receipt in the span:\n{}", lines.join("\n"));
    assert!(logged("cache entry invalidated"), "the application logs in it too:\n{}", lines.join("\n"));
    publisher.close().await;
    client.close().await;
}
