//! Reading the two numbers a benchmark needs from an event frame without
//! parsing all of it.

/// The unsigned integer after the last `"key":` in `text`.
pub(crate) fn last_number(text: &str, key: &str) -> Option<u64> {
    let at = text.rfind(key)? + key.len();
    let digits = text[at..].trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::last_number;

    #[test]
    fn finds_seq_and_send_time() {
        let frame = r#"{"topic":"bench:1","event":"UPDATED","data":{"entity_id":"1","payload":{"sent_ns":123456,"seq":9},"timestamp":"x"},"seq":42}"#;
        assert_eq!(last_number(frame, r#""seq":"#), Some(42));
        assert_eq!(last_number(frame, r#""sent_ns":"#), Some(123456));
        assert_eq!(last_number(r#"{"type":"pong"}"#, r#""seq":"#), None);
        assert_eq!(last_number(r#"{"seq": 7}"#, r#""seq":"#), Some(7));
    }
}
