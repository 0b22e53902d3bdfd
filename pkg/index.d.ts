/**
 * `@herald/realtime`: real-time pub/sub over WebSockets in the browser.
 *
 * ```ts
 * import { HeraldClient } from '@herald/realtime';
 * const client = new HeraldClient({ url: 'wss://example.com/ws', token });
 * const stop = client.subscribe('gift-list:family-123', (message) => { ... });
 * ```
 *
 * The wire protocol is specified in Herald's docs/protocol.md.
 */

/**
 * `resource-type:identifier`, e.g. `gift-list:family-123`, or
 * `resource-type:*` for every identifier of a type (subscriptions only).
 * The type is one or more of `a-z A-Z 0-9 - _ .`; the identifier also
 * allows `@ + = : ~`. At most 256 bytes. An invalid topic throws.
 */
export type Topic = string;

/** Why `getToken` is called. */
export type TokenReason =
  /** Before a connection attempt. */
  | 'connect'
  /** The server closed with 4001: the token was rejected; return a fresh one. */
  | 'unauthorized'
  /** The token is about to expire; the fresh one is sent on the live connection. */
  | 'refresh';

/**
 * Reconnect delays: `initialMs * factor ** attempt`, capped at `maxMs`, ± `jitter`.
 *
 * A server may advise a delay instead (close 1001 means "now"; a reason with
 * `retry_after_ms=N` means N ms). Advice is cut to `maxAdvisedMs` and followed
 * as it is once; until a connection then stays up 10 s, further advice waits
 * the longer of the advice and the backoff delay.
 */
export interface BackoffOptions {
  /** The first delay. Default 1000. */
  initialMs?: number;
  /** The longest delay. Default 30000. */
  maxMs?: number;
  /**
   * The longest server-advised delay honoured, independent of `maxMs`: a
   * server spreading a restart over 5 s is honoured even with `maxMs: 3000`.
   * Default 30000.
   */
  maxAdvisedMs?: number;
  /** How much each delay grows. Default 2. */
  factor?: number;
  /** The random spread as a fraction of the delay: 0.5 means ±50 %. Default 0.5. */
  jitter?: number;
  /** Attempts in a row before giving up with `retries_exhausted`. Default: retry forever. */
  maxAttempts?: number;
}

/** Falling back to Server-Sent Events where WebSockets do not get through (proxies). */
export interface FallbackOptions {
  /** Switch to SSE after this many failed WebSocket attempts in a row. Default 3. */
  sseAfter?: number;
  /** While on SSE, try a WebSocket again this often. Default 60000. */
  upgradeAfterMs?: number;
}

interface CommonOptions {
  /**
   * The server's WebSocket endpoint: `wss://example.com/ws`, or a path such
   * as `'/ws'` (or an `http(s)://` URL), resolved against the page with `ws:`
   * or `wss:` following the page's `http:` or `https:`. Required.
   */
  url: string;
  /**
   * How the token reaches the server: `'message'` (default) sends
   * `{type: 'auth', token}` as the first frame, which keeps tokens out of
   * URLs, access logs and the browser console; `'query'` appends
   * `?token=...` to the URL, for servers that only read it there.
   */
  auth?: 'query' | 'message';
  /** `false` keeps the client idle (status `idle`, no connection), e.g. until there is a user. Default true. */
  enabled?: boolean;
  /**
   * `true` logs the session's decisions to the console (`console.info`,
   * prefixed `[herald]`): connection attempts, reconnect delays,
   * resubscriptions with their positions, recoveries and resyncs. Tokens are
   * left out. A function gets the lines instead.
   */
  debug?: boolean | ((line: string) => void);
  /** Send a ping after this long without traffic. Default 30000. */
  heartbeatMs?: number;
  /** Declare the connection dead when nothing arrives this long after a ping. Default 10000. */
  heartbeatTimeoutMs?: number;
  /** Give up on a connection attempt that has not opened after this long. Default 10000. */
  connectTimeoutMs?: number;
  /** Reject a publish that has no ack after this long, online or offline. Default 30000. */
  publishTimeoutMs?: number;
  /**
   * Release the connection once the page has been hidden (a background tab)
   * this long; when it is visible again the client reconnects and recovers
   * what it missed by position. Default: keep it.
   */
  backgroundTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** SSE fallback settings, or `false` to stay on WebSockets. */
  fallback?: FallbackOptions | false;
  /**
   * One connection for every tab of this origin with the same `url` and
   * user: one tab holds the WebSocket (it holds a Web Lock), the others use
   * it over a `BroadcastChannel`, and another takes over within 2 s when it
   * closes, crashes or freezes, recovering what the tabs hold. `true` names
   * the user by `token`; with `getToken`, name it: `{ user }`. Where the
   * browser lacks Web Locks or `BroadcastChannel`, each tab keeps its own
   * connection. The status says which tab holds it (`shared`). Default false.
   */
  shareAcrossTabs?: boolean | { user: string };
}

