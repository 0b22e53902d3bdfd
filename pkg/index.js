// The package entry. It is synchronous and does not touch the wasm: a page
// renders without waiting for it, and server rendering, edge runtimes and
// test runners import it for free. The wasm is fetched and instantiated by
// the first client (or `preload()`); until then a client is 'loading', and
// what the application asks of it meanwhile is replayed once it is there.

import { checkTopic } from './topic.js';

const BROWSER_ONLY =
  'the Herald client runs in browser pages only (this is a server, a worker or a DOM emulation such as jsdom): it stays unsupported and never connects';

/** Why clients cannot run here, or null in a browser page. */
function unsupportedReason() {
  // Node (and Bun, Deno), edge runtimes, and the DOM emulations of test
  // runners (jsdom, happy-dom), which do not always show `process`.
  if (globalThis.process?.versions?.node !== undefined || typeof globalThis.EdgeRuntime === 'string') return BROWSER_ONLY;
  if (/jsdom|happydom/i.test(globalThis.navigator?.userAgent ?? '')) return BROWSER_ONLY;
  if (typeof window !== 'object' || typeof WebSocket !== 'function') return BROWSER_ONLY;
  if (typeof WebAssembly !== 'object') return 'this browser has no WebAssembly: live updates are off';
  return null;
}

// The wasm comes in two builds (xtask/src/wasm.rs): the one every client
// loads, and the same plus the rules of tabs sharing a connection, which
// only a client with `shareAcrossTabs` loads. Each import is written out
// so that bundlers see both files.
const loading = { plain: null, tabs: null };

/** Whether tabs can share a connection here: elsewhere each keeps its own. */
function canShare() {
  return typeof BroadcastChannel === 'function' && typeof globalThis.navigator?.locks?.request === 'function';
}

/** Whether a client with `options` shares its connection with the browser's other tabs. */
function sharing(options) {
  return Boolean(options?.shareAcrossTabs) && canShare();
}

/**
 * The build a client with `options` loads: 'tabs' for one that shares, and
 * for any client once that build is on the page (it holds the plain client
 * too), so that a page downloads the second build only when a sharing
 * client comes after a plain one.
 */
function buildFor(options) {
  return sharing(options) || loading.tabs !== null ? 'tabs' : 'plain';
}

/** The exports of `build`, loaded once for every client that needs it. */
function load(build) {
  if (build === 'tabs') {
    loading.tabs ??= Promise.all([import('./dist/herald_tabs.js'), import('./shared.js')]).then(async ([glue, { SharedClient }]) => {
      await glue.default();
      return { ...glue, SharedClient };
    });
    return loading.tabs;
  }
  loading.plain ??= import('./dist/herald.js').then(async (glue) => {
    await glue.default();
    return glue;
  });
  return loading.plain;
}

/**
 * Starts fetching and instantiating the wasm now, before the first client
 * needs it: the build for clients with `options` (`{ shareAcrossTabs: true }`
 * for those that share a connection). Resolves once it is ready; never
 * rejects (a failure is reported by every client's status).
 */
export function preload(options) {
  if (unsupportedReason() !== null) return Promise.resolve();
  return load(buildFor(options)).then(
    () => undefined,
    () => undefined,
  );
}

/** Why `build`'s wasm did not load, for people: a CSP that forbids compiling it is the usual cause. */
function loadFailure(error, build) {
  const text = String(error?.message ?? error);
  const file = build === 'tabs' ? 'herald_tabs_bg.wasm' : 'herald_bg.wasm';
  const csp = /Content Security Policy|unsafe-eval|CompileError.*(refused|disallowed)/i.test(text)
    ? "the page's Content-Security-Policy forbids compiling WebAssembly: add 'wasm-unsafe-eval' to script-src"
    : /magic word.*found 3c/i.test(text)
      ? `the server answered with a page instead of ${file}: with Vite's dev server, add optimizeDeps: { exclude: ['@herald/realtime'] } to vite.config`
      : `check that ${file} is served next to the bundle, as application/wasm`;
  return {
    state: 'disconnected',
    reason: 'unavailable',
    message: `live updates are off: the WebAssembly module did not load (${text}); ${csp}`,
  };
}

// ---------------------------------------------------------------- options

