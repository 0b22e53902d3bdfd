// The apps the browser tests mount, one export each. They show what the
// hooks give them as JSON in `[data-testid]` elements, which the tests read.
import {
  HeraldProvider,
  useConnectionStatus,
  useHerald,
  useInvalidateOnEvent,
  useMembers,
  usePresence,
  usePublish,
  useRevalidateOnEvent,
  useTopic,
} from '@herald/realtime/react';
import { QueryClient, QueryClientProvider, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import useSWR, { SWRConfig, useSWRConfig } from 'swr';

export { App as readme } from './readme-example.jsx';

// Quick reconnects, for the tests that take the server down.
const FAST_BACKOFF = { initialMs: 50, maxMs: 300 };

const fetchJson = (path) => fetch(path).then((response) => response.json());

const Show = ({ id, value }) => <pre data-testid={id}>{JSON.stringify(value)}</pre>;

/** The current status, and every distinct status so far. */
function Status() {
  const status = useConnectionStatus();
  const [history, setHistory] = useState([]);
  useEffect(() => {
    const text = JSON.stringify(status);
    setHistory((seen) => (JSON.stringify(seen.at(-1)) === text ? seen : [...seen, status]));
  }, [status]);
  return (
    <>
      <Show id="status" value={status} />
      <Show id="status-history" value={history} />
    </>
  );
}

/** How many different clients the provider has handed out. */
function ClientCount() {
  const client = useHerald();
  const seen = useRef(new Set());
  if (client) seen.current.add(client);
  return <Show id="clients" value={seen.current.size} />;
}

/**
 * Every message of `topic`, each with the `label` of the render whose
 * handler received it. `active` shows the props once the effects of their
 * render have run, so the subscription has changed by then.
 */
function Messages({ topic, label }) {
  const [messages, setMessages] = useState([]);
  const [lives, setLives] = useState([]);
  const { status } = useTopic(topic, (message) =>
    message.type === 'live'
      ? setLives((list) => [...list, message.position])
      : setMessages((list) => [...list, { label, message }]),
  );
  const [active, setActive] = useState(null);
  useEffect(() => setActive({ topic, label }), [topic, label]);
  return (
    <>
      <Show id="messages" value={messages} />
      <Show id="lives" value={lives} />
      <Show id="topic-status" value={status} />
      <Show id="active" value={active} />
    </>
  );
}

function Members({ topic, id }) {
  const members = usePresence(topic);
  return <Show id={id} value={[...members].sort()} />;
}

function Publisher({ topic }) {
  const publish = usePublish();
  const [ack, setAck] = useState(null);
  const onClick = () =>
    publish(topic, 'ADDED', 'gift-9', { name: 'Scarf' }).then(setAck, (error) => setAck({ error: error.message }));
  return (
    <>
      <button data-testid="publish" onClick={onClick}>
        publish
      </button>
      <Show id="ack" value={ack} />
    </>
  );
}

/** A new `renders` renders again, which passes new options objects with the same content; `extra`: more options. */
export function status({ url, token, renders, extra }) {
  return (
    <HeraldProvider options={{ url, token, backoff: { ...FAST_BACKOFF }, ...extra }}>
      <Status />
      <ClientCount />
      <Show id="renders" value={renders} />
    </HeraldProvider>
  );
}

/** A provider whose tabs share one connection (`shareAcrossTabs` on the provider), with a topic and presence under StrictMode. */
export function sharedTabs({ url, token, topic }) {
  return (
    <HeraldProvider options={{ url, token, backoff: { ...FAST_BACKOFF } }} shareAcrossTabs>
      <Status />
      <Messages topic={topic} label="shared" />
      <Members topic={topic} id="members" />
    </HeraldProvider>
  );
}

/** A client the page made itself, as `window.sharedClient`. */
export function shared() {
  return (
    <HeraldProvider client={window.sharedClient}>
      <Status />
    </HeraldProvider>
  );
}

/** `options`: more client options (debug, backgroundTimeoutMs, a token of null...). */
export function topic({ url, topic, label, options }) {
  return (
    <HeraldProvider options={{ url, token: 'reader', ...options }}>
      <Status />
      <Messages topic={topic} label={label} />
    </HeraldProvider>
  );
}

export function publish({ url, topic }) {
  return (
    <HeraldProvider options={{ url, token: 'writer' }}>
      <Status />
      <Publisher topic={topic} />
      <Messages topic={topic} />
    </HeraldProvider>
  );
}

/** Two providers, two clients, two users on one topic; `alice` comes from an inline getToken. */
export function presence({ url, topic, alice, bob }) {
  return (
    <>
      <HeraldProvider options={{ url, getToken: () => alice, backoff: FAST_BACKOFF }}>
        <Members topic={topic} id="alice-sees" />
      </HeraldProvider>
      {bob && (
        <HeraldProvider options={{ url, token: 'bob', backoff: FAST_BACKOFF }}>
          <Members topic={topic} id="bob-sees" />
        </HeraldProvider>
      )}
    </>
  );
}

function MembersWithMeta({ topic, id, meta }) {
  const members = useMembers(topic, { meta });
  return <Show id={id} value={[...members].sort((a, b) => a.user.localeCompare(b.user))} />;
}

/** Alice and Bob on one topic with presence metadata; a new `aliceMeta` is sent as it changes. */
export function members({ url, topic, aliceMeta }) {
  return (
    <>
      <HeraldProvider options={{ url, token: 'alice', backoff: FAST_BACKOFF }}>
        <MembersWithMeta topic={topic} id="alice-sees" meta={aliceMeta} />
      </HeraldProvider>
      <HeraldProvider options={{ url, token: 'bob', backoff: FAST_BACKOFF }}>
        <MembersWithMeta topic={topic} id="bob-sees" meta={{ name: 'Bob' }} />
      </HeraldProvider>
    </>
  );
}

/** A query client per mount, so that no two tests share a cache. */
function WithQueryClient({ children }) {
  const [queryClient] = useState(() => new QueryClient());
  return <QueryClientProvider client={queryClient}>{children}</QueryClientProvider>;
}

/** Two gifts cached apart; an event refetches its gift, a resync both. */
function GiftQueries({ list }) {
  const queryClient = useQueryClient();
  const a = useQuery({ queryKey: ['gifts', list, 'a'], queryFn: () => fetchJson(`/api/${list}/a`) });
  const b = useQuery({ queryKey: ['gifts', list, 'b'], queryFn: () => fetchJson(`/api/${list}/b`) });
  const [log, setLog] = useState([]);
  useInvalidateOnEvent(queryClient, `gift-list:${list}`, (message) => {
    const key = message.type === 'resync' ? ['gifts', list] : ['gifts', list, message.data.entity_id];
    setLog((entries) => [...entries, message.type === 'resync' ? `resync ${message.reason}` : `event ${message.data.entity_id}`]);
    return key;
  });
  return <Show id="gifts" value={{ a: a.data?.fetch ?? null, b: b.data?.fetch ?? null, log }} />;
}

export function queryKeys({ url, list }) {
  return (
    <HeraldProvider options={{ url, token: 'reader', backoff: FAST_BACKOFF }}>
      <WithQueryClient>
        <GiftQueries list={list} />
      </WithQueryClient>
    </HeraldProvider>
  );
}

/** The same with SWR: a string key on an event, a filter over both keys on a resync. */
function SwrGifts({ list }) {
  const { mutate } = useSWRConfig();
  const a = useSWR(`/api/swr/${list}/a`, fetchJson);
  const b = useSWR(`/api/swr/${list}/b`, fetchJson);
  useRevalidateOnEvent(mutate, `gift-list:${list}`, (message) =>
    message.type === 'resync'
      ? (key) => typeof key === 'string' && key.startsWith(`/api/swr/${list}/`)
      : `/api/swr/${list}/${message.data.entity_id}`,
  );
  return <Show id="gifts" value={{ a: a.data?.fetch ?? null, b: b.data?.fetch ?? null }} />;
}

// Focus and network revalidation off: every fetch after the first is one the hook asked for.
const swrConfig = { provider: () => new Map(), revalidateOnFocus: false, revalidateOnReconnect: false };

export function swr({ url, list }) {
  return (
    <SWRConfig value={swrConfig}>
      <HeraldProvider options={{ url, token: 'reader', backoff: FAST_BACKOFF }}>
        <SwrGifts list={list} />
      </HeraldProvider>
    </SWRConfig>
  );
}

function GiftList({ topic }) {
  const queryClient = useQueryClient();
  const { data } = useQuery({ queryKey: ['list', topic], queryFn: () => fetchJson(`/api/list/${topic}`) });
  useInvalidateOnEvent(queryClient, topic, ['list', topic]);
  return <Show id="list" value={data?.fetch ?? null} />;
}

/** Every hook at once, on three topics; with `shared`, on `window.sharedClient`. */
export function everything({ url, shared, topic, presenceTopic, listTopic }) {
  const source = shared ? { client: window.sharedClient } : { options: { url, token: 'everyone' } };
  return (
    <HeraldProvider {...source}>
      <Status />
      <ClientCount />
      <Messages topic={topic} />
      <Members topic={presenceTopic} id="members" />
      <WithQueryClient>
        <GiftList topic={listTopic} />
      </WithQueryClient>
      <Publisher topic={topic} />
    </HeraldProvider>
  );
}

function Latest({ topic }) {
  const event = useTopic(topic);
  return <Show id="latest" value={event ? [event.data.entity_id, event.seq] : null} />;
}

/** useTopic without a handler: the latest event. */
export function latest({ url, topic }) {
  return (
    <HeraldProvider options={{ url, token: 'reader' }}>
      <Status />
      <Latest topic={topic} />
    </HeraldProvider>
  );
}

/** One query invalidated by every event of its topic; `events` counts what the page received. */
function Coalesced({ list }) {
  const queryClient = useQueryClient();
  const { data } = useQuery({ queryKey: ['slow', list], queryFn: () => fetchJson(`/api/slow/${list}`) });
  useInvalidateOnEvent(queryClient, `gift-list:${list}`, ['slow', list]);
  const [events, setEvents] = useState(0);
  useTopic(`gift-list:${list}`, (message) => message.type === undefined && setEvents((n) => n + 1));
  return <Show id="coalesced" value={{ fetch: data?.fetch ?? null, events }} />;
}

export function coalesce({ url, list }) {
  return (
    <HeraldProvider options={{ url, token: 'reader' }}>
      <Status />
      <WithQueryClient>
        <Coalesced list={list} />
      </WithQueryClient>
    </HeraldProvider>
  );
}

/**
 * A list loaded over REST and kept fresh by useInvalidateOnEvent: `fetch`
 * is the number of the request its data came from; `status` and `lives`
 * are useTopic's on the same topic (`gift-list:<list>` unless given).
 */
function FreshList({ list, topic = `gift-list:${list}` }) {
  const queryClient = useQueryClient();
  const { data } = useQuery({ queryKey: ['fresh', list], queryFn: () => fetchJson(`/api/fresh/${list}`) });
  useInvalidateOnEvent(queryClient, topic, ['fresh', list]);
  const [lives, setLives] = useState(0);
  const { status } = useTopic(topic, (message) => message.type === 'live' && setLives((n) => n + 1));
  return <Show id="fresh" value={{ fetch: data?.fetch ?? null, status, lives }} />;
}

/** No SSE fallback: a blocked WebSocket keeps the subscription from going live. */
export function fresh({ url, list, topic }) {
  return (
    <HeraldProvider options={{ url, token: 'reader', backoff: FAST_BACKOFF, fallback: false }}>
      <Status />
      <WithQueryClient>
        <FreshList list={list} topic={topic} />
      </WithQueryClient>
    </HeraldProvider>
  );
}
