// Topics, checked in JavaScript so that a wrong one throws at once, even
// while the wasm is loading, and in the testing kit: the grammar of
// herald_protocol::Topic (test/testing.test.js holds it to the cases of
// topic.rs's own tests).

const TOPIC = /^[A-Za-z0-9._-]+:(\*|[A-Za-z0-9._@+=:~-]+)$/;
const MAX_TOPIC_BYTES = 256;

/** Throws an `Error` that names `topic` unless it is `resource-type:identifier` or `resource-type:*`. */
export function checkTopic(topic) {
  if (typeof topic !== 'string' || topic.length > MAX_TOPIC_BYTES || !TOPIC.test(topic)) {
    throw new Error(
      `topic ${JSON.stringify(topic)} is not a topic: use resource-type:identifier (letters, digits, - _ . and in the identifier also @ + = : ~) or resource-type:*, at most ${MAX_TOPIC_BYTES} bytes`,
    );
  }
}

/** Whether a subscription to `pattern` receives messages of `topic` (a wildcard matches every identifier). */
export function matches(pattern, topic) {
  if (pattern === topic) return true;
  return pattern.endsWith(':*') && topic.startsWith(pattern.slice(0, -1));
}