const MILLIS = ['heartbeatMs', 'heartbeatTimeoutMs', 'connectTimeoutMs', 'publishTimeoutMs', 'backgroundTimeoutMs'];
const BACKOFF_MILLIS = ['initialMs', 'maxMs', 'maxAdvisedMs'];

function fail(message) {
  throw new Error(`options.${message}`);
}

function millis(value, name) {
  if (value != null && !(typeof value === 'number' && value >= 0 && value <= Number.MAX_SAFE_INTEGER)) {
    fail(`${name} must be a number of milliseconds`);
  }
}

/**
 * `ws:`/`wss:` for a WebSocket URL; a relative one (`/ws`) and an `http(s):`
 * one follow the page (`https:` pages get `wss:`).
 */
function webSocketUrl(url) {
  if (/^wss?:\/\//i.test(url)) return url;
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase();
  if (scheme !== undefined && scheme !== 'http:' && scheme !== 'https:') {
    fail(`url ${JSON.stringify(url)} must be ws://, wss://, http(s):// or a path such as '/ws'`);
  }
  const base = globalThis.location?.href;
  if (scheme === undefined && base === undefined) {
    fail(`url ${JSON.stringify(url)} is relative, and there is no page to resolve it against: give ws:// or wss://`);
  }
  const resolved = new URL(url, base);
  resolved.protocol = resolved.protocol === 'https:' ? 'wss:' : 'ws:';
  return resolved.href;
}

/**
 * Checks the options as the README documents them (a mistake throws at
 * once, naming the option, whether or not the wasm is there yet) and
 * returns what the wasm client takes, or `null` while the client is to stay
 * idle (`enabled: false`, or `token: null`: no user yet).
 */
function normalize(options) {
  if (options === null || typeof options !== 'object') throw new Error("HeraldClient needs options: { url: 'wss://example.com/ws', token }");
  const { url, token, getToken, auth, enabled, debug, backoff, fallback, shareAcrossTabs } = options;
  if (typeof url !== 'string' || url === '') fail("url is required, e.g. 'wss://example.com/ws' or '/ws'");
  if (token !== undefined && token !== null && typeof token !== 'string') fail('token must be a string (or null while there is no user)');
  if (getToken !== undefined && typeof getToken !== 'function') fail('getToken must be a function');
  if (typeof token === 'string' && getToken !== undefined) fail('token and getToken: give one of them');
  if (auth !== undefined && auth !== 'message' && auth !== 'query') fail(`auth ${JSON.stringify(auth)} must be 'message' or 'query'`);
  if (enabled !== undefined && typeof enabled !== 'boolean') fail('enabled must be true or false');
  if (debug !== undefined && typeof debug !== 'boolean' && typeof debug !== 'function') fail('debug must be true, false or a function');
  for (const name of MILLIS) millis(options[name], name);
  if (backoff != null) {
    if (typeof backoff !== 'object') fail('backoff must be an object');
    for (const name of BACKOFF_MILLIS) millis(backoff[name], `backoff.${name}`);
    for (const name of ['factor', 'jitter', 'maxAttempts']) {
      if (backoff[name] != null && !(typeof backoff[name] === 'number' && backoff[name] >= 0)) fail(`backoff.${name} must be a number`);
    }
  }
  if (fallback != null && fallback !== false) {
    if (typeof fallback !== 'object') fail('fallback must be false or an object');
    millis(fallback.upgradeAfterMs, 'fallback.upgradeAfterMs');
    if (fallback.sseAfter != null && !(typeof fallback.sseAfter === 'number' && fallback.sseAfter >= 0)) fail('fallback.sseAfter must be a number');
  }
  if (shareAcrossTabs !== undefined && typeof shareAcrossTabs !== 'boolean' && typeof shareAcrossTabs?.user !== 'string') {
    fail('shareAcrossTabs must be true, false or { user }');
  }
  if (shareAcrossTabs === true && getToken !== undefined) {
    fail('shareAcrossTabs: true shares by token; with getToken, name the user: shareAcrossTabs: { user }');
  }
  const resolved = webSocketUrl(url);
  if (enabled === false || token === null) return null;
  const log = debug === true ? logDecision : typeof debug === 'function' ? debug : undefined;
  return { ...options, url: resolved, token: token ?? undefined, auth: auth ?? 'message', debug: log && decisionLogger(log) };
}

// ---------------------------------------------------------------- debug

function logDecision(line) {
  console.info(`[herald] ${line}`);
}

/** Frames that carry a token: logged without it. */
const SECRET = /"token"\s*:\s*"[^"]*"/g;

