//! Size limits of protocol v1.
//!
//! Servers and clients enforce the same numbers, so a message one side accepts
//! is never refused by the other for its size.

/// Largest text frame, in bytes, either side sends or accepts.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Largest encoded `data.payload` of an event, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 48 * 1024;

/// Longest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Most topics in one `subscribe` or `unsubscribe` message.
pub const MAX_TOPICS_PER_MESSAGE: usize = 256;

/// Longest custom event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 64;

/// Longest `entity_id`, `user_id`, `tenant_id` or `trace_id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Largest encoded presence `meta` of one user in one topic, in bytes.
pub const MAX_PRESENCE_META_BYTES: usize = 512;

/// Longest publish `id`, in bytes.
pub const MAX_PUBLISH_ID_BYTES: usize = 128;
