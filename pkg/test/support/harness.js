// What every browser test file starts with: the testbed, the test app built
// and served, and a browser. `open()` gives a fresh page with the app's
// harness (test/app/main.jsx) loaded. The tests count the testbed's
// connections and subscriptions: they must be its only clients meanwhile.

import { buildApp } from './build.js';
import { launchBrowser } from './browser.js';
import { eventually } from './eventually.js';
import { serveApp } from './server.js';
import { Testbed } from './testbed.js';

// Chromium reports a refused WebSocket handshake on the console by itself;
// the tests that restart the server cause those on purpose.
const EXPECTED_CONSOLE_ERRORS = /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/ws[^']*' failed/;

export async function startHarness() {
  const testbed = Testbed.fromEnv();
  const bundle = await buildApp();
  const server = await serveApp(bundle.dir, new URL(testbed.addresses.http).host);
  const browser = await launchBrowser();
  return {
    testbed,
    server,
    /**
     * A fresh page with the app loaded (`query`: the page's, e.g. `?csp=...`;
     * `beforeLoad(page)` runs before it loads).
     * Closed after the test `t`, which then fails if the page had an uncaught
     * error or logged one (other than those `app.expectErrors` allows), or if
     * its connections did not go away.
     */
    async open(t, { query = '', beforeLoad } = {}) {
      const before = await testbed.state();
      const page = await browser.context.newPage();
      const app = new AppPage(page);
      t.after(async () => {
        await page.close();
        await testbed.waitForState(`the server's connections back to ${before.connections} after the page closed`, (state) =>
          state.connections <= before.connections,
        );
        if (app.errors.length > 0) throw new Error(`the page reported errors:\n${app.errors.join('\n')}`);
      });
      await beforeLoad?.(page);
      await page.goto(`${server.url}/${query}`, { timeout: 10_000 });
      await eventually('the test app to load', () => page.evaluate(() => typeof window.harness), (type) => type === 'object');
      return app;
    },
    async close() {
      await browser.close();
      await server.close();
      await bundle.remove();
    },
  };
}

/** The test app in one page: mount a scenario of test/app/scenarios.jsx, then read what it shows. */
class AppPage {
  constructor(page) {
    this.page = page;
    this.errors = [];
    this.expected = EXPECTED_CONSOLE_ERRORS;
    /** Every console message, as `type: text`. */
    this.console = [];
    page.on('pageerror', (error) => this.errors.push(`uncaught: ${error.stack ?? error.message}`));
    page.on('console', (message) => {
      this.console.push(`${message.type()}: ${message.text()}`);
      if (message.type() === 'error' && !this.expected.test(message.text()) && !this.extra?.test(message.text())) {
        this.errors.push(`console.error: ${message.text()} (${message.location().url})`);
      }
    });
  }

  /** Console errors matching `pattern` are expected in this test (a CSP refusing the wasm). */
  expectErrors(pattern) {
    this.extra = pattern;
  }

  /** Renders scenario `name` with `props`, inside <React.StrictMode> unless `strict` is false. */
  mount(name, props = {}, { strict = true } = {}) {
    return this.page.evaluate((args) => window.harness.mount(...args), [name, props, { strict }]);
  }

  /** Renders the mounted scenario again with new props. */
  update(props) {
    return this.page.evaluate((next) => window.harness.update(next), props);
  }

  unmount() {
    return this.page.evaluate(() => window.harness.unmount());
  }

  /** The text of the element `[data-testid=testId]`, or null if there is none. */
  text(testId) {
    return this.page.evaluate((id) => document.querySelector(`[data-testid="${id}"]`)?.textContent ?? null, testId);
  }

  /** The element's text parsed as JSON (scenarios show their state that way), or null. */
  async json(testId) {
    const text = await this.text(testId);
    return text === null ? null : JSON.parse(text);
  }

  /** Waits until `accept` holds for the element's JSON; returns that JSON. */
  waitForJson(testId, what, accept) {
    return eventually(`${what} (in [data-testid=${testId}])`, () => this.json(testId), accept);
  }

  click(testId) {
    return this.page.click(`[data-testid="${testId}"]`, { timeout: 10_000 });
  }

  evaluate(fn, arg) {
    return this.page.evaluate(fn, arg);
  }
}
