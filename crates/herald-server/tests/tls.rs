//! Herald's own listener over TLS: clients that trust the server's
//! authority connect over `wss://` and others fail the handshake; the
//! certificate is replaced without a restart, and a bad replacement keeps
//! the old one; failed handshakes hold nothing; a bad file stops the start.

use std::time::Duration;

use herald_client::{Client, Status};
use herald_server::{Server, ServerConfig, ServerError, ServerHandle};
use herald_test_support::{
    eventually,
    native::{events, subscribed},
    tls::{CertFiles, TestCa, connect, peer_certificate},
    within, within_for,
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn tls_server(files: &CertFiles, configure: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut builder = Server::builder().dev(true).tls(&files.cert, &files.key);
    configure(builder.config_mut());
    builder.bind("127.0.0.1:0").await.expect("the server starts with valid TLS files")
}

fn client(server: &ServerHandle, ca: &TestCa, user: &str) -> Client {
    Client::builder(server.ws_url()).token(user).tls_config(ca.client_config()).connect().expect("a valid URL")
}

/// `GET /metrics` on an open connection, keeping it open; returns the
/// status line. (Not `/healthz`: the refusal service answers that too.)
async fn metrics_status(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) -> String {
    within("a request", stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")).await.unwrap();
    let mut buf = vec![0; 1024];
    let read = within("an answer", stream.read(&mut buf)).await.expect("an answer");
    String::from_utf8_lossy(&buf[..read]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_client_trusting_the_servers_root_gets_events_over_wss_and_others_fail_the_handshake() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.issue());
    let server = tls_server(&files, |_| {}).await;
    assert!(server.ws_url().starts_with("wss://127.0.0.1:"), "{}", server.ws_url());
    assert!(server.http_url().starts_with("https://"), "{}", server.http_url());

    let alice = client(&server, &ca, "alice");
    let mut sub = alice.subscribe("doc:1").await.unwrap();
    let probe = subscribed(&server, &mut sub, "doc:1").await;
    server.publish("doc:1", "UPDATED", "doc-1", &json!({"title": "TLS"})).await.unwrap();
    assert_eq!(events(&mut sub, 1).await.0, [probe + 1]);

    // Another authority's client: the handshake fails on the certificate.
    let stranger = TestCa::new();
    let refused = within("a handshake", connect(server.local_addr(), stranger.client_config())).await;
    let error = refused.expect_err("a certificate from an unknown issuer is refused").to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
    let mallory = client(&server, &stranger, "mallory");
    let mut status = mallory.status();
    within("a failed attempt", status.wait_for(|s| matches!(s, Status::Reconnecting { .. }))).await.unwrap();
    // Plain WebSocket on the TLS port.
    let plain = format!("ws://{}/ws?token=eve", server.local_addr());
    assert!(within("a plain handshake", tokio_tungstenite::connect_async(plain)).await.is_err());

    eventually("the failed handshakes counted", || server.metrics().tls_handshake_failures >= 3).await;
    assert_eq!(server.metrics().connections, 1, "only alice holds a WebSocket");
    let mut stream = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    within("a request", stream.write_all(request)).await.unwrap();
    let mut metrics = String::new();
    within("the metrics", stream.read_to_string(&mut metrics)).await.unwrap();
    let failures = metrics.lines().find_map(|line| line.strip_prefix("herald_tls_handshake_failures_total "));
    assert!(failures.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 3), "{metrics}");
    mallory.close().await;
    alice.close().await;
}

#[tokio::test]
async fn failed_handshakes_release_their_place_and_refusals_are_answered_over_tls() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.issue());
    let server = tls_server(&files, |config| config.max_connections_per_ip = 2).await;
    let stranger = TestCa::new().client_config();
    for failed in 1..=5 {
        assert!(connect(server.local_addr(), stranger.clone()).await.is_err());
        eventually("the failure counted", || server.metrics().tls_handshake_failures == failed).await;
    }
    // Five failures later, the two places of this address are free.
    let mut first = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    let mut second = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    assert_eq!(metrics_status(&mut first).await, "HTTP/1.1 200 OK");
    assert_eq!(metrics_status(&mut second).await, "HTTP/1.1 200 OK");

    // The third is over the limit, and told so over TLS.
    let mut third = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    third.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    within("the refusal", third.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("this address holds 2 connections"), "{answer}");
}

