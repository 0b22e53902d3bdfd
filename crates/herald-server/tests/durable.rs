//! Durable history (`ServerConfig::data_dir`): what a server started again
//! on the same directory keeps, what makes it start a new epoch instead,
//! and two servers handing the store over. The real binary, killed with
//! SIGKILL and deployed with `--reuse-port`, is tested in herald-cli.

use std::{path::Path, time::Duration};

use herald_test_support::*;
use serde_json::json;

async fn durable(dir: &Path) -> ServerHandle {
    durable_with(dir, |_| {}).await
}

async fn durable_with(dir: &Path, configure: impl FnOnce(&mut herald_server::ServerConfig)) -> ServerHandle {
    let mut builder = Server::builder().dev(true);
    builder.config_mut().data_dir = Some(dir.to_owned());
    configure(builder.config_mut());
    builder.bind("127.0.0.1:0").await.expect("server starts")
}

fn publish(id: &str, entity: &str) -> String {
    json!({"type":"publish","id":id,"topic":"doc:1","event":"UPDATED",
           "data":{"entity_id":entity,"payload":null,"timestamp":"2026-01-01T00:00:00Z"}})
    .to_string()
}

async fn resubscribe(server: &ServerHandle, since: u64, epoch: &str) -> Client {
    let mut client = Client::dev(server, "reader").await;
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":since},"epoch":epoch});
    client.send(&body.to_string()).await;
    client
}

#[tokio::test]
async fn a_server_started_again_on_its_data_dir_keeps_the_epoch_the_history_and_the_publish_ids() {
    let dir = TempDir::new();
    let server = durable(dir.path()).await;
    let epoch = server.epoch();
    let mut publisher = Client::dev(&server, "writer").await;
    publisher.send(&publish("p-1", "1")).await;
    assert_eq!(publisher.recv().await, json!({"type":"ack","id":"p-1","seq":1,"epoch":server.epoch()}));
    for n in 2..=3 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    server.shutdown().await;

    let server = durable(dir.path()).await;
    assert_eq!(server.epoch(), epoch);
    let mut reader = resubscribe(&server, 1, &epoch).await;
    for seq in [2, 3] {
        let event = reader.recv().await;
        assert_eq!((event["seq"].as_u64(), event["data"]["entity_id"].as_str()), (Some(seq), Some(&*seq.to_string())));
    }
    assert_eq!(
        reader.recv().await,
        json!({"type":"subscribed","topics":["doc:1"],"recovered":true,"last_seq":{"doc:1":3}})
    );
    // A retransmission after the restart is a duplicate, not a new event.
    let mut publisher = Client::dev(&server, "writer").await;
    publisher.send(&publish("p-1", "1")).await;
    assert_eq!(
        publisher.recv().await,
        json!({"type":"ack","id":"p-1","seq":1,"epoch":server.epoch(),"duplicate":true})
    );
    assert_eq!(server.publish("doc:1", "UPDATED", "4", &json!(4)).await.unwrap().seq, 4);
    assert_eq!(reader.recv().await["seq"], 4, "the duplicate was not broadcast");
}

#[tokio::test]
async fn history_restored_after_a_restart_keeps_within_the_limits() {
    let dir = TempDir::new();
    let server = durable(dir.path()).await;
    let epoch = server.epoch();
    for n in 1..=5 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    server.shutdown().await;

    let server = durable_with(dir.path(), |config| config.history_len = 2).await;
    let subscribed = resubscribe(&server, 2, &epoch).await.recv().await;
    assert_eq!((subscribed["recovered"].as_bool(), subscribed["last_seq"]["doc:1"].as_u64()), (Some(false), Some(5)));
    let mut reader = resubscribe(&server, 3, &epoch).await;
    assert_eq!(reader.recv().await["seq"], 4);
    assert_eq!(reader.recv().await["seq"], 5);
    assert_eq!(reader.recv().await["recovered"], true);
}

#[tokio::test]
async fn a_topic_pruned_before_a_restart_numbers_on_from_above_its_old_position() {
    let dir = TempDir::new();
    let short = |config: &mut herald_server::ServerConfig| config.history_max_age = Duration::from_millis(100);
    let server = durable_with(dir.path(), short).await;
    for n in 1..=3 {
        server.publish("doc:1", "UPDATED", &n.to_string(), &json!(n)).await.unwrap();
    }
    eventually("the idle topic to be pruned", || server.metrics().topics == 0).await;
    server.shutdown().await;

    let server = durable_with(dir.path(), short).await;
    assert_eq!(server.metrics().topics, 0, "the pruned topic left the store too");
    assert_eq!(server.publish("doc:1", "UPDATED", "4", &json!(4)).await.unwrap().seq, 4, "3 is never given again");
}

