'use client';
// React bindings: a provider that shares or owns a client, and hooks that
// subscribe while they are mounted. Plain `createElement`, no JSX, so this
// file ships as it is written. 'use client': React Server Components
// frameworks (Next.js App Router) render these in the browser.
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useInsertionEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from 'react';
import { HeraldClient } from './index.js';

// `undefined`: no provider above (a mistake); `null`: the provider is still
// creating its client (the first render, and every render on a server).
const HeraldContext = createContext(undefined);

// No client yet: the provider's first render, and every render on a server.
const LOADING = Object.freeze({ state: 'loading' });
const NO_MEMBERS = Object.freeze([]);
const NO_META = Object.freeze({});
const WITH_PRESENCE = Object.freeze({ presence: true });

export function HeraldProvider({ client, options, shareAcrossTabs, children }) {
  if ((client == null) === (options == null)) {
    throw new Error('<HeraldProvider> needs exactly one of client={new HeraldClient(...)} or options={{ url, ... }}');
  }
  const own = client == null && shareAcrossTabs !== undefined ? { ...options, shareAcrossTabs } : options;
  const owned = useOwnedClient(client == null ? own : null);
  return createElement(HeraldContext.Provider, { value: client ?? owned }, children);
}

/**
 * A client made from `options` in an effect, closed on unmount and when the
 * options' content changes. In an effect, not during render: a server never
 * makes one, and StrictMode's extra mount makes one that is closed in the
 * same tick, before it opens a socket.
 */
function useOwnedClient(options) {
  const [client, setClient] = useState(null);
  const key = options == null ? null : optionsKey(options);
  const getToken = useLatest(options?.getToken);
  const token = typeof options?.token === 'string' ? options.token : null;
  // The token each client was made with or last given.
  const applied = useRef(new WeakMap());
  useEffect(() => {
    if (key === null) return undefined;
    // `options` is read only when its content (the key) changed; the latest
    // getToken is called, so an inline function does not reconnect.
    const latestToken = options.getToken && ((reason) => getToken.current(reason));
    const created = new HeraldClient(latestToken ? { ...options, getToken: latestToken } : options);
    applied.current.set(created, token);
    setClient(created);
    return () => {
      created.close();
      setClient(null);
    };
  }, [key]);
  // A new token (a refreshed one, from state) goes to the live session as a
  // `refresh`: no reconnect, so nothing to recover and nothing to refetch.
  useEffect(() => {
    if (client === null || token === null || applied.current.get(client) === token) return;
    applied.current.set(client, token);
    client.setToken(token);
  }, [client, token]);
  return client;
}

/**
 * The options' content, so that an equal object literal on every render
 * keeps the client. A token's value is left out (a new one is a refresh of
 * the same session), not whether there is one (`null`: no user, no client).
 */
function optionsKey(options) {
  return JSON.stringify(options, (name, value) =>
    typeof value === 'function' ? '[function]' : name === 'token' && typeof value === 'string' ? '[token]' : value,
  );
}

/** A ref to the value of the latest committed render, for callbacks that must not resubscribe. */
function useLatest(value) {
  const ref = useRef(value);
  // Insertion effects run before every other effect of a commit (so no
  // handler of the previous render is called after it), and do nothing on a
  // server without the warning a layout effect gives there.
  useInsertionEffect(() => {
    ref.current = value;
  });
  return ref;
}

export function useHerald() {
  const client = useContext(HeraldContext);
  if (client === undefined) throw new Error('Herald hooks must be used inside <HeraldProvider>');
  return client;
}

export function useConnectionStatus() {
  const client = useHerald();
  const store = useMemo(() => client && statusStore(client), [client]);
  return useSyncExternalStore(store?.subscribe ?? noSubscription, store?.getSnapshot ?? loading, loading);
}

