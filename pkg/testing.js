// `@herald/realtime/testing`: a client for application tests (Vitest, Jest,
// jsdom, Node) that opens no socket and loads no wasm. It behaves as the real
// client does towards the application (subscriptions, wildcards, statuses,
// publish promises), and the test drives it: emit events, resyncs, presence
// and status changes, settle publishes, see what is subscribed.
import { checkTopic, matches } from './topic.js';

const CONNECTED = Object.freeze({ state: 'connected', transport: 'websocket' });

/** A mock client; `options.status` is where it starts (connected over a WebSocket by default). */
export function createMockClient(options = {}) {
  return new MockClient(options.status ?? CONNECTED);
}

class MockClient {
  #status;
  #subscriptions = new Set();
  #statusListeners = new Set();
  #rawListeners = new Set();
  #publishes = [];
  #nextPublish = 0;
  #seq = new Map();
  #meta = new Map();

  constructor(status) {
    this.#status = status;
  }

  // ------------------------------------------------ what the application uses

  subscribe(topic, callback, options) {
    checkTopic(topic);
    if (typeof callback !== 'function') throw new Error('subscribe needs a callback function');
    this.#alive('subscribe');
    const presence = options?.presence === true;
    const subscription = { topic, callback, presence, since: options?.since ?? null, settle: null };
    if (presence && options?.meta !== undefined) this.#meta.set(topic, options.meta);
    const live = new Promise((resolve, reject) => (subscription.settle = { resolve, reject }));
    // As the real client's: a refusal nobody awaits is no unhandled rejection.
    live.catch(() => {});
    this.#subscriptions.add(subscription);
    const unsubscribe = () => {
      this.#subscriptions.delete(subscription);
    };
    unsubscribe.unsubscribe = unsubscribe;
    unsubscribe.live = live;
    return unsubscribe;
  }

  publish(topic, event, entityId, payload, options = {}) {
    try {
      checkTopic(topic);
      this.#alive('publish');
    } catch (error) {
      return Promise.reject(error);
    }
    const id = `mock-${this.#nextPublish++}`;
    return new Promise((resolve, reject) => {
      const pending = {
        id,
        topic,
        event,
        entityId,
        payload,
        options,
        resolve: (ack = {}) => {
          this.#settled(pending);
          resolve({ id, seq: this.#nextSeq(topic), duplicate: false, ...ack });
        },
        reject: (error = new Error('rejected by the mock')) => {
          this.#settled(pending);
          reject(typeof error === 'string' ? new Error(error) : error);
        },
      };
      this.#publishes.push(pending);
    });
  }

  setPresence(topic, meta) {
    checkTopic(topic);
    if (![...this.#subscriptions].some((s) => s.topic === topic && s.presence)) {
      throw new Error(`${topic} is not subscribed with presence: subscribe to it with {presence: true} first`);
    }
    this.#meta.set(topic, meta);
  }

  setToken(token) {
    this.token = token;
  }

  onStatus(callback) {
    this.#statusListeners.add(callback);
    callback(this.#status);
    return () => this.#statusListeners.delete(callback);
  }

  onRaw(callback) {
    this.#rawListeners.add(callback);
    return () => this.#rawListeners.delete(callback);
  }

  status() {
    return this.#status;
  }

  close() {
    if (this.#status.state === 'disconnected') return;
    for (const pending of [...this.#publishes]) pending.reject(new Error('the session stopped before the ack: closed by the application'));
    this.setStatus({ state: 'disconnected', reason: 'closed', message: 'closed by the application' });
  }

  // ------------------------------------------------ what the test drives

  /** The topics subscribed now (each once, in the order first subscribed). */
  topics() {
    return [...new Set([...this.#subscriptions].map((s) => s.topic))];
  }

  /** The presence metadata this client set for `topic` (at subscribe or with `setPresence`), or `undefined`. */
  presenceMeta(topic) {
    return this.#meta.get(topic);
  }

  /** Publishes not yet settled, oldest first: each has `resolve(ack?)` and `reject(error?)`. */
  publishes() {
    return [...this.#publishes];
  }

  /** Delivers an event (a `HeraldEvent` whose missing fields get defaults) to every matching subscription. */
  emit(event) {
    checkTopic(event?.topic);
    const { data = {} } = event;
    const full = {
      ...event,
      event: event.event ?? 'UPDATED',
      data: { entity_id: '1', payload: null, timestamp: new Date().toISOString(), ...data },
      seq: event.seq ?? this.#nextSeq(event.topic),
    };
    this.#deliver(full, (pattern) => matches(pattern, full.topic));
    return full;
  }

  /** The server confirms `topic`'s subscriptions: `{type: 'live', topic, position}`, and their `live` resolves. */
  live(topic, position = null) {
    checkTopic(topic);
    this.#deliver({ type: 'live', topic, position }, (pattern, s) => {
      if (pattern !== topic) return false;
      s.settle.resolve(position);
      return true;
    });
  }

  /** Where each subscription of `topic` said it starts (`since`), in order: for tests of REST positions. */
  since(topic) {
    return [...this.#subscriptions].filter((s) => s.topic === topic).map((s) => s.since);
  }

  /** Tells the topic's subscribers (and those of wildcards over it) that events may have been missed. */
  resync(topic, reason = 'not_recovered') {
    checkTopic(topic);
    this.#deliver({ type: 'resync', topic, reason }, (pattern) => matches(pattern, topic) || matches(topic, pattern));
  }

  /** Who is subscribed, for subscriptions with `presence: true`. */
  presence(topic, members, meta = {}) {
    this.#deliver({ type: 'presence', topic, members: [...members], meta: { ...meta } }, (pattern, s) => s.presence && matches(pattern, topic));
  }

  /** Who joined and who left, for subscriptions with `presence: true`. */
  presenceDiff(topic, { joined = [], left = [], meta = {} }) {
    this.#deliver({ type: 'presence_diff', topic, joined: [...joined], left: [...left], meta: { ...meta } }, (pattern, s) => s.presence && matches(pattern, topic));
  }

  /** The server refuses the topic: its subscriptions get `refused` and are dropped. */
  refuse(topic, { code = 4003, message = 'forbidden' } = {}) {
    const refused = [...this.#subscriptions].filter((s) => s.topic === topic);
    refused.forEach((s) => this.#subscriptions.delete(s));
    refused.forEach((s) => {
      s.settle.reject(Object.assign(new Error(`subscription to ${topic} refused (${code}): ${message}`), { kind: 'refused', topic, code }));
      s.callback({ type: 'refused', topic, code, message });
    });
  }

  /** A JSON message that is not Herald's, for `onRaw` listeners. */
  raw(message) {
    this.#rawListeners.forEach((listener) => listener(message));
  }

  /** Changes the status, for `onStatus` listeners (and `useConnectionStatus`). */
  setStatus(status) {
    this.#status = status;
    this.#statusListeners.forEach((listener) => listener(status));
  }

  #deliver(message, wants) {
    for (const subscription of [...this.#subscriptions]) {
      if (wants(subscription.topic, subscription)) subscription.callback(message);
    }
  }

  #settled(pending) {
    this.#publishes = this.#publishes.filter((p) => p !== pending);
  }

  #nextSeq(topic) {
    const seq = (this.#seq.get(topic) ?? 0) + 1;
    this.#seq.set(topic, seq);
    return seq;
  }

  #alive(what) {
    if (this.#status.state === 'disconnected') throw new Error(`cannot ${what}: the session has stopped: ${this.#status.message}`);
  }
}
