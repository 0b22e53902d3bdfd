// What React developers asked for: an idle client until there is a user,
// relative URLs, tokens kept out of URLs and the console, a debug log of the
// session's decisions, a connection released in a background tab, the
// latest event from useTopic, and invalidations coalesced per query key.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from './support/eventually.js';
import { startHarness } from './support/harness.js';
import { uniqueId, uniqueTopic } from './support/topics.js';

let harness;
before(async () => {
  harness = await startHarness();
});
after(() => harness?.close());

const connected = (status) => status?.state === 'connected';

test('token: null and enabled: false keep the client idle, without a connection, until there is a user', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const start = await testbed.state();
  const url = testbed.addresses.gated_ws;
  const topic = uniqueTopic('gift-list');
  await app.mount('topic', { url, topic, options: { token: null } });
  await app.waitForJson('status', 'idle', (status) => status.state === 'idle');
  await app.update({ url, topic, options: { token: 'later', enabled: false } });
  await app.waitForJson('status', 'still idle', (status) => status.state === 'idle');
  assert.equal((await testbed.state()).gate_accepted, start.gate_accepted, 'no connection while idle');

  await app.update({ url, topic, options: { token: 'now-a-user' } });
  await app.waitForJson('status', 'connected once there is a token', connected);
  await testbed.waitForState('one connection', (state) => state.gate_accepted === start.gate_accepted + 1);
});

test("a relative URL follows the page, and the token stays out of URLs and the console, debug log included", async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const topic = uniqueTopic('gift-list');
  const secret = `secret-${uniqueId()}`;
  // The test app's server passes /ws through to the testbed.
  await app.mount('topic', { url: '/ws', topic, label: 'relative', options: { token: secret, debug: true, backoff: { initialMs: 50, maxMs: 200 } } });
  await app.waitForJson('status', 'connected through the page origin', connected);
  await testbed.waitForState('subscribed', (state) => state.subscriptions > 0);
  await eventually('the debug log to show the subscription', () => app.console, (lines) => lines.some((line) => line.includes(`[herald] subscribed to ${topic}`)));

  await testbed.restart('same');
  await eventually(
    'the debug log to show the reconnect, the resubscription from its position and the recovery',
    () => app.console,
    (lines) =>
      lines.some((line) => /\[herald\] reconnecting in \d+ ms \(attempt \d+\)/.test(line)) &&
      lines.some((line) => line.includes(`[herald] subscribing to ${topic}, recovering from`)) &&
      lines.some((line) => line.includes(`[herald] subscribed to ${topic}: recovered every missed event`)),
  );
  const origin = new URL(harness.server.url);
  assert.ok(
    app.console.some((line) => line.includes(`[herald] connecting (websocket) to ws://${origin.host}/ws`)),
    `resolved against the page: ${app.console.join('\n')}`,
  );
  assert.ok(app.console.some((line) => line.includes('[herald] sending the token (auth)')), 'first-message auth by default');
  const leaks = app.console.filter((line) => line.includes(secret));
  assert.deepEqual(leaks, [], 'the token never reaches the console');
});

/** Makes the page hidden or visible, as switching tabs does. */
const setVisibility = (app, state) =>
  app.evaluate((visibility) => {
    Object.defineProperty(document, 'visibilityState', { value: visibility, configurable: true });
    Object.defineProperty(document, 'hidden', { value: visibility === 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);

test('backgroundTimeoutMs releases the connection of a hidden tab, and recovers what it missed once visible', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const topic = uniqueTopic('gift-list');
  const start = await testbed.state();
  await app.mount('topic', { url: testbed.addresses.ws, topic, label: 'tab', options: { backgroundTimeoutMs: 200 } });
  await app.waitForJson('status', 'connected', connected);
  await testbed.waitForState('subscribed', (state) => state.subscriptions === start.subscriptions + 1);
  const first = await testbed.publish(topic, { entityId: 'before' });
  await app.waitForJson('messages', 'the first event', (list) => list.length === 1);

  await setVisibility(app, 'hidden');
  await testbed.waitForState('the hidden tab released its connection', (state) => state.connections === start.connections);
  const missed = [];
  for (const entityId of ['hidden-1', 'hidden-2', 'hidden-3']) missed.push(await testbed.publish(topic, { entityId }));

  await setVisibility(app, 'visible');
  const messages = await app.waitForJson('messages', 'the missed events', (list) => list.length === 4);
  assert.deepEqual(
    messages.map(({ message }) => [message.type, message.seq]),
    [first, ...missed].map((seq) => [undefined, seq]),
    'every missed event once, in order, and no resync',
  );
});

test('useTopic without a handler returns the latest event', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const topic = uniqueTopic('gift-list');
  const start = await testbed.state();
  await app.mount('latest', { url: testbed.addresses.ws, topic });
  await testbed.waitForState('subscribed', (state) => state.subscriptions === start.subscriptions + 1);
  assert.equal(await app.json('latest'), null);
  await testbed.publish(topic, { entityId: 'first' });
  const seq = await testbed.publish(topic, { entityId: 'second' });
  await app.waitForJson('latest', 'the second event', (latest) => latest?.[0] === 'second' && latest[1] === seq);
});

test('100 events while a refetch is in flight cost one more refetch, not 100', async (t) => {
  const { testbed, server } = harness;
  const app = await harness.open(t);
  const list = uniqueId();
  const path = `/api/slow/${list}`;
  const start = await testbed.state();
  await app.mount('coalesce', { url: testbed.addresses.ws, list });
  await testbed.waitForState('subscribed', (state) => state.subscriptions === start.subscriptions + 1);
  // The first fetch, and the one the subscription going live asks for.
  await app.waitForJson('coalesced', 'the fetch after live', (value) => value.fetch === 2);

  // Refetches wait until released: the first event's refetch is in flight for the whole burst.
  server.hold(path);
  try {
    // 100 events at about 100 per second.
    for (let n = 0; n < 100; n++) {
      await testbed.publish(`gift-list:${list}`, { entityId: `e${n}` });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await app.waitForJson('coalesced', 'all 100 events received', (value) => value.events === 100);
    assert.equal(server.hits(path), 3, 'one refetch in flight during the burst');
  } finally {
    server.release();
  }
  await app.waitForJson('coalesced', 'the refetch after the burst', (value) => value.fetch === 4);
  // Nothing more is pending: another event makes exactly one more.
  await testbed.publish(`gift-list:${list}`, { entityId: 'after' });
  await app.waitForJson('coalesced', 'one refetch for one event', (value) => value.fetch === 5);
  assert.equal(server.hits(path), 5);
});
