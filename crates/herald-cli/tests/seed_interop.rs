//! `herald listen` and `herald publish` against a server written the way the
//! seed documents write theirs (`tests/seed-server`, Node + `ws`): plain
//! topics, ping/pong, no `seq`, no recovery. Needs `node` and
//! `npm ci --prefix tests/seed-server`, which `cargo xtask ci` runs.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use herald_test_support::process::{Running, lines};

const WAIT: Duration = Duration::from_secs(20);

/// Starts the seed-style server on `port` (0: any) and returns it with its port.
fn seed_server(port: u16) -> (Running, u16) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/seed-server");
    assert!(
        dir.join("node_modules/ws").is_dir(),
        "run `npm ci --prefix tests/seed-server` first (cargo xtask ci does)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("server.js"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").expect("the server prints its port").parse().unwrap();
    (Running::new(child), port)
}

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.env_remove("HERALD_TOKEN").env_remove("HERALD_URL");
    command
}

fn listen(url: &str, token: &str) -> (Running, mpsc::Receiver<String>) {
    let mut child = herald()
        .args(["listen", "--url", url, "--token", token, "--topic", "gift-list:family-123", "--raw"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(child.stdout.take().unwrap());
    (Running::new(child), rx)
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

/// Publishes until the listener hears it (its subscribe may still be in flight).
fn publish_until_heard(url: &str, lines: &mpsc::Receiver<String>, entity: &str) -> serde_json::Value {
    for _ in 0..50 {
        let output = herald()
            .args(["publish", "--url", url, "--token", "backend", "--topic", "gift-list:family-123"])
            .args(["--entity-id", entity, "--payload", r#"{"bought":true}"#])
            .output()
            .unwrap();
        assert!(output.status.success(), "publish: {}", String::from_utf8_lossy(&output.stderr));
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
            let value = json(&line);
            if value["data"]["entity_id"] == entity {
                return value;
            }
        }
    }
    panic!("the listener never heard {entity}");
}

#[test]
fn listen_and_publish_work_against_a_seed_style_server() {
    let (_server, port) = seed_server(0);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (_listen, lines) = listen(&url, "alice");
    // The server's own JSON comes through as raw lines.
    let welcome = json(&lines.recv_timeout(WAIT).unwrap());
    assert_eq!(welcome["type"], "notification");
    let event = publish_until_heard(&url, &lines, "gift-7");
    assert_eq!(event["topic"], "gift-list:family-123");
    assert_eq!(event["data"]["user_id"], "backend");
    assert!(event.get("seq").is_none(), "seed-style servers number nothing");
}

#[test]
fn after_a_seed_style_server_restarts_the_listener_resyncs_and_continues() {
    let (server, port) = seed_server(0);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (_listen, lines) = listen(&url, "alice");
    publish_until_heard(&url, &lines, "before");
    drop(server);
    let (_server, _) = seed_server(port);
    // The server cannot replay: the listener must say so, then go on.
    let resync = loop {
        let value = json(&lines.recv_timeout(WAIT).expect("a resync line"));
        if value["type"] == "resync" {
            break value;
        }
    };
    assert_eq!(resync["topic"], "gift-list:family-123");
    assert_eq!(resync["reason"], "NoRecovery");
    publish_until_heard(&url, &lines, "after");
}

#[test]
fn a_4001_from_a_seed_style_server_stops_listen_with_a_clear_error() {
    let (_server, port) = seed_server(0);
    let output = herald()
        .args(["listen", "--url", &format!("ws://127.0.0.1:{port}/ws"), "--token", "bad", "--topic", "a:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unauthorized: Unauthorized; check the token"), "{stderr}");
}
