import { act, render, screen } from '@testing-library/react';
import { HeraldProvider, useConnectionStatus, usePublish, useTopic } from '@herald/realtime/react';
import { createMockClient } from '@herald/realtime/testing';
import { expect, test } from 'vitest';

function LastGift() {
  const status = useConnectionStatus();
  const event = useTopic('gift-list:family-123'); // the latest event, re-rendering on each
  const publish = usePublish();
  return <button onClick={() => publish('gift-list:family-123', 'ADDED', 'gift-8', {})}>{status.state}: {event?.data.entity_id ?? 'none'}</button>;
}

test('shows the latest event and the status, and publishes', async () => {
  const mock = createMockClient();
  render(<HeraldProvider client={mock}><LastGift /></HeraldProvider>);
  expect(mock.topics()).toEqual(['gift-list:family-123']);
  act(() => mock.emit({ topic: 'gift-list:family-123', data: { entity_id: 'gift-7' } }));
  act(() => mock.setStatus({ state: 'reconnecting', attempt: 1, nextInMs: 1000 }));
  screen.getByText('reconnecting: gift-7').click();
  const [publish] = mock.publishes();
  expect(publish.entityId).toBe('gift-8');
  await act(async () => publish.resolve({ seq: 42 }));
});

test('a provider given options renders, unsupported, under jsdom', () => {
  render(<HeraldProvider options={{ url: 'wss://example.com/ws', token: 't' }}><LastGift /></HeraldProvider>);
  expect(screen.getByText('unsupported: none')).toBeTruthy();
});
