//! WebSocket close codes used by Herald, and the reconnect hint a close reason may carry.

/// Normal closure: the side that closed is done. Clients closed by the user stop.
pub const NORMAL: u16 = 1000;
/// Going away: the server is restarting or shutting down. Reconnect promptly
/// (after the advised delay, if the reason carries one).
pub const GOING_AWAY: u16 = 1001;
/// The connection dropped without a close frame (never sent on the wire).
pub const ABNORMAL: u16 = 1006;
/// A frame was larger than [`MAX_FRAME_BYTES`](crate::limits::MAX_FRAME_BYTES).
pub const TOO_BIG: u16 = 1009;
/// Missing, bad or expired token. Fetch a fresh token once; if that is refused
/// too, stop and report an authentication error.
pub const UNAUTHORIZED: u16 = 4001;
/// Not allowed: as a close code, nothing this connection asked for is allowed.
/// Do not retry.
pub const FORBIDDEN: u16 = 4003;
/// Too many messages: the client ignored rate-limit errors. Back off.
pub const RATE_LIMITED: u16 = 4008;
/// The client read too slowly and the server dropped it rather than buffer
/// without bound. Reconnect and recover.
pub const TOO_SLOW: u16 = 4009;

/// The key in a close reason that advises a reconnect delay in milliseconds,
/// e.g. `"server restart; retry_after_ms=2500"`.
pub const RETRY_AFTER_KEY: &str = "retry_after_ms=";

/// Reads a server-advised reconnect delay (milliseconds) from a close reason.
///
/// ```
/// use herald_protocol::close::retry_after_ms;
/// assert_eq!(retry_after_ms("server restart; retry_after_ms=2500"), Some(2500));
/// assert_eq!(retry_after_ms("bye"), None);
/// ```
pub fn retry_after_ms(reason: &str) -> Option<u64> {
    // A window scan rather than `str::find`, whose searcher the browser build would carry for this alone.
    let key = RETRY_AFTER_KEY.as_bytes();
    let start = reason.as_bytes().windows(key.len()).position(|window| window == key)? + key.len();
    let digits = reason[start..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// Writes a close reason carrying a reconnect delay, within the 123 bytes a
/// close frame allows.
///
/// ```
/// use herald_protocol::close::{retry_after_ms, with_retry_after};
/// let reason = with_retry_after("server restart", 2500);
/// assert_eq!(retry_after_ms(&reason), Some(2500));
/// ```
pub fn with_retry_after(text: &str, delay_ms: u64) -> String {
    let suffix = format!("; {RETRY_AFTER_KEY}{delay_ms}");
    let mut keep = text.len().min(123 - suffix.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &text[..keep])
}
