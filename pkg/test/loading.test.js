// Loading without blocking: the app renders while the wasm is still on its
// way (held back here, on a throttled link), what it asked for meanwhile is
// carried out once the wasm is there, and a Content-Security-Policy that
// forbids compiling WebAssembly turns live updates off without taking the
// app down.

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

test('on a throttled link the app renders before the wasm arrives, and subscribes once it is there', async (t) => {
  const { testbed } = harness;
  // The wasm is held back until the test has seen the app rendered, from
  // before the page loads: an entry that waited for the wasm would never
  // show the app (nor its test harness) while it is held.
  let requested;
  const wasmRequested = new Promise((resolve) => (requested = resolve));
  let release;
  const released = new Promise((resolve) => (release = resolve));
  let cdp;
  const app = await harness.open(t, {
    beforeLoad: async (page) => {
      // A slow mobile link for everything the page loads.
      cdp = await page.context().newCDPSession(page);
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 150, downloadThroughput: 200_000, uploadThroughput: 100_000 });
      await page.route('**/herald_bg.wasm', async (route) => {
        requested();
        await released;
        await route.continue();
      });
    },
  });

  const topic = uniqueTopic('gift-list');
  await app.mount('topic', { url: testbed.addresses.ws, topic, label: 'early' });
  await wasmRequested;
  // Rendered, with the wasm requested and not yet answered.
  assert.deepEqual(await app.json('status'), { state: 'loading' });
  assert.deepEqual(await app.json('messages'), []);
  assert.deepEqual(await app.json('active'), { topic, label: 'early' }, 'the effects of the first render ran');

  release();
  await app.waitForJson('status', 'connected once the wasm arrived', connected);
  // The subscription made while loading reaches the server: publish until an event arrives.
  const messages = await eventually(
    'an event on the topic subscribed while loading',
    async () => {
      await testbed.publish(topic, { entityId: 'after-load' });
      return app.json('messages');
    },
    (list) => list.length > 0,
  );
  assert.deepEqual([messages[0].message.topic, messages[0].message.data.entity_id], [topic, 'after-load']);
  await cdp.detach();
});

test("a Content-Security-Policy without 'wasm-unsafe-eval' leaves the app rendering, and the status says why", async (t) => {
  const policy = "script-src 'self'";
  const app = await harness.open(t, { query: `?csp=${encodeURIComponent(policy)}` });
  // Chromium reports the refused compilation on the console itself.
  app.expectErrors(/Content Security Policy|WebAssembly|wasm-unsafe-eval/);
  const topic = uniqueTopic('gift-list');
  await app.mount('topic', { url: harness.testbed.addresses.ws, topic, label: 'csp' });
  const status = await app.waitForJson('status', 'the load to fail', (value) => value.state === 'disconnected');
  assert.equal(status.reason, 'unavailable');
  assert.match(status.message, /live updates are off/);
  assert.match(status.message, /'wasm-unsafe-eval'/);
  assert.deepEqual(await app.json('messages'), [], 'the app went on rendering');
  assert.deepEqual(await app.json('active'), { topic, label: 'csp' });
});

test("the same policy with 'wasm-unsafe-eval' connects", async (t) => {
  const policy = "script-src 'self' 'wasm-unsafe-eval'";
  const app = await harness.open(t, { query: `?csp=${encodeURIComponent(policy)}` });
  await app.mount('topic', { url: harness.testbed.addresses.ws, topic: uniqueTopic('gift-list'), label: 'allowed' });
  await app.waitForJson('status', 'connected', connected);
});

test('a page downloads one wasm build: the plain one, or with shareAcrossTabs the one that shares', async (t) => {
  const { testbed } = harness;
  for (const shareAcrossTabs of [false, true]) {
    const wasm = [];
    const app = await harness.open(t, {
      beforeLoad: (page) => page.on('request', (request) => /\.wasm$/.test(request.url()) && wasm.push(request.url().split('/').pop())),
    });
    await app.evaluate(
      ({ url, shareAcrossTabs }) => {
        window.client = new window.HeraldClient({ url, token: 'u-loading', shareAcrossTabs });
        window.client.onStatus((status) => (window.state = status));
      },
      { url: testbed.addresses.ws, shareAcrossTabs },
    );
    await eventually('connected', () => app.evaluate(() => window.state), connected);
    assert.deepEqual(wasm, [shareAcrossTabs ? 'herald_tabs_bg.wasm' : 'herald_bg.wasm']);
    await app.evaluate(() => window.client.close());
  }
});

test('a plain client made after a sharing one uses the build already on the page, and gets its events', async (t) => {
  const { testbed } = harness;
  const wasm = [];
  const app = await harness.open(t, {
    beforeLoad: (page) => page.on('request', (request) => /\.wasm$/.test(request.url()) && wasm.push(request.url().split('/').pop())),
  });
  const topic = uniqueTopic('gift-list');
  await app.evaluate(
    ({ url, topic }) => {
      window.sharing = new window.HeraldClient({ url, token: 'u-sharing', shareAcrossTabs: true });
      window.plain = new window.HeraldClient({ url, token: 'u-plain' });
      window.events = [];
      window.plain.onStatus((status) => (window.state = status));
      window.live = window.plain.subscribe(topic, (message) => message.type === undefined && window.events.push(message.seq)).live;
    },
    { url: testbed.addresses.ws, topic },
  );
  await eventually('the plain client connected', () => app.evaluate(() => window.state), connected);
  const status = await app.evaluate(() => window.state);
  assert.equal(status.shared, undefined, 'the plain client keeps a connection of its own');
  await app.evaluate(() => window.live);
  await testbed.publish(topic);
  await eventually('the event', () => app.evaluate(() => window.events), (events) => events.length === 1);
  assert.deepEqual(wasm, ['herald_tabs_bg.wasm']);
  await app.evaluate(() => (window.sharing.close(), window.plain.close()));
});
