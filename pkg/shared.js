// `shareAcrossTabs`: the tabs of one origin with the same URL and user share
// one connection. The tab that holds a Web Lock (navigator.locks) runs the
// wasm client; the others talk to it over a BroadcastChannel. The rules
// (which topics the socket needs, which tab gets which message, positions
// for recovery, the lease and its terms, the session's presence and its
// metadata, which publishes a new holder gets) are the wasm's `SharedTabs`;
// this file carries messages, holds the lock, runs the timers, calls the
// holder's client and hands each message to this tab's own subscribers.
//
// Messages on the channel: from the holder, always with its `term`:
//   beat {status}, msg {topic, tabs, behind, msg}, ack {to, id, ack | error};
//   the first message of a new term makes every tab tell the new holder its topics and publishes
// from any tab, with its `tab` id (and the term it addresses):
//   want {topics: [[topic, since, presence, meta]]}, leave {topic}, meta {topic, meta}, pub {id, args}, bye

/** How long a silent holder keeps the connection: a frozen tab holds its lock for ever. */
const LEASE_MS = 1500;
/** A new holder waits this long for the other tabs' topics before it subscribes. */
const GATHER_MS = 150;

/** The channel's name: the URL and the user (the token names it with `shareAcrossTabs: true`). */
function shareKey(options) {
  const user = typeof options.shareAcrossTabs === 'object' ? options.shareAcrossTabs.user : options.token;
  return `herald:${options.url}:${user}`;
}

export class SharedClient {
  #glue;
  #options;
  #tab = crypto.getRandomValues(new Uint32Array(1))[0];
  #shares;
  #channel;
  #lock;
  #term = null;
  #closed = false;
  #abort = new AbortController();
  #release = null;
  /** A request for the lock waits in its queue. */
  #queued = false;
  #client = null;
  /** The holder's unsubscribe functions of each topic of its session. */
  #sessionSubs = new Map();
  #topics = new Map();
  #statusListeners = new Set();
  #rawListeners = new Set();
  #status = { state: 'connecting', shared: 'follower' };
  #timer = null;
  /**
   * The holder re-arms its renewal from a message task rather than from the
   * timer itself: a chain of timers in a hidden tab is throttled to once a
   * minute after a while (Chrome's intensive throttling, which counts nested
   * timers), which would let the lease lapse; a timer set from a message
   * task is not nested, and runs within a second.
   */
  #hop = new MessageChannel();
  #onPage;
  /** Releases the lock this tab holds for its lifetime, by which the holder knows it is there. */
  #leaveLock = null;

