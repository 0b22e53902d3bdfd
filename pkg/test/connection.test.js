// The provider and useConnectionStatus: connecting, following the
// connection, owning or sharing a client, and React StrictMode.

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

test('the provider connects, and useConnectionStatus follows the connection down and back', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  await app.mount('status', { url: testbed.addresses.ws, token: 'status-reader', renders: 0 });
  await app.waitForJson('status', 'connected', connected);

  await testbed.pause();
  try {
    await app.waitForJson('status', 'reconnecting while the server is down', (status) => status.state === 'reconnecting');
  } finally {
    await testbed.resume('same');
  }
  await app.waitForJson('status', 'connected again after the server came back', connected);
  const states = (await app.json('status-history')).map((status) => status.state);
  assert.deepEqual(states.slice(0, 3), ['loading', 'connecting', 'connected']);
  assert.ok(states.includes('reconnecting'), `went through reconnecting: ${states}`);
});

test('an equal options object on every render keeps the connection; new content replaces it', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const start = await testbed.state();
  const url = testbed.addresses.gated_ws;
  await app.mount('status', { url, token: 'first', renders: 0 });
  await app.waitForJson('status', 'connected', connected);

  for (let renders = 1; renders <= 3; renders++) await app.update({ url, token: 'first', renders });
  await app.waitForJson('renders', 'the third render', (renders) => renders === 3);
  assert.equal(await app.json('clients'), 1, 'the provider kept its client');
  const kept = await testbed.state();
  assert.equal(kept.gate_accepted, start.gate_accepted + 1, 'one TCP connection for all the renders');

  await app.update({ url, token: 'first', renders: 4, extra: { heartbeatMs: 20_000 } });
  await app.waitForJson('clients', 'a second client for the new options', (clients) => clients === 2);
  await app.waitForJson('status', 'the new client connected', connected);
  await testbed.waitForState('the old connection closed and the new one open', (state) =>
    state.gate_accepted === start.gate_accepted + 2 && state.connections === start.connections + 1,
  );
});

test('a new token goes to the live session as a refresh: same client, same connection, no reconnect', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const url = testbed.addresses.secure_ws;
  const start = await testbed.state('secure');
  await app.mount('status', { url, token: await testbed.token('refreshing', 3600), renders: 0 });
  await app.waitForJson('status', 'connected', connected);
  const before = await eventually('the connection', () => testbed.state('secure'), (state) => state.connections === start.connections + 1);

  await app.update({ url, token: await testbed.token('refreshing', 7200), renders: 1 });
  await app.waitForJson('renders', 'the render with the new token', (renders) => renders === 1);
  const after = await eventually('the refresh frame', () => testbed.state('secure'), (state) => state.messages_in > before.messages_in);
  assert.equal(after.messages_in, before.messages_in + 1, 'one refresh frame');
  assert.equal(after.auth_failures, start.auth_failures, 'accepted');
  assert.equal(after.connections, before.connections, 'the same connection');
  assert.equal(await app.json('clients'), 1, 'the same client');
  const states = (await app.json('status-history')).map((status) => status.state);
  assert.ok(!states.includes('reconnecting'), `no reconnect: ${states}`);
});

test('a provider given a client never closes it', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  await app.evaluate((url) => {
    window.sharedClient = new window.HeraldClient({ url, token: 'shared' });
  }, testbed.addresses.ws);
  await app.mount('shared');
  await app.waitForJson('status', 'connected', connected);
  await app.unmount();
  const status = await app.evaluate(() => window.sharedClient.status());
  assert.deepEqual(status.state, 'connected', `still connected after the provider unmounted: ${JSON.stringify(status)}`);
  await app.evaluate(() => window.sharedClient.close());
});

test('under StrictMode every hook at once opens one connection, and unmounting leaves nothing behind', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const start = await testbed.state();
  const topics = { topic: uniqueTopic('note'), presenceTopic: uniqueTopic('doc'), listTopic: uniqueTopic('gift-list') };
  await app.mount('everything', { url: testbed.addresses.gated_ws, ...topics }, { strict: true });
  await app.waitForJson('status', 'connected', connected);
  await testbed.waitForState('three subscriptions', (state) => state.subscriptions === start.subscriptions + 3);
  await app.waitForJson('members', 'its own presence', (members) => members.length === 1);

  // A subscription leaked by the first mount would deliver this twice, in the same task as the first.
  await testbed.publish(topics.topic, { entityId: 'once' });
  const messages = await app.waitForJson('messages', 'the event', (list) => list.length > 0);
  assert.equal(messages.length, 1, `delivered once: ${JSON.stringify(messages)}`);

  const connectedState = await testbed.state();
  assert.equal(connectedState.gate_accepted, start.gate_accepted + 1, 'exactly one TCP connection');
  assert.equal(connectedState.connections, start.connections + 1, 'exactly one WebSocket connection');
  assert.equal(await app.json('clients'), 1, 'the hooks never saw the client of the first mount');

  await app.unmount();
  await testbed.waitForState('connections and subscriptions back to where they were', (state) =>
    state.connections === start.connections && state.subscriptions === start.subscriptions,
  );
});

test('under StrictMode the hooks on a shared client subscribe once, and unmounting them unsubscribes', async (t) => {
  const { testbed } = harness;
  const app = await harness.open(t);
  const start = await testbed.state();
  await app.evaluate((url) => {
    window.sharedClient = new window.HeraldClient({ url, token: 'everyone' });
  }, testbed.addresses.ws);
  const topics = { topic: uniqueTopic('note'), presenceTopic: uniqueTopic('doc'), listTopic: uniqueTopic('gift-list') };
  // The client is live before the hooks mount, so StrictMode's extra mount subscribes and unsubscribes for real.
  await app.mount('everything', { shared: true, ...topics }, { strict: true });
  await app.waitForJson('status', 'connected', connected);
  await testbed.waitForState('three subscriptions', (state) => state.subscriptions === start.subscriptions + 3);

  await testbed.publish(topics.topic, { entityId: 'once' });
  const messages = await app.waitForJson('messages', 'the event', (list) => list.length > 0);
  assert.equal(messages.length, 1, `delivered once: ${JSON.stringify(messages)}`);

  await app.unmount();
  await testbed.waitForState('no subscriptions left, the connection kept', (state) =>
    state.subscriptions === start.subscriptions && state.connections === start.connections + 1,
  );
  await app.evaluate(() => window.sharedClient.close());
});
