//! `herald serve` and `herald token` as a user runs them.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use herald_protocol::close;
use herald_test_support::process::{self, Running};
use tokio::time::timeout;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

const WAIT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts `herald serve ARGS --addr 127.0.0.1:0` with `RUST_LOG=log` (unset
/// for `None`), and returns it with its WebSocket URL.
fn serve(args: &[&str], log: Option<&str>) -> (Running, String) {
    serve_by(Command::new(env!("CARGO_BIN_EXE_herald")), args, log)
}

/// [`serve`] with at most `fds` open file descriptors (`prlimit`, util-linux).
fn serve_with_fd_limit(fds: u32, args: &[&str]) -> (Running, String) {
    let mut prlimit = Command::new("prlimit");
    prlimit.arg(format!("--nofile={fds}:{fds}")).arg("--").arg(env!("CARGO_BIN_EXE_herald"));
    serve_by(prlimit, args, Some("warn"))
}

/// Runs `command serve ARGS`, see [`serve`].
fn serve_by(mut command: Command, args: &[&str], log: Option<&str>) -> (Running, String) {
    command.arg("serve").args(args).args(["--addr", "127.0.0.1:0"]);
    match log {
        Some(log) => command.env("RUST_LOG", log),
        None => command.env_remove("RUST_LOG"),
    };
    process::serve(command)
}

fn mint(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_herald")).arg("token").args(args).output().expect("herald runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
}

async fn open(url: &str) -> Ws {
    timeout(WAIT, connect_async(url)).await.expect("in time").expect("handshake").0
}

async fn next_text(ws: &mut Ws) -> String {
    match timeout(WAIT, ws.next()).await.expect("in time") {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match timeout(WAIT, ws.next()).await.expect("a close frame in time") {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, text: String) {
    timeout(WAIT, ws.send(Message::text(text))).await.expect("in time").expect("send");
}

/// The `host:port` of a server's WebSocket URL.
fn addr_of(url: &str) -> String {
    url.trim_start_matches("ws://").trim_end_matches("/ws").to_owned()
}

/// `POST /api/publish` with `Authorization: Bearer <token>`; returns the status line.
async fn http_publish(url: &str, token: &str) -> String {
    let addr = addr_of(url);
    let body = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":null}}"#;
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_status(addr, request).await
}

/// `GET path`; returns the status line.
async fn http_get(url: &str, path: &str) -> String {
    let addr = addr_of(url);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_status(addr, request).await
}

/// Sends `request` to `addr`; returns the status line of the answer.
async fn http_status(addr: String, request: String) -> String {
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("a timeout");
        stream.write_all(request.as_bytes()).expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    });
    let response = timeout(WAIT, response).await.expect("in time").expect("the request task does not panic");
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_minted_token_is_accepted_by_a_server_with_the_same_secret() {
    let (_server, url) = serve(&["--secret", "cli-secret"], Some("warn"));
    let token =
        mint(&["--secret", "cli-secret", "--user", "u-7", "--tenant", "acme", "--topics", "doc:*", "--ttl", "10m"]);
    let connected = next_text(&mut open(&format!("{url}?token={token}")).await).await;
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

/// A test key of herald-server's tests/keys.
fn test_key(name: &str) -> String {
    format!("{}/../herald-server/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn serve_checks_an_identity_providers_tokens_with_its_public_key_and_audience() {
    let (_server, url) =
        serve(&["--jwt-public-key", &test_key("ec-a.pub.pem"), "--jwt-audience", "herald"], Some("warn"));
    let sign = |aud: &str| {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
        let claims = serde_json::json!({"sub": "u-1", "aud": aud, "exp": exp, "publish": ["doc:*"]});
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(test_key("ec-a.pem")).unwrap()).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), &claims, &key).unwrap()
    };
    let connected = next_text(&mut open(&format!("{url}?token={}", sign("herald"))).await).await;
    assert!(connected.contains(r#""user_id":"u-1""#), "{connected}");
    assert!(http_publish(&url, &sign("herald")).await.contains("200"));
    let elsewhere = sign("billing");
    assert_eq!(close_code(&mut open(&format!("{url}?token={elsewhere}")).await).await, close::UNAUTHORIZED);
    assert!(http_publish(&url, &elsewhere).await.contains("401"));
    // An HS256 token is no use against a public key.
    let hs256 = mint(&["--secret", "cli-secret", "--user", "u-1"]);
    assert_eq!(close_code(&mut open(&format!("{url}?token={hs256}")).await).await, close::UNAUTHORIZED);
}

#[tokio::test]
async fn serve_with_two_token_keys_says_to_keep_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--addr", "127.0.0.1:0", "--secret", "s", "--jwks-url", "https://idp.example/jwks.json"])
        .env_remove("HERALD_DEV")
        .output()
        .expect("herald runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("keep one of --secret, --jwt-public-key and --jwks-url"));
}

#[tokio::test]
async fn serve_with_an_unreachable_redis_says_what_to_check_and_exits_non_zero() {
    // Nothing listens on a port just freed.
    let port = process::free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--dev", "--addr", "127.0.0.1:0", "--redis", &format!("redis://:hunter2@127.0.0.1:{port}")])
        .output()
        .expect("herald runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("redis-server"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password stays out of the message: {stderr}");
}

#[tokio::test]
async fn dev_mode_warns_that_it_is_insecure_and_a_secret_does_not() {
    let (dev, _) = serve(&["--dev"], None);
    let log = dev.log();
    let warning = log.lines().find(|line| line.contains("DEVELOPMENT MODE")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("WARN") && warning.contains("never use --dev in production"), "{warning}");
    let (secure, _) = serve(&["--secret", "cli-secret"], None);
    let log = secure.log();
    assert!(log.contains("herald listening") && !log.contains("DEVELOPMENT"), "{log}");
}

async fn a_signal_closes_connections_1001_with_a_hint_and_exits_0(signal: &str) {
    let (server, url) = serve(&["--dev", "--shutdown-spread", "2s"], Some("warn"));
    let mut ws = open(&format!("{url}?token=u1")).await;
    let _connected = next_text(&mut ws).await;
    server.signal(signal);
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
    let (status, log) = server.exit().await;
    assert!(status.success(), "{status}: {log}");
}

#[tokio::test]
async fn sigterm_closes_connections_1001_with_a_hint_and_exits_0() {
    a_signal_closes_connections_1001_with_a_hint_and_exits_0("TERM").await;
}

#[tokio::test]
async fn sigint_closes_connections_1001_with_a_hint_and_exits_0() {
    a_signal_closes_connections_1001_with_a_hint_and_exits_0("INT").await;
}

/// Every way a token reaches the server, with everything logged: none of
/// the tokens shows up in the log, whole, as its signature, or in hex (how
/// WebSocket libraries print frames).
#[tokio::test]
async fn tokens_never_appear_in_the_log_even_at_trace_level() {
    const SECRET: &str = "cli-log-secret-0123456789";
    let (server, url) = serve(&["--secret", SECRET], Some("trace"));
    let mint_for = |secret: &str, user: &str| mint(&["--secret", secret, "--user", user, "--publish", "doc:*"]);
    let by_query = mint_for(SECRET, "by-query");
    let by_auth = mint_for(SECRET, "by-auth");
    // Another expiry, so that it differs from the first token of the same user.
    let refreshed = mint(&["--secret", SECRET, "--user", "by-auth", "--ttl", "2h"]);
    let backend = mint_for(SECRET, "backend");
    let forged = mint_for("another-secret", "forger");
    let garbage = "garbage-token-5f2b9e1c7d".to_owned();

    let mut ws = open(&format!("{url}?token={by_query}")).await;
    assert!(next_text(&mut ws).await.contains("by-query"));
    let mut ws = open(&url).await;
    send(&mut ws, format!(r#"{{"type":"auth","token":"{by_auth}"}}"#)).await;
    assert!(next_text(&mut ws).await.contains("connected"));
    send(&mut ws, format!(r#"{{"type":"refresh","token":"{refreshed}"}}"#)).await;
    assert!(next_text(&mut ws).await.contains("connected"));
    send(&mut ws, format!(r#"{{"type":"refresh","token":"{garbage}"}}"#)).await;
    assert_eq!(close_code(&mut ws).await, close::UNAUTHORIZED);
    assert_eq!(close_code(&mut open(&format!("{url}?token={forged}")).await).await, close::UNAUTHORIZED);
    let mut ws = open(&url).await;
    send(&mut ws, format!(r#"{{"type":"auth","token":"{forged}"}}"#)).await;
    assert_eq!(close_code(&mut ws).await, close::UNAUTHORIZED);
    assert!(http_publish(&url, &backend).await.contains(" 200 "));
    assert!(http_publish(&url, &garbage).await.contains(" 401 "));

    server.signal("TERM");
    let (_, log) = server.exit().await;
    // The log is a real trace-level log of all of the above.
    assert!(log.contains("TRACE") && log.contains("by-query") && log.contains("refused"), "{log}");
    let hex = |text: &str| text.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for token in [&by_query, &by_auth, &refreshed, &backend, &forged, &garbage] {
        let signature = token.rsplit('.').next().expect("a last segment");
        for leak in [token.as_str(), signature, &hex(signature)] {
            assert!(
                !log.contains(leak),
                "{leak} of token {token} is in the log: {}",
                log.lines().filter(|l| l.contains(leak)).collect::<Vec<_>>().join("\n")
            );
        }
    }
    assert!(!log.contains(SECRET), "the secret is in the log");
}

/// `count` connections from `source` that each sent part of a request head and wait.
async fn partial_requests(url: &str, source: [u8; 4], count: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let addr: std::net::SocketAddr = addr_of(url).parse().expect("an address");
    let mut held = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind((source, 0).into()).expect("a loopback source address");
        // A connection the server dropped at once may fail; that is the point.
        if let Ok(Ok(mut tcp)) = timeout(WAIT, socket.connect(addr)).await {
            let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n").await;
            held.push(tcp);
        }
    }
    held
}

#[tokio::test]
async fn with_few_file_descriptors_the_server_refuses_clearly_and_answers_health_checks() {
    // 256 descriptors: the server keeps 192 in reserve and holds 64 connections.
    let (server, url) = serve_with_fd_limit(256, &["--dev"]);
    let attack = partial_requests(&url, [127, 0, 0, 2], 600).await;
    assert!(http_get(&url, "/healthz").await.contains("200"), "{}", server.log());
    let refused = connect_async(format!("{url}?token=u-1")).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 503),
        "{refused:?}"
    );
    drop(attack);
    timeout(WAIT, async {
        loop {
            if let Ok((mut ws, _)) = connect_async(format!("{url}?token=u-1")).await {
                return assert!(next_text(&mut ws).await.contains("connected"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a client connects once the attack ends");
}

#[tokio::test]
async fn a_server_that_runs_out_of_file_descriptors_keeps_accepting_once_they_are_back() {
    // A cap above what the descriptors allow: accept itself fails (EMFILE).
    let (server, url) = serve_with_fd_limit(128, &["--dev", "--max-connections", "100000"]);
    let attack = partial_requests(&url, [127, 0, 0, 3], 300).await;
    drop(attack);
    // The server notices the closed connections one by one; until it has,
    // new ones may still be refused (health checks are answered even then).
    timeout(WAIT, async {
        loop {
            if let Ok((mut ws, _)) = connect_async(format!("{url}?token=u-1")).await {
                return assert!(next_text(&mut ws).await.contains("connected"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a client connects once descriptors are back");
    assert!(server.log().contains("out of file descriptors"), "the shedding is logged: {}", server.log());
}

#[tokio::test]
async fn serve_with_tls_files_speaks_wss_and_sighup_switches_the_certificate() {
    use herald_test_support::tls::{CertFiles, TestCa, connect, peer_certificate};
    let ca = TestCa::new();
    let first = ca.issue();
    let files = CertFiles::new(&first);
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let (server, url) = serve(&["--dev", "--tls-cert", cert, "--tls-key", key], Some("info"));
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let addr = url.trim_start_matches("wss://").trim_end_matches("/ws").parse().expect("an address");
    let trusting = Some(tokio_tungstenite::Connector::Rustls(ca.client_config()));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(format!("{url}?token=u1"), None, false, trusting);
    let (mut ws, _) = timeout(WAIT, connecting).await.expect("in time").expect("a wss:// handshake");
    assert!(next_text(&mut ws).await.contains(r#""type":"connected""#));
    let before = timeout(WAIT, connect(addr, ca.client_config())).await.expect("in time").expect("handshake");
    assert_eq!(peer_certificate(&before), first.der);

    let second = ca.issue();
    files.write(&second);
    server.signal("HUP");
    timeout(WAIT, async {
        while !server.log().contains("TLS certificate reloaded") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no reload logged: {}", server.log()));
    assert!(server.log().contains("SIGHUP: reloading"), "{}", server.log());
    let after = timeout(WAIT, connect(addr, ca.client_config())).await.expect("in time").expect("handshake");
    assert_eq!(peer_certificate(&after), second.der, "new connections get the new certificate");
    send(&mut ws, r#"{"type":"subscribe","topics":["doc:1"]}"#.to_owned()).await;
    assert!(next_text(&mut ws).await.contains("subscribed"), "the open WebSocket keeps working");

    let output = Command::new(env!("CARGO_BIN_EXE_herald")).args(["serve", "--help"]).output().expect("herald runs");
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    for needed in ["--tls-cert <PEM>", "--tls-key <PEM>", "HERALD_TLS_CERT", "HERALD_TLS_KEY", "SIGHUP"] {
        assert!(help.contains(needed), "{needed} is missing from `herald serve --help`");
    }
}

#[test]
fn serve_help_lists_every_limit_with_its_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald")).args(["serve", "--help"]).output().expect("herald runs");
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    for flag in [
        "--header-timeout",
        "--body-timeout",
        "--auth-timeout",
        "--max-connections",
        "--max-unauthenticated",
        "--max-connections-per-ip",
        "--max-connections-per-user",
        "--trusted-proxy",
        "--max-subscriptions",
        "--max-presence-members",
        "--presence-interval",
        "--outbound-queue",
        "--write-timeout",
        "--rate-limit",
        "--http-publish-rate",
        "--history-len",
        "--history-max-age",
        "--history-max-bytes",
        "--history-total-bytes",
        "--dedup-window",
        "--max-publish-ids",
        "--idle-timeout",
        "--poll-timeout",
    ] {
        assert!(help.contains(flag), "{flag} is missing from `herald serve --help`");
    }
    assert!(help.contains("docs/protocol.md (\"Limits\")"), "the help points at the table");
    for flag in ["--secret", "--jwt-public-key", "--jwks-url", "--jwt-audience", "--jwt-issuer"] {
        assert!(help.contains(flag), "{flag} is missing from `herald serve --help`");
    }
}

#[test]
fn check_config_says_what_the_server_would_run_with_without_the_secret() {
    let check = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_herald")).args(["serve", "--check-config"]).args(args).output().unwrap()
    };
    let output = check(&["--secret", "hunter2-is-a-secret", "--redis", "redis://:pa55word@127.0.0.1:1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("max_connections_per_user: 100"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stdout.contains("pa55word"), "no secret printed: {stdout}");

    let output = check(&["--history-len", "10"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no way to check tokens"), "nothing started to find out");
    let output = check(&["--dev", "--epoch", "e1", "--redis", "redis://127.0.0.1:1"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("keeps its epoch in Redis"));
}

#[tokio::test]
async fn json_logs_carry_every_publish_with_its_trace_id_and_seq_and_text_logs_no_colours_in_a_pipe() {
    let (server, url) = serve(&["--dev", "--log-format", "json"], Some("info"));
    assert!(http_publish(&url, "backend").await.contains("200"));
    let published = timeout(WAIT, async {
        loop {
            let log = server.log();
            if let Some(line) = log.lines().find(|line| line.contains("\"published\"")) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a publish record");
    let record: serde_json::Value = serde_json::from_str(&published).expect("one JSON object per line");
    assert_eq!((record["seq"].as_u64(), record["topic"].as_str()), (Some(1), Some("doc:1")), "{record}");
    assert_eq!(record["trace_id"].as_str().map(str::len), Some(32), "{record}");

    let (text, _) = serve(&["--dev"], Some("info"));
    assert!(!text.log().contains('\u{1b}'), "no ANSI escapes in a pipe: {}", text.log());
}
