//! `herald serve` and `herald token` as a user runs them.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::StreamExt;
use herald_protocol::close;
use tokio::time::timeout;
use tokio_tungstenite::{connect_async, tungstenite::Message};

const WAIT: Duration = Duration::from_secs(20);

/// Kills the server if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `herald serve ARGS --addr 127.0.0.1:0` and returns it with its WebSocket URL.
fn serve(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the herald binary runs");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("herald prints its address").expect("stderr is UTF-8");
        if let Some(rest) = line.split("(WebSocket ").nth(1) {
            break rest.trim_end_matches(')').to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Running(child), url)
}

fn mint(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_herald")).arg("token").args(args).output().expect("herald runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
}

async fn first_text(url: &str) -> String {
    let (mut ws, _) = timeout(WAIT, connect_async(url)).await.expect("in time").expect("handshake");
    match timeout(WAIT, ws.next()).await.expect("in time") {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected connected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_minted_token_is_accepted_by_a_server_with_the_same_secret() {
    let (_server, url) = serve(&["--secret", "cli-secret"]);
    let token =
        mint(&["--secret", "cli-secret", "--user", "u-7", "--tenant", "acme", "--topics", "doc:*", "--ttl", "10m"]);
    let connected = first_text(&format!("{url}?token={token}")).await;
    assert!(connected.contains(r#""user_id":"u-7""#) && connected.contains(r#""tenant_id":"acme""#), "{connected}");
}

#[tokio::test]
async fn serve_without_a_secret_or_dev_explains_what_to_pass() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env_remove("HERALD_SECRET")
        .env_remove("HERALD_DEV")
        .output()
        .expect("herald runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--secret"));
}

#[tokio::test]
async fn sigterm_closes_connections_1001_with_a_hint_and_exits_0() {
    let (mut server, url) = serve(&["--dev", "--shutdown-spread", "2s"]);
    let (mut ws, _) = timeout(WAIT, connect_async(format!("{url}?token=u1"))).await.unwrap().unwrap();
    let _connected = timeout(WAIT, ws.next()).await.unwrap();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let frame = loop {
        match timeout(WAIT, ws.next()).await.expect("a close frame in time") {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), close::GOING_AWAY);
    assert!(close::retry_after_ms(&frame.reason).is_some_and(|ms| ms < 2_000), "{}", frame.reason);
    drop(ws);
    let status = tokio::task::spawn_blocking(move || server.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
