// The testing kit (`@herald/realtime/testing`) in Node: what a test can make
// the mock do, delivered as the real client delivers it (wildcards, presence
// only where asked for, refusals that drop the subscription), and topics
// checked by the same grammar as herald_protocol::Topic.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMockClient } from '@herald/realtime/testing';

const recorder = () => {
  const seen = [];
  const record = (message) => seen.push(message);
  return { seen, record };
};

test('events reach the topic and wildcards over it; resyncs reach wildcards both ways; presence only where asked', () => {
  const mock = createMockClient();
  const one = recorder();
  const all = recorder();
  const withPresence = recorder();
  mock.subscribe('gift-list:1', one.record);
  mock.subscribe('gift-list:*', all.record);
  mock.subscribe('gift-list:1', withPresence.record, { presence: true });
  assert.deepEqual(mock.topics(), ['gift-list:1', 'gift-list:*']);

  const event = mock.emit({ topic: 'gift-list:2', data: { entity_id: 'gift-7', payload: { bought: true } } });
  assert.deepEqual([event.event, event.seq, event.data.entity_id, typeof event.data.timestamp], ['UPDATED', 1, 'gift-7', 'string']);
  assert.deepEqual([one.seen.length, all.seen.length], [0, 1]);

  mock.resync('gift-list:*', 'wildcard');
  assert.deepEqual(one.seen, [{ type: 'resync', topic: 'gift-list:*', reason: 'wildcard' }]);
  mock.presence('gift-list:1', ['alice']);
  mock.presenceDiff('gift-list:1', { joined: ['bob'] });
  assert.deepEqual(
    withPresence.seen.map((m) => m.type),
    ['resync', 'presence', 'presence_diff'],
  );
  assert.equal(one.seen.length, 1, 'no presence without presence: true');

  // Presence metadata: what the application set, and what the test sends.
  mock.presence('gift-list:1', ['alice'], { alice: { name: 'Ann' } });
  assert.deepEqual(withPresence.seen.at(-1).meta, { alice: { name: 'Ann' } });
  mock.setPresence('gift-list:1', { name: 'Me' });
  assert.deepEqual(mock.presenceMeta('gift-list:1'), { name: 'Me' });
  assert.throws(() => mock.setPresence('gift-list:2', { name: 'Me' }), /not subscribed with presence/);
});

test('publishes wait for the test, which acks or refuses them; close rejects the rest', async () => {
  const mock = createMockClient();
  const acked = mock.publish('gift-list:1', 'ADDED', 'gift-8', { name: 'Scarf' });
  const refused = mock.publish('gift-list:1', 'DELETED', 'gift-8', null);
  const dropped = mock.publish('gift-list:1', 'UPDATED', 'gift-8', null);
  const [first, second] = mock.publishes();
  assert.deepEqual([first.event, first.entityId, first.payload], ['ADDED', 'gift-8', { name: 'Scarf' }]);
  first.resolve({ seq: 42 });
  second.reject('not allowed');
  assert.deepEqual(await acked, { id: first.id, seq: 42, duplicate: false });
  await assert.rejects(refused, /not allowed/);
  mock.close();
  await assert.rejects(dropped, /closed by the application/);
  assert.deepEqual(mock.status(), { state: 'disconnected', reason: 'closed', message: 'closed by the application' });
  assert.throws(() => mock.subscribe('gift-list:1', () => {}), /session has stopped/);
});

test('statuses reach onStatus listeners, a refusal drops the subscription, and unsubscribing forgets the topic', () => {
  const mock = createMockClient({ status: { state: 'connecting' } });
  const statuses = recorder();
  const stop = mock.onStatus(statuses.record);
  mock.setStatus({ state: 'connected', transport: 'sse' });
  stop();
  mock.setStatus({ state: 'reconnecting', attempt: 1, nextInMs: 500 });
  assert.deepEqual(statuses.seen.map((s) => s.state), ['connecting', 'connected']);

  const refused = recorder();
  mock.subscribe('secret:1', refused.record);
  mock.refuse('secret:1');
  assert.deepEqual(refused.seen, [{ type: 'refused', topic: 'secret:1', code: 4003, message: 'forbidden' }]);
  const unsubscribe = mock.subscribe('doc:7', () => {});
  unsubscribe();
  assert.deepEqual(mock.topics(), []);
});

test("topics follow herald_protocol::Topic's grammar (the cases of topic.rs's tests)", () => {
  const mock = createMockClient();
  for (const valid of ['gift-list:family-123', 'user:456', 'bench:1', 'a:b', 'doc.v2:x@y:z', 'gift-list:*', 'a::', `a:${'x'.repeat(254)}`]) {
    assert.doesNotThrow(() => mock.subscribe(valid, () => {}), valid);
  }
  for (const invalid of ['', 'gift-list', ':1', 'a:', 'gift list:1', 'a:b/c', 'a:*x', '*:x', 'a:x*', 'a:\n', 'é:1', `a:${'x'.repeat(255)}`]) {
    assert.throws(() => mock.subscribe(invalid, () => {}), /is not a topic/, JSON.stringify(invalid));
  }
});

test("live confirms the topic's subscriptions and resolves their live; a refusal rejects it; since and publish options are kept", async () => {
  const mock = createMockClient();
  const seen = recorder();
  const since = { epoch: 'e1', seq: 41 };
  const subscription = mock.subscribe('gift-list:1', seen.record, { since });
  const wildcard = recorder();
  mock.subscribe('gift-list:*', wildcard.record);
  assert.deepEqual(mock.since('gift-list:1'), [since]);
  mock.live('gift-list:1', { epoch: 'e1', seq: 44 });
  assert.deepEqual(await subscription.live, { epoch: 'e1', seq: 44 });
  assert.deepEqual(seen.seen, [{ type: 'live', topic: 'gift-list:1', position: { epoch: 'e1', seq: 44 } }]);
  assert.deepEqual(wildcard.seen, [], 'live is for the topic itself');

  const refused = mock.subscribe('secret:1', () => {});
  mock.refuse('secret:1', { code: 4003, message: 'forbidden' });
  await assert.rejects(refused.live, (error) => error.kind === 'refused' && error.code === 4003);

  mock.publish('doc:7', 'TYPING', 'me', null, { ephemeral: true });
  assert.deepEqual(mock.publishes()[0].options, { ephemeral: true });
  subscription.unsubscribe();
  assert.deepEqual(mock.topics(), ['gift-list:*']);
});
