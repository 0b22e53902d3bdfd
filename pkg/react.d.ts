/**
 * `@herald/realtime/react`: a provider and hooks. Every hook subscribes
 * while its component is mounted, cleans up on unmount, and is safe under
 * React StrictMode's double mount. Neither TanStack Query nor SWR is
 * imported: the invalidation hooks take your query client or `mutate`.
 */
import type { ReactElement, ReactNode } from 'react';
import type {
  ConnectionStatus,
  EventType,
  HeraldClient,
  HeraldEvent,
  HeraldOptions,
  Position,
  PublishAck,
  PublishOptions,
  ResyncMessage,
  SubscribeOptions,
  Topic,
  TopicMessage,
} from './index.js';

export type HeraldProviderProps = { children?: ReactNode } & (
  | {
      /** A client you made and close yourself: the provider never closes it. */
      client: HeraldClient;
      options?: never;
      shareAcrossTabs?: never;
    }
  | {
      /**
       * The provider makes a client from these in an effect and closes it on
       * unmount. A new object with the same content on every render keeps the
       * client; a change of content replaces it. An inline `getToken` is fine:
       * the latest one is called.
       */
      options: HeraldOptions;
      client?: never;
      /** The same as `options.shareAcrossTabs`: one connection for every tab of this app and user. */
      shareAcrossTabs?: boolean | { user: string };
    }
);

/** Gives its children a client: the one you pass, or one it makes from `options`. */
export function HeraldProvider(props: HeraldProviderProps): ReactElement;

/**
 * The provider's client; `null` while a provider with `options` is creating
 * it (its first render, and every render on a server).
 * @throws Error outside a `<HeraldProvider>`.
 */
export function useHerald(): HeraldClient | null;

/**
 * The connection's status, re-rendering on every change; `{state: 'loading'}`
 * while there is no client yet (the provider's first render, server rendering).
 */
export function useConnectionStatus(): ConnectionStatus;

/**
 * Where a hook's subscription stands: `'subscribing'` until the server
 * confirms it, `'live'` once it has (and after a reconnect that recovered),
 * `'resyncing'` after a resync (events may have been missed) until the next
 * live or event, `'unconfirmed'` with a server that never confirms.
 */
export type TopicStatus = 'subscribing' | 'live' | 'resyncing' | 'unconfirmed';

/**
 * Calls `handler` with every message of `topic` while mounted: events,
 * `live`, `resync`, `refused`, and presence with `{presence: true}`, and
 * returns where the subscription stands. A new `handler` on each render does
 * not resubscribe (the latest is called); a new `topic` does. `null` or
 * `undefined` subscribes to nothing. `options.since` is read when the
 * topic's subscription starts. When the provider's client is replaced (new
 * options that need a new connection), the hook subscribes again from the
 * last position it saw: missed events are replayed, or a resync comes.
 */
export function useTopic<P = unknown>(
  topic: Topic | null | undefined,
  handler: (message: TopicMessage<P>) => void,
  options?: SubscribeOptions,
): { status: TopicStatus };
/**
 * Without a handler: the latest event of `topic` (re-rendering on each),
 * `undefined` until one arrives, and again when the topic or client changes.
 */
export function useTopic<P = unknown>(topic: Topic | null | undefined, handler?: null, options?: SubscribeOptions): HeraldEvent<P> | undefined;

/**
 * `meta`: what the other members see of this user (see
 * {@link SubscribeOptions.meta}); a change (compared as JSON) is sent at once.
 */
export interface PresenceOptions<M = Record<string, unknown>> {
  meta?: M;
}

/** The user ids subscribed to `topic` with presence, kept current; empty until the server reports them. */
export function usePresence(topic: Topic | null | undefined, options?: PresenceOptions): readonly string[];

/** A member of a topic's presence, with the metadata it set. */
export interface Member<M = unknown> {
  user: string;
  meta?: M;
}

/** Like {@link usePresence}, with each member's metadata. */
export function useMembers<M = unknown>(topic: Topic | null | undefined, options?: PresenceOptions<M>): readonly Member<M>[];

/** Publishes through the provider's client; see {@link HeraldClient.publish}. */
export type Publish = (topic: Topic, event: EventType, entityId: string, payload: unknown, options?: PublishOptions) => Promise<PublishAck>;

export interface TypingOptions {
  /** Your user id, left out of `typing` (the server echoes your own events). */
  self?: string;
  /** At most one `TYPING` event per this many milliseconds (2000). */
  throttleMs?: number;
  /** An indicator is dropped this long after its last event (5000). */
  expireMs?: number;
}

/**
 * Who is typing on `topic` (user ids), and `notify()` to call on every
 * keystroke: it publishes an ephemeral `TYPING` event at most once per
 * `throttleMs`, and an indicator expires `expireMs` after its last event.
 * Best effort: offline or with a server without ephemeral events, nothing is sent.
 */
export function useTyping(topic: Topic | null | undefined, options?: TypingOptions): { typing: readonly string[]; notify: () => void };

/** A function that publishes; it rejects while the provider's client is not created yet. */
export function usePublish(): Publish;

/**
 * What makes a cache entry stale: an event, or a resync (events may have
 * been missed). The first `live` of a subscription that had no `since`
 * comes as a resync with reason `'subscribed'`: what was loaded before it
 * may have missed a change.
 */
export type InvalidationMessage<P = unknown> = HeraldEvent<P> | ResyncMessage | (Omit<ResyncMessage, 'reason'> & { reason: 'subscribed' });

/** A TanStack Query key. */
export type QueryKey = readonly unknown[];

