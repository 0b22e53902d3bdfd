//! `herald demo`: Herald end to end in one terminal.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use herald_client::{Client, Status, Update};
use herald_server::{Epoch, Server};

/// Run a server, a publisher and a listener in one process and show events
/// flowing through faults: after a network blip the listener reconnects and
/// replays what it missed by `seq`; after a restart that lost the history it
/// is told to resync.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long to run.
    #[arg(long, default_value = "12s", value_parser = crate::duration::parse)]
    duration: Duration,
    /// Events published per second.
    #[arg(long, default_value_t = 4)]
    rate: u32,
}

pub(crate) fn run(args: DemoArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let log = move |who: &str, line: String| println!("{:6.2}s  {who:<9} {line}", started.elapsed().as_secs_f64());
    let mut server = Server::builder()
        .dev(true)
        .shutdown_spread(Duration::from_millis(500))
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    log("server", format!("listening on {} (dev mode)", server.ws_url()));

    let listener = Client::builder(server.ws_url())
        .token("listener")
        .on_status(move |status| log("listener", format!("status: {status}")))
        .connect()
        .map_err(|e| e.to_string())?;
    let mut gifts = listener.subscribe("gift-list:family-123").await.map_err(|e| e.to_string())?;
    listener.connected().await.map_err(|e| e.to_string())?;

    let publisher = Client::builder(server.ws_url()).token("backend").connect().map_err(|e| e.to_string())?;
    let interval = Duration::from_secs(1) / args.rate.max(1);
    let publishing = tokio::spawn(async move {
        let mut n = 0u32;
        loop {
            n += 1;
            let gift = serde_json::json!({"id": format!("gift-{n}"), "bought": n.is_multiple_of(2)});
            match publisher.publish("gift-list:family-123", "UPDATED", format!("gift-{n}"), &gift).await {
                Ok(ack) => log("publisher", format!("UPDATED gift-{n} acked as seq {}", ack.seq.unwrap_or(0))),
                Err(error) => log("publisher", format!("publish failed: {error}")),
            }
            tokio::time::sleep(interval).await;
        }
    });

    let end = tokio::time::sleep(args.duration);
    tokio::pin!(end);
    let restart_at = tokio::time::sleep(args.duration / 3);
    tokio::pin!(restart_at);
    let lose_history_at = tokio::time::sleep(args.duration * 2 / 3);
    tokio::pin!(lose_history_at);
    let (mut restarted, mut lost) = (false, false);
    loop {
        tokio::select! {
            update = gifts.next() => match update {
                Some(Update::Event(event)) => log(
                    "listener",
                    format!("{} {} seq {} -> invalidate cache of gift-list:family-123", event.event, event.data.entity_id, event.seq.unwrap_or(0)),
                ),
                Some(Update::Resync { topic, reason }) => {
                    log("listener", format!("RESYNC {topic} ({reason:?}): events were missed, refetch everything"))
                }
                Some(_) => {}
                None => break,
            },
            () = &mut restart_at, if !restarted => {
                restarted = true;
                log("network", "blip: every connection drops without a close frame".into());
                server.disconnect_all(1006);
                // The backend keeps announcing changes through the server's API meanwhile.
                for n in 1..=3 {
                    let seq = server
                        .publish("gift-list:family-123", "ADDED", &format!("gift-new-{n}"), &serde_json::json!({"n": n}))
                        .map_err(|e| e.to_string())?;
                    log("backend", format!("ADDED gift-new-{n} as seq {seq} while the listener is away"));
                }
            }
            () = &mut lose_history_at, if !lost => {
                lost = true;
                log("server", "restart that loses the history (new epoch)".into());
                server.restart(Epoch::New).await.map_err(|e| e.to_string())?;
                log("server", "back".into());
            }
            () = &mut end => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    publishing.abort();
    listener.close().await;
    if let Status::Disconnected { reason } = &*listener.status().borrow() {
        log("listener", format!("stopped: {reason}"));
    }
    server.shutdown().await;
    Ok(())
}
