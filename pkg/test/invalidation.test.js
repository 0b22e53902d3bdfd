// Cache invalidation as seed 000 describes it: an event makes TanStack
// Query refetch (SWR revalidate), and so does a resync, the client's word
// that events may have been missed. The fake REST API counts the refetches.

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
  await fetched(path, 1, 'the first render');
  await shown('Scarf, fetch 1', 'the first fetch');

  await harness.testbed.publish('gift-list:family-123', { entityId: 'gift-7', payload: { bought: true } });
  await fetched(path, 2, 'the event');
  await shown('Scarf, fetch 2', 'the refetch');

  // A new epoch: the server cannot replay what the client may have missed, so the client says resync.
  await harness.testbed.restart('new');
  await fetched(path, 3, 'the resync after the restart');
  await shown('Scarf, fetch 3', 'the refetch after the resync');
});

test('a queryKey function invalidates the entity of an event, and everything of the topic on a resync', async (t) => {
  const list = uniqueId();
  const app = await mounted(t, 'queryKeys', { list });
  const fetches = (a, b) => (gifts) => gifts.a === a && gifts.b === b;
  await app.waitForJson('gifts', 'both fetched once', fetches(1, 1));

  await harness.testbed.publish(`gift-list:${list}`, { entityId: 'a' });
  await app.waitForJson('gifts', 'a refetched, b not', fetches(2, 1));
  await harness.testbed.publish(`gift-list:${list}`, { entityId: 'b' });
  await app.waitForJson('gifts', 'b refetched, a not again', fetches(2, 2));

  await harness.testbed.restart('new');
  const gifts = await app.waitForJson('gifts', 'both refetched after the resync', fetches(3, 3));
  assert.deepEqual(gifts.log, ['event a', 'event b', 'resync not_recovered']);
});

test('useRevalidateOnEvent makes SWR revalidate a key on an event, and every matching key on a resync', async (t) => {
  const list = uniqueId();
  const app = await mounted(t, 'swr', { list });
  const fetches = (a, b) => (gifts) => gifts.a === a && gifts.b === b;
  await app.waitForJson('gifts', 'both fetched once', fetches(1, 1));

  await harness.testbed.publish(`gift-list:${list}`, { entityId: 'b' });
  await app.waitForJson('gifts', 'b revalidated, a not', fetches(1, 2));

  await harness.testbed.restart('new');
  await app.waitForJson('gifts', 'both revalidated after the resync', fetches(2, 3));
  assert.equal(harness.server.hits(`/api/swr/${list}/a`), 2);
});
