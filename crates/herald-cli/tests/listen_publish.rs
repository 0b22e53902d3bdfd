//! `herald listen`, `herald publish` and `herald demo` as a user runs them.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use herald_test_support::process::{self, Running, lines};

const WAIT: Duration = Duration::from_secs(20);

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.env("RUST_LOG", "warn").env_remove("HERALD_TOKEN").env_remove("HERALD_URL");
    command
}

/// `herald serve` on a free port; returns it and its WebSocket URL.
fn serve(args: &[&str]) -> (Running, String) {
    let mut command = herald();
    command.arg("serve").args(args).args(["--addr", "127.0.0.1:0"]);
    process::serve(command)
}

#[test]
fn listen_prints_each_published_event_as_one_json_line() {
    let (_server, url) = serve(&["--dev"]);
    let mut listen = Running::new(
        herald()
            .args(["listen", "--url", &url, "--token", "alice", "--topic", "gift-list:1", "--count", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = lines(listen.child().stderr.take().unwrap());
    let out = lines(listen.child().stdout.take().unwrap());
    assert!(status.recv_timeout(WAIT).unwrap().contains("connecting"));
    assert!(status.recv_timeout(WAIT).unwrap().contains("connected"));
    // The listener's subscribe may still be in flight: publish until it hears one.
    let mut published = Vec::new();
    let first = loop {
        let output = herald()
            .args(["publish", "--url", &url, "--token", "bob", "--topic", "gift-list:1", "--event", "ADDED"])
            .args(["--entity-id", "7", "--payload", r#"{"bought":true}"#])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let ack: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        published.push(ack["seq"].as_u64().unwrap());
        if let Ok(line) = out.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(published.len() < 50, "the listener never heard a publish");
    };
    let event: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(event["topic"], "gift-list:1");
    assert_eq!(event["event"], "ADDED");
    assert_eq!(event["data"]["entity_id"], "7");
    assert_eq!(event["data"]["payload"]["bought"], true);
    assert_eq!(event["data"]["user_id"], "bob");
    assert!(published.contains(&event["seq"].as_u64().unwrap()));
    let output = herald()
        .args(["publish", "--url", &url, "--token", "bob", "--topic", "gift-list:1", "--entity-id", "8"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let second: serde_json::Value = serde_json::from_str(&out.recv_timeout(WAIT).unwrap()).unwrap();
    assert_eq!(second["data"]["entity_id"], "8");
    // --count 2 reached: it exits by itself, successfully.
    assert!(listen.child().wait().unwrap().success());
}

/// Forwards TCP connections to the server at `url` and records the first
/// line of each HTTP request (`GET /ws?.. HTTP/1.1`): what ends up in logs.
fn request_lines(url: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let target = url.trim_start_matches("ws://").trim_end_matches("/ws").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relayed = format!("ws://{}/ws", listener.local_addr().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let recorded = lines.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(&target) else { return };
            let mut head = Vec::new();
            let mut reader = client.try_clone().unwrap();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && reader.read_exact(&mut byte).is_ok() {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            recorded.lock().unwrap().push(head.lines().next().unwrap_or_default().to_owned());
            let (mut up, mut down) = (server.try_clone().unwrap(), server);
            let mut client_write = client.try_clone().unwrap();
            let _ = up.write_all(head.as_bytes());
            std::thread::spawn(move || std::io::copy(&mut reader, &mut up));
            std::thread::spawn(move || std::io::copy(&mut down, &mut client_write));
        }
    });
    (relayed, lines)
}

#[test]
fn listen_with_auth_message_keeps_the_token_out_of_the_url_and_still_receives() {
    let (_server, url) = serve(&["--dev"]);
    let (relayed, requests) = request_lines(&url);
    let mut listen = Running::new(
        herald()
            .args(["listen", "--url", &relayed, "--token", "alice", "--auth", "message", "--topic", "doc:1"])
            .args(["--count", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = lines(listen.child().stdout.take().unwrap());
    let mut published = 0;
    let line = loop {
        let output = herald()
            .args(["publish", "--url", &url, "--token", "bob", "--topic", "doc:1", "--entity-id", "d1"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        published += 1;
        if let Ok(line) = out.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(published < 50, "the listener never heard a publish");
    };
    assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap()["data"]["entity_id"], "d1");
    assert!(listen.child().wait().unwrap().success());
    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests, ["GET /ws HTTP/1.1"], "the token went in the first message, not the URL");

    // The default puts it in the URL, as seed-style servers expect.
    let (relayed, requests) = request_lines(&url);
    let output = herald()
        .args(["publish", "--url", &relayed, "--token", "bob", "--topic", "doc:1", "--entity-id", "d2"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(*requests.lock().unwrap(), ["GET /ws?token=bob HTTP/1.1"]);
}

#[test]
fn listen_exits_non_zero_with_a_clear_message_on_4001() {
    let (_server, url) = serve(&["--secret", "s3cret"]);
    let output =
        herald().args(["listen", "--url", &url, "--token", "not-a-jwt", "--topic", "gift-list:1"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unauthorized") && stderr.contains("check the token"), "{stderr}");
}

#[test]
fn publish_fails_clearly_when_nothing_listens() {
    let output = herald()
        .args(["publish", "--url", "ws://127.0.0.1:1/ws", "--topic", "a:1", "--entity-id", "1", "--timeout", "1s"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not connect to ws://127.0.0.1:1/ws within 1s; is the server up"), "{stderr}");
    let output =
        herald().args(["publish", "--topic", "a:1", "--entity-id", "1", "--payload", "{oops"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("--payload is not JSON"));
}

#[test]
fn demo_shows_events_a_replay_and_a_resync_then_stops_by_itself() {
    let output = herald().args(["demo", "--duration", "4s", "--rate", "10"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("while the listener is away"), "{text}");
    assert!(text.contains("ADDED gift-new-3"), "the replayed event reaches the listener: {text}");
    assert!(text.contains("RESYNC gift-list:family-123"), "{text}");
    assert!(text.contains("stopped: closed by the application"), "{text}");
}

#[test]
fn web_demo_without_a_built_app_says_how_to_build_it() {
    let output =
        herald().args(["demo", "--web", "--addr", "127.0.0.1:0", "--static", "/nonexistent/dist"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/dist/index.html is missing"), "{stderr}");
    assert!(stderr.contains("cargo xtask demo --web"), "{stderr}");
    // Web-only settings without --web are refused rather than ignored.
    let output = herald().args(["demo", "--outage", "3s"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--web"));
}

/// A WebSocket server that accepts one connection and reads it, answering
/// nothing; returns its URL and what it read.
fn silent_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut ws) = tokio_tungstenite::tungstenite::accept(stream.unwrap()) else { continue };
            while let Ok(message) = ws.read() {
                if let Ok(text) = message.into_text() {
                    let _ = tx.send(text.to_string());
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn publish_to_a_server_that_never_acks_says_so_and_can_send_without_waiting() {
    let (url, frames) = silent_server();
    let publish =
        |extra: &[&str]| herald().args(["publish", "--url", &url, "--topic", "a:1"]).args(extra).output().unwrap();
    let output = publish(&["--entity-id", "1", "--timeout", "1s"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not acknowledge the publish") && stderr.contains("--no-ack"), "{stderr}");

    let output = publish(&["--no-ack", "--entity-id", "sent-without-ack"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sent = loop {
        let frame = frames.recv_timeout(WAIT).expect("the server receives the publish");
        if frame.contains("sent-without-ack") {
            break frame;
        }
    };
    assert!(sent.contains(r#""type":"publish""#), "{sent}");
}
