//! `herald publish`: publish one event and wait for the ack.

use std::time::Duration;

use clap::Args;

use crate::connect::ConnectArgs;

/// Publish one event; exits 0 once the server acked it (or, with --no-ack, once it is sent).
///
/// Example:
///   herald publish --token dev-user --topic gift-list:family-123 --event UPDATED \
///     --entity-id gift-7 --payload '{"bought":true}'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The concrete topic, e.g. `gift-list:family-123`.
    #[arg(long)]
    topic: String,
    /// ADDED, UPDATED, DELETED, STATUS_CHANGED or a custom name.
    #[arg(long, default_value = "UPDATED")]
    event: String,
    /// The id of the changed resource.
    #[arg(long)]
    entity_id: String,
    /// The payload, as JSON.
    #[arg(long, default_value = "null")]
    payload: String,
    /// Give up if no ack arrives within this long.
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse)]
    timeout: Duration,
    /// Do not wait for the server's ack: exit once the event is sent. For plain (seed-style)
    /// servers, which do not acknowledge publishes; nothing then says the event arrived.
    #[arg(long)]
    no_ack: bool,
}

pub(crate) fn run(args: PublishArgs) -> Result<(), String> {
    let payload: serde_json::Value =
        serde_json::from_str(&args.payload).map_err(|e| format!("--payload is not JSON: {e}"))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let client = args.connect.builder().publish_timeout(args.timeout).connect().map_err(|e| e.to_string())?;
        let (url, wait) = (&args.connect.url, args.timeout);
        let unreachable =
            || format!("could not connect to {url} within {wait:?}; is the server up, and the URL right?");
        if args.no_ack {
            tokio::time::timeout(wait, client.connected())
                .await
                .map_err(|_| unreachable())?
                .map_err(|e| e.to_string())?;
            let publish = client.publish(&args.topic, args.event.as_str(), args.entity_id.as_str(), &payload);
            tokio::pin!(publish);
            // One poll hands the event to the client's task; closing after it
            // sends the event, then the close frame.
            let _ = futures::poll!(publish.as_mut());
            client.close().await;
            println!("{}", serde_json::json!({"sent": true}));
            return Ok(());
        }
        let publish = client.publish(&args.topic, args.event.as_str(), args.entity_id.as_str(), &payload);
        let no_ack = || {
            if matches!(*client.status().borrow(), herald_client::Status::Connected { .. }) {
                format!(
                    "connected to {url}, but it did not acknowledge the publish within {wait:?}: a plain (seed-style) \
                     server never does; pass --no-ack to send without waiting"
                )
            } else {
                unreachable()
            }
        };
        let ack = match tokio::time::timeout(wait, publish).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(herald_client::Error::Timeout { .. })) | Err(_) => return Err(no_ack()),
            Ok(Err(error)) => return Err(error.to_string()),
        };
        println!("{}", serde_json::json!({"id": ack.id.0, "seq": ack.seq, "duplicate": ack.duplicate}));
        client.close().await;
        Ok(())
    })
}
