// Server-side rendering: the package imports in Node, a provider renders
// "connecting" without making a client, and mistakes say what is wrong.

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

test('a provider with options renders on a server as connecting, and makes no client there', () => {
  const html = renderToString(h(HeraldProvider, { options: { url: 'ws://127.0.0.1:9/ws', token: 't' } }, h(Page)));
  assert.equal(html, '<p>connecting, 0 members</p>');
});

test('constructing a client in Node says that it is browser-only', () => {
  assert.throws(() => new HeraldClient({ url: 'ws://127.0.0.1:9/ws' }), /browsers only.*effect/);
});

test('a hook outside a provider, and a provider without a client or options, say what is missing', () => {
  assert.throws(() => renderToString(h(Page)), /inside <HeraldProvider>/);
  assert.throws(() => renderToString(h(HeraldProvider, null, h(Page))), /exactly one of client=.* or options=/);
});
