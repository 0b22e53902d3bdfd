// A shared gift list that never shows stale data: the list is fetched with
// TanStack Query, and every change announced through Herald (by this window,
// another window, or the simulated shopper) invalidates it, as does a resync
// after an outage that lost history. This window's own changes show at once
// (optimistic), are taken back if the backend refuses them, and settle when
// the backend's event comes; who is typing a gift idea shows live
// (ephemeral events: never stored, gone when the typist stops).
import { useRef, useState } from 'react';
import { QueryClient, QueryClientProvider, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import {
  HeraldProvider,
  useConnectionStatus,
  useInvalidateOnEvent,
  usePresence,
  useTopic,
  useTyping,
} from '@herald/realtime/react';
import { demo, gifts } from './api.js';
import { SeqTracker } from './seq.js';

export function App({ user, onSwitchUser, list, topic, heraldUrl, outageSecs }) {
  const [queryClient] = useState(() => new QueryClient({ defaultOptions: { queries: { staleTime: Infinity } } }));
  // First-message auth keeps the token out of URLs (and so out of logs); a
  // short backoff makes the demo's outages end visibly fast. The tabs of one
  // user share one connection.
  const options = { url: heraldUrl, token: user, auth: 'message', backoff: { initialMs: 300, maxMs: 3000 }, shareAcrossTabs: true };
  return (
    <QueryClientProvider client={queryClient}>
      <HeraldProvider options={options}>
        <header>
          <h1>Family gift list</h1>
          <span className="who">
            you are <b data-testid="user">{user}</b>{' '}
            <button type="button" data-testid="switch-user" onClick={onSwitchUser}>switch user</button>
          </span>
          <ConnectionBadge />
        </header>
        <main>
          <GiftList list={list} topic={topic} user={user} />
          <aside>
            <Viewers topic={topic} />
            {/* Only `herald demo --web` can take Herald down on request. */}
            {outageSecs !== undefined && <Faults outageSecs={outageSecs} />}
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
    <>
      <span className={`badge ${status.state}`} data-testid="status" data-state={status.state}>
        {text}
      </span>
      {status.shared && (
        <span className="meta" data-testid="shared" title="one connection for every tab of this user">
          shared connection: {status.shared}
        </span>
      )}
    </>
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

  // Our own writes show at once. A write the backend refuses is taken back
  // (and the list refetched, in case others changed it meanwhile); one it
  // accepts settles when its event comes through Herald, as everyone's do.
  const optimistic = (apply) => ({
    onMutate: async (input) => {
      // A refetch in flight would overwrite the optimistic list with an older one.
      await queryClient.cancelQueries({ queryKey });
      queryClient.setQueryData(queryKey, (current) => apply(current ?? [], input));
    },
    onError: () => queryClient.invalidateQueries({ queryKey }),
  });
  const pendingId = useRef(0);
  const add = useMutation({
    mutationFn: ({ name }) => gifts.add(list, name, user),
    ...optimistic((current, { id, name }) => [...current, { id, name, by: user, bought: false, pending: true }]),
    onError: (_, { id }) => {
      queryClient.setQueryData(queryKey, (current) => current?.filter((gift) => gift.id !== id));
      queryClient.invalidateQueries({ queryKey });
    },
  });
  const toggle = useMutation({
    mutationFn: (gift) => gifts.setBought(list, gift.id, !gift.bought, user),
    ...optimistic((current, changed) => current.map((gift) => (gift.id === changed.id ? { ...gift, bought: !changed.bought, pending: true } : gift))),
  });
  const remove = useMutation({ mutationFn: (gift) => gifts.remove(list, gift.id), onSettled: () => queryClient.invalidateQueries({ queryKey }) });
  const failed = add.error ?? toggle.error ?? remove.error ?? error;
  const { typing, notify } = useTyping(topic, { self: user });

  const onSubmit = (e) => {
    e.preventDefault();
    const input = e.currentTarget.elements.gift;
    const name = input.value.trim();
    if (!name) return;
    input.value = '';
    add.mutate({ id: `pending-${(pendingId.current += 1)}`, name });
  };
  return (
    <section className="list">
      <form onSubmit={onSubmit}>
        {/* No maxLength: the backend's own limit (80) refuses a longer name, and the page takes it back. */}
        <input name="gift" placeholder="Add a gift idea" autoComplete="off" onChange={notify} />
        <button type="submit">Add</button>
      </form>
      <p className="meta typing" data-testid="typing">
        {typing.length === 0 ? '\u00a0' : `${[...typing].sort().join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`}
      </p>
      {failed && <p className="error" role="alert">{failed.message}</p>}
      <ul data-testid="gifts">
        {data?.map((gift) => (
          <li key={gift.id} data-id={gift.id} className={[gift.bought && 'bought', gift.pending && 'pending'].filter(Boolean).join(' ')}>
            <label>
              <input type="checkbox" checked={gift.bought} disabled={gift.pending} onChange={() => toggle.mutate(gift)} />
              <span className="name">{gift.name}</span>
            </label>
            <span className="by">{gift.by}</span>
            <button type="button" className="remove" title="Remove" disabled={gift.pending} onClick={() => remove.mutate(gift)}>×</button>
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
    } else if (message.type === undefined && !message.ephemeral) {
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