// useSyncExternalStore needs the same object until the status changes, and
// `client.status()` makes a new one every call: keep the last one reported.
function statusStore(client) {
  let snapshot = client.status();
  return {
    subscribe: (onChange) =>
      client.onStatus((status) => {
        snapshot = status;
        onChange();
      }),
    getSnapshot: () => snapshot,
  };
}

const noSubscription = () => () => {};
const loading = () => LOADING;

export function useTopic(topic, handler, options) {
  const latest = useLatest(handler);
  // Without a handler, the latest event is kept and returned; it belongs to
  // one subscription, so another client or topic starts without one.
  const tracking = handler == null;
  const [last, setLast] = useState(null);
  const { source, status } = useSubscription(
    topic,
    (message) => {
      if (latest.current != null) latest.current(message);
      else if (message.type === undefined) setLast({ source, event: message });
    },
    options,
  );
  if (tracking) return last?.source === source ? last.event : undefined;
  return { status };
}

/**
 * Subscribes while mounted and says where the subscription stands:
 * `'subscribing'` until the server confirms it, `'live'` once it has (and
 * again after a reconnect that recovered), `'resyncing'` after a resync
 * until the next live or event, `'unconfirmed'` with a server that never
 * confirms. `onMessage(message, unsynced)`: `unsynced` is true for the first
 * `live` of a subscription that started from no position, before which
 * anything loaded may have missed a change.
 *
 * The hook remembers where its topic stands (the last live position and the
 * `seq` of every event since): when the client changes (new options that
 * need a new connection), it subscribes again from there, so the server
 * replays what the switch missed, or says resync.
 */
function useSubscription(topic, onMessage, options) {
  const client = useHerald();
  const latest = useLatest(onMessage);
  const presence = options?.presence === true;
  // `since` and `meta` count when the topic's subscription starts, not on every render.
  const since = useLatest(options?.since);
  const meta = useLatest(options?.meta);
  const at = useRef({ topic: undefined, position: null });
  const source = useMemo(() => ({ client, topic }), [client, topic]);
  const [status, setStatus] = useState({ source: null, status: 'subscribing' });
  useEffect(() => {
    if (client === null || topic == null) return undefined;
    if (at.current.topic !== topic) at.current = { topic, position: since.current ?? null };
    const tracked = at.current;
    const from = tracked.position;
    let unsynced = from === null;
    const report = (next) => setStatus((current) => (current.source === source && current.status === next ? current : { source, status: next }));
    const subscribeOptions = from === null ? { presence } : { presence, since: from };
    if (presence && meta.current !== undefined) subscribeOptions.meta = meta.current;
    return client.subscribe(
      topic,
      (message) => {
        let first = false;
        if (message.type === 'live') {
          if (message.position !== null) tracked.position = message.position;
          first = unsynced;
          unsynced = false;
          report('live');
        } else if (message.type === 'unconfirmed') {
          report('unconfirmed');
        } else if (message.type === 'resync') {
          report('resyncing');
        } else if (message.type === undefined) {
          if (message.seq !== undefined && tracked.position !== null && message.seq > tracked.position.seq) {
            tracked.position = { epoch: tracked.position.epoch, seq: message.seq };
          }
          setStatus((current) => (current.source === source && current.status === 'resyncing' ? { source, status: 'live' } : current));
        }
        latest.current(message, first);
      },
      subscribeOptions,
    );
  }, [client, topic, presence]);
  return { source, status: status.source === source ? status.status : 'subscribing' };
}

export function usePresence(topic, options) {
  return usePresenceState(topic, options?.meta).members;
}

export function useMembers(topic, options) {
  const { members, meta } = usePresenceState(topic, options?.meta);
  return useMemo(() => Object.freeze(members.map((user) => (user in meta ? { user, meta: meta[user] } : { user }))), [members, meta]);
}