#[tokio::test]
async fn a_handshake_that_does_not_arrive_in_time_is_dropped_and_one_in_progress_does_not_hold_up_shutdown() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.issue());
    let server = tls_server(&files, |config| config.header_timeout = Duration::from_millis(300)).await;
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut buf = [0; 64];
    assert!(matches!(within("the server to hang up", silent.read(&mut buf)).await, Ok(0) | Err(_)));
    assert_eq!(server.metrics().tls_handshake_failures, 1);

    let server = tls_server(&files, |_| {}).await;
    let _silent = TcpStream::connect(server.local_addr()).await.unwrap();
    // Time for the listener to accept it; nothing tells from outside.
    tokio::time::sleep(Duration::from_millis(100)).await;
    within_for(Duration::from_secs(3), "a shutdown that does not wait for the handshake", server.shutdown()).await;
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_connections_while_open_ones_keep_theirs() {
    let ca = TestCa::new();
    let first = ca.issue();
    let files = CertFiles::new(&first);
    let server = tls_server(&files, |_| {}).await;
    let alice = client(&server, &ca, "alice");
    let mut sub = alice.subscribe("doc:1").await.unwrap();
    let probe = subscribed(&server, &mut sub, "doc:1").await;
    let mut status = alice.status();
    status.borrow_and_update();
    let mut open = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    assert_eq!(peer_certificate(&open), first.der);

    let second = ca.issue();
    files.write(&second);
    server.reload_tls().await.expect("the new files are valid");
    let fresh = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    assert_eq!(peer_certificate(&fresh), second.der, "a new connection gets the new certificate");

    assert_eq!(metrics_status(&mut open).await, "HTTP/1.1 200 OK", "an open connection keeps working");
    assert_eq!(peer_certificate(&open), first.der);
    server.publish("doc:1", "UPDATED", "doc-1", &json!(null)).await.unwrap();
    assert_eq!(events(&mut sub, 1).await.0, [probe + 1]);
    assert!(!status.has_changed().unwrap(), "the client stayed connected: {:?}", *status.borrow());

    // A bad replacement: the error names the file, the last good certificate stays.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let error = server.reload_tls().await.expect_err("garbage is no certificate").to_string();
    assert!(error.contains(&files.cert.display().to_string()) && error.contains("BEGIN CERTIFICATE"), "{error}");
    files.write(&second);
    std::fs::write(&files.key, ca.issue().key_pem).unwrap();
    let error = server.reload_tls().await.expect_err("another certificate's key").to_string();
    assert!(error.contains("is not the key of the certificate"), "{error}");
    let after = within("a handshake", connect(server.local_addr(), ca.client_config())).await.unwrap();
    assert_eq!(peer_certificate(&after), second.der, "the last good certificate is still served");
    alice.close().await;
}

#[tokio::test]
async fn replaced_files_are_served_without_being_told() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.issue());
    let server = tls_server(&files, |_| {}).await;
    let renewed = ca.issue();
    files.write(&renewed);
    within("the renewed certificate", async {
        loop {
            let stream = connect(server.local_addr(), ca.client_config()).await.expect("a trusted certificate");
            if peer_certificate(&stream) == renewed.der {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_server_with_unusable_tls_files_does_not_start_and_names_the_file() {
    let ca = TestCa::new();
    let files = CertFiles::new(&ca.issue());
    let dir = files.cert.parent().unwrap().to_owned();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
    let other_key = dir.join("other-key.pem");
    std::fs::write(&other_key, ca.issue().key_pem).unwrap();
    let missing = dir.join("missing.pem");
    for (cert, key, expected) in [
        (&missing, &files.key, missing.display().to_string()),
        (&files.cert, &missing, missing.display().to_string()),
        (&garbage, &files.key, garbage.display().to_string()),
        (&files.key, &files.key, "no certificate in it".to_owned()),
        (&files.cert, &files.cert, "no private key in it".to_owned()),
        (&files.cert, &other_key, "is not the key of the certificate".to_owned()),
    ] {
        let builder = Server::builder().dev(true).tls(cert, key);
        let Err(ServerError::Config(error)) = builder.bind("127.0.0.1:0").await else {
            panic!("{} with {} started", cert.display(), key.display())
        };
        assert!(error.contains(&expected), "{expected} is not in: {error}");
    }
}
