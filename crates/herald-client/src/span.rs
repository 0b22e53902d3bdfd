//! A `tracing` span per event, so what an application logs while handling
//! an event names that event and the publisher's `trace_id`.

use herald_protocol::Event;
use tracing::{Span, field};

/// `event.span()`: the [`tracing`] span to handle an event in.
///
/// ```no_run
/// # async fn run(mut gifts: herald_client::Subscription) {
/// use futures::StreamExt;
/// use herald_client::{EventSpan, Update};
///
/// while let Some(Update::Event(event)) = gifts.next().await {
///     let _span = event.span().entered();
///     // Logged with topic, event, entity_id, seq and the publisher's trace_id.
///     tracing::info!("cache entry invalidated");
/// }
/// # }
/// ```
pub trait EventSpan {
    /// An `INFO` span named `herald.event` (target `herald`) with fields
    /// `topic`, `event`, `entity_id`, and `seq` and `trace_id` when the event
    /// has them. The client logs each event's receipt inside it (at `DEBUG`).
    /// A filter that leaves target `herald` at `WARN` or above disables the
    /// span and its fields: enable it with e.g. `RUST_LOG=info,herald=info`.
    fn span(&self) -> Span;
}

impl EventSpan for Event {
    fn span(&self) -> Span {
        let span = tracing::info_span!(
            target: "herald",
            "herald.event",
            topic = %self.topic,
            event = %self.event,
            entity_id = %self.data.entity_id,
            seq = field::Empty,
            trace_id = field::Empty,
        );
        if let Some(seq) = self.seq {
            span.record("seq", seq);
        }
        if let Some(trace_id) = &self.trace_id {
            span.record("trace_id", field::display(trace_id));
        }
        span
    }
}