#[tokio::test]
async fn an_unreadable_store_is_moved_aside_and_a_new_epoch_starts() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("herald.redb"), b"not a store at all, but long enough to look like one".repeat(200))
        .unwrap();
    let server = durable(dir.path()).await;
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("herald.redb.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "the bad file is kept for a look");
    assert_eq!(server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap().seq, 1);
}

#[tokio::test]
async fn a_store_replaced_by_an_older_copy_starts_a_new_epoch() {
    let dir = TempDir::new();
    let store = dir.path().join("herald.redb");
    let server = durable(dir.path()).await;
    let epoch = server.epoch();
    server.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap();
    server.shutdown().await;
    let backup = std::fs::read(&store).unwrap();

    let server = durable(dir.path()).await;
    assert_eq!(server.epoch(), epoch);
    server.publish("doc:1", "UPDATED", "2", &json!(2)).await.unwrap();
    server.shutdown().await;
    // Restored from the backup: seq 2 is not in it, and would be given again.
    std::fs::write(&store, backup).unwrap();

    let server = durable(dir.path()).await;
    assert_ne!(server.epoch(), epoch);
    let subscribed = resubscribe(&server, 1, &epoch).await.recv().await;
    assert_eq!(subscribed["recovered"], false, "{subscribed}");
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_holds_its_clients_until_the_first_lets_go() {
    let dir = TempDir::new();
    let first = durable(dir.path()).await;
    let epoch = first.epoch();
    assert_eq!(first.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap().seq, 1);

    let second = durable(dir.path()).await;
    let (status, body) = http(&second, "GET", "/healthz", &[], "").await;
    assert!(status == 503 && body.contains("holds the store"), "{status} {body}");
    let herald = (*second).clone();
    let publishing = tokio::spawn(async move { herald.publish("doc:1", "UPDATED", "2", &json!(2)).await });
    let url = second.ws_url();
    let connecting = tokio::spawn(async move { Client::connect(&format!("{url}?token=reader")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!publishing.is_finished() && !connecting.is_finished(), "both wait for the store");

    first.shutdown().await;
    assert_eq!(within("the held publish", publishing).await.unwrap().unwrap().seq, 2, "numbered on from the first");
    let mut reader = within("the held connection", connecting).await.unwrap();
    assert_eq!(reader.recv().await["epoch"], epoch.as_str());
    assert_eq!(second.epoch(), epoch);
    let body = json!({"type":"subscribe","topics":["doc:1"],"since":{"doc:1":0},"epoch":epoch});
    reader.send(&body.to_string()).await;
    assert_eq!(reader.recv().await["seq"], 1);
    assert_eq!(reader.recv().await["seq"], 2);
    assert_eq!(reader.recv().await["recovered"], true);
    assert_eq!(http(&second, "GET", "/healthz", &[], "").await.0, 200);
}

#[tokio::test]
async fn a_server_that_let_go_of_its_store_refuses_publishes() {
    let dir = TempDir::new();
    let server = durable(dir.path()).await;
    let herald = (*server).clone();
    server.shutdown().await;
    let error = herald.publish("doc:1", "UPDATED", "1", &json!(1)).await.unwrap_err().to_string();
    assert!(error.contains("shutting down") && error.contains("retry"), "{error}");
}

#[test]
fn a_data_dir_is_refused_with_redis_or_an_epoch() {
    let mut config = herald_server::ServerConfig::default();
    config.dev = true;
    config.data_dir = Some("/tmp/herald".into());
    config.redis = Some("redis://127.0.0.1:6379".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("keeps its history in Redis") && error.contains("--data-dir"), "{error}");
    config.redis = None;
    config.epoch = Some("e1".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("keeps the epoch") && error.contains("--epoch"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_sent_back_to_back_on_one_connection_keep_their_order_through_the_store() {
    let dir = TempDir::new();
    let server = durable_with(dir.path(), |config| config.rate_limit_per_sec = 0).await;
    let mut reader = Client::dev(&server, "reader").await;
    reader.subscribe(&["doc:1"]).await;
    // The store commits a batch with one wait.
    Client::dev(&server, "writer").await.publishes_keep_their_order(&mut reader, "doc:1", 200).await;
}
