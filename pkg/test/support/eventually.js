// Waiting with a deadline: every wait in the tests goes through here, so a
// broken feature fails with what was expected and what was last seen
// instead of hanging.

const POLL_MS = 50;

/**
 * Calls `probe` until `accept` holds for what it returns, and returns that.
 * Throws after `timeoutMs`, naming `what` and the last value seen (or the
 * last error the probe threw).
 */
export async function eventually(what, probe, accept = Boolean, { timeoutMs = 10_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (accept(value)) return value;
      last = JSON.stringify(value);
    } catch (error) {
      last = `an error: ${error.message}`;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
