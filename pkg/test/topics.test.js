// useTopic, usePublish and usePresence against the real server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from './support/eventually.js';
import { startHarness } from './support/harness.js';
import { uniqueTopic } from './support/topics.js';

let harness;
before(async () => {
  harness = await startHarness();
});
after(() => harness?.close());

const connected = (status) => status?.state === 'connected';

/** Mounts the `topic` scenario and waits until the server has its subscription. */
async function subscribed(t, props) {
  const { testbed } = harness;
  const app = await harness.open(t);
  const start = await testbed.state();
  await app.mount('topic', { url: testbed.addresses.ws, ...props });
  await app.waitForJson('status', 'connected', connected);
  await testbed.waitForState('the subscription', (state) => state.subscriptions === start.subscriptions + 1);
  return { app, start };
}

test('useTopic receives an event published through the server, in the seed shape', async (t) => {
  const topic = uniqueTopic('gift-list');
  const { app } = await subscribed(t, { topic, label: 'first' });
  const seq = await harness.testbed.publish(topic, { event: 'UPDATED', entityId: 'gift-7', payload: { bought: true } });

  const [{ message }] = await app.waitForJson('messages', 'the event', (list) => list.length === 1);
  assert.deepEqual(
    { topic: message.topic, event: message.event, entity_id: message.data.entity_id, payload: message.data.payload, seq: message.seq },
    { topic, event: 'UPDATED', entity_id: 'gift-7', payload: { bought: true }, seq },
  );
  assert.equal(typeof message.data.timestamp, 'string');
  assert.equal('type' in message, false, 'an event has no type field');
});

test('a new handler on every render is called without resubscribing', async (t) => {
  const topic = uniqueTopic('gift-list');
  const { app } = await subscribed(t, { topic, label: 'first' });
  const before = await harness.testbed.state();
  await app.update({ url: harness.testbed.addresses.ws, topic, label: 'second' });
  await app.waitForJson('active', 'the render with the new handler', (active) => active.label === 'second');
  await harness.testbed.publish(topic);

  const [{ label }] = await app.waitForJson('messages', 'the event', (list) => list.length === 1);
  assert.equal(label, 'second', 'the latest handler received it');
  assert.equal((await harness.testbed.state()).messages_in, before.messages_in, 'no subscribe or unsubscribe was sent');
});

test('changing the topic resubscribes: the old topic no longer delivers', async (t) => {
  const [first, second] = [uniqueTopic('gift-list'), uniqueTopic('gift-list')];
  const { app, start } = await subscribed(t, { topic: first });
  await app.update({ url: harness.testbed.addresses.ws, topic: second });
  await app.waitForJson('active', 'the render with the new topic', (active) => active.topic === second);

  // The old topic first: had it still been subscribed, its event would arrive before the new one's.
  await harness.testbed.publish(first, { entityId: 'old' });
  const messages = await eventually(
    'an event of the new topic',
    async () => {
      // The server may get the new subscription after a publish: publish until one arrives.
      await harness.testbed.publish(second, { entityId: 'new' });
      return app.json('messages');
    },
    (list) => list.length > 0,
  );
  assert.deepEqual(
    messages.map(({ message }) => [message.topic, message.data.entity_id]),
    messages.map(() => [second, 'new']),
  );

  await app.update({ url: harness.testbed.addresses.ws, topic: null });
  await harness.testbed.waitForState('no subscription for a null topic', (state) => state.subscriptions === start.subscriptions);
});

test('usePublish resolves with the seq of the ack, and subscribers get the event', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const topic = uniqueTopic('gift-list');
  await app.mount('publish', { url: testbed.addresses.ws, topic });
  await app.waitForJson('status', 'connected', connected);
  await app.click('publish');

  const ack = await app.waitForJson('ack', 'the ack', (value) => value !== null);
  assert.equal(typeof ack.seq, 'number', `an ack with a seq: ${JSON.stringify(ack)}`);
  assert.equal(ack.duplicate, false);
  const [{ message }] = await app.waitForJson('messages', 'the published event', (list) => list.length === 1);
  assert.deepEqual([message.seq, message.event, message.data.entity_id, message.data.payload], [ack.seq, 'ADDED', 'gift-9', { name: 'Scarf' }]);
  assert.equal(message.data.user_id, 'writer', 'the server stamped the publisher');
});

