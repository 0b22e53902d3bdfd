//! `herald serve --redis` nodes as they are run: presence spans them, and a
//! node killed with SIGKILL (no goodbye) has its users leave the other
//! nodes' presence once it has been silent for `--presence-ttl`.

use std::process::Command;

use herald_test_support::{
    Client, RedisServer,
    process::{self, Running, free_addr},
};
use serde_json::{Value, json};

/// A node of the cluster on `redis`, once it listens; its WebSocket URL.
fn node(redis: &RedisServer) -> (Running, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(["serve", "--dev", "--presence-ttl", "1s", "--addr", &free_addr(), "--redis", &redis.url()]);
    process::serve(command)
}

/// `user` on the node at `url`, subscribed to `topic` with presence; the members it was given.
async fn present(url: &str, user: &str, topic: &str) -> (Client, Value) {
    let mut client = Client::connect(&format!("{url}?token={user}")).await;
    assert_eq!(client.recv().await["type"], "connected");
    client.send(&json!({"type":"subscribe","topics":[topic],"presence":true}).to_string()).await;
    assert_eq!(client.recv().await["type"], "subscribed");
    let presence = client.recv().await;
    assert_eq!(presence["type"], "presence", "{presence}");
    (client, presence["members"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_users_leave_the_other_nodes_presence_within_the_ttl() {
    let redis = RedisServer::start().await;
    let ((_a, on_a), (b, on_b)) = (node(&redis), node(&redis));
    let (mut alice, _) = present(&on_a, "alice", "room:1").await;
    let (_bob, members) = present(&on_b, "bob", "room:1").await;
    if members != json!(["alice", "bob"]) {
        assert_eq!(members, json!(["bob"]), "bob's node had not heard of alice yet");
    }
    alice.presence_until("room:1", "joined", "bob").await;

    // SIGKILL: node b says nothing; alice's node stops hearing from it.
    drop(b);
    let diff = alice.presence_until("room:1", "left", "bob").await;
    assert_eq!(diff["joined"], json!([]), "{diff}");
}
