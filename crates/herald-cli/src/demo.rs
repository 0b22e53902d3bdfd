//! `herald demo`: Herald end to end in one terminal, or in a browser with `--web`.

mod web;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Args;
use futures::StreamExt;
use herald_client::{Client, Status, Update};
use herald_server::{Epoch, Server};

/// Run a server, a publisher and a listener in one process and show events
/// flowing through faults: after a network blip the listener reconnects and
/// replays what it missed by `seq`; after a restart that lost the history it
/// is told to resync.
///
/// With `--web`, serve the React web demo (build it first: `cargo xtask demo
/// --web` does both): a shared gift list whose open pages stay in sync
/// through Herald, with buttons that take the Herald server down.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long to run [default: 12s in the terminal, until Ctrl-C with --web].
    #[arg(long, value_parser = crate::duration::parse)]
    duration: Option<Duration>,
    /// Events published per second (terminal demo).
    #[arg(long, default_value_t = 4)]
    rate: u32,
    /// Serve the web demo instead of the terminal one.
    #[arg(long)]
    web: bool,
    /// Where the web demo's page and API listen (port 0 picks a free one); Herald gets a port of its own.
    #[arg(long, default_value = "127.0.0.1:8080", requires = "web")]
    addr: String,
    /// The built web demo.
    #[arg(long = "static", value_name = "DIR", default_value = "web-demo/dist", requires = "web")]
    static_dir: PathBuf,
    /// How often the simulated shopper changes the list; 0s turns it off.
    #[arg(long, default_value = "4s", value_parser = crate::duration::parse, requires = "web")]
    shopper_every: Duration,
    /// How long the page's "outage" button takes Herald down.
    #[arg(long, default_value = "6s", value_parser = crate::duration::parse, requires = "web")]
    outage: Duration,
}

pub(crate) fn run(args: DemoArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    if args.web {
        let DemoArgs { duration, addr, static_dir, shopper_every, outage, .. } = args;
        return runtime.block_on(web::run(web::WebArgs { addr, static_dir, shopper_every, outage, duration }));
    }
    runtime.block_on(demo(args.duration.unwrap_or(Duration::from_secs(12)), args.rate))
}

async fn demo(duration: Duration, rate: u32) -> Result<(), String> {
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
    let interval = Duration::from_secs(1) / rate.max(1);
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

    let end = tokio::time::sleep(duration);
    tokio::pin!(end);
    let restart_at = tokio::time::sleep(duration / 3);
    tokio::pin!(restart_at);
    let lose_history_at = tokio::time::sleep(duration * 2 / 3);
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
                        .await
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