/**
 * A fixed token, or none (servers that do not authenticate). `null` means
 * there is no user yet: the client stays idle (status `idle`).
 */
interface StaticTokenOptions extends CommonOptions {
  token?: string | null;
  getToken?: never;
}

/** A token provider, called before every (re)connect and before the token expires. */
interface TokenProviderOptions extends CommonOptions {
  getToken: (reason: TokenReason) => string | Promise<string>;
  token?: never;
}

/** What `new HeraldClient(options)` takes. A wrong option throws an `Error` that names it. */
export type HeraldOptions = StaticTokenOptions | TokenProviderOptions;

/** `ADDED`, `UPDATED`, `DELETED`, `STATUS_CHANGED`, or a custom name of `A-Z a-z 0-9 _ - .` (at most 64 bytes). */
export type EventType = 'ADDED' | 'UPDATED' | 'DELETED' | 'STATUS_CHANGED' | (string & {});

/** What changed, and who changed it. */
export interface EventData<P = unknown> {
  /** The id of the changed resource. */
  entity_id: string;
  /** Event-specific data (a DTO), any JSON. */
  payload: P;
  /** Who triggered the change (Herald's server sets it from the token). */
  user_id?: string;
  /** The tenant the event belongs to; it reaches only that tenant's connections. */
  tenant_id?: string;
  /** When, in RFC 3339. */
  timestamp: string;
}

/**
 * An event, in the shape web teams already use. It has no `type` field:
 * `message.type === undefined` tells it apart from the other messages.
 */
export interface HeraldEvent<P = unknown> {
  type?: undefined;
  /** The concrete topic, never a wildcard. */
  topic: Topic;
  event: EventType;
  data: EventData<P>;
  /** For observability. */
  trace_id?: string;
  /** The per-topic position, from servers that support recovery; absent from ephemeral events. */
  seq?: number;
  /** An ephemeral event (a typing indicator, a cursor): for the subscribers of the moment, never stored or replayed. */
  ephemeral?: true;
}

/**
 * Where a topic stands: the `seq` of its last event within the server's
 * history `epoch`. A backend reads it (`GET /api/position?topic=`) before
 * its data and returns both; subscribe with it as `since`.
 */
export interface Position {
  epoch: string;
  seq: number;
}

/**
 * The server confirmed the subscription: everything up to `position` was
 * delivered, and what follows comes live. It comes first, and again after a
 * reconnect that recovered what was missed (a `resync` comes where it
 * could not). A wildcard's `position.seq` is its resource's `wildcard_seq`;
 * `position` is `null` where the server gave none.
 */
export interface LiveMessage {
  type: 'live';
  topic: Topic;
  position: Position | null;
}

/**
 * The subscription was sent to a server that never confirms subscriptions
 * (a plain broadcast server): events flow, but nothing proves none was
 * missed before the first. It never becomes `live`.
 */
export interface UnconfirmedMessage {
  type: 'unconfirmed';
  topic: Topic;
}

/**
 * Why events may have been missed:
 * - `not_recovered`: after a reconnect the server could not replay them
 *   (its history was lost, e.g. on a restart, or no longer reaches back);
 * - `no_recovery`: the server does not support recovery;
 * - `wildcard`: a wildcard subscription reconnected, and the server had given it no
 *   position to resume from (a server before wildcard recovery);
 * - `gap`: an event arrived with a `seq` more than one past the last;
 * - `lagged`: the client fell behind and dropped events.
 */
export type ResyncReason = 'not_recovered' | 'no_recovery' | 'wildcard' | 'gap' | 'lagged';

/**
 * Events of `topic` may have been missed: invalidate everything cached for
 * it. Never keep such a cache as it is.
 */
export interface ResyncMessage {
  type: 'resync';
  topic: Topic;
  reason: ResyncReason;
}

/**
 * Who is subscribed to the topic (user ids); sent on subscribing with
 * `presence: true`. `meta`: the metadata of the members that set some
 * (`{}` from servers without presence metadata).
 */
export interface PresenceMessage {
  type: 'presence';
  topic: Topic;
  members: string[];
  meta: Record<string, unknown>;
}

/**
 * Who joined and who left since the last presence message. A member whose
 * metadata changed is in `joined` again; `meta` has the metadata of the
 * users in `joined` that have some.
 */
