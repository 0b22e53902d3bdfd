//! Each bench mode, with tiny numbers, against the real server on loopback:
//! the benchmarks measure what they claim, and nothing is lost on the way.

use std::time::Duration;

use herald_bench::{PublishVia, fanout, idle, storm};
use herald_server::{Epoch, Server};
use herald_test_support::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_event_to_every_subscriber_once() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut options = fanout::FanoutOptions::new(server.ws_url());
    options.subscribers = 20;
    options.topics = 3;
    options.rate = 200;
    options.duration = Duration::from_millis(500);
    // Twice over WebSocket against one server (a second run must not collide
    // with the first's publish ids), then with POST /api/publish.
    for via in [PublishVia::WebSocket, PublishVia::WebSocket, PublishVia::Http] {
        options.publish = via;
        let report = tokio::time::timeout(Duration::from_secs(60), fanout::run(&options)).await.unwrap().unwrap();
        assert!(report.published > 50, "{via:?}: {report:?}");
        assert_eq!(report.acked, report.published, "{report:?}");
        assert_eq!(report.delivered, report.expected, "{report:?}");
        assert_eq!((report.lost, report.duplicates, report.errors), (0, 0, 0), "{report:?}");
        assert!(report.latency.p50_us > 0 && report.latency.max_us >= report.latency.p99_us, "{report:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_the_nodes_of_a_cluster_delivers_every_event_once() {
    let redis = RedisServer::start().await;
    let node = || Server::builder().dev(true).redis(redis.url()).shutdown_spread(Duration::from_millis(300));
    let (a, b) = (node().bind("127.0.0.1:0").await.unwrap(), node().bind("127.0.0.1:0").await.unwrap());
    // Subscribers alternate between the nodes, and each node has a publisher:
    // every subscriber gets both publishers' events, once each and in order.
    let mut options = fanout::FanoutOptions::new(a.ws_url());
    options.urls.push(b.ws_url());
    options.subscribers = 10;
    options.topics = 3;
    options.rate = 200;
    options.duration = Duration::from_millis(500);
    let report = tokio::time::timeout(Duration::from_secs(60), fanout::run(&options)).await.unwrap().unwrap();
    assert!(report.published > 50, "{report:?}");
    assert_eq!(report.acked, report.published, "{report:?}");
    assert_eq!(report.delivered, report.expected, "{report:?}");
    assert_eq!((report.lost, report.duplicates, report.errors), (0, 0, 0), "{report:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_connections_and_reads_the_servers_memory() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut options = idle::IdleOptions::new(server.ws_url());
    options.connections = 50;
    options.hold = Duration::from_millis(100);
    // The server runs in this process, so this process's memory is its memory.
    options.server_pid = Some(std::process::id());
    let report = tokio::time::timeout(Duration::from_secs(60), idle::run(&options)).await.unwrap().unwrap();
    assert_eq!(report.connections, 50);
    assert!(report.connects_per_sec > 0.0);
    assert!(report.server_rss_after_kib.is_some() && report.server_bytes_per_connection.is_some(), "{report:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_clear_error() {
    let options = idle::IdleOptions::new("ws://127.0.0.1:1/ws");
    let error = idle::run(&options).await.unwrap_err().to_string();
    assert!(error.contains("is the server up"), "{error}");
    let error = idle::run(&idle::IdleOptions::new("http://x")).await.unwrap_err().to_string();
    assert!(error.contains("only ws:// is supported"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_sees_every_client_come_back_and_receive_after_a_restart() {
    let mut server =
        Server::builder().dev(true).shutdown_spread(Duration::from_millis(500)).bind("127.0.0.1:0").await.unwrap();
    let mut options = storm::StormOptions::new(server.ws_url());
    options.clients = 30;
    options.topics = 4;
    options.timeout = Duration::from_secs(30);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let restarter = tokio::spawn(async move {
        ready_rx.await.unwrap();
        // A new epoch, as a restarted process has: every client must resync.
        server.restart(Epoch::New).await.unwrap();
        server
    });
    let run = storm::run(&options, move || ready_tx.send(()).unwrap());
    let report = tokio::time::timeout(Duration::from_secs(90), run).await.unwrap().unwrap();
    assert_eq!((report.reconnected, report.receiving, report.resynced), (30, 30, 30), "{report:?}");
    assert!(report.first_back_ms <= report.last_back_ms && report.last_back_ms <= report.all_receiving_ms);
    assert!(report.busiest_100ms >= 1 && report.busiest_100ms <= 30, "{report:?}");
    restarter.await.unwrap().shutdown().await;
}
