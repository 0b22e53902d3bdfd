// Type-checked by test/types.test.js (`tsc --noEmit`), never run: every
// export used as the README shows it, and `@ts-expect-error` on what the
// types must refuse (the check fails if such a line compiles).
import { HeraldClient, type ConnectionStatus, type PublishAck, type TopicMessage } from '@herald/realtime';
import {
  HeraldProvider,
  useConnectionStatus,
  useHerald,
  useInvalidateOnEvent,
  usePresence,
  usePublish,
  useRevalidateOnEvent,
  useTopic,
} from '@herald/realtime/react';
import { QueryClient, useQueryClient } from '@tanstack/react-query';
import { useSWRConfig } from 'swr';

interface Gift {
  bought: boolean;
}

const client = new HeraldClient({ url: 'wss://example.com/ws', token: 't', auth: 'message', fallback: false });
new HeraldClient({ url: 'wss://example.com/ws', getToken: async (reason) => (reason === 'refresh' ? 'fresh' : 'first') });
new HeraldClient({ url: 'ws://127.0.0.1:8080/ws', backoff: { initialMs: 100, maxAttempts: 5, maxAdvisedMs: 10000 }, fallback: { sseAfter: 2 } });
// @ts-expect-error: url is required
new HeraldClient({ token: 't' });
// @ts-expect-error: a token or a token provider, not both
new HeraldClient({ url: 'wss://example.com/ws', token: 't', getToken: () => 't' });
// @ts-expect-error: no such auth mode
new HeraldClient({ url: 'wss://example.com/ws', token: 't', auth: 'cookie' });

const stop: () => void = client.subscribe<Gift>('gift-list:1', (message) => {
  switch (message.type) {
    case undefined: {
      const bought: boolean = message.data.payload.bought;
      const seq: number | undefined = message.seq;
      return [bought, seq, message.data.entity_id, message.event];
    }
    case 'resync':
      return message.reason === 'not_recovered';
    case 'presence':
      return message.members.length;
    case 'presence_diff':
      return [message.joined, message.left];
    case 'refused': {
      const code: number | string = message.code;
      return code;
    }
  }
}, { presence: true });
stop();

client.subscribe('gift-list:1', (message: TopicMessage) => {
  // @ts-expect-error: only an event has data; narrow on `type` first
  return message.data;
});

client.publish('gift-list:1', 'UPDATED', 'gift-7', { bought: true }).then((ack: PublishAck) => {
  const seq: number | undefined = ack.seq;
  return [seq, ack.id, ack.duplicate];
});

client.onStatus((status: ConnectionStatus) => {
  if (status.state === 'reconnecting') return status.nextInMs + status.attempt;
  if (status.state === 'disconnected') return status.reason === 'retries_exhausted' ? status.message : null;
  if (status.state === 'connected') return status.transport;
  // @ts-expect-error: only reconnecting has attempt
  return status.attempt;
});
client.onRaw((message: unknown) => message);
client.close();

export function Providers() {
  const options = { url: 'wss://example.com/ws', getToken: () => 'token' };
  return (
    <>
      <HeraldProvider client={client}>
        <Hooks />
      </HeraldProvider>
      <HeraldProvider options={options}>
        <Hooks />
      </HeraldProvider>
      {/* @ts-expect-error: a client or options, not both */}
      <HeraldProvider client={client} options={options} />
      {/* @ts-expect-error: a client or options is needed */}
      <HeraldProvider />
    </>
  );
}

function Hooks() {
  const herald: HeraldClient | null = useHerald();
  const status: ConnectionStatus = useConnectionStatus();
  const members: readonly string[] = usePresence('doc:7');
  // @ts-expect-error: the members are read-only
  members.push('me');
  useTopic<Gift>(status.state === 'connected' ? 'gift-list:1' : null, (message) => message.type ?? message.data.payload.bought);

  const queryClient: QueryClient = useQueryClient();
  useInvalidateOnEvent(queryClient, 'gift-list:1', ['gift-list', '1']);
  useInvalidateOnEvent<Gift>(queryClient, 'gift:*', (message) =>
    message.type === 'resync' ? ['gifts'] : ['gifts', message.data.entity_id, message.data.payload.bought],
  );
  // @ts-expect-error: on a resync there is no event data: the key function must handle it
  useInvalidateOnEvent(queryClient, 'gift:*', (message) => ['gifts', message.data.entity_id]);
  // @ts-expect-error: a query key is an array
  useInvalidateOnEvent(queryClient, 'gift:*', 'gifts');

  const { mutate } = useSWRConfig();
  useRevalidateOnEvent(mutate, 'gift-list:1', '/api/gift-lists/1');
  useRevalidateOnEvent(mutate, 'gift:*', (message) =>
    message.type === 'resync' ? (key) => String(key).startsWith('/api/gifts/') : `/api/gifts/${message.data.entity_id}`,
  );
  // @ts-expect-error: not an SWR key
  useRevalidateOnEvent(mutate, 'gift:*', () => 42);

  const publish = usePublish();
  const acked: Promise<PublishAck> = publish('gift-list:1', 'ADDED', 'gift-8', { bought: false });
  void acked;
  return <p>{herald === null ? 'starting' : status.state}</p>;
}
