// Server-side rendering: the package imports in Node, a provider renders
// "loading" without making a client, a client made there stays unsupported,
// and mistakes say what is wrong.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createElement as h } from 'react';
import { renderToString } from 'react-dom/server';
import { HeraldClient } from '@herald/realtime';
import { HeraldProvider, useConnectionStatus, usePresence, useTopic } from '@herald/realtime/react';

function Page() {
  const status = useConnectionStatus();
  const members = usePresence('doc:7');
  useTopic('gift-list:1', () => {});
  return h('p', null, `${status.state}, ${members.length} members`);
}

test('a provider with options renders on a server as loading, and makes no client there', () => {
  const html = renderToString(h(HeraldProvider, { options: { url: 'ws://127.0.0.1:9/ws', token: 't' } }, h(Page)));
  assert.equal(html, '<p>loading, 0 members</p>');
});

test('a client made in Node stays unsupported, says why, and refuses publishes without throwing', async () => {
  const client = new HeraldClient({ url: 'ws://127.0.0.1:9/ws', token: 't' });
  const status = client.status();
  assert.equal(status.state, 'unsupported');
  assert.match(status.message, /browser pages only/);
  const stop = client.subscribe('gift-list:1', () => assert.fail('no message in Node'));
  await assert.rejects(client.publish('gift-list:1', 'UPDATED', '1', {}), /cannot publish: the client is unsupported/);
  stop();
  client.close();
  assert.equal(client.status().state, 'unsupported');
});

test('wrong options and topics throw at once, naming what is wrong, wherever the client runs', () => {
  assert.throws(() => new HeraldClient({ token: 't' }), /options\.url is required/);
  assert.throws(() => new HeraldClient({ url: 'ftp://example.com/ws' }), /options\.url "ftp:\/\/example.com\/ws" must be ws:\/\/, wss:\/\//);
  assert.throws(() => new HeraldClient({ url: '/ws' }), /relative, and there is no page/);
  assert.throws(() => new HeraldClient({ url: 'wss://x/ws', auth: 'cookie' }), /options\.auth "cookie" must be 'message' or 'query'/);
  assert.throws(() => new HeraldClient({ url: 'wss://x/ws', backoff: { maxAdvisedMs: 1e300 } }), /options\.backoff\.maxAdvisedMs must be a number of milliseconds/);
  assert.throws(() => new HeraldClient({ url: 'wss://x/ws', token: 't', getToken: () => 't' }), /token and getToken/);
  const client = new HeraldClient({ url: 'wss://x/ws' });
  assert.throws(() => client.subscribe('gift list:1', () => {}), /topic "gift list:1" is not a topic/);
});

test('require() of the package works where Node loads ES modules that way, and says what to do where it cannot', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = (flags) =>
    promisify(execFile)(process.execPath, [...flags, '-e', "console.log(typeof require('@herald/realtime').HeraldClient, typeof require('@herald/realtime/testing').createMockClient)"], {
      cwd: new URL('..', import.meta.url),
    });
  const { stdout } = await run([]);
  assert.equal(stdout.trim(), 'function function');
  await assert.rejects(run(['--no-experimental-require-module']), (error) => {
    assert.match(error.stderr, /@herald\/realtime is ES modules only.*await import\('@herald\/realtime'\).*transformIgnorePatterns/s);
    return true;
  });
});

test('a hook outside a provider, and a provider without a client or options, say what is missing', () => {
  assert.throws(() => renderToString(h(Page)), /inside <HeraldProvider>/);
  assert.throws(() => renderToString(h(HeraldProvider, null, h(Page))), /exactly one of client=.* or options=/);
});
