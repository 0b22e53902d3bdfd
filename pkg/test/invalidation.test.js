// Cache invalidation as seed 000 describes it: an event makes TanStack
// Query refetch (SWR revalidate), and so does a resync, the client's word
// that events may have been missed, and the subscription's first `live`
// (what loaded before it may have missed a change); a reconnect that
// recovered does not. The fake REST API counts the refetches.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from './support/eventually.js';
import { startHarness } from './support/harness.js';
import { uniqueId } from './support/topics.js';

let harness;
before(async () => {
  harness = await startHarness();
});
after(() => harness?.close());

/** Mounts `scenario` and waits until the server has its one subscription. */
async function mounted(t, scenario, props) {
  const { testbed } = harness;
  const app = await harness.open(t);
  const start = await testbed.state();
  await app.mount(scenario, { url: testbed.addresses.ws, ...props });
  await testbed.waitForState('the subscription', (state) => state.subscriptions === start.subscriptions + 1);
  return app;
}

/** Waits until the fake API has served `path` exactly `count` times. */
const fetched = (path, count, why) =>
  eventually(`${path} fetched ${count} times (${why})`, () => harness.server.hits(path), (hits) => hits === count);

test('the README example refetches on an event and after a restart that lost the history', async (t) => {
  const app = await mounted(t, 'readme', {});
  const path = '/api/gifts/family-123';
  const shown = (text, why) =>
    eventually(`the list to show "${text}" (${why})`, () => app.evaluate(() => document.querySelector('ul')?.textContent), (shownText) => shownText === text);
  await fetched(path, 2, 'the first render, then the subscription going live');
  await shown('Scarf, fetch 2', 'the fetch after live');

  await harness.testbed.publish('gift-list:family-123', { entityId: 'gift-7', payload: { bought: true } });
  await fetched(path, 3, 'the event');
  await shown('Scarf, fetch 3', 'the refetch');

  // A new epoch: the server cannot replay what the client may have missed, so the client says resync.
  await harness.testbed.restart('new');
  await fetched(path, 4, 'the resync after the restart');
  await shown('Scarf, fetch 4', 'the refetch after the resync');
});

test('a queryKey function invalidates the entity of an event, and everything of the topic on a resync', async (t) => {
  const list = uniqueId();
  const app = await mounted(t, 'queryKeys', { list });
  const fetches = (a, b) => (gifts) => gifts.a === a && gifts.b === b;
  await app.waitForJson('gifts', 'both fetched again once live', fetches(2, 2));

  await harness.testbed.publish(`gift-list:${list}`, { entityId: 'a' });
  await app.waitForJson('gifts', 'a refetched, b not', fetches(3, 2));
  await harness.testbed.publish(`gift-list:${list}`, { entityId: 'b' });
  await app.waitForJson('gifts', 'b refetched, a not again', fetches(3, 3));

  await harness.testbed.restart('new');
  const gifts = await app.waitForJson('gifts', 'both refetched after the resync', fetches(4, 4));
  assert.deepEqual(gifts.log, ['resync subscribed', 'event a', 'event b', 'resync not_recovered']);
});

test('useRevalidateOnEvent makes SWR revalidate a key on an event, and every matching key on a resync', async (t) => {
  const list = uniqueId();
  const app = await mounted(t, 'swr', { list });
  const fetches = (a, b) => (gifts) => gifts.a === a && gifts.b === b;
  await app.waitForJson('gifts', 'both revalidated once live', fetches(2, 2));

  await harness.testbed.publish(`gift-list:${list}`, { entityId: 'b' });
  await app.waitForJson('gifts', 'b revalidated, a not', fetches(2, 3));

  await harness.testbed.restart('new');
  await app.waitForJson('gifts', 'both revalidated after the resync', fetches(3, 4));
  assert.equal(harness.server.hits(`/api/swr/${list}/a`), 3);
});

/**
 * Mounts the `fresh` scenario on `url`; its list is `/api/fresh/<list>` and
 * its topic `gift-list:<list>`, or `topic(list)`.
 */
async function fresh(t, url, topic) {
  const app = await harness.open(t);
  const list = uniqueId();
  await app.mount('fresh', { url, list, topic: topic?.(list) });
  return { app, list, path: `/api/fresh/${list}` };
}

test('a change published between the query loading and the server confirming the subscription still reaches the list', async (t) => {
  const { testbed } = harness;
  // The gate refuses the WebSocket: the query loads, the subscription cannot go live yet.
  await testbed.block(true);
  t.after(() => testbed.block(false));
  const { app, list, path } = await fresh(t, testbed.addresses.gated_ws);
  const loaded = await app.waitForJson('fresh', 'the list loaded', (value) => value.fetch === 1);
  assert.equal(loaded.status, 'subscribing');
  await testbed.publish(`gift-list:${list}`, { entityId: 'meanwhile' });
  const before = harness.server.hits(path);

  await testbed.block(false);
  const shown = await app.waitForJson('fresh', 'the list refetched once live', (value) => value.status === 'live' && value.fetch > before);
  assert.equal(shown.lives, 1);
  assert.equal(harness.server.hits(path), before + 1, 'one refetch: the one the first live asked for');
});

test('a reconnect that recovered refetches nothing; the next event refetches once', async (t) => {
  const { testbed } = harness;
  const { app, list, path } = await fresh(t, testbed.addresses.ws);
  await app.waitForJson('fresh', 'live, and refetched once for it', (value) => value.status === 'live' && value.fetch === 2);

  await testbed.disconnect(1006);
  await app.waitForJson('status-history', 'the reconnect', (history) => history.some((status) => status.state === 'reconnecting'));
  await app.waitForJson('fresh', 'live again after recovering', (value) => value.lives === 2 && value.status === 'live');
  assert.equal(harness.server.hits(path), 2, 'no refetch for the recovered reconnect');

  // Had the reconnect refetched, this would be fetch 4 (or a 5th after it).
  await testbed.publish(`gift-list:${list}`, { entityId: 'after' });
  await app.waitForJson('fresh', 'the refetch for the event', (value) => value.fetch === 3);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(harness.server.hits(path), 3);
});

test('a wildcard that reconnects gets the events of every topic it missed: one refetch each, no resync', async (t) => {
  const { testbed } = harness;
  const { app, list, path } = await fresh(t, testbed.addresses.gated_ws, (list) => `wild-${list}:*`);
  await app.waitForJson('fresh', 'live, and refetched once for it', (value) => value.status === 'live' && value.fetch === 2);

  // Cut, and kept away while a topic it never saw gets an event.
  await testbed.block(true);
  t.after(() => testbed.block(false));
  await testbed.disconnect(1006);
  await app.waitForJson('status-history', 'the reconnect', (history) => history.some((status) => status.state === 'reconnecting'));
  await testbed.publish(`wild-${list}:new`, { entityId: 'missed' });
  await testbed.block(false);
  await app.waitForJson('fresh', 'live again after recovering', (value) => value.lives === 2 && value.status === 'live');
  await app.waitForJson('fresh', 'the refetch for the missed event', (value) => value.fetch === 3);
  // A resync would have refetched once more.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(harness.server.hits(path), 3);
});