/** Who is in `topic`'s presence and their metadata; lists this user with `ownMeta`, and tells its changes. */
function usePresenceState(topic, ownMeta) {
  const client = useHerald();
  // Members belong to one subscription: another client or topic starts empty.
  const source = useMemo(() => ({ client, topic }), [client, topic]);
  const [seen, setSeen] = useState({ source: null, members: NO_MEMBERS, meta: NO_META });
  // Compared as JSON: a new object with the same fields on each render is no change.
  const json = ownMeta === undefined ? undefined : JSON.stringify(ownMeta);
  const options = useMemo(() => (json === undefined ? WITH_PRESENCE : { presence: true, meta: JSON.parse(json) }), [json]);
  useTopic(
    topic,
    (message) => {
      if (message.type === 'presence') {
        setSeen({ source, members: message.members, meta: message.meta ?? NO_META });
      } else if (message.type === 'presence_diff') {
        setSeen((last) => applyDiff(source, last.source === source ? last : { members: NO_MEMBERS, meta: NO_META }, message));
      }
    },
    options,
  );
  // The subscription started with the metadata of its time; later changes are sent.
  const sent = useRef({ client: null, topic: null, json: undefined });
  useEffect(() => {
    if (client === null || topic == null || json === undefined) return;
    const last = sent.current;
    sent.current = { client, topic, json };
    if (last.client !== client || last.topic !== topic || last.json === json) return;
    try {
      client.setPresence(topic, JSON.parse(json));
    } catch (error) {
      console.error(`@herald/realtime: presence metadata of ${topic} not set: ${error.message}`);
    }
  }, [client, topic, json]);
  return seen.source === source ? seen : { members: NO_MEMBERS, meta: NO_META };
}

/** A diff names each user's membership now, and a member in `joined` with the metadata it has now (none if absent). */
function applyDiff(source, { members, meta }, { joined, left, meta: joinedMeta }) {
  const kept = members.filter((member) => !left.includes(member));
  const nextMeta = { ...meta };
  for (const user of left) delete nextMeta[user];
  for (const user of joined) {
    if (joinedMeta !== undefined && user in joinedMeta) nextMeta[user] = joinedMeta[user];
    else delete nextMeta[user];
  }
  return { source, members: [...kept, ...joined.filter((member) => !kept.includes(member))], meta: nextMeta };
}

export function usePublish() {
  const client = useHerald();
  return useCallback(
    (topic, event, entityId, payload, options) =>
      client === null
        ? Promise.reject(new Error('the Herald client is not created yet: <HeraldProvider options> creates it after its first render'))
        : client.publish(topic, event, entityId, payload, options),
    [client],
  );
}

export function useInvalidateOnEvent(queryClient, topic, queryKey, options) {
  useInvalidation(topic, queryKey, queryClient, (key) => queryClient.invalidateQueries({ queryKey: key }), options);
}

export function useRevalidateOnEvent(mutate, topic, key, options) {
  useInvalidation(topic, key, mutate, (swrKey) => mutate(swrKey), options);
}

/**
 * Calls `invalidate` on every event of `topic` and on every resync: after a
 * resync events may have been missed, so the cache must not be kept as it
 * is. Also once on the first `live` of a subscription that started from no
 * position: a query loaded before the server confirmed the subscription may
 * have missed a change made meanwhile. A `live` after a reconnect that
 * recovered does not: what was missed was replayed as events. Ephemeral
 * events change no stored data. `key` is a cache key, or a function from the
 * message (an event or a resync; the first live counts as a resync) to one.
 * `options.since`: where the cached data stands (a REST response's
 * position); the server replays what came after it, so the first live
 * refetches nothing.
 */
function useInvalidation(topic, key, cache, invalidate, options) {
  useSubscription(topic, (message, unsynced) => {
    const stale = unsynced || message.type === 'resync' || (message.type === undefined && message.ephemeral !== true);
    if (!stale) return;
    const cause = unsynced ? { type: 'resync', topic: message.topic, reason: 'subscribed' } : message;
    const resolved = typeof key === 'function' ? key(cause) : key;
    coalesce(cache, resolved, () => invalidate(resolved));
  }, options?.since == null ? undefined : { since: options.since });
}