test('usePresence shows both users of two providers, follows one leaving, and getToken is the latest', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const topic = uniqueTopic('doc');
  const props = { url: testbed.addresses.ws, topic, alice: 'alice', bob: true };
  await app.mount('presence', props);
  await app.waitForJson('alice-sees', 'both members', (members) => members.join() === 'alice,bob');
  await app.waitForJson('bob-sees', 'both members', (members) => members.join() === 'alice,bob');

  await app.update({ ...props, bob: false });
  await app.waitForJson('alice-sees', 'bob gone', (members) => members.join() === 'alice');

  // A new getToken function with the same options keeps the connection; the next connect calls it.
  await app.update({ ...props, bob: false, alice: 'carol' });
  await testbed.disconnect(1006);
  await app.waitForJson('alice-sees', 'the reconnect with the latest token', (members) => members.join() === 'carol');
});

test('useMembers shows each member with its metadata and follows a change', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const topic = uniqueTopic('doc');
  const props = { url: testbed.addresses.ws, topic, aliceMeta: { name: 'Ann' } };
  await app.mount('members', props);
  const both = (alice) => [{ user: 'alice', meta: alice }, { user: 'bob', meta: { name: 'Bob' } }];
  const sees = (meta) => (members) => JSON.stringify(members) === JSON.stringify(both(meta));
  await app.waitForJson('bob-sees', 'alice with her metadata', sees({ name: 'Ann' }));
  await app.waitForJson('alice-sees', 'bob with his metadata', sees({ name: 'Ann' }));

  // A new object each render with the same fields is no change; new fields are sent.
  await app.update({ ...props, aliceMeta: { name: 'Ann', colour: '#f80' } });
  await app.waitForJson('bob-sees', "alice's new metadata", sees({ name: 'Ann', colour: '#f80' }));
  await app.waitForJson('alice-sees', 'her own new metadata', sees({ name: 'Ann', colour: '#f80' }));
});

test('new options that need a new connection resubscribe from where the topic was: what the switch missed is replayed', async (t) => {
  const { testbed } = harness;
  const topic = uniqueTopic('gift-list');
  const url = testbed.addresses.gated_ws;
  const { app } = await subscribed(t, { url, topic, options: { fallback: false, backoff: { initialMs: 50, maxMs: 200 } } });
  await app.waitForJson('lives', 'live', (lives) => lives.length === 1);
  const first = await testbed.publish(topic, { entityId: 'before' });
  await app.waitForJson('messages', 'the first event', (list) => list.length === 1);

  // The new client cannot connect until the gate opens: these events come while no client is subscribed.
  await testbed.block(true);
  t.after(() => testbed.block(false));
  await app.update({ url, topic, options: { fallback: false, backoff: { initialMs: 50, maxMs: 200 }, heartbeatMs: 20_000 } });
  await app.waitForJson('topic-status', 'the new subscription waiting', (status) => status === 'subscribing');
  const missed = [await testbed.publish(topic, { entityId: 'missed-1' }), await testbed.publish(topic, { entityId: 'missed-2' })];
  await testbed.block(false);

  const messages = await app.waitForJson('messages', 'the missed events', (list) => list.length === 3);
  assert.deepEqual(
    messages.map(({ message }) => [message.type, message.seq]),
    [first, ...missed].map((seq) => [undefined, seq]),
    'replayed from the last position, no resync',
  );
  const lives = await app.waitForJson('lives', 'live on the new client', (list) => list.length === 2);
  assert.equal(lives[1].seq, missed[1]);
});
