// Type-checked by test/types.test.js (`tsc --noEmit`), never run: every
// export used as the README shows it, and `@ts-expect-error` on what the
// types must refuse (the check fails if such a line compiles).
import {
  HeraldClient,
  preload,
  type ConnectionStatus,
  type HeraldError,
  type Position,
  type PublishAck,
  type Subscription,
  type TopicMessage,
} from '@herald/realtime';
import { createMockClient } from '@herald/realtime/testing';
import {
  createHeraldHooks,
  HeraldProvider,
  useConnectionStatus,
  useHerald,
  useInvalidateOnEvent,
  useMembers,
  usePresence,
  usePublish,
  useRevalidateOnEvent,
  useTopic,
  useTyping,
  type TopicStatus,
} from '@herald/realtime/react';
import { QueryClient, useQueryClient } from '@tanstack/react-query';
import { useSWRConfig } from 'swr';

interface Gift {
  bought: boolean;
}

const client = new HeraldClient({ url: 'wss://example.com/ws', token: 't', auth: 'message', fallback: false });
new HeraldClient({ url: 'wss://example.com/ws', getToken: async (reason) => (reason === 'refresh' ? 'fresh' : 'first') });
new HeraldClient({ url: 'ws://127.0.0.1:8080/ws', backoff: { initialMs: 100, maxAttempts: 5, maxAdvisedMs: 10000 }, fallback: { sseAfter: 2 } });
new HeraldClient({ url: '/ws', token: null, enabled: false, debug: true, backgroundTimeoutMs: 60_000 });
new HeraldClient({ url: 'https://example.com/ws', token: 't', debug: (line: string) => line.length });
const preloaded: Promise<void> = preload();
void preloaded;
void preload({ shareAcrossTabs: true });
void preload({ shareAcrossTabs: { user: 'u-42' } });
// @ts-expect-error: debug is a flag or a function of a line
new HeraldClient({ url: 'wss://example.com/ws', debug: 'verbose' });
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
    case 'live': {
      const at: Position | null = message.position;
      return at?.seq;
    }
    case 'unconfirmed':
      return message.topic;
  }
}, { presence: true });
stop();

const subscription: Subscription = client.subscribe('gift-list:1', () => {}, { since: { epoch: '8f3a1c', seq: 41 } });
subscription.live.then((at: Position | null) => at?.epoch);
subscription.unsubscribe();
// @ts-expect-error: since is a position, not a seq
client.subscribe('gift-list:1', () => {}, { since: 41 });
client.publish('doc:7', 'UPDATED', '7', { text: 'x' }, { ifSeq: 4, traceId: 't-1' }).then(
  (ack: PublishAck) => ack.position?.seq,
  (error: HeraldError) => (error.kind === 'conflict' ? error.currentSeq : error.kind),
);
client.publish('doc:7', 'TYPING', '7', null, { ephemeral: true });
// @ts-expect-error: ifSeq is a number
client.publish('doc:7', 'UPDATED', '7', null, { ifSeq: '4' });
client.setToken('fresh');

client.subscribe('gift-list:1', (message: TopicMessage) => {
  // @ts-expect-error: only an event has data; narrow on `type` first
  return message.data;
});

client.publish('gift-list:1', 'UPDATED', 'gift-7', { bought: true }).then((ack: PublishAck) => {
  const seq: number | undefined = ack.seq;
  return [seq, ack.id, ack.duplicate];
});

client.onStatus((status: ConnectionStatus) => {
  if (status.state === 'unsupported') return status.message;
  if (status.state === 'loading' || status.state === 'idle') return null;
  if (status.state === 'disconnected' && status.reason === 'unavailable') return status.message;
  if (status.state === 'reconnecting') return status.nextInMs + status.attempt;
  if (status.state === 'disconnected') return status.reason === 'retries_exhausted' ? status.message : null;
  if (status.state === 'connected') return status.transport;
  // @ts-expect-error: only reconnecting has attempt
  return status.attempt;
});
client.onRaw((message: unknown) => message);
client.close();

const mock = createMockClient({ status: { state: 'connecting' } });
const emitted = mock.emit<Gift>({ topic: 'gift-list:1', data: { entity_id: 'gift-7', payload: { bought: true } } });
const emittedBought: boolean = emitted.data.payload.bought;
void emittedBought;
mock.resync('gift-list:*', 'not_recovered');
mock.presence('doc:7', ['alice']);
mock.presenceDiff('doc:7', { left: ['alice'] });
mock.setStatus({ state: 'reconnecting', attempt: 1, nextInMs: 1000 });
mock.publishes().forEach((pending) => (pending.topic === 'gift-list:1' ? pending.resolve({ seq: 1 }) : pending.reject('no')));
const subscribed: string[] = mock.topics();
void subscribed;
// @ts-expect-error: not a resync reason
mock.resync('gift-list:1', 'because');

interface DocEdit {
  text: string;
}
const typed = createHeraldHooks<{ 'gift-list:*': Gift; 'doc:7': DocEdit }>();

function TypedHooks() {
  typed.useTopic('gift-list:family-123', (message) => (message.type === undefined ? message.data.payload.bought : message.type));
  const latest = typed.useTopic('doc:7');
  const text: string | undefined = latest?.data.payload.text;
  // @ts-expect-error: not a topic of the map
  typed.useTopic('user:1', () => {});
  const publish = typed.usePublish();
  void publish('gift-list:2', 'ADDED', 'gift-9', { bought: false });
  // @ts-expect-error: gift-list topics carry Gift payloads
  void publish('gift-list:2', 'ADDED', 'gift-9', { text: 'x' });
  typed.useInvalidateOnEvent(useQueryClient(), 'gift-list:2', (m) => (m.type === 'resync' ? ['gifts'] : ['gifts', m.data.payload.bought]));
  return <p>{text}</p>;
}

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
      <HeraldProvider client={mock}>
        <TypedHooks />
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
  const named: readonly string[] = usePresence('doc:7', { meta: { name: 'Ann' } });
  const withMeta = useMembers<{ name: string }>('doc:7', { meta: { name: 'Ann' } });
  const firstName: string | undefined = withMeta[0]?.meta?.name;
  void named;
  void firstName;
  herald?.setPresence('doc:7', { name: 'Ann' });
  // @ts-expect-error: the members are read-only
  members.push('me');
  useTopic<Gift>(status.state === 'connected' ? 'gift-list:1' : null, (message) => message.type ?? message.data.payload.bought);
  const latestGift = useTopic<Gift>('gift-list:1');
  const latestBought: boolean | undefined = latestGift?.data.payload.bought;
  void latestBought;

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
  publish('gift-list:1', 'UPDATED', 'gift-8', { bought: true }, { ifSeq: 41 });

  const { status: where }: { status: TopicStatus } = useTopic('gift-list:1', () => {});
  useInvalidateOnEvent(queryClient, 'gift-list:1', ['gift-list', '1'], { since: { epoch: '8f3a1c', seq: 41 } });
  useRevalidateOnEvent(mutate, 'gift-list:1', '/api/gift-lists/1', { since: { epoch: '8f3a1c', seq: 41 } });
  // @ts-expect-error: since is a position
  useInvalidateOnEvent(queryClient, 'gift-list:1', ['gift-list', '1'], { since: 41 });
  const { typing, notify } = useTyping('doc:7', { self: 'me', throttleMs: 1000, expireMs: 3000 });
  notify();
  // @ts-expect-error: the typists are read-only
  typing.push('me');
  return <p>{herald === null ? 'starting' : `${status.state} ${where} ${typing.join()}`}</p>;
}