/** The part of TanStack Query's `QueryClient` the hook uses. */
export interface InvalidatingQueryClient {
  invalidateQueries(filters: { queryKey: QueryKey }): unknown;
}

/**
 * Invalidates TanStack Query's `queryKey` once when the subscription goes
 * live (a query loaded before may have missed a change), then on every
 * event of `topic` (not ephemeral ones) and on every resync of it (a
 * reconnect that could not recover, a gap), so a cache never stays silently
 * stale. A reconnect that recovered invalidates nothing more: the missed
 * events are replayed. `queryKey` may be a function of the
 * message; on a resync it must name everything the topic may have changed:
 *
 * ```ts
 * useInvalidateOnEvent(queryClient, 'gift:*', (m) => (m.type === 'resync' ? ['gifts'] : ['gifts', m.data.entity_id]));
 * ```
 */
export function useInvalidateOnEvent<P = unknown>(
  queryClient: InvalidatingQueryClient,
  topic: Topic | null | undefined,
  queryKey: QueryKey | ((message: InvalidationMessage<P>) => QueryKey),
  options?: InvalidationOptions,
): void;

/**
 * `since`: the position your data was loaded at (a REST response's, read
 * before the data): the server replays every change after it, so the first
 * live refetches nothing. Read when the subscription starts: subscribe once
 * the data is there (`data ? topic : null`).
 */
export interface InvalidationOptions {
  since?: Position;
}

/** An SWR key: a string, an array or an object (not a function: a function is read as a function of the message). */
export type SWRKey = string | readonly unknown[] | { readonly [field: string]: unknown };

/** SWR's filter form of a key: every cache key for which it returns true. */
export type SWRKeyFilter = (key?: unknown) => boolean;

/** SWR's global `mutate`, from `useSWRConfig()` or `import { mutate } from 'swr'`. */
export interface SWRMutate {
  (key: SWRKey): unknown;
  (filter: SWRKeyFilter): unknown;
}

/**
 * Revalidates SWR's `key` (calls `mutate(key)`) on every event of `topic`
 * and on every resync of it. `key` may be a function of the message, which
 * may return a filter to revalidate several keys on a resync:
 *
 * ```ts
 * useRevalidateOnEvent(mutate, 'gift:*', (m) => (m.type === 'resync' ? (k) => String(k).startsWith('/api/gifts') : `/api/gifts/${m.data.entity_id}`));
 * ```
 */
export function useRevalidateOnEvent<P = unknown>(
  mutate: SWRMutate,
  topic: Topic | null | undefined,
  key: SWRKey | ((message: InvalidationMessage<P>) => SWRKey | SWRKeyFilter),
  options?: InvalidationOptions,
): void;

/** The concrete topics a pattern of a topic map covers: `'gift-list:*'` covers every `gift-list:…`. */
export type TopicsOf<Pattern extends string> = Pattern extends `${infer Resource}:*` ? `${Resource}:${string}` : Pattern;

/** The payload type a topic map gives `Topic` (a union when several patterns cover it). */
export type PayloadOf<Map, T extends string> = {
  [Pattern in keyof Map & string]: T extends TopicsOf<Pattern> ? Map[Pattern] : never;
}[keyof Map & string];

/** The hooks of {@link createHeraldHooks}: the same hooks, with payloads typed by the topic map `Map`. */
export interface HeraldHooks<Map> {
  useTopic<T extends TopicsOf<keyof Map & string>>(
    topic: T | null | undefined,
    handler: (message: TopicMessage<PayloadOf<Map, T>>) => void,
    options?: SubscribeOptions,
  ): { status: TopicStatus };
  useTopic<T extends TopicsOf<keyof Map & string>>(
    topic: T | null | undefined,
    handler?: null,
    options?: SubscribeOptions,
  ): HeraldEvent<PayloadOf<Map, T>> | undefined;
  usePublish(): <T extends TopicsOf<keyof Map & string>>(
    topic: T,
    event: EventType,
    entityId: string,
    payload: PayloadOf<Map, T>,
    options?: PublishOptions,
  ) => Promise<PublishAck>;
  useTyping(topic: TopicsOf<keyof Map & string> | null | undefined, options?: TypingOptions): { typing: readonly string[]; notify: () => void };
  usePresence(topic: TopicsOf<keyof Map & string> | null | undefined, options?: PresenceOptions): readonly string[];
  useMembers<M = unknown>(topic: TopicsOf<keyof Map & string> | null | undefined, options?: PresenceOptions<M>): readonly Member<M>[];
  useInvalidateOnEvent<T extends TopicsOf<keyof Map & string>>(
    queryClient: InvalidatingQueryClient,
    topic: T | null | undefined,
    queryKey: QueryKey | ((message: InvalidationMessage<PayloadOf<Map, T>>) => QueryKey),
    options?: InvalidationOptions,
  ): void;
  useRevalidateOnEvent<T extends TopicsOf<keyof Map & string>>(
    mutate: SWRMutate,
    topic: T | null | undefined,
    key: SWRKey | ((message: InvalidationMessage<PayloadOf<Map, T>>) => SWRKey | SWRKeyFilter),
    options?: InvalidationOptions,
  ): void;
}

/**
 * The hooks, typed by a map from topic patterns to payload types; only the
 * map's topics are accepted:
 *
 * ```ts
 * const { useTopic, usePublish } = createHeraldHooks<{ 'gift-list:*': GiftEvent; 'doc:*': DocEdit }>();
 * useTopic('gift-list:family-123', (m) => m.type === undefined && m.data.payload.bought); // payload: GiftEvent
 * ```
 */
export function createHeraldHooks<Map extends Record<string, unknown>>(): HeraldHooks<Map>;
