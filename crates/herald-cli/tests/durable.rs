//! `herald serve --data-dir` as it is run: killed with SIGKILL and started
//! again, and replaced by a `--reuse-port` deploy, while a publisher
//! publishes without pause and two subscribers follow, one of the topic and
//! one of its resource's wildcard. No `seq` may be given to two events,
//! every acked publish must be in the history, and both subscribers must
//! recover every gap (no resync, no hole, no duplicate).

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use futures_util::{SinkExt, StreamExt};
use herald_test_support::{
    TempDir,
    process::{self, Running, free_addr},
};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::watch, time::timeout};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

/// `herald serve --dev --data-dir DIR --addr ADDR ARGS`, once it listens.
fn start(dir: &Path, addr: &str, args: &[&str]) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(["serve", "--dev", "--shutdown-spread", "100ms", "--addr", addr, "--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info");
    process::serve(command).0
}

/// Connects until a server answers with `connected`; returns it too.
async fn connect(url: &str) -> (Ws, Value) {
    loop {
        if let Ok(Ok((mut ws, _))) = timeout(WAIT, connect_async(url)).await
            && let Some(connected) = next(&mut ws).await
            && connected["type"] == "connected"
        {
            return (ws, connected);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next text frame as JSON; `None` once the connection ended.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] != "ping" {
                    return Some(value);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Publishes `doc:1` events with ids `p-N` and entity `N`, one after the
/// other, until `stop` is set; a publish whose ack never came is sent
/// again, with its id, on a new connection. Returns every ack: N → seq.
async fn publish_until(url: String, stop: watch::Receiver<bool>) -> BTreeMap<u64, u64> {
    let mut acked = BTreeMap::new();
    let mut ws = None;
    let mut n = 1;
    while !*stop.borrow() {
        let socket = match &mut ws {
            Some(socket) => socket,
            None => ws.insert(connect(&url).await.0),
        };
        let publish = json!({"type":"publish","id":format!("p-{n}"),"topic":"doc:1","event":"UPDATED",
            "data":{"entity_id":n.to_string(),"payload":null,"timestamp":"2026-01-01T00:00:00Z"}});
        if socket.send(Message::text(publish.to_string())).await.is_err() {
            ws = None;
            continue;
        }
        let ack = loop {
            match next(socket).await {
                Some(reply) if reply["type"] == "ack" && reply["id"] == format!("p-{n}") => {
                    break reply["seq"].as_u64();
                }
                // A server shutting down refuses the publish: send it again elsewhere.
                Some(reply) if reply["type"] == "error" => break None,
                Some(_) => {}
                None => break None,
            }
        };
        match ack {
            Some(seq) => {
                acked.insert(n, seq);
                n += 1;
            }
            None => ws = None,
        }
    }
    acked
}

/// What a subscriber saw: each event's seq and entity in order, and the
/// epoch of each connection.
#[derive(Default)]
struct Followed {
    events: Vec<(u64, u64)>,
    epochs: Vec<String>,
}

/// Follows `topic` (`doc:1` or `doc:*`) until it has seen seq `until` of
/// `doc:1` (0: not known yet), reconnecting with `since` and the epoch
/// whenever its connection ends, and checking that each resubscribe
/// recovers and that every event is the one after the last.
async fn follow(url: String, topic: &'static str, mut until: watch::Receiver<u64>) -> Followed {
    let mut followed = Followed::default();
    let mut last = 0;
    // Where to resume `topic` from: `last`, or a wildcard's `wildcard_seq`.
    let mut position = 0;
    loop {
        let (mut ws, connected) = connect(&url).await;
        let epoch = connected["epoch"].as_str().expect("an epoch").to_owned();
        // From seq 0 the first time too: the publisher starts at the same
        // moment, and its first events may come before the subscription.
        let seen = followed.epochs.last().unwrap_or(&epoch);
        let body = json!({"type":"subscribe","topics":[topic],"since":{topic:position},"epoch":seen});
        let resubscribed = !followed.epochs.is_empty();
        followed.epochs.push(epoch);
        if ws.send(Message::text(body.to_string())).await.is_err() {
            continue;
        }
        loop {
            let message = tokio::select! {
                message = next(&mut ws) => message,
                _ = until.changed() => None.or(Some(json!({"type":"check"}))),
            };
            let Some(message) = message else { break };
            // Events are the frames without a `type`.
            match message["type"].as_str() {
                None => {
                    let seq = message["seq"].as_u64().expect("a seq");
                    assert_eq!(seq, last + 1, "no hole and no duplicate: {message}");
                    let entity = message["data"]["entity_id"].as_str().and_then(|e| e.parse().ok()).expect("N");
                    followed.events.push((seq, entity));
                    last = seq;
                    position = message["wildcard_seq"].as_u64().filter(|_| topic.ends_with('*')).unwrap_or(seq);
                }
                Some("subscribed") => {
                    if resubscribed {
                        assert_eq!(message["recovered"], true, "recovered, not resynced: {message}");
                    }
                    position = position.max(message["last_seq"][topic].as_u64().unwrap_or(0));
                }
                _ => {}
            }
            let target = *until.borrow();
            if target > 0 && last >= target {
                return followed;
            }
        }
    }
}

/// Runs a publisher and a subscriber against `addr` through `disrupt`,
/// then checks what they saw against the history the server kept.
async fn publish_through(addr: &str, disrupt: impl AsyncFnOnce()) {
    let url = format!("ws://{addr}/ws?token=u-1");
    let (stop, stopped) = watch::channel(false);
    let (until, target) = watch::channel(0);
    let publisher = tokio::spawn(publish_until(url.clone(), stopped));
    let subscriber = tokio::spawn(follow(url.clone(), "doc:1", target.clone()));
    let wildcard = tokio::spawn(follow(url.clone(), "doc:*", target));
    tokio::time::sleep(Duration::from_millis(300)).await;
    disrupt().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send_replace(true);
    let acked = timeout(WAIT, publisher).await.expect("the publisher stops").expect("no panic");
    let highest = acked.values().copied().max().expect("acks");
    until.send_replace(highest);
    let followed = timeout(WAIT, subscriber).await.expect("the subscriber catches up").expect("no panic");
    let by_wildcard = timeout(WAIT, wildcard).await.expect("the wildcard catches up").expect("no panic");
    assert!(by_wildcard.epochs.len() >= 2, "the wildcard's subscriber reconnected");
    assert_eq!(by_wildcard.events, followed.events, "the wildcard saw what the topic's subscriber saw");

    assert!(acked.len() > 20, "published continuously: {} acks", acked.len());
    assert!(followed.epochs.len() >= 2, "the subscriber reconnected");
    assert!(followed.epochs.windows(2).all(|pair| pair[0] == pair[1]), "one epoch: {:?}", followed.epochs);
    // Every acked publish is in the history, under its seq, once.
    let history: BTreeMap<u64, u64> = followed.events.iter().copied().collect();
    for (n, seq) in &acked {
        assert_eq!(history.get(seq), Some(n), "publish {n} was acked as seq {seq}");
    }
    let mut entities: Vec<u64> = history.values().copied().collect();
    entities.sort_unstable();
    entities.dedup();
    assert_eq!(entities.len(), history.len(), "no publish was given two seqs (its retransmission was a duplicate)");
    // No seq was given to two events: a fresh subscriber reads the same history.
    let (mut ws, _) = connect(&url).await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":0},"epoch":followed.epochs[0]});
    ws.send(Message::text(body.to_string())).await.expect("send");
    let mut replayed = BTreeMap::new();
    while let Some(message) = next(&mut ws).await {
        match message["type"].as_str() {
            None => {
                let entity = message["data"]["entity_id"].as_str().and_then(|e| e.parse().ok()).expect("N");
                replayed.insert(message["seq"].as_u64().expect("a seq"), entity);
            }
            Some("subscribed") => {
                assert_eq!(message["recovered"], true, "{message}");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(replayed, history, "the history is what the subscriber saw live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_and_started_again_loses_no_acked_publish_and_reissues_no_seq() {
    let dir = TempDir::new();
    let addr = free_addr();
    let first = start(dir.path(), &addr, &[]);
    let mut second = None;
    publish_through(&addr, async || {
        first.signal("KILL");
        assert!(!first.exit().await.0.success(), "killed");
        let restarted = start(dir.path(), &addr, &[]);
        second = Some(restarted);
    })
    .await;
    let log = second.expect("restarted").log();
    assert!(log.contains("epoch and history kept"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reuse_port_deploy_hands_the_store_over_without_a_resync() {
    let dir = TempDir::new();
    let addr = free_addr();
    let old = start(dir.path(), &addr, &["--reuse-port"]);
    let mut new = None;
    publish_through(&addr, async || {
        let replacement = start(dir.path(), &addr, &["--reuse-port"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(replacement.log().contains("another process holds the store"), "{}", replacement.log());
        old.signal("TERM");
        assert!(old.exit().await.0.success(), "the old process exits 0");
        new = Some(replacement);
    })
    .await;
    let log = new.expect("deployed").log();
    assert!(log.contains("epoch and history kept"), "{log}");
}

#[test]
fn serve_help_explains_what_a_restart_keeps_with_and_without_a_data_dir() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald")).args(["serve", "--help"]).output().expect("herald runs");
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(help.contains("--data-dir <DIR>") && help.contains("HERALD_DATA_DIR"), "{help}");
    assert!(help.contains("without --data-dir") && help.contains("kill -9"), "{help}");
}

#[test]
fn check_config_refuses_a_data_dir_with_redis() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--check-config", "--dev", "--data-dir", "/tmp/herald", "--redis", "redis://127.0.0.1:1"])
        .output()
        .expect("herald runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("keeps its history in Redis"));
}
