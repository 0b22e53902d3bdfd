/**
 * `@herald/realtime/testing`: a client for application tests (Vitest, Jest,
 * jsdom, Node) that opens no socket and loads no wasm. Give it to
 * `<HeraldProvider client={mock}>`, then drive it from the test.
 *
 * ```ts
 * const mock = createMockClient();
 * render(<HeraldProvider client={mock}><GiftList /></HeraldProvider>);
 * act(() => mock.emit({ topic: 'gift-list:1', data: { entity_id: 'gift-7', payload: { bought: true } } }));
 * ```
 */
import type {
  ConnectionStatus,
  EventData,
  HeraldClient,
  HeraldEvent,
  Position,
  PublishAck,
  PublishOptions,
  ResyncReason,
  Topic,
} from './index.js';

/** A publish the application made, waiting for the test to settle it. */
export interface PendingPublish {
  /** The publish id the mock chose (`mock-0`, `mock-1`, ...). */
  id: string;
  topic: Topic;
  event: string;
  entityId: string;
  payload: unknown;
  /** What the application passed (`{}` when nothing). */
  options: PublishOptions;
  /** Acks it: the promise resolves with `{id, seq (the topic's next), duplicate: false}` and what `ack` overrides. */
  resolve(ack?: Partial<PublishAck>): void;
  /** Refuses it: the promise rejects with `error` (an `Error`, or a message). */
  reject(error?: Error | string): void;
}

/** An event to emit: a topic, and whatever else of {@link HeraldEvent} matters to the test. */
export interface MockEvent<P = unknown> {
  topic: Topic;
  /** Default `UPDATED`. */
  event?: HeraldEvent<P>['event'];
  /** Defaults: `entity_id: '1'`, `payload: null`, `timestamp`: now. */
  data?: Partial<EventData<P>>;
  trace_id?: string;
  /** Default: the topic's next (1, 2, ...). */
  seq?: number;
}

/** The client's interface, plus what a test drives. Every delivery is synchronous: wrap it in React's `act()`. */
export interface MockClient extends HeraldClient {
  /** The topics subscribed now, each once. */
  topics(): Topic[];
  /** Publishes not settled yet, oldest first. */
  publishes(): PendingPublish[];
  /** Delivers an event to the subscriptions of its topic and of wildcards over it; returns it complete. */
  emit<P = unknown>(event: MockEvent<P>): HeraldEvent<P>;
  /** The server confirms the topic's subscriptions: a `live` message, and their `live` Promises resolve with `position`. */
  live(topic: Topic, position?: Position | null): void;
  /** The `since` each subscription of `topic` was made with (`null` for none), in order. */
  since(topic: Topic): (Position | null)[];
  /** The last token given to `setToken`. */
  token?: string;
  /** A `resync` for the topic's subscriptions (and wildcards over it, or under it). Default reason `not_recovered`. */
  resync(topic: Topic, reason?: ResyncReason): void;
  /** A `presence` message, for subscriptions made with `{presence: true}`, with members' metadata by user id. */
  presence(topic: Topic, members: readonly string[], meta?: Record<string, unknown>): void;
  /** A `presence_diff` message, for subscriptions made with `{presence: true}`; `meta` for users in `joined`. */
  presenceDiff(
    topic: Topic,
    diff: { joined?: readonly string[]; left?: readonly string[]; meta?: Record<string, unknown> },
  ): void;
  /** The presence metadata the application set for `topic` (at subscribe or with `setPresence`), or `undefined`. */
  presenceMeta(topic: Topic): Record<string, unknown> | undefined;
  /** The server refuses the topic: its subscriptions get `refused` (and their `live` rejects) and are dropped. */
  refuse(topic: Topic, error?: { code?: number | string; message?: string }): void;
  /** A message that is not Herald's, for `onRaw` listeners. */
  raw(message: unknown): void;
  /** Sets the status and tells `onStatus` listeners (and `useConnectionStatus`). */
  setStatus(status: ConnectionStatus): void;
}

/** A mock client, starting in `status` (default `{state: 'connected', transport: 'websocket'}`). */
export function createMockClient(options?: { status?: ConnectionStatus }): MockClient;
