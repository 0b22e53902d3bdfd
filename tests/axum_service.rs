//! `examples/axum_service.rs` end to end: a native client loads over REST,
//! subscribes from the position the response gave, and stays fresh while
//! the service crashes after a commit and after a publish.

#[allow(dead_code, reason = "the example's main is its own entry point, not the test's")]
#[path = "../examples/axum_service.rs"]
mod axum_service;

use std::{net::SocketAddr, path::Path, time::Duration};

use axum_service::{Gift, GiftList, Service};
use futures::StreamExt;
use herald::Update;
use herald_test_support::{TempDir, http_at, native::events, within_for as within};
use tokio::{net::TcpListener, task::JoinHandle};

const WAIT: Duration = Duration::from_secs(10);

/// One run of the service, until it "crashes": its tasks are dropped with
/// no chance to finish what they were doing.
struct Running {
    service: Service,
    herald: herald_server::Herald,
    server: JoinHandle<()>,
    relay: Option<JoinHandle<()>>,
}

impl Running {
    async fn start(dir: &Path, addr: SocketAddr, relay: bool) -> Self {
        let db = axum_service::open(&dir.join("gifts.db")).unwrap();
        let herald = axum_service::herald(&dir.join("herald")).await.unwrap();
        let service = Service::new(db, herald.clone());
        let listener = TcpListener::bind(addr).await.unwrap();
        let app = service.router().into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let relay = relay.then(|| tokio::spawn(service.relay().run()));
        Self { service, herald, server, relay }
    }

    /// Stops the relay, as a crash would, between two of its steps.
    fn stop_relay(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }

    /// The process dies: the relay and the listener stop where they are,
    /// and Herald's connections drop (the client reconnects to the next run).
    async fn crash(mut self) {
        self.stop_relay();
        self.server.abort();
        self.herald.shutdown().await;
    }
}

async fn get_list(addr: SocketAddr, list: &str) -> GiftList {
    let (status, body) = http_at(addr, "GET", &format!("/api/lists/{list}"), &[], "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn write(addr: SocketAddr, method: &str, path: &str, body: &str) -> Gift {
    let headers = [("Content-Type", "application/json")];
    let (status, answer) = http_at(addr, method, path, &headers, body).await;
    assert!(status == 200 || status == 201, "{status} {answer}");
    serde_json::from_str(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_the_axum_service_stays_fresh_through_crashes_after_a_commit_and_after_a_publish() {
    let dir = TempDir::new();
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut run = Running::start(dir.path(), addr, true).await;

    // Load over REST, then subscribe from the position the response gave.
    let loaded = get_list(addr, "1").await;
    assert!(loaded.gifts.is_empty());
    let client = herald_test_support::native::client(&format!("ws://{addr}/realtime/ws"), "viewer");
    let mut gifts = client.subscribe_from("gift-list:1", loaded.position.clone()).await.unwrap();
    assert!(matches!(gifts.next().await, Some(Update::Live { .. })));

    let kite = write(addr, "POST", "/api/lists/1/gifts", r#"{"name":"Kite"}"#).await;
    let (seqs, resyncs) = events(&mut gifts, 1).await;
    assert_eq!((seqs, resyncs.len()), (vec![loaded.position.seq + 1], 0), "the write is announced");

    // Crash 1: the change is committed, the relay never ran.
    run.stop_relay();
    write(addr, "PATCH", &format!("/api/lists/1/gifts/{}", kite.id), r#"{"bought":true}"#).await;
    assert_eq!(run.service.relay().pending().unwrap().len(), 1, "committed with its outbox row");
    run.crash().await;
    let mut run = Running::start(dir.path(), addr, true).await;
    let (seqs, resyncs) = events(&mut gifts, 1).await;
    assert_eq!(seqs, [loaded.position.seq + 2], "announced by the next run's relay, once");
    assert!(resyncs.is_empty(), "the client recovered across the restart: {resyncs:?}");

    // Crash 2: announced, but the row was not deleted.
    run.stop_relay();
    write(addr, "PATCH", &format!("/api/lists/1/gifts/{}", kite.id), r#"{"bought":false}"#).await;
    let relay = run.service.relay();
    let rows = relay.pending().unwrap();
    let first = relay.announce(&rows[0]).await.unwrap();
    assert!(!first.duplicate);
    run.crash().await;
    let run = Running::start(dir.path(), addr, false).await;
    let relay = run.service.relay();
    let rows = relay.pending().unwrap();
    assert_eq!(rows.len(), 1, "the row outlived the crash");
    let again = relay.announce(&rows[0]).await.unwrap();
    assert!(again.duplicate, "the retransmission is acked as a duplicate");
    assert_eq!(again.position, first.position);
    relay.done(&rows[0]).unwrap();
    let (seqs, resyncs) = events(&mut gifts, 1).await;
    assert_eq!((seqs, resyncs.len()), (vec![first.position.seq], 0), "one event, not two");

    let fresh = get_list(addr, "1").await;
    assert_eq!(fresh.gifts, [Gift { id: kite.id, name: "Kite".into(), by: "someone".into(), bought: false }]);
    assert_eq!(fresh.position, first.position);
    within(WAIT, "the client to close", client.close()).await;
}
