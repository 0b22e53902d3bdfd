//! `herald-testbed`: Herald's reference server for tests that cannot start
//! one themselves — code in a browser. It starts
//!
//! * a development-mode server (any token is the user id),
//! * a server that checks HS256 tokens (for 4001 handling),
//! * a development-mode server on `wss://`, with a certificate made at
//!   start (`tls_spki` names its key for Chromium's
//!   `--ignore-certificate-errors-spki-list`, which trusts that key alone), and
//! * a gate in front of the first that can refuse WebSocket upgrades while
//!   passing plain HTTP, as proxies that block WebSocket do, or drop every
//!   byte of its connections without closing them (a dead link),
//!
//! then prints their addresses as one JSON line on stdout and serves a
//! control API (CORS-open, loopback only) that pauses, resumes, restarts
//! and cuts them, publishes, mints tokens and reports counters. It exits
//! when its standard input closes, so it never outlives the test run.
//!
//! | control request | does |
//! | --- | --- |
//! | `POST /publish?topic=..&event=..&entity_id=..[&server=secure\|tls]`, body: payload JSON | publishes; answers the event's position `{"seq":N,"epoch":".."}` |
//! | `POST /pause`, `POST /resume?epoch=same\|new`, `POST /restart?epoch=same\|new` | takes the server down gracefully (1001 + hint), brings it back |
//! | `POST /disconnect?code=1006` | closes every connection with that code |
//! | `POST /token?user=..&ttl=60[&topics=a:*,b:1]` | a valid token for the secure server (every topic, or only those) |
//! | `POST /block?on=true\|false` | the gate refuses WebSocket upgrades (HTTP still passes) |
//! | `POST /blackhole?on=true\|false` | the gate drops every byte both ways, closing nothing |
//! | `GET /state` | the server's counters (`connections`, `subscriptions`, ...) and `gate_accepted`, the TCP connections the gate accepted |

mod control;
mod gate;

use std::{sync::Arc, time::Duration};

use herald_server::{Server, ServerHandle};
use herald_test_support::tls::{CertFiles, TestCa};
use tokio::{io::AsyncReadExt, net::TcpListener, sync::Mutex};

/// The token secret of the secure server; tests get tokens from `POST /token`.
const SECRET: &str = "herald-testbed-secret";

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("herald-testbed: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Quick graceful restarts, so tests that restart do not wait long.
    let spread = Duration::from_millis(200);
    let dev = Server::builder().dev(true).shutdown_spread(spread).bind("127.0.0.1:0").await?;
    let secure = Server::builder().secret(SECRET).shutdown_spread(spread).bind("127.0.0.1:0").await?;
    let certificate = TestCa::new().issue();
    // Kept (in a temporary directory) until the testbed exits.
    let files = CertFiles::new(&certificate);
    let tls = Server::builder().dev(true).tls(&files.cert, &files.key).bind("127.0.0.1:0").await?;
    let gate = gate::Gate::start(dev.local_addr()).await?;
    let control = TcpListener::bind("127.0.0.1:0").await?;
    let addresses = serde_json::json!({
        "control": format!("http://{}", control.local_addr()?),
        "ws": dev.ws_url(),
        "http": dev.http_url(),
        "secure_ws": secure.ws_url(),
        "tls_ws": tls.ws_url(),
        "tls_spki": certificate.spki_sha256(),
        "gated_ws": format!("ws://{}/ws", gate.addr()),
        "gated_http": format!("http://{}", gate.addr()),
    });
    println!("{addresses}");
    let state = Arc::new(control::Testbed {
        dev: Mutex::new(dev),
        secure: Mutex::new(secure),
        tls: Mutex::new(tls),
        gate,
        secret: SECRET,
    });
    let serve = axum::serve(control, control::router(state));
    tokio::select! {
        result = serve => result?,
        () = stdin_closed() => {}
    }
    Ok(())
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Picks the server a request is about: `?server=secure`, `?server=tls`, or the dev server.
fn pick<'a>(testbed: &'a control::Testbed, which: Option<&str>) -> &'a Mutex<ServerHandle> {
    match which {
        Some("secure") => &testbed.secure,
        Some("tls") => &testbed.tls,
        _ => &testbed.dev,
    }
}
