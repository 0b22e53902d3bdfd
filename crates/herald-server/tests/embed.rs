//! Herald mounted in someone else's axum service: same port as the service's
//! own routes, its state and listener, with the in-process handle.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use herald_protocol::close;
use herald_server::Herald;
use herald_test_support::*;
use serde_json::json;

/// A service with a route of its own and Herald under `/realtime`, on its
/// own `axum::serve`; returns Herald and the service's address.
async fn service(herald: Herald) -> SocketAddr {
    let app = Router::new().route("/api/hello", get(|| async { "hello" })).nest("/realtime", herald.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

#[tokio::test]
async fn a_service_mounts_herald_next_to_its_routes_and_publishes_in_process() {
    let mut builder = Herald::builder().dev(true);
    builder.config_mut().max_connections_per_ip = 1;
    let herald = builder.build().await.unwrap();
    let addr = service(herald.clone()).await;

    let mut client = Client::connect(&format!("ws://{addr}/realtime/ws?token=u-1")).await;
    assert_eq!(client.recv().await["type"], "connected");
    client.subscribe(&["doc:1"]).await;
    let seq = herald.publish("doc:1", "UPDATED", "1", &json!({"title":"in process"})).await.unwrap().seq;
    assert_eq!(client.recv().await["seq"], seq);

    let (status, body) = http_at(addr, "GET", "/api/hello", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "hello"), "the service's own route");
    let body = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1"}}"#;
    let headers = [("Authorization", "Bearer backend"), ("Content-Type", "application/json")];
    assert_eq!(http_at(addr, "POST", "/realtime/api/publish", &headers, body).await.0, 200);
    assert_eq!(client.recv().await["seq"], seq + 1);
    assert_eq!(herald.metrics().connections, 1);

    // The limits per client address hold on the host's listener too.
    let mut second = Client::connect(&format!("ws://{addr}/realtime/ws?token=u-2")).await;
    assert_eq!(second.closed().await.0, close::RATE_LIMITED);

    herald.shutdown().await;
    assert_eq!(client.closed().await.0, close::GOING_AWAY, "the app's shutdown closes Herald's connections");
}