  constructor(options, glue) {
    this.#glue = glue;
    this.#options = options;
    this.#shares = new glue.SharedTabs(this.#tab, LEASE_MS);
    const key = shareKey(options);
    this.#lock = key;
    this.#channel = new BroadcastChannel(key);
    this.#channel.onmessage = (event) => this.#receive(event.data);
    this.#hop.port1.onmessage = () => this.#arm();
    // A tab that goes away says so, so the holder unsubscribes what only it
    // wanted; one back from the back/forward cache asks again.
    this.#onPage = (event) => (event.type === 'pagehide' ? this.#post({ t: 'bye' }) : event.persisted && this.#announce());
    globalThis.addEventListener?.('pagehide', this.#onPage);
    globalThis.addEventListener?.('pageshow', this.#onPage);
    // Held while the tab lives: a tab that crashes says no 'bye', but its lock goes.
    navigator.locks
      .request(`${key}:tab:${this.#tab}`, { signal: this.#abort.signal }, () => new Promise((release) => (this.#leaveLock = release)))
      .catch(() => {});
    this.#request(false);
    // A holder answers with a beat; if there is none, its lock is free and ours comes.
    this.#post({ t: 'hello' });
    this.#arm();
  }

  // ------------------------------------------------------------ the lock

  #request(steal) {
    if (!steal) {
      if (this.#queued) return;
      this.#queued = true;
    }
    const options = steal ? { steal: true } : { signal: this.#abort.signal };
    navigator.locks
      .request(this.#lock, options, () => {
        if (!steal) this.#queued = false;
        // A queued request granted after a steal made this tab the holder already.
        if (this.#closed || this.#release !== null) return undefined;
        return new Promise((release) => {
          this.#release = release;
          this.#hold();
        });
      })
      .catch(() => {
        if (!steal) this.#queued = false;
        // Aborted (closed), or stolen by a tab that saw this one's lease lapse (frozen).
        if (this.#release !== null) this.#stepDown();
      });
  }

  #hold() {
    this.#term = this.#shares.take();
    this.#client = new this.#glue.HeraldClient(this.#options);
    this.#client.onStatus((status) => {
      this.#report({ ...status, shared: 'holder' });
      this.#post({ t: 'beat', status });
    });
    this.#client.onRaw((message) => this.#rawListeners.forEach((listener) => call(listener, message)));
    for (const [topic, entry] of this.#topics) this.#want(this.#tab, topic, this.#shares.since(topic), entry.presence, entry.meta);
    setTimeout(() => {
      if (!this.#holding()) return;
      for (const [topic, options] of this.#shares.start()) this.#subscribeSession(topic, options);
      this.#resend();
    }, GATHER_MS);
    this.#arm();
  }

  #holding() {
    return this.#client !== null;
  }

  /**
   * A holder that finds its own lease lapsed was frozen: another tab may hold
   * the connection now. It steps down before it acts on what it missed.
   */
  #expired() {
    if (!this.#holding() || !this.#shares.expired()) return false;
    this.#stepDown();
    return true;
  }

  /** Another tab holds the connection now: close the socket, send nothing more on it, queue for the lock again. */
  #stepDown() {
    const client = this.#client;
    this.#client = null;
    this.#sessionSubs.clear();
    this.#release?.();
    this.#release = null;
    client?.close();
    if (this.#closed) return;
    this.#report({ ...this.#status, shared: 'follower' });
    this.#request(false);
    this.#arm();
  }

  /** Holder: the tabs alive are those holding their lifetime lock; the wasm drops those that went without a word. */
  #sweep() {
    const prefix = `${this.#lock}:tab:`;
    navigator.locks.query().then(({ held = [] }) => {
      if (!this.#holding()) return;
      const alive = held.filter((lock) => lock.name.startsWith(prefix)).map((lock) => Number(lock.name.slice(prefix.length)));
      for (const topic of this.#shares.alive(new Uint32Array(alive))) this.#unsubscribeSession(topic);
    });
  }

  /** Holder: renew the lease every third of it. Follower: take over when it lapses. */
  #arm() {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    if (this.#holding()) {
      this.#timer = setTimeout(() => {
        if (this.#expired()) return;
        this.#post({ t: 'beat', status: this.#client.status() });
        this.#sweep();
        this.#hop.port2.postMessage(null);
      }, this.#shares.renew());
      return;
    }
    // Undefined: the lease still names this tab, whose lock was taken; it waits to hear the new holder.
    const lapse = this.#shares.lapseInMs() ?? LEASE_MS;
    // A little random, so that the followers of a frozen holder do not all steal at once.
    this.#timer = setTimeout(() => {
      if (this.#shares.lapseInMs() === 0) this.#request(true);
      else this.#hop.port2.postMessage(null);
    }, lapse + Math.random() * 200);
  }

  // ------------------------------------------------------------ the channel

  #post(message) {
    if (this.#closed && message.t !== 'bye') return;
    this.#channel.postMessage({ ...message, tab: this.#tab, term: this.#term });
  }

  #receive(message) {
    if (this.#closed) return;
    if (['beat', 'msg', 'ack'].includes(message.t)) return this.#fromHolder(message);
    if (this.#expired() || !this.#holding() || !this.#shares.addressed(message.term)) {
      // Requests to an older holder are sent again when the new one is heard of.
      if (message.t === 'hello' && this.#holding()) this.#post({ t: 'beat', status: this.#client.status() });
      return undefined;
    }
    switch (message.t) {
      case 'want':
        for (const [topic, since, presence, meta] of message.topics) this.#want(message.tab, topic, since, presence, meta);
        break;
      case 'meta':
        if (this.#shares.setMeta(message.topic, message.meta)) this.#setPresence(message.topic, message.meta);
        break;
      case 'leave':
        if (this.#shares.leave(message.tab, message.topic)) this.#unsubscribeSession(message.topic);
        break;
      case 'pub':
        this.#publishFor(message.tab, message.id, message.args);
        break;
      case 'bye':
        for (const topic of this.#shares.dropTab(message.tab)) this.#unsubscribeSession(topic);
        break;
    }
    return undefined;
  }

  #fromHolder(message) {
    const heard = this.#shares.heard(message.term);
    if (heard === 'stale') return;
    if (heard === 'stepped_down') this.#stepDown();
    this.#term = message.term;
    this.#arm();
    if (heard !== 'current') this.#announce();
    switch (message.t) {
      case 'beat':
        if (message.status && JSON.stringify(message.status) !== JSON.stringify({ ...this.#status, shared: undefined })) {
          this.#report({ ...message.status, shared: 'follower' });
        }
        break;
      case 'msg':
        if (message.tabs.includes(this.#tab)) this.#deliver(message.topic, message.msg, message.behind.includes(this.#tab));
        break;
      case 'ack':
        if (message.to === this.#tab) this.#settle(message.id, message);
        break;
    }
  }

  /** To a new holder: every topic this tab wants, from where it is, and every publish not acked yet. */
  #announce() {
    if (this.#holding()) return;
    const topics = [...this.#topics].map(([topic, entry]) => [topic, this.#shares.since(topic), entry.presence, entry.meta]);
    if (topics.length > 0) this.#post({ t: 'want', topics });
    this.#resend();
  }

  // ------------------------------------------------------------ the holder's side

  #want(tab, topic, since, presence, meta) {
    const joined = this.#shares.want(tab, topic, since ?? null, presence, meta);
    if (joined.setMeta) this.#setPresence(topic, meta);
    if (joined.upgrade) this.#sessionSubs.get(topic)?.push(this.#client.subscribe(topic, () => {}, joined.upgrade));
    if (joined.kind === 'subscribe') this.#subscribeSession(topic, joined.options);
    else if (joined.kind === 'live') {
      if (joined.resync) this.#sendTo(tab, topic, { type: 'resync', topic, reason: 'not_recovered' });
      this.#sendTo(tab, topic, { type: 'live', topic, position: joined.position });
      if (joined.presence) this.#sendTo(tab, topic, joined.presence);
    } else if (joined.kind === 'unconfirmed') {
      this.#sendTo(tab, topic, { type: 'unconfirmed', topic });
    }
  }

  #subscribeSession(topic, options) {
    if (!this.#holding()) return;
    this.#sessionSubs.set(topic, [this.#client.subscribe(topic, (message) => this.#route(topic, message), options)]);
  }

  #setPresence(topic, meta) {
    try {
      this.#client.setPresence(topic, meta);
    } catch (error) {
      globalThis.reportError?.(error);
    }
  }

  #unsubscribeSession(topic) {
    for (const stop of this.#sessionSubs.get(topic) ?? []) stop();
    this.#sessionSubs.delete(topic);
  }

  #route(topic, message) {
    if (!this.#holding()) return;
    const { tabs, behind } = this.#shares.route(topic, message);
    if (message.type === 'refused') this.#unsubscribeSession(topic);
    if (tabs.includes(this.#tab)) this.#deliver(topic, message, behind.includes(this.#tab));
    const others = tabs.filter((tab) => tab !== this.#tab);
    if (others.length > 0) this.#post({ t: 'msg', topic, tabs: others, behind, msg: message });
  }

  #sendTo(tab, topic, message) {
    if (tab === this.#tab) this.#deliver(topic, message, false);
    else this.#post({ t: 'msg', topic, tabs: [tab], behind: [], msg: message });
  }

  #publishFor(tab, id, args) {
    const answer = (result) => {
      // A holder that stepped down meanwhile says nothing: the tab sends it again to the new one.
      if (!this.#holding()) return;
      if (tab === this.#tab) this.#settle(id, result);
      else this.#post({ t: 'ack', to: tab, id, ...result });
    };
    this.#client.publish(...args).then(
      (ack) => answer({ ack }),
      (error) => answer({ error: { message: error.message, ...error } }),
    );
  }

  // ------------------------------------------------------------ this tab's side

  #deliver(topic, message, resyncFirst) {
    const entry = this.#topics.get(topic);
    if (entry === undefined) return;
    if (resyncFirst) this.#deliver(topic, { type: 'resync', topic, reason: 'not_recovered' }, false);
    this.#shares.held(topic, message);
    if (message.type === 'live' || message.type === 'unconfirmed') entry.state = message;
    for (const subscription of [...entry.subscriptions]) {
      call(subscription.callback, message);
      if (message.type === 'live') subscription.settle.resolve(message.position);
      else if (message.type === 'unconfirmed') subscription.settle.resolve(null);
      else if (message.type === 'refused') subscription.settle.reject(refusal(message));
    }
    if (message.type === 'refused') this.#topics.delete(topic);
  }

  subscribe(topic, callback, options) {
    let settle;
    const live = new Promise((resolve, reject) => (settle = { resolve, reject }));
    live.catch(() => {});
    const subscription = { callback, settle };
    let entry = this.#topics.get(topic);
    const presence = options?.presence === true;
    const meta = presence ? options?.meta : undefined;
    if (entry === undefined) {
      entry = { subscriptions: new Set([subscription]), presence, meta, state: null };
      this.#topics.set(topic, entry);
      this.#ask(topic, options?.since ?? null, presence, meta);
    } else {
      entry.subscriptions.add(subscription);
      if (presence && !entry.presence) {
        entry.presence = true;
        entry.meta = meta;
        this.#ask(topic, this.#shares.since(topic), true, meta);
      } else if (meta !== undefined) {
        this.setPresence(topic, meta);
      }
      // The topic is live in this tab already: tell the new subscriber so now.
      if (entry.state !== null) {
        call(callback, entry.state);
        settle.resolve(entry.state.type === 'live' ? entry.state.position : null);
      }
    }
    const unsubscribe = () => {
      if (!entry.subscriptions.delete(subscription) || entry.subscriptions.size > 0 || this.#topics.get(topic) !== entry) return;
      this.#topics.delete(topic);
      if (this.#shares.leave(this.#tab, topic)) this.#unsubscribeSession(topic);
      else if (!this.#holding()) this.#post({ t: 'leave', topic });
    };
    unsubscribe.unsubscribe = unsubscribe;
    unsubscribe.live = live;
    return unsubscribe;
  }

  #ask(topic, since, presence, meta) {
    if (this.#holding()) this.#want(this.#tab, topic, since, presence, meta);
    else this.#post({ t: 'want', topics: [[topic, since, presence, meta]] });
  }

  /** This tab's presence metadata of `topic`, which it subscribed with presence. */
  setPresence(topic, meta) {
    const entry = this.#topics.get(topic);
    if (!entry?.presence) throw new Error(`${topic} is not subscribed with presence: subscribe to it with {presence: true} first`);
    entry.meta = meta;
    if (!this.#holding()) this.#post({ t: 'meta', topic, meta });
    else if (this.#shares.setMeta(topic, meta)) this.#setPresence(topic, meta);
  }

  publish(topic, event, entityId, payload, options) {
    return new Promise((resolve, reject) => {
      const request = { args: [topic, event, entityId, payload, options], resolve, reject };
      const id = this.#shares.publish(request);
      if (id !== undefined) this.#sendPublish(id, request);
    });
  }

  /** To a new holder: the publishes no holder has answered yet. */
  #resend() {
    for (const [id, request] of this.#shares.resend()) this.#sendPublish(id, request);
  }

  #sendPublish(id, { args: [topic, event, entityId, payload, options] }) {
    // The same publish id through every holder: one that vanished after
    // sending it makes the next one's copy a duplicate, not a second event.
    const args = [topic, event, entityId, payload, { id: `tab-${this.#tab}-${id}`, ...options }];
    if (this.#holding()) this.#publishFor(this.#tab, id, args);
    else this.#post({ t: 'pub', id, args });
  }

  #settle(id, result) {
    const request = this.#shares.answered(id);
    if (request === undefined) return;
    if (result.error === undefined) request.resolve(result.ack);
    else request.reject(Object.assign(new Error(result.error.message), result.error));
  }

  setToken(token) {
    // Each tab keeps its own token; the holder's is the one in use.
    this.#options = { ...this.#options, token };
    this.#client?.setToken(token);
  }

  onStatus(callback) {
    this.#statusListeners.add(callback);
    call(callback, this.status());
    return () => this.#statusListeners.delete(callback);
  }

  onRaw(callback) {
    this.#rawListeners.add(callback);
    return () => this.#rawListeners.delete(callback);
  }

  #report(status) {
    this.#status = status;
    this.#statusListeners.forEach((listener) => call(listener, status));
  }

  status() {
    return this.#status;
  }

  close() {
    if (this.#closed) return;
    this.#post({ t: 'bye' });
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#abort.abort();
    this.#leaveLock?.();
    globalThis.removeEventListener?.('pagehide', this.#onPage);
    globalThis.removeEventListener?.('pageshow', this.#onPage);
    this.#stepDown();
    this.#channel.close();
    this.#hop.port1.close();
    // Every callback that could still come (a lock granted, a timer) checks `#closed` first.
    this.#shares.free();
    this.#report({ state: 'disconnected', reason: 'closed', message: 'closed by the application', shared: 'follower' });
  }
}

function refusal(message) {
  return Object.assign(new Error(`subscription to ${message.topic} refused (${message.code}): ${message.message}`), {
    kind: 'refused',
    topic: message.topic,
    code: message.code,
  });
}

function call(listener, value) {
  try {
    listener(value);
  } catch (error) {
    globalThis.reportError?.(error);
  }
}