export interface PresenceDiffMessage {
  type: 'presence_diff';
  topic: Topic;
  joined: string[];
  left: string[];
  meta: Record<string, unknown>;
}

/** The server does not allow this topic (e.g. code 4003); the subscription has been dropped. */
export interface RefusedMessage {
  type: 'refused';
  topic: Topic;
  /** A number such as 4003, or a name such as `"forbidden"` from some servers. */
  code: number | string;
  message: string;
}

/** Everything a subscription callback receives. Switch on `message.type`. */
export type TopicMessage<P = unknown> =
  | HeraldEvent<P>
  | LiveMessage
  | UnconfirmedMessage
  | ResyncMessage
  | PresenceMessage
  | PresenceDiffMessage
  | RefusedMessage;

export interface SubscribeOptions {
  /** Also receive `presence` and `presence_diff` messages for the topic. */
  presence?: boolean;
  /**
   * With `presence`: what the other members see of this user (a name, a
   * colour, a role): an object of at most 512 bytes as JSON. It is what
   * this client says, not checked by the server: trust user ids, not
   * metadata. Change it with {@link HeraldClient.setPresence}.
   */
  meta?: Record<string, unknown>;
  /**
   * Where the application's data stands, e.g. the position a REST response
   * gave with it: the server replays every event after it, or, where it
   * cannot, a `resync` comes before `live`.
   */
  since?: Position;
}

/**
 * What `subscribe` returns: call it (or its `unsubscribe`) to unsubscribe.
 * `live` resolves with the position (a wildcard's is its resource's
 * `wildcard_seq`; `null` from a server that gives none or never confirms) once the server confirmed the subscription, and rejects
 * with a {@link HeraldError} of kind `'refused'` (with the server's `code`)
 * if it refuses the topic. It stays pending while the client does not run
 * (loading, unsupported, stopped).
 */
export interface Subscription {
  (): void;
  unsubscribe(): void;
  live: Promise<Position | null>;
}

export interface PublishOptions {
  /** For the subscribers of the moment only (typing indicators, cursors): no `seq`, never stored, replayed or sent again; only while connected. */
  ephemeral?: boolean;
  /** Accepted only if the topic's `seq` is still this; otherwise a `'conflict'` error with `currentSeq`. */
  ifSeq?: number;
  /** Correlates the event with the request that caused it. */
  traceId?: string;
  /**
   * The publish id (1 to 128 bytes, unique per user) instead of one the
   * client makes: sent again by any client of the same user within the
   * server's dedup window, it is acked as a duplicate, not published twice.
   */
  id?: string;
}

/**
 * Why a publish or a subscription failed, for programs; `message` is for people.
 * - `invalid`: a wrong topic, payload or option;
 * - `queue_full`: too many publishes wait for their ack;
 * - `offline`: an ephemeral publish while not connected;
 * - `unsupported`: the server does not announce `feature` (`ephemeral`, `if_seq`): not sent;
 * - `not_sent`: an ephemeral publish whose connection was lost before its ack;
 * - `conflict`: `ifSeq` was not the topic's `seq`; rebase on `currentSeq` and retry;
 * - `rejected`: the server refused the publish (`code`);
 * - `refused`: the server refused a subscription (`code`, `topic`);
 * - `timeout`: no ack within `publishTimeoutMs`;
 * - `stopped`: the client stopped.
 */
export type HeraldErrorKind =
  | 'invalid'
  | 'queue_full'
  | 'offline'
  | 'unsupported'
  | 'not_sent'
  | 'conflict'
  | 'rejected'
  | 'refused'
  | 'timeout'
  | 'stopped';

/** The `Error` a publish rejects with, and a refused subscription's `live`. */
export interface HeraldError extends Error {
  kind: HeraldErrorKind;
  /** `conflict`: the topic's current `seq`. */
  currentSeq?: number;
  /** `rejected`, `refused`: the server's code. */
  code?: number | string;
  /** `unsupported`: the feature the server does not announce. */
  feature?: string;
  /** `refused`: the topic. */
  topic?: Topic;
}

/** The server's answer to a publish. */
export interface PublishAck {
  /** The publish id the client chose. */
  id: string;
  /** The `seq` the event got; absent from a server that does not number events, and for an ephemeral event. */
  seq?: number;
  /** The event's position, from a server that names its epoch: the `since` of data that includes it. */
  position?: Position;
  /** The server had accepted this publish before (a retransmission) and did not broadcast it again. */
  duplicate: boolean;
}