// Refetches in flight, per cache (a QueryClient, SWR's mutate) and key.
const inFlight = new WeakMap();

/**
 * Runs `refetch` for `key` unless one runs already; then it runs once more
 * after that one, if events came meanwhile. A burst of events, or a replay
 * after a reconnect, costs two refetches at most instead of one per event.
 * The refetch starts after the current task, so events delivered together
 * cost one.
 */
function coalesce(cache, key, refetch) {
  let keys = inFlight.get(cache);
  if (keys === undefined) inFlight.set(cache, (keys = new Map()));
  // SWR key filters are functions: each is its own key.
  const id = typeof key === 'function' ? key : JSON.stringify(key);
  const running = keys.get(id);
  if (running !== undefined) {
    running.again = true;
    return;
  }
  const entry = { again: false };
  keys.set(id, entry);
  const run = () =>
    Promise.resolve()
      .then(() => {
        entry.again = false;
        return refetch();
      })
      .catch((error) => globalThis.reportError?.(error))
      .then(() => (entry.again ? run() : keys.delete(id)));
  run();
}

const TYPING = 'TYPING';

/**
 * Who is typing on `topic`, and `notify()` to call on every keystroke.
 * `notify` publishes an ephemeral `TYPING` event (for the subscribers of the
 * moment; never stored or replayed) at most once per `throttleMs`; an
 * indicator is dropped `expireMs` after its last event, so a closed tab or a
 * lost connection does not leave anyone typing forever. `self` (your user
 * id) is left out of the list. Publishing is best effort: offline, or with a
 * server without ephemeral events, nothing is sent.
 */
export function useTyping(topic, { self, throttleMs = 2000, expireMs = 5000 } = {}) {
  const client = useHerald();
  const source = useMemo(() => ({ client, topic }), [client, topic]);
  const [typists, setTypists] = useState({ source: null, until: new Map() });
  const sent = useRef({ source: null, at: -Infinity });
  useSubscription(topic, (message) => {
    if (message.type !== undefined || message.event !== TYPING) return;
    const who = message.data.user_id ?? message.data.entity_id;
    if (who === self) return;
    setTypists((current) => {
      const until = new Map(current.source === source ? current.until : undefined);
      until.set(who, Date.now() + expireMs);
      return { source, until };
    });
  });
  const until = typists.source === source ? typists.until : null;
  // One timer, for the indicator that expires first.
  useEffect(() => {
    if (until === null || until.size === 0) return undefined;
    const next = Math.min(...until.values());
    const timer = setTimeout(() => {
      setTypists((current) => {
        if (current.until !== until) return current;
        const now = Date.now();
        return { source, until: new Map([...until].filter(([, at]) => at > now)) };
      });
    }, Math.max(0, next - Date.now()));
    return () => clearTimeout(timer);
  }, [until, source]);
  const notify = useCallback(() => {
    if (client === null || topic == null) return;
    const now = Date.now();
    if (sent.current.source === source && now - sent.current.at < throttleMs) return;
    sent.current = { source, at: now };
    client.publish(topic, TYPING, self ?? '', null, { ephemeral: true }).catch((error) => {
      if (!['offline', 'not_sent', 'unsupported'].includes(error?.kind)) globalThis.reportError?.(error);
    });
  }, [client, topic, source, self, throttleMs]);
  const typing = useMemo(() => (until === null ? NO_MEMBERS : Object.freeze([...until.keys()])), [until]);
  return { typing, notify };
}

/**
 * The same hooks, typed by a map from topic patterns to payload types:
 * `createHeraldHooks<{ 'gift-list:*': GiftEvent }>()`. Types only: the
 * hooks are the ones above.
 */
export function createHeraldHooks() {
  return { useTopic, usePublish, usePresence, useMembers, useInvalidateOnEvent, useRevalidateOnEvent, useTyping };
}
