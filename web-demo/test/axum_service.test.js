// The web demo's page against `examples/axum_service.rs`: a Rust service on
// SQLite with Herald mounted on its own port, serving the page itself. Its
// React hooks keep two windows fresh through SIGKILLs of the service, one of
// them between a change's commit and its announcement (the outbox's row is
// announced by the next run's relay): none missed, none twice, no resync.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { launchBrowser } from '../../pkg/test/support/browser.js';
import { eventually } from '../../pkg/test/support/eventually.js';

const SERVICE =
  process.env.AXUM_SERVICE_BIN ?? fileURLToPath(new URL('../../target/debug/examples/axum_service', import.meta.url));
const DIST = fileURLToPath(new URL('../dist', import.meta.url));

let data;
let browser;
let service;

/** One run of the service on `addr` (a free port when omitted); resolves with `{url, kill()}`. */
async function startService({ addr = '127.0.0.1:0', relay = true } = {}) {
  await access(SERVICE).catch(() => {
    throw new Error(`${SERVICE} is missing: build it with \`cargo build --example axum_service\` or set AXUM_SERVICE_BIN`);
  });
  const args = ['--addr', addr, '--data', data, '--static', DIST, ...(relay ? [] : ['--no-relay'])];
  const child = spawn(SERVICE, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`axum_service exited with ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const found = line.match(/on (http:\/\/127\.0\.0\.1:\d+)\//);
      if (found) resolve(found[1]);
    });
  });
  // SIGKILL: no chance to finish anything, as in a crash.
  const kill = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', resolve);
      child.kill('SIGKILL');
    });
  return { url, addr: new URL(url).host, kill };
}

before(async () => {
  data = await mkdtemp(join(tmpdir(), 'herald-axum-service-'));
  service = await startService();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await service?.kill();
  if (data) await rm(data, { recursive: true, force: true });
});

const api = async (path, init) => {
  const response = await fetch(`${service.url}${path}`, init);
  assert.ok(response.ok, `${path}: ${response.status} ${await response.clone().text()}`);
  return response.status === 204 ? null : response.json();
};
const addGift = (name) =>
  api('/api/lists/family-123/gifts', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, by: 'test' }),
  });
const serverNames = async () => (await api('/api/lists/family-123')).gifts.map((gift) => gift.name);
const pageNames = (page) => page.locator('[data-testid=gifts] .name').allTextContents();
const state = (page) => page.getAttribute('[data-testid=status]', 'data-state');

async function openAs(user) {
  const page = await browser.context.newPage();
  page.on('pageerror', (error) => assert.fail(`${user}'s page threw: ${error.message}`));
  await page.goto(`${service.url}/?user=${user}`);
  return page;
}

async function showsServerList(page, what) {
  const expected = await serverNames();
  await eventually(`${what}: ${JSON.stringify(expected)}`, () => pageNames(page), (names) =>
    JSON.stringify(names) === JSON.stringify(expected),
  );
}

/** The page's events arrived in order, none missed and none twice, and it never had to resync. */
async function recoveredEverything(page, gifts) {
  const log = await eventually('the events of every change', () => page.textContent('[data-testid=log]'), (log) =>
    gifts.every((gift) => log.includes(`ADDED ${gift.id} by test`)),
  );
  assert.ok(!log.includes('resync'), `recovered by seq, not resynced: ${log}`);
  assert.equal(await page.getAttribute('[data-testid=integrity]', 'data-ok'), 'true', await page.textContent('[data-testid=integrity]'));
}

test("the web demo's hooks stay fresh against the axum service, through SIGKILLs before and after a commit", async () => {
  const alice = await openAs('alice');
  const bob = await openAs('bob');
  for (const page of [alice, bob]) await eventually('a live connection', () => state(page), (s) => s === 'connected');

  // A change made in one window reaches the other through the outbox.
  await alice.fill('input[name=gift]', 'Telescope');
  await alice.click('button[type=submit]');
  await eventually("alice's gift in bob's window", () => pageNames(bob), (names) => names.includes('Telescope'));

  // Killed, and back on the same port: Herald's history is in the service's
  // data directory, so the windows recover instead of refetching everything.
  const addr = service.addr;
  await service.kill();
  service = await startService({ addr, relay: false });
  for (const page of [alice, bob]) {
    await eventually('back after the kill', () => state(page), (s) => s === 'connected', { timeoutMs: 20_000 });
  }

  // Committed with its outbox row, then killed before the relay announced it.
  const unannounced = await addGift('Committed, then killed');
  await service.kill();
  service = await startService({ addr });
  const later = await addGift('After the restart');
  for (const page of [alice, bob]) {
    await eventually('back after the second kill', () => state(page), (s) => s === 'connected', { timeoutMs: 20_000 });
    await showsServerList(page, 'the list with the change the crash left unannounced');
    await recoveredEverything(page, [unannounced, later]);
  }
});