/** Why the client stopped for good. */
export type DisconnectReason =
  /** `close()` was called. */
  | 'closed'
  /**
   * The WebAssembly module could not be loaded or started: live updates are
   * off, the application goes on. `message` says why; the usual cause is a
   * Content-Security-Policy without `'wasm-unsafe-eval'` in `script-src`.
   */
  | 'unavailable'
  /** The server rejected the token twice in a row (4001). */
  | 'unauthorized'
  /** The server allows nothing the connection asked for (4003). */
  | 'forbidden'
  /** `backoff.maxAttempts` attempts in a row failed. */
  | 'retries_exhausted';

/** How the client is connected. */
export type Transport = 'websocket' | 'sse';

/** The connection's state; `onStatus` reports every change. */
export type ConnectionStatus = (
  /** The WebAssembly module is being fetched and instantiated (the first client starts it). */
  | { state: 'loading' }
  /** `enabled: false` or `token: null`: no connection until the options change. */
  | { state: 'idle' }
  /**
   * Not a browser page (Node, jsdom in Vitest or Jest, an edge runtime, a
   * worker): the client never connects; `message` says so. Use
   * `@herald/realtime/testing` in tests.
   */
  | { state: 'unsupported'; message: string }
  | { state: 'connecting' }
  | { state: 'connected'; transport: Transport }
  /** Waiting `nextInMs` before attempt number `attempt`. */
  | { state: 'reconnecting'; attempt: number; nextInMs: number }
  /** Stopped for good; `message` says why, for people. */
  | { state: 'disconnected'; reason: DisconnectReason; message: string }
) & {
  /** With `shareAcrossTabs`: whether this tab holds the shared connection or uses another tab's. */
  shared?: 'holder' | 'follower';
};

/**
 * A Herald connection. It reconnects with backoff and jitter, resubscribes,
 * recovers missed events by `seq` (or says `resync` when it cannot),
 * retransmits unacked publishes, and detects half-open connections with
 * heartbeats.
 *
 * The constructor returns at once: the first client fetches and
 * instantiates the WebAssembly module (status `loading`), and what is asked
 * of it meanwhile (subscriptions, publishes) is carried out once it is
 * there. The first connection attempt starts after the current task, so a
 * client created and closed in the same tick never opens a socket. Outside
 * a browser page (Node, jsdom, edge runtimes) a client stays `unsupported`.
 */
export class HeraldClient {
  /** @throws Error naming the option that is wrong. */
  constructor(options: HeraldOptions);
  /**
   * Calls `callback` with every event of `topic` (a wildcard matches every
   * identifier), and with the other {@link TopicMessage}s: `live` first,
   * once the server confirmed the subscription. Returns a
   * {@link Subscription}: a function that unsubscribes, with `live`.
   * @throws Error for an invalid topic or `since`.
   */
  subscribe<P = unknown>(topic: Topic, callback: (message: TopicMessage<P>) => void, options?: SubscribeOptions): Subscription;
  /**
   * Publishes an event; resolves on the server's ack. Rejects with a
   * {@link HeraldError} for invalid input, a refusal, a conflict, a timeout
   * or a closed client. While offline the publish waits in a bounded queue
   * (an ephemeral one is refused: it would be stale once sent).
   */
  publish(topic: Topic, event: EventType, entityId: string, payload: unknown, options?: PublishOptions): Promise<PublishAck>;
  /**
   * Changes what the other members of `topic`'s presence see of this user
   * (see {@link SubscribeOptions.meta}); kept for later connections. Throws
   * if `topic` is not subscribed with presence, or `meta` is not an object
   * of at most 512 bytes as JSON.
   */
  setPresence(topic: Topic, meta: Record<string, unknown>): void;
  /**
   * A new token for a client made with `token`: sent at once as a `refresh`
   * while connected (no reconnect, nothing to recover), used for every
   * connection after. `<HeraldProvider options>` calls it when `token` changes.
   */
  setToken(token: string): void;
  /** Calls `callback` at once with the current status, then on every change. Returns a function that stops it. */
  onStatus(callback: (status: ConnectionStatus) => void): () => void;
  /** Calls `callback` with every JSON message that is not a Herald message (from plain broadcast servers). Returns a function that stops it. */
  onRaw(callback: (message: unknown) => void): () => void;
  /** The current status. */
  status(): ConnectionStatus;
  /** Closes the connection (1000) for good; pending publishes reject. */
  close(): void;
}

/**
 * Starts fetching and instantiating the WebAssembly module now, in parallel
 * with the first render, instead of when the first client is made: the
 * build that clients with these options load (`{ shareAcrossTabs: true }`
 * loads the one with the tabs' shared connection; by default, the one
 * every other client loads). Resolves when it is ready; never rejects (a
 * failure shows in every client's status). Does nothing outside a browser
 * page.
 */
export function preload(options?: Pick<CommonOptions, 'shareAcrossTabs'>): Promise<void>;
