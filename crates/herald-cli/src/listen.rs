//! `herald listen`: print events of topics as JSON lines.

use clap::Args;
use futures::StreamExt;
use herald_client::{Status, Update};

use crate::connect::ConnectArgs;

/// Print every event of the given topics as one JSON line on stdout.
///
/// Status changes go to stderr. A resync (events may have been missed, e.g.
/// after an outage longer than the server's history) is printed on stdout as
/// `{"type":"resync","topic":..,"reason":..}` so scripts can refetch.
///
/// Example:
///   herald listen --token dev-user --topic gift-list:family-123 --topic 'user:*'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// A topic (`resource:id`) or wildcard (`resource:*`); repeat for several.
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Also print JSON messages that are not Herald messages (from plain broadcast servers).
    #[arg(long)]
    raw: bool,
}

pub(crate) fn run(args: ListenArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let mut builder = args.connect.builder().on_status(|status| eprintln!("herald: {status}"));
        if args.raw {
            builder = builder.on_raw(|json| println!("{json}"));
        }
        let client = builder.connect().map_err(|e| e.to_string())?;
        let mut streams = Vec::new();
        for topic in &args.topics {
            streams.push(client.subscribe(topic).await.map_err(|e| e.to_string())?);
        }
        let mut updates = futures::stream::select_all(streams);
        let mut status = client.status();
        let mut printed = 0u64;
        loop {
            tokio::select! {
                update = updates.next() => match update {
                    Some(Update::Event(event)) => {
                        println!("{}", event.encode());
                        printed += 1;
                        if args.count.is_some_and(|count| printed >= count) {
                            break;
                        }
                    }
                    Some(Update::Resync { topic, reason }) => {
                        println!("{}", serde_json::json!({"type": "resync", "topic": topic, "reason": format!("{reason:?}")}));
                    }
                    Some(Update::Rejected(error)) => return Err(format!("subscription refused: {}", error.message)),
                    Some(_) => {}
                    None => break,
                },
                changed = status.changed() => {
                    if changed.is_err() || matches!(&*status.borrow(), Status::Disconnected { .. }) {
                        break;
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        // Streams also end when the client stops: say why, unless it stopped because we are done.
        if let Status::Disconnected { reason } = &*client.status().borrow() {
            return Err(reason.to_string());
        }
        client.close().await;
        Ok(())
    })
}
