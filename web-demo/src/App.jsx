// A shared gift list that never shows stale data: the list is fetched with
// TanStack Query, and every change announced through Herald (by this window,
// another window, or the simulated shopper) invalidates it, as does a resync
// after an outage that lost history.
import { useRef, useState } from 'react';
import { QueryClient, QueryClientProvider, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import {
  HeraldProvider,
  useConnectionStatus,
  useInvalidateOnEvent,
  usePresence,
  useTopic,
} from '@herald/realtime/react';
import { demo, gifts } from './api.js';
import { SeqTracker } from './seq.js';

export function App({ user, list, topic, heraldUrl, outageSecs }) {
  const [queryClient] = useState(() => new QueryClient({ defaultOptions: { queries: { staleTime: Infinity } } }));
  // First-message auth keeps the token out of URLs (and so out of logs); a
  // short backoff makes the demo's outages end visibly fast.
  const options = { url: heraldUrl, token: user, auth: 'message', backoff: { initialMs: 300, maxMs: 3000 } };
  return (
    <QueryClientProvider client={queryClient}>
      <HeraldProvider options={options}>
        <header>
          <h1>Family gift list</h1>
          <span className="who">you are <b data-testid="user">{user}</b></span>
          <ConnectionBadge />
        </header>
        <main>
          <GiftList list={list} topic={topic} user={user} />
          <aside>
            <Viewers topic={topic} />
            <Faults outageSecs={outageSecs} />
            <EventLog topic={topic} />
          </aside>
        </main>
      </HeraldProvider>
    </QueryClientProvider>
  );
}

function ConnectionBadge() {
  const status = useConnectionStatus();
  const text = {
    loading: () => 'loading…',
    idle: () => 'idle',
    unsupported: () => status.message,
    connecting: () => 'connecting…',
    connected: () => `live (${status.transport})`,
    reconnecting: () => `reconnecting: attempt ${status.attempt}, next in ${(status.nextInMs / 1000).toFixed(1)} s`,
    disconnected: () => `offline: ${status.message}`,
  }[status.state]();
  return (
    <span className={`badge ${status.state}`} data-testid="status" data-state={status.state}>
      {text}
    </span>
  );
}

function GiftList({ list, topic, user }) {
  const queryClient = useQueryClient();
  const queryKey = ['gift-list', list];
  const fetches = useRef(0);
  const { data, error, isFetching } = useQuery({
    queryKey,
    queryFn: () => {
      fetches.current += 1;
      return gifts.list(list);
    },
  });
  // The whole point: refetch on every change anyone announces, and after a resync.
  useInvalidateOnEvent(queryClient, topic, queryKey);

  // Our own writes refresh our own list even while Herald is down; other
  // windows learn about them through Herald.
  const refresh = { onSettled: () => queryClient.invalidateQueries({ queryKey }) };
  const add = useMutation({ mutationFn: (name) => gifts.add(list, name, user), ...refresh });
  const toggle = useMutation({ mutationFn: (gift) => gifts.setBought(list, gift.id, !gift.bought, user), ...refresh });
  const remove = useMutation({ mutationFn: (gift) => gifts.remove(list, gift.id), ...refresh });
  const failed = add.error ?? toggle.error ?? remove.error ?? error;

  const onSubmit = (e) => {
    e.preventDefault();
    const input = e.currentTarget.elements.gift;
    if (input.value.trim()) add.mutate(input.value.trim(), { onSuccess: () => (input.value = '') });
  };
  return (
    <section className="list">
      <form onSubmit={onSubmit}>
        <input name="gift" placeholder="Add a gift idea" maxLength={80} autoComplete="off" />
        <button type="submit" disabled={add.isPending}>Add</button>
      </form>
      {failed && <p className="error" role="alert">{failed.message}</p>}
      <ul data-testid="gifts">
        {data?.map((gift) => (
          <li key={gift.id} data-id={gift.id} className={gift.bought ? 'bought' : ''}>
            <label>
              <input type="checkbox" checked={gift.bought} onChange={() => toggle.mutate(gift)} />
              <span className="name">{gift.name}</span>
            </label>
            <span className="by">{gift.by}</span>
            <button type="button" className="remove" title="Remove" onClick={() => remove.mutate(gift)}>×</button>
          </li>
        ))}
      </ul>
      <p className="meta" data-testid="fetches" data-count={fetches.current}>
        fetched {fetches.current} time{fetches.current === 1 ? '' : 's'} {isFetching ? '(refreshing…)' : ''}
      </p>
    </section>
  );
}

function Viewers({ topic }) {
  const viewers = usePresence(topic);
  return (
    <section>
      <h2>Viewing now</h2>
      <p data-testid="viewers">{viewers.length ? [...viewers].sort().join(', ') : '…'}</p>
    </section>
  );
}

function Faults({ outageSecs }) {
  const [note, setNote] = useState('');
  const run = (what, action) => () =>
    action().then(() => setNote(what), (error) => setNote(error.message));
  return (
    <section>
      <h2>Break things</h2>
      <button type="button" onClick={run(`Herald is down for ${outageSecs} s; change the list meanwhile`, demo.outage)}>
        Outage ({outageSecs} s, history kept)
      </button>
      <button type="button" onClick={run('Herald restarted without its history: every page resyncs', demo.restart)}>
        Restart (history lost)
      </button>
      {note && <p className="meta" data-testid="fault-note">{note}</p>}
    </section>
  );
}

const LOG_LINES = 12;

function EventLog({ topic }) {
  const [lines, setLines] = useState([]);
  const [tracker] = useState(() => new SeqTracker());
  const [summary, setSummary] = useState(tracker.summary());
  useTopic(topic, (message) => {
    let line;
    if (message.type === 'resync') {
      tracker.reset();
      line = `resync (${message.reason}): events may be lost, list refetched`;
    } else if (message.type === 'refused') {
      line = `refused: ${message.message ?? 'not allowed'}`;
    } else if (message.type === undefined) {
      tracker.record(message.seq);
      line = `seq ${message.seq}: ${message.event} ${message.data.entity_id} by ${message.data.payload?.by ?? message.data.user_id ?? '?'}`;
    }
    if (line === undefined) return;
    setSummary(tracker.summary());
    setLines((old) => [line, ...old].slice(0, LOG_LINES));
  });
  return (
    <section>
      <h2>Events</h2>
      <p className="meta" data-testid="integrity" data-ok={String(summary.ok)} data-count={summary.count}>
        {summary.text}
      </p>
      <ol className="log" data-testid="log">
        {lines.map((line, i) => (
          <li key={lines.length - i}>{line}</li>
        ))}
      </ol>
    </section>
  );
}