/**
 * Turns what the wasm reports (`kind`, value) into lines for people:
 * reconnect delays, resubscriptions with their positions, recoveries,
 * resyncs. Tokens are left out.
 */
function decisionLogger(log) {
  return (kind, value) => {
    switch (kind) {
      case 'connect':
        return log(`connecting (${value.transport}) to ${value.url.replace(/([?&]token=)[^&]*/, '$1…')}`);
      case 'close':
        return log(`closing the ${value.transport ?? 'transport'}: ${value.code} ${value.reason}`.trimEnd());
      case 'status':
        if (value.state === 'reconnecting') return log(`reconnecting in ${value.nextInMs} ms (attempt ${value.attempt})`);
        return log(value.state === 'disconnected' ? `stopped: ${value.message}` : value.state + (value.transport ? ` over ${value.transport}` : ''));
      case 'send':
      case 'receive': {
        const message = safeParse(value);
        if (message?.type === 'subscribe') {
          const since = message.since ? `, recovering from ${JSON.stringify(message.since)}${message.epoch ? ` (epoch ${message.epoch})` : ''}` : '';
          return log(`subscribing to ${message.topics.join(', ')}${since}`);
        }
        if (message?.type === 'subscribed') {
          const recovered = message.recovered === undefined ? '' : message.recovered ? ': recovered every missed event' : ': not recovered';
          return log(`subscribed to ${message.topics.join(', ')}${recovered}`);
        }
        if (message?.type === 'auth' || message?.type === 'refresh') return log(`sending the token (${message.type})`);
        if (message?.type === 'unsubscribe') return log(`unsubscribing from ${message.topics.join(', ')}`);
        if (message?.type === 'connected') {
          const expires = message.expires_in === undefined ? '' : `, the token expires in ${message.expires_in} s`;
          return log(`authenticated${message.epoch ? ` (history epoch ${message.epoch})` : ''}${expires}`);
        }
        if (message?.type === 'error') return log(`server error: ${value.replace(SECRET, '"token":"…"')}`);
        return undefined;
      }
      case 'resync':
        return log(`resync ${value.topic}: ${value.reason} (caches of the topic are invalidated)`);
      default:
        return log(`${kind} ${JSON.stringify(value)}`);
    }
  };
}

function safeParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- the client

/**
 * A Herald connection. See index.d.ts and the README; this class holds what
 * the application asked for while the wasm loads, then hands it over.
 */
export class HeraldClient {
  #wasmOptions;
  #inner = null;
  #status;
  #ended = false;
  #subscriptions = new Set();
  #statusListeners = new Set();
  #rawListeners = new Set();
  #queued = [];

