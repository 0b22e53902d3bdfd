//! Reading the two numbers a benchmark needs from an event frame without
//! parsing all of it: the generator shares the machine with the server it
//! measures, so every cycle it spends per delivery is taken from the server.

use memchr::memmem::FinderRev;

/// Finds `seq` and the publisher's send time in event frames. The searchers
/// are built once: building one per frame cost more than the search.
pub(crate) struct EventFields {
    seq: FinderRev<'static>,
    sent_ns: FinderRev<'static>,
}

impl EventFields {
    pub(crate) fn new() -> Self {
        Self { seq: FinderRev::new(br#""seq":"#), sent_ns: FinderRev::new(br#""sent_ns":"#) }
    }

    /// `(seq, sent_ns)` of an event frame; `None` for anything else.
    pub(crate) fn read(&self, text: &str) -> Option<(u64, u64)> {
        Some((last_number(&self.seq, text)?, last_number(&self.sent_ns, text)?))
    }
}

/// The unsigned integer after the last match of `key` in `text`.
fn last_number(key: &FinderRev<'_>, text: &str) -> Option<u64> {
    let at = key.rfind(text.as_bytes())? + key.needle().len();
    let digits = text[at..].trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::EventFields;

    #[test]
    fn finds_seq_and_send_time() {
        let fields = EventFields::new();
        let frame = r#"{"topic":"bench:1","event":"UPDATED","data":{"entity_id":"1","payload":{"sent_ns":123456,"seq":9},"timestamp":"x"},"seq":42}"#;
        assert_eq!(fields.read(frame), Some((42, 123456)));
        assert_eq!(fields.read(r#"{"type":"pong"}"#), None);
        assert_eq!(fields.read(r#"{"data":{"payload":{"sent_ns": 5}},"seq": 7}"#), Some((7, 5)));
        assert_eq!(fields.read(r#"{"seq":7}"#), None, "no send time: not a bench event");
    }
}
