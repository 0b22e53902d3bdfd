//! Tail one user's notifications, like `tail -f`: events, connection status,
//! and any non-Herald JSON the server sends (shown raw).
//!
//! Run with:
//!   cargo run --release -p herald-cli -- serve --dev
//!   cargo run --example notifications_tail -- u-42
//! then:
//!   cargo run --release -p herald-cli -- publish --token system --topic notification:u-42 \
//!     --event COMMENT_POSTED --entity-id c-1 --payload '{"text":"Anna commented"}'

use std::io::Write;

use futures::StreamExt;
use herald::{AuthMode, Client, Subscription, Update};

/// A client for `user`, reporting its status and raw messages on stderr.
pub(crate) fn connect(url: String, user: &str) -> Result<Client, herald::Error> {
    Client::builder(url)
        .token(user)
        // Herald's server accepts the token as a first message, which keeps it out of URLs and logs.
        .auth_mode(AuthMode::FirstMessage)
        .on_status(|status| eprintln!("[{status}]"))
        .on_raw(|json| eprintln!("[raw] {json}"))
        .connect()
}

/// Writes one line per notification to `out` until the subscription ends.
pub(crate) async fn tail(
    mut notifications: Subscription,
    mut out: impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    while let Some(update) = notifications.next().await {
        match update {
            Update::Event(event) => {
                let text = event.payload_as::<serde_json::Value>()?;
                writeln!(out, "{} {} {}", event.data.timestamp, event.event, text)?;
            }
            Update::Resync { .. } => writeln!(out, "(some notifications were missed while offline: reload the inbox)")?,
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let user = std::env::args().nth(1).unwrap_or_else(|| "u-42".into());
    let url = std::env::var("HERALD_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/ws".into());
    let client = connect(url, &user)?;
    let notifications = client.subscribe(&format!("notification:{user}")).await?;
    tokio::select! {
        result = tail(notifications, std::io::stdout()) => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    client.close().await;
    Ok(())
}
