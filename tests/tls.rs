//! `wss://`: the client through a TLS-terminating proxy in front of the real
//! server, trusting the proxy's self-signed root and nothing else.

use std::time::Duration;

use herald::Status;
use herald_test_support::{
    native::{events, server, subscribed},
    proxy::FaultProxy,
    tls, within_for as within,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_the_root_subscribes_and_receives_over_wss() {
    let server = server().await;
    let (acceptor, trusting) = tls::self_signed();
    let proxy = FaultProxy::start_tls(server.local_addr(), acceptor).await;
    assert!(proxy.ws_url().starts_with("wss://localhost:"));

    let client = herald::Client::builder(proxy.ws_url()).token("u1").tls_config(trusting).connect().unwrap();
    let mut sub = client.subscribe("gift-list:1").await.unwrap();
    let first = subscribed(&server, &mut sub, "gift-list:1").await;
    for n in 0..3 {
        server.publish("gift-list:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    let (seqs, _) = events(&mut sub, 3).await;
    assert_eq!(seqs, (first + 1..=first + 3).collect::<Vec<_>>());
    let ack = client.publish("gift-list:1", "ADDED", "gift-9", &json!({"name": "Kite"})).await.unwrap();
    assert_eq!(events(&mut sub, 1).await.0, [ack.seq.unwrap()], "publishes go over TLS too");
    assert_eq!(proxy.tls_failures(), 0);
    client.close().await;

    // The default roots do not include the self-signed certificate: the handshake fails.
    let untrusting = herald::Client::builder(proxy.ws_url()).token("u2").connect().unwrap();
    within(Duration::from_secs(10), "a refused handshake", async {
        while proxy.tls_failures() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!matches!(*untrusting.status().borrow(), Status::Connected { .. }));
    untrusting.close().await;
}
