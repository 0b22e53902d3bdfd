// The herald-testbed the browser tests talk to: its addresses come from
// HERALD_TESTBED (the JSON line it prints on start), its control API is
// plain HTTP on loopback.

import { eventually } from './eventually.js';

const START_HINT =
  'start one from the repository root with\n' +
  '  cargo build -p herald-testbed && (sleep infinity | ./target/debug/herald-testbed)\n' +
  'and run the tests with HERALD_TESTBED set to the JSON line it prints';

const REQUEST_TIMEOUT_MS = 10_000;

export class Testbed {
  /** The testbed named by HERALD_TESTBED; throws a message that says how to start one. */
  static fromEnv() {
    const line = process.env.HERALD_TESTBED;
    if (!line) throw new Error(`HERALD_TESTBED is not set: the browser tests need a running herald-testbed; ${START_HINT}`);
    let addresses;
    try {
      addresses = JSON.parse(line);
    } catch {
      throw new Error(`HERALD_TESTBED is not the testbed's JSON line: ${line}`);
    }
    for (const name of ['control', 'ws', 'gated_ws']) {
      if (typeof addresses[name] !== 'string') throw new Error(`HERALD_TESTBED has no "${name}" address: ${line}`);
    }
    return new Testbed(addresses);
  }

  constructor(addresses) {
    /** `ws`: the dev server (any token is the user id); `gated_ws`: the same through a gate that counts TCP connections. */
    this.addresses = addresses;
  }

  async request(method, path, body) {
    const url = `${this.addresses.control}${path}`;
    let response;
    try {
      response = await fetch(url, { method, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (error) {
      throw new Error(`the testbed at ${this.addresses.control} did not answer ${method} ${path} (${error.message}); is it running? ${START_HINT}`);
    }
    const text = await response.text();
    if (!response.ok) throw new Error(`testbed ${method} ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text);
  }

  /** Publishes through the server (not a client); resolves with the event's seq. */
  async publish(topic, { event = 'UPDATED', entityId = '1', payload = {} } = {}) {
    const query = new URLSearchParams({ topic, event, entity_id: entityId });
    const { seq } = await this.request('POST', `/publish?${query}`, JSON.stringify(payload));
    return seq;
  }

  /** `{connections, subscriptions, gate_accepted, ...}` of the dev server, or of `server` (`secure`, `tls`). */
  state(server) {
    return this.request('GET', server ? `/state?server=${server}` : '/state');
  }

  /** While on, the gate (`gated_ws`) refuses WebSocket upgrades with 403. */
  block(on) {
    return this.request('POST', `/block?on=${on}`);
  }

  /** A token of the `secure` server for `user`, valid `ttl` seconds. */
  async token(user, ttl = 3600) {
    const { token } = await this.request('POST', `/token?user=${encodeURIComponent(user)}&ttl=${ttl}`);
    return token;
  }

  /** Waits until the server's counters satisfy `accept(state)`; returns that state. */
  waitForState(what, accept) {
    return eventually(what, () => this.state(), accept);
  }

  /** A graceful restart (1001 with a retry hint); `epoch: 'new'` loses the event history, as a real restart does. */
  restart(epoch) {
    return this.request('POST', `/restart?epoch=${epoch}`);
  }

  /** Closes every connection of the dev server with `code` (1006: dropped without a close frame). */
  disconnect(code) {
    return this.request('POST', `/disconnect?code=${code}`);
  }

  pause() {
    return this.request('POST', '/pause');
  }

  resume(epoch = 'same') {
    return this.request('POST', `/resume?epoch=${epoch}`);
  }
}
