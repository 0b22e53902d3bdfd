//! Tail one user's notifications, like `tail -f`: events, connection status,
//! and any non-Herald JSON the server sends (shown raw).
//!
//! Run with:
//!   cargo run --release -p herald-cli -- serve --dev
//!   cargo run --example notifications_tail -- u-42
//! then:
//!   cargo run --release -p herald-cli -- publish --token system --topic notification:u-42 \
//!     --event COMMENT_POSTED --entity-id c-1 --payload '{"text":"Anna commented"}'

use futures::StreamExt;
use herald::{AuthMode, Client, Update};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let user = std::env::args().nth(1).unwrap_or_else(|| "u-42".into());
    let url = std::env::var("HERALD_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080/ws".into());
    let client = Client::builder(url)
        .token(user.clone())
        // Herald's server accepts the token as a first message, which keeps it out of URLs and logs.
        .auth_mode(AuthMode::FirstMessage)
        .on_status(|status| eprintln!("[{status}]"))
        .on_raw(|json| eprintln!("[raw] {json}"))
        .connect()?;
    let mut notifications = client.subscribe(&format!("notification:{user}")).await?;
    loop {
        tokio::select! {
            update = notifications.next() => match update {
                Some(Update::Event(event)) => {
                    let text = event.payload_as::<serde_json::Value>()?;
                    println!("{} {} {}", event.data.timestamp, event.event, text);
                }
                Some(Update::Resync { .. }) => println!("(some notifications were missed while offline: reload the inbox)"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.close().await;
    Ok(())
}
