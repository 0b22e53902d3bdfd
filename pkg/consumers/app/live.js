'use client';
// The app every bundler of the matrix builds (consumers.test.js copies this
// folder into each): the package from its tarball, a provider, the status
// and the latest event of one topic. Plain createElement, so that no
// bundler needs a JSX setup.
import { preload } from '@herald/realtime';
import { HeraldProvider, useConnectionStatus, useTopic } from '@herald/realtime/react';
import { createElement as h, useEffect, useState } from 'react';

function Status({ topic }) {
  const status = useConnectionStatus();
  const last = useTopic(topic);
  // For the test that reads the status's message.
  useEffect(() => {
    window.__heraldStatus = status;
  }, [status]);
  return h(
    'div',
    null,
    h('p', { 'data-testid': 'status' }, status.state),
    h('p', { 'data-testid': 'event' }, last ? last.data.entity_id : 'none'),
  );
}

/**
 * Where to connect and what to watch come from the page's query
 * (`?ws=...&topic=...`), read after the first render so that a server
 * render (Next.js) matches it.
 */
export function Live() {
  const [target, setTarget] = useState(null);
  useEffect(() => {
    preload();
    const query = new URLSearchParams(location.search);
    setTarget({ url: query.get('ws'), topic: query.get('topic') });
  }, []);
  return h(
    'main',
    null,
    h('h1', { 'data-testid': 'rendered' }, 'Herald consumer'),
    target && h(HeraldProvider, { options: { url: target.url, token: 'consumer' } }, h(Status, { topic: target.topic })),
  );
}
