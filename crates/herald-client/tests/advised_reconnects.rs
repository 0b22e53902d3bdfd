//! Reconnect advice from a real server over loopback (issue 9): a server that
//! closes every connection at once with 1001 got 9,262 reconnects in 15 s.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use herald_client::{BackoffConfig, Client, Status};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};

const MS: Duration = Duration::from_millis(1);

/// A server that accepts every WebSocket and closes it at once with 1001 and
/// `reason`. Returns its URL and the count of WebSockets it accepted.
async fn closing_server(reason: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: reason.into() })).await;
                while ws.next().await.is_some() {}
            });
        }
    });
    (url, accepted)
}

/// Connects a client to a `closing_server` until it reported `n`
/// `Reconnecting` statuses. Returns them as `(attempt, next_in in ms)` (whole
/// milliseconds: backon grows delays in `f32`, so 100 ms comes out as
/// 100.000001 ms), after checking that the client made no more attempts than
/// those delays allow in the time that passed.
async fn reconnects(reason: &'static str, backoff: BackoffConfig, n: usize) -> Vec<(u32, u128)> {
    let (url, accepted) = closing_server(reason).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let client = Client::builder(url)
        .backoff(backoff)
        .on_status({
            let seen = seen.clone();
            move |status| {
                if let Status::Reconnecting { attempt, next_in } = status {
                    seen.lock().unwrap().push((*attempt, *next_in));
                }
            }
        })
        .connect()
        .expect("a valid URL inside a runtime");
    // A guard against hanging, not a speed check.
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("reconnect statuses within 30 s");
    let accepted = accepted.load(Ordering::SeqCst);
    let elapsed = start.elapsed();
    client.close().await;
    let seen = seen.lock().unwrap().clone();
    // Attempt k + 1 starts no sooner than the first k delays add up to.
    let waits = seen.iter().scan(Duration::ZERO, |waited, (_, next_in)| {
        *waited += *next_in;
        Some(*waited)
    });
    let allowed = 1 + waits.take_while(|waited| *waited <= elapsed).count();
    assert!(accepted <= allowed, "{accepted} attempts in {elapsed:?}; the delays {seen:?} allow {allowed}");
    seen[..n].iter().map(|(attempt, next_in)| (*attempt, next_in.as_millis())).collect()
}

fn backoff(max: Duration) -> BackoffConfig {
    let mut backoff = BackoffConfig::default();
    backoff.initial = MS * 50;
    backoff.max = max;
    backoff.jitter = 0.0;
    backoff
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_every_connection_with_1001_gets_reconnects_at_the_backoffs_pace() {
    let seen = reconnects("going away", backoff(MS * 400), 6).await;
    let expected = (1..).zip([0, 50, 100, 200, 400, 400]).collect::<Vec<_>>();
    assert_eq!(seen, expected, "only the first 1001 is followed at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_advised_spread_is_honoured_beyond_the_backoffs_max() {
    let seen = reconnects("server restart; retry_after_ms=300", backoff(MS * 100), 3).await;
    assert_eq!(seen, [(1, 300), (2, 300), (3, 300)]);
}