  constructor(options) {
    this.#wasmOptions = normalize(options);
    const unsupported = unsupportedReason();
    if (unsupported !== null) {
      this.#status = { state: 'unsupported', message: unsupported };
    } else if (this.#wasmOptions === null) {
      this.#status = { state: 'idle' };
    } else {
      this.#status = { state: 'loading' };
      const build = buildFor(this.#wasmOptions);
      load(build).then(
        (glue) => this.#start(glue, build),
        (error) => this.#end(loadFailure(error, build)),
      );
    }
  }

  #start(glue, build) {
    if (this.#ended) return;
    let inner;
    try {
      inner = sharing(this.#wasmOptions) ? new glue.SharedClient(this.#wasmOptions, glue) : new glue.HeraldClient(this.#wasmOptions);
    } catch (error) {
      return this.#end(loadFailure(error, build));
    }
    this.#inner = inner;
    inner.onStatus((status) => this.#report(status));
    inner.onRaw((message) => this.#rawListeners.forEach((listener) => call(listener, message)));
    for (const subscription of this.#subscriptions) attach(inner, subscription);
    for (const { args, resolve, reject } of this.#queued.splice(0)) inner.publish(...args).then(resolve, reject);
  }

  /** Stops for good without a wasm client: closed, or the wasm did not load. */
  #end(status) {
    this.#ended = true;
    this.#report(status);
    for (const { reject } of this.#queued.splice(0)) reject(new Error(status.message));
  }

  #report(status) {
    this.#status = status;
    this.#statusListeners.forEach((listener) => call(listener, status));
  }

  subscribe(topic, callback, options) {
    checkTopic(topic);
    if (typeof callback !== 'function') throw new Error('subscribe needs a callback function');
    checkSince(options?.since);
    const subscription = { topic, callback, options, stop: null, settle: null };
    const live = new Promise((resolve, reject) => (subscription.settle = { resolve, reject }));
    // Awaiting `live` is optional: a refusal nobody awaits must not be an
    // unhandled rejection (the callback hears `refused` too).
    live.catch(() => {});
    if (this.#inner !== null) attach(this.#inner, subscription);
    this.#subscriptions.add(subscription);
    const unsubscribe = () => {
      this.#subscriptions.delete(subscription);
      subscription.stop?.();
      subscription.stop = null;
    };
    // Callable, as an effect's cleanup; and a handle.
    unsubscribe.unsubscribe = unsubscribe;
    unsubscribe.live = live;
    return unsubscribe;
  }

  publish(topic, event, entityId, payload, options) {
    if (this.#inner !== null) return this.#inner.publish(topic, event, entityId, payload, options);
    try {
      checkTopic(topic);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#status.state !== 'loading') {
      return Promise.reject(new Error(`cannot publish: the client is ${this.#status.state}${this.#status.message ? ` (${this.#status.message})` : ''}`));
    }
    if (options?.ephemeral === true) {
      // As the wasm client refuses one while offline: it would be stale once sent.
      return Promise.reject(Object.assign(new Error('ephemeral events are sent only while connected'), { kind: 'offline' }));
    }
    return new Promise((resolve, reject) => this.#queued.push({ args: [topic, event, entityId, payload, options], resolve, reject }));
  }

  setPresence(topic, meta) {
    checkTopic(topic);
    if (this.#inner !== null) return this.#inner.setPresence(topic, meta);
    // Not loaded yet: the topic's subscriptions with presence start with it.
    const withPresence = [...this.#subscriptions].filter((s) => s.topic === topic && s.options?.presence === true);
    if (withPresence.length === 0) {
      throw new Error(`${topic} is not subscribed with presence: subscribe to it with {presence: true} first`);
    }
    for (const subscription of withPresence) subscription.options = { ...subscription.options, meta };
    return undefined;
  }

  setToken(token) {
    if (typeof token !== 'string') throw new Error('setToken needs a string');
    if (this.#inner !== null) return this.#inner.setToken(token);
    // Not started yet: the first connection uses it.
    if (this.#wasmOptions !== null && typeof this.#wasmOptions.token === 'string') this.#wasmOptions.token = token;
    return undefined;
  }

  onStatus(callback) {
    this.#statusListeners.add(callback);
    callback(this.status());
    return () => this.#statusListeners.delete(callback);
  }

  onRaw(callback) {
    this.#rawListeners.add(callback);
    return () => this.#rawListeners.delete(callback);
  }

  status() {
    return this.#inner !== null ? this.#inner.status() : this.#status;
  }

  close() {
    if (this.#inner !== null) return this.#inner.close();
    if (this.#ended) return undefined;
    if (this.#status.state === 'unsupported') {
      this.#ended = true;
      return undefined;
    }
    return this.#end({ state: 'disconnected', reason: 'closed', message: 'closed by the application' });
  }
}

/** Subscribes `subscription` on the wasm client; its `live` follows the wasm one's. */
function attach(inner, subscription) {
  subscription.stop = inner.subscribe(subscription.topic, subscription.callback, subscription.options);
  subscription.stop.live.then(subscription.settle.resolve, subscription.settle.reject);
}

/** `since` is checked here too, so that a wrong one throws whether or not the wasm is there yet. */
function checkSince(since) {
  if (since == null) return;
  if (typeof since !== 'object' || typeof since.epoch !== 'string' || !Number.isSafeInteger(since.seq) || since.seq < 0) {
    throw new Error(`options.since must be a position {epoch: string, seq: number}, not ${JSON.stringify(since)}`);
  }
}

/** Calls application code; an exception there is reported, not thrown into the client. */
function call(listener, value) {
  try {
    listener(value);
  } catch (error) {
    globalThis.reportError?.(error);
  }
}
