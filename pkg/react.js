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
const WITH_PRESENCE = Object.freeze({ presence: true });

export function HeraldProvider({ client, options, children }) {
  if ((client == null) === (options == null)) {
    throw new Error('<HeraldProvider> needs exactly one of client={new HeraldClient(...)} or options={{ url, ... }}');
  }
  const owned = useOwnedClient(client == null ? options : null);
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
  useEffect(() => {
    if (key === null) return undefined;
    // `options` is read only when its content (the key) changed; the latest
    // getToken is called, so an inline function does not reconnect.
    const latestToken = options.getToken && ((reason) => getToken.current(reason));
    const created = new HeraldClient(latestToken ? { ...options, getToken: latestToken } : options);
    setClient(created);
    return () => {
      created.close();
      setClient(null);
    };
  }, [key]);
  return client;
}

/** The options' content, so that an equal object literal on every render keeps the client. */
function optionsKey(options) {
  return JSON.stringify(options, (_, value) => (typeof value === 'function' ? '[function]' : value));
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
  const client = useHerald();
  const latest = useLatest(handler);
  const presence = options?.presence === true;
  // Without a handler, the latest event is kept and returned; it belongs to
  // one subscription, so another client or topic starts without one.
  const tracking = handler == null;
  const source = useMemo(() => ({ client, topic }), [client, topic]);
  const [last, setLast] = useState(null);
  useEffect(() => {
    if (client === null || topic == null) return undefined;
    return client.subscribe(
      topic,
      (message) => {
        if (latest.current != null) latest.current(message);
        else if (message.type === undefined) setLast({ source, event: message });
      },
      { presence },
    );
  }, [client, topic, presence]);
  return tracking && last?.source === source ? last.event : undefined;
}

export function usePresence(topic) {
  const client = useHerald();
  // Members belong to one subscription: another client or topic starts empty.
  const source = useMemo(() => ({ client, topic }), [client, topic]);
  const [seen, setSeen] = useState({ source: null, members: NO_MEMBERS });
  useTopic(
    topic,
    (message) => {
      if (message.type === 'presence') {
        setSeen({ source, members: message.members });
      } else if (message.type === 'presence_diff') {
        setSeen((last) => ({ source, members: applyDiff(last.source === source ? last.members : NO_MEMBERS, message) }));
      }
    },
    WITH_PRESENCE,
  );
  return seen.source === source ? seen.members : NO_MEMBERS;
}

function applyDiff(members, { joined, left }) {
  const kept = members.filter((member) => !left.includes(member));
  return [...kept, ...joined.filter((member) => !kept.includes(member))];
}

export function usePublish() {
  const client = useHerald();
  return useCallback(
    (topic, event, entityId, payload) =>
      client === null
        ? Promise.reject(new Error('the Herald client is not created yet: <HeraldProvider options> creates it after its first render'))
        : client.publish(topic, event, entityId, payload),
    [client],
  );
}

export function useInvalidateOnEvent(queryClient, topic, queryKey) {
  useInvalidation(topic, queryKey, queryClient, (key) => queryClient.invalidateQueries({ queryKey: key }));
}

export function useRevalidateOnEvent(mutate, topic, key) {
  useInvalidation(topic, key, mutate, (swrKey) => mutate(swrKey));
}

/**
 * Calls `invalidate` on every event of `topic` and on every resync: after a
 * resync events may have been missed, so the cache must not be kept as it is.
 * `key` is a cache key, or a function from the message to one.
 */
function useInvalidation(topic, key, cache, invalidate) {
  useTopic(topic, (message) => {
    if (message.type === undefined || message.type === 'resync') {
      const resolved = typeof key === 'function' ? key(message) : key;
      coalesce(cache, resolved, () => invalidate(resolved));
    }
  });
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

/**
 * The same hooks, typed by a map from topic patterns to payload types:
 * `createHeraldHooks<{ 'gift-list:*': GiftEvent }>()`. Types only: the
 * hooks are the ones above.
 */
export function createHeraldHooks() {
  return { useTopic, usePublish, usePresence, useInvalidateOnEvent, useRevalidateOnEvent };
}
